//! Key ranges, as etcd expresses them with `key` and `range_end`.

/// A single key, or the keys in `[start, end)`, or every key from `start` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// First key.
    pub start: Vec<u8>,
    /// `None`: only `start`. `Some(empty)`: every key >= start. Otherwise the exclusive end.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Exactly one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        Self {
            start: key.into(),
            end: None,
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let start = prefix.into();
        let end = prefix_end(&start);
        Self {
            start,
            end: Some(end),
        }
    }

    /// Keys in `[start, end)`.
    pub fn range(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Self {
            start: start.into(),
            end: Some(end.into()),
        }
    }

    /// Every key in the store.
    pub fn all() -> Self {
        Self {
            start: vec![0],
            end: Some(Vec::new()),
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => key == self.start.as_slice(),
            Some(end) => key >= self.start.as_slice() && (end.is_empty() || key < end.as_slice()),
        }
    }

    /// The exclusive upper bound, or `None` when unbounded (single keys give `start + \0`).
    pub(crate) fn upper(&self) -> Option<Vec<u8>> {
        match &self.end {
            None => {
                let mut k = self.start.clone();
                k.push(0);
                Some(k)
            }
            Some(end) if end.is_empty() => None,
            Some(end) => Some(end.clone()),
        }
    }

    /// Whether the range holds no key at all (end at or before start).
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self.upper(), Some(u) if u <= self.start)
    }
}

/// The smallest key greater than every key with `prefix`; empty (unbounded) when the prefix is
/// all 0xff bytes.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_covers_exactly_its_keys() {
        let r = KeyRange::prefix(b"/a/".to_vec());
        assert!(r.contains(b"/a/"));
        assert!(r.contains(b"/a/zzz"));
        assert!(!r.contains(b"/a0"));
        assert!(!r.contains(b"/b/"));
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), Vec::<u8>::new());
    }

    #[test]
    fn single_key_and_all() {
        let r = KeyRange::key(b"k".to_vec());
        assert!(r.contains(b"k"));
        assert!(!r.contains(b"k\0"));
        assert!(KeyRange::all().contains(b"anything"));
        assert!(KeyRange::range(b"b".to_vec(), b"a".to_vec()).is_empty());
        assert!(!KeyRange::range(b"a".to_vec(), b"b".to_vec()).is_empty());
    }
}
