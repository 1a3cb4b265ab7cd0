//! Binary encoding of the records the local store keeps: key metadata with values, and the
//! events of one revision. Little-endian, length-prefixed; decoding never panics.

use crate::{Event, EventKind, KeyValue};

/// Appends primitive values to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        // Values are limited to 1.5 MiB and keys far below, so a u32 length always fits.
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
}

/// Reads primitive values from a buffer; every read reports truncation as an error.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "record truncated: wanted {n} bytes, {} left",
                self.buf.len()
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    pub fn i64(&mut self) -> Result<i64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(b))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

fn write_meta(w: &mut Writer, kv: &KeyValue) {
    w.i64(kv.create_revision);
    w.i64(kv.mod_revision);
    w.i64(kv.version);
    w.i64(kv.lease);
}

fn read_meta(r: &mut Reader<'_>, key: Vec<u8>) -> Result<KeyValue, String> {
    Ok(KeyValue {
        key,
        value: Vec::new(),
        create_revision: r.i64()?,
        mod_revision: r.i64()?,
        version: r.i64()?,
        lease: r.i64()?,
    })
}

/// Encodes a live key's metadata and value (the key itself is the table key).
pub(crate) fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut w = Writer {
        buf: Vec::with_capacity(32 + kv.value.len()),
    };
    write_meta(&mut w, kv);
    w.buf.extend_from_slice(&kv.value);
    w.buf
}

/// Decodes what [`encode_kv`] wrote; `keys_only` skips copying the value.
pub(crate) fn decode_kv(key: &[u8], data: &[u8], keys_only: bool) -> Result<KeyValue, String> {
    let mut r = Reader::new(data);
    let mut kv = read_meta(&mut r, key.to_vec())?;
    if !keys_only {
        kv.value = r.rest().to_vec();
    }
    Ok(kv)
}

/// Decodes only the lease of an encoded key.
pub(crate) fn decode_lease(data: &[u8]) -> Result<i64, String> {
    let mut r = Reader::new(data);
    for _ in 0..3 {
        r.i64()?;
    }
    r.i64()
}

/// Encodes the events of one revision. Each event carries its previous value.
pub(crate) fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(events.len() as u32);
    for e in events {
        w.u8(match e.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        w.bytes(&e.kv.key);
        write_meta(&mut w, &e.kv);
        w.bytes(&e.kv.value);
        match &e.prev_kv {
            Some(p) => {
                w.u8(1);
                write_meta(&mut w, p);
                w.bytes(&p.value);
            }
            None => w.u8(0),
        }
    }
    w.buf
}

/// Decodes what [`encode_events`] wrote.
pub(crate) fn decode_events(data: &[u8]) -> Result<Vec<Event>, String> {
    let mut r = Reader::new(data);
    let n = r.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let kind = match r.u8()? {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            k => return Err(format!("unknown event kind {k}")),
        };
        let key = r.bytes()?.to_vec();
        let mut kv = read_meta(&mut r, key.clone())?;
        kv.value = r.bytes()?.to_vec();
        let prev_kv = match r.u8()? {
            0 => None,
            1 => {
                let mut p = read_meta(&mut r, key)?;
                p.value = r.bytes()?.to_vec();
                Some(p)
            }
            f => return Err(format!("bad prev flag {f}")),
        };
        out.push(Event { kind, kv, prev_kv });
    }
    if !r.is_empty() {
        return Err("trailing bytes after events".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_truncation_is_an_error() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            value: b"v2".to_vec(),
            create_revision: 2,
            mod_revision: 5,
            version: 3,
            lease: 7,
        };
        let events = vec![
            Event {
                kind: EventKind::Put,
                kv: kv.clone(),
                prev_kv: Some(KeyValue {
                    value: b"v1".to_vec(),
                    mod_revision: 4,
                    version: 2,
                    ..kv.clone()
                }),
            },
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: b"k".to_vec(),
                    mod_revision: 6,
                    ..Default::default()
                },
                prev_kv: None,
            },
        ];
        let enc = encode_events(&events);
        assert_eq!(decode_events(&enc).unwrap(), events);
        for cut in 0..enc.len() {
            assert!(decode_events(&enc[..cut]).is_err(), "cut at {cut}");
        }
        let one = encode_kv(&kv);
        assert_eq!(decode_kv(b"k", &one, false).unwrap(), kv);
        assert_eq!(decode_lease(&one).unwrap(), 7);
        assert!(decode_kv(b"k", &one[..10], false).is_err());
    }
}
