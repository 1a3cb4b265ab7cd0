//! Kubernetes' two time formats, in one place: `Time` (RFC 3339 in UTC, whole seconds, as in
//! `creationTimestamp`) and `MicroTime` (microseconds, as in a Lease's `renewTime` or an
//! Event's `eventTime`), and the clock read in them.

use jiff::Timestamp;

/// `t` as a Kubernetes `Time`: `2006-01-02T15:04:05Z`.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `t` as a Kubernetes `MicroTime`: `2006-01-02T15:04:05.000000Z`.
pub fn rfc3339_micro(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Now, as a Kubernetes `Time`.
pub fn now() -> String {
    rfc3339(Timestamp::now())
}

/// Now, as a Kubernetes `MicroTime`.
pub fn now_micro() -> String {
    rfc3339_micro(Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_as_kubernetes_writes_them() {
        let t = Timestamp::new(1_136_214_245, 123_456_789).expect("a time");
        assert_eq!(rfc3339(t), "2006-01-02T15:04:05Z");
        assert_eq!(rfc3339_micro(t), "2006-01-02T15:04:05.123456Z");
        assert_eq!(now().len(), "2006-01-02T15:04:05Z".len());
        assert_eq!(now_micro().len(), "2006-01-02T15:04:05.000000Z".len());
    }
}
