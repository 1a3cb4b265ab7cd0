//! SPDY/3.1 framing, as much as port-forwarding needs: kubectl multiplexes its forwarded
//! connections as SPDY streams (tunnelled in a WebSocket, or over a plain SPDY upgrade).
//!
//! Frames are an 8-byte header and a payload. Control frames (first bit set) carry the
//! version (3), a type, flags and a 24-bit length; data frames carry a 31-bit stream id, flags
//! and a length. The header blocks of SYN_STREAM, SYN_REPLY and HEADERS are zlib-compressed
//! with SPDY's dictionary, one compression stream per direction for the whole connection.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The version this speaks.
const VERSION: u16 = 3;
/// The last frame the sender sends on a stream.
pub const FLAG_FIN: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status: the stream is refused or cancelled.
pub const CANCEL: u32 = 5;
/// SETTINGS id of the initial stream window.
const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// The largest frame accepted (a header block or data larger than this is an error).
const MAX_FRAME: usize = 1 << 20;
/// The most header pairs one block may hold.
const MAX_HEADERS: usize = 256;

/// A name/value header pair.
pub type Header = (String, String);

/// A frame, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// Stream data; `fin` ends the sender's side of the stream.
    Data {
        stream: u32,
        fin: bool,
        data: Vec<u8>,
    },
    /// The peer opens a stream.
    SynStream {
        stream: u32,
        fin: bool,
        headers: Vec<Header>,
    },
    /// The answer to a stream we opened.
    SynReply { stream: u32, headers: Vec<Header> },
    /// A stream is aborted.
    RstStream { stream: u32, status: u32 },
    /// Connection settings: the initial window, if set.
    Settings { initial_window: Option<u32> },
    /// A ping, answered with the same id.
    Ping(u32),
    /// The peer closes the connection.
    GoAway,
    /// More headers on a stream.
    Headers { stream: u32, headers: Vec<Header> },
    /// The peer may send `delta` more bytes on `stream` (0: the connection).
    WindowUpdate { stream: u32, delta: u32 },
    /// A control frame this does not use.
    Other(u16),
}

/// A malformed frame: the connection cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("SPDY: {0}")]
pub struct Error(String);

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes and encodes the frames of one connection, keeping both header-compression streams.
pub struct Codec {
    inflate: Decompress,
    deflate: Compress,
}

impl Default for Codec {
    fn default() -> Codec {
        Codec::new()
    }
}

impl Codec {
    /// A codec for a new connection.
    pub fn new() -> Codec {
        let mut deflate = Compress::new(Compression::default(), true);
        // A zlib stream takes its dictionary before any data; failing here only means the
        // peer gets blocks compressed without it, which zlib readers accept too.
        let _ = deflate.set_dictionary(&crate::spdy_dictionary::dictionary());
        Codec {
            inflate: Decompress::new(true),
            deflate,
        }
    }

    /// Takes the first whole frame off the front of `buf`, if one is there.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Frame>, Error> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (be32(&buf[4..8]) & 0x00ff_ffff) as usize;
        if len > MAX_FRAME {
            return Err(Error(format!("a frame of {len} bytes is too large")));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let head: Vec<u8> = buf.drain(..8 + len).collect();
        let flags = head[4];
        let body = &head[8..];
        let word = be32(&head[0..4]);
        if word & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream: word & 0x7fff_ffff,
                fin: flags & FLAG_FIN != 0,
                data: body.to_vec(),
            }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(Error(format!("version {version} is not supported (3 is)")));
        }
        let kind = (word & 0xffff) as u16;
        let need = |n: usize| {
            if body.len() < n {
                Err(Error(format!("control frame {kind} is too short")))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need(10)?;
                Frame::SynStream {
                    stream: be32(body) & 0x7fff_ffff,
                    fin: flags & FLAG_FIN != 0,
                    headers: self.headers_in(&body[10..])?,
                }
            }
            SYN_REPLY => {
                need(4)?;
                Frame::SynReply {
                    stream: be32(body) & 0x7fff_ffff,
                    headers: self.headers_in(&body[4..])?,
                }
            }
            HEADERS => {
                need(4)?;
                Frame::Headers {
                    stream: be32(body) & 0x7fff_ffff,
                    headers: self.headers_in(&body[4..])?,
                }
            }
            RST_STREAM => {
                need(8)?;
                Frame::RstStream {
                    stream: be32(body) & 0x7fff_ffff,
                    status: be32(&body[4..]),
                }
            }
            SETTINGS => {
                need(4)?;
                let count = be32(body) as usize;
                let entries = &body[4..];
                if entries.len() < count.saturating_mul(8) {
                    return Err(Error("SETTINGS frame is too short".into()));
                }
                let initial_window = entries
                    .chunks_exact(8)
                    .take(count)
                    .find(|e| be32(e) & 0x00ff_ffff == SETTINGS_INITIAL_WINDOW_SIZE)
                    .map(|e| be32(&e[4..]));
                Frame::Settings { initial_window }
            }
            PING => {
                need(4)?;
                Frame::Ping(be32(body))
            }
            GOAWAY => Frame::GoAway,
            WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate {
                    stream: be32(body) & 0x7fff_ffff,
                    delta: be32(&body[4..]) & 0x7fff_ffff,
                }
            }
            other => Frame::Other(other),
        };
        Ok(Some(frame))
    }

    /// Decompresses and parses a header block.
    fn headers_in(&mut self, block: &[u8]) -> Result<Vec<Header>, Error> {
        let raw = self.inflate_block(block)?;
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], Error> {
            let end = at
                .checked_add(n)
                .filter(|&e| e <= raw.len())
                .ok_or_else(|| Error("a header block is truncated".into()))?;
            let s = &raw[at..end];
            at = end;
            Ok(s)
        };
        let count = be32(take(4)?) as usize;
        if count > MAX_HEADERS {
            return Err(Error(format!("{count} headers in one block are too many")));
        }
        let mut headers = Vec::with_capacity(count);
        for _ in 0..count {
            let n = be32(take(4)?) as usize;
            let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
            let n = be32(take(4)?) as usize;
            let value = String::from_utf8_lossy(take(n)?).into_owned();
            headers.push((name, value));
        }
        Ok(headers)
    }

    fn inflate_block(&mut self, mut input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(256);
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_FRAME {
                    return Err(Error("a header block inflates too large".into()));
                }
                out.reserve(out.len().max(256));
            }
            let (before, produced) = (self.inflate.total_in(), out.len());
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - before) as usize;
            input = &input[used..];
            match result {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) if input.is_empty() && out.len() < out.capacity() => return Ok(out),
                Ok(_) if used == 0 && out.len() == produced && out.len() < out.capacity() => {
                    return Err(Error("a header block is truncated".into()));
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&crate::spdy_dictionary::dictionary())
                        .map_err(|e| Error(format!("header dictionary: {e}")))?;
                }
                Err(e) => return Err(Error(format!("header block: {e}"))),
            }
        }
    }

    fn deflate_block(&mut self, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = raw;
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            let _ = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync);
            let used = (self.deflate.total_in() - before) as usize;
            input = &input[used..];
            // A sync flush is complete once it no longer fills the space it is given.
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }

    /// Encodes a frame to send.
    pub fn encode(&mut self, frame: &Frame) -> Vec<u8> {
        let control = |kind: u16, flags: u8, body: &[u8]| {
            let mut out = Vec::with_capacity(8 + body.len());
            out.extend_from_slice(
                &(0x8000_0000u32 | (u32::from(VERSION) << 16) | u32::from(kind)).to_be_bytes(),
            );
            out.extend_from_slice(&((u32::from(flags) << 24) | body.len() as u32).to_be_bytes());
            out.extend_from_slice(body);
            out
        };
        match frame {
            Frame::Data { stream, fin, data } => {
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                let flags = if *fin { FLAG_FIN } else { 0 };
                out.extend_from_slice(
                    &((u32::from(flags) << 24) | data.len() as u32).to_be_bytes(),
                );
                out.extend_from_slice(data);
                out
            }
            Frame::SynStream {
                stream,
                fin,
                headers,
            } => {
                let mut body = stream.to_be_bytes().to_vec();
                body.extend_from_slice(&[0; 6]);
                body.extend(self.header_block(headers));
                control(SYN_STREAM, if *fin { FLAG_FIN } else { 0 }, &body)
            }
            Frame::SynReply { stream, headers } => {
                let mut body = stream.to_be_bytes().to_vec();
                body.extend(self.header_block(headers));
                control(SYN_REPLY, 0, &body)
            }
            Frame::Headers { stream, headers } => {
                let mut body = stream.to_be_bytes().to_vec();
                body.extend(self.header_block(headers));
                control(HEADERS, 0, &body)
            }
            Frame::RstStream { stream, status } => {
                let mut body = stream.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(RST_STREAM, 0, &body)
            }
            Frame::Settings { initial_window } => {
                let mut body = Vec::new();
                match initial_window {
                    Some(w) => {
                        body.extend_from_slice(&1u32.to_be_bytes());
                        body.extend_from_slice(&SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes());
                        body.extend_from_slice(&w.to_be_bytes());
                    }
                    None => body.extend_from_slice(&0u32.to_be_bytes()),
                }
                control(SETTINGS, 0, &body)
            }
            Frame::Ping(id) => control(PING, 0, &id.to_be_bytes()),
            Frame::GoAway => control(GOAWAY, 0, &[0; 8]),
            Frame::WindowUpdate { stream, delta } => {
                let mut body = stream.to_be_bytes().to_vec();
                body.extend_from_slice(&delta.to_be_bytes());
                control(WINDOW_UPDATE, 0, &body)
            }
            Frame::Other(kind) => control(*kind, 0, &[]),
        }
    }

    fn header_block(&mut self, headers: &[Header]) -> Vec<u8> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            for s in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s);
            }
        }
        self.deflate_block(&raw)
    }
}

/// The value of header `name` (lowercase).
pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames survive a round trip between two codecs, header blocks included, across several
    /// frames sharing one compression stream.
    #[test]
    fn frames_round_trip() {
        let (mut a, mut b) = (Codec::new(), Codec::new());
        let frames = [
            Frame::SynStream {
                stream: 1,
                fin: false,
                headers: vec![
                    ("streamtype".into(), "error".into()),
                    ("port".into(), "8080".into()),
                    ("requestid".into(), "0".into()),
                ],
            },
            Frame::SynStream {
                stream: 3,
                fin: true,
                headers: vec![("streamtype".into(), "data".into())],
            },
            Frame::SynReply {
                stream: 3,
                headers: vec![],
            },
            Frame::Data {
                stream: 3,
                fin: true,
                data: b"hello".to_vec(),
            },
            Frame::RstStream {
                stream: 5,
                status: CANCEL,
            },
            Frame::Settings {
                initial_window: Some(65536),
            },
            Frame::Ping(7),
            Frame::WindowUpdate {
                stream: 3,
                delta: 1000,
            },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(a.encode(f));
        }
        // Half a frame is not a frame yet.
        let mut partial = wire[..5].to_vec();
        assert_eq!(b.decode(&mut partial).unwrap(), None);
        let mut got = Vec::new();
        while let Some(f) = b.decode(&mut wire).unwrap() {
            got.push(f);
        }
        assert_eq!(got, frames);
        assert!(wire.is_empty());
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut c = Codec::new();
        // Version 2.
        let mut v2 = vec![0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(c.decode(&mut v2).is_err());
        // A SYN_STREAM too short for its fixed fields.
        let mut short = vec![0x80, 0x03, 0x00, 0x01, 0, 0, 0, 2, 0, 0];
        assert!(Codec::new().decode(&mut short).is_err());
        // A header block that is not zlib.
        let mut junk = vec![0x80, 0x03, 0x00, 0x02, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4];
        assert!(Codec::new().decode(&mut junk).is_err());
        // A length past the limit.
        let mut huge = vec![0x00, 0x00, 0x00, 0x01, 0, 0xff, 0xff, 0xff];
        assert!(Codec::new().decode(&mut huge).is_err());
    }
}
