//! The etcd v3 messages the etcd backend uses, generated at build time from
//! `proto/etcd.proto` (by `build.rs`, with protox and prost-build: no protoc needed).

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Known wire bytes: a RangeRequest for key "a" with range_end "\0" and revision 5.
    #[test]
    fn range_request_wire_format() {
        let req = RangeRequest {
            key: b"a".to_vec(),
            range_end: vec![0],
            revision: 5,
            ..Default::default()
        };
        assert_eq!(
            req.encode_to_vec(),
            vec![0x0a, 1, b'a', 0x12, 1, 0, 0x20, 5]
        );
    }

    #[test]
    fn compare_oneof_tags() {
        let c = Compare {
            result: compare::CompareResult::NotEqual as i32,
            target: compare::CompareTarget::Value as i32,
            key: b"k".to_vec(),
            target_union: Some(compare::TargetUnion::Value(b"v".to_vec())),
        };
        assert_eq!(
            c.encode_to_vec(),
            vec![0x08, 3, 0x10, 3, 0x1a, 1, b'k', 0x3a, 1, b'v']
        );
        let w = WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                WatchProgressRequest {},
            )),
        };
        assert_eq!(w.encode_to_vec(), vec![0x1a, 0]);
    }
}
