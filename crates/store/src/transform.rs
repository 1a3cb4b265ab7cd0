//! A store that transforms values on their way in and out: what the API server's encryption
//! at rest sits on (kube-apiserver's value transformers). Keys, revisions and everything else
//! pass unchanged; compares on values are refused (transformed bytes never compare equal).

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    Error, KeyRange, KeyValue, Lease, RangeOptions, RangeResponse, Result, SnapshotInfo, Store,
    Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions, WatchStream,
};

/// Turns values into what is stored and back.
pub trait ValueTransformer: Send + Sync + 'static {
    /// The bytes to store as `key`'s value.
    fn transform_to_storage(&self, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>>;
    /// The value that stored bytes stand for.
    fn transform_from_storage(&self, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>>;
}

/// A store whose values go through a [`ValueTransformer`].
pub struct TransformingStore {
    inner: Arc<dyn Store>,
    transformer: Arc<dyn ValueTransformer>,
}

impl TransformingStore {
    /// `inner`, with values transformed by `transformer`.
    pub fn new(inner: Arc<dyn Store>, transformer: Arc<dyn ValueTransformer>) -> Self {
        Self { inner, transformer }
    }
}

fn read_kvs(t: &dyn ValueTransformer, kvs: &mut [KeyValue]) -> Result<()> {
    for kv in kvs {
        if !kv.value.is_empty() {
            kv.value = t.transform_from_storage(&kv.key, std::mem::take(&mut kv.value))?;
        }
    }
    Ok(())
}

fn write_ops(t: &dyn ValueTransformer, ops: &mut [TxnOp]) -> Result<()> {
    for op in ops {
        if let TxnOp::Put(p) = op {
            p.value = t.transform_to_storage(&p.key, std::mem::take(&mut p.value))?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for TransformingStore {
    async fn range(&self, range: KeyRange, opts: RangeOptions) -> Result<RangeResponse> {
        let mut resp = self.inner.range(range, opts).await?;
        read_kvs(self.transformer.as_ref(), &mut resp.kvs)?;
        Ok(resp)
    }

    async fn txn(&self, mut txn: Txn) -> Result<TxnResponse> {
        if txn
            .compare
            .iter()
            .any(|c| matches!(c.target, crate::CompareTarget::Value(_)))
        {
            return Err(Error::Internal(
                "value compares are not supported on transformed values".into(),
            ));
        }
        write_ops(self.transformer.as_ref(), &mut txn.success)?;
        write_ops(self.transformer.as_ref(), &mut txn.failure)?;
        let mut resp = self.inner.txn(txn).await?;
        for r in &mut resp.responses {
            match r {
                TxnOpResponse::Range(range) => read_kvs(self.transformer.as_ref(), &mut range.kvs)?,
                TxnOpResponse::Put(p) => {
                    if let Some(prev) = &mut p.prev_kv {
                        read_kvs(self.transformer.as_ref(), std::slice::from_mut(prev))?;
                    }
                }
                TxnOpResponse::Delete(d) => read_kvs(self.transformer.as_ref(), &mut d.prev_kvs)?,
            }
        }
        Ok(resp)
    }

    async fn watch(&self, range: KeyRange, opts: WatchOptions) -> Result<WatchStream> {
        let stream = self.inner.watch(range, opts).await?;
        let t = self.transformer.clone();
        Ok(stream.map(move |mut resp| {
            for e in &mut resp.events {
                read_kvs(t.as_ref(), std::slice::from_mut(&mut e.kv))?;
                if let Some(prev) = &mut e.prev_kv {
                    read_kvs(t.as_ref(), std::slice::from_mut(prev))?;
                }
            }
            Ok(resp)
        }))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<Lease> {
        self.inner.lease_grant(ttl_secs).await
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        self.inner.lease_keep_alive(id).await
    }

    async fn lease_revoke(&self, id: i64) -> Result<()> {
        self.inner.lease_revoke(id).await
    }

    /// The snapshot holds what is stored: transformed (encrypted) values.
    async fn snapshot(&self, out: &mut (dyn std::io::Write + Send)) -> Result<SnapshotInfo> {
        self.inner.snapshot(out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LocalStore, PutRequest};

    struct Reverse;
    impl ValueTransformer for Reverse {
        fn transform_to_storage(&self, _: &[u8], mut v: Vec<u8>) -> Result<Vec<u8>> {
            v.reverse();
            v.insert(0, b'!');
            Ok(v)
        }
        fn transform_from_storage(&self, _: &[u8], mut v: Vec<u8>) -> Result<Vec<u8>> {
            if v.first() != Some(&b'!') {
                return Err(Error::Internal("not transformed".into()));
            }
            v.remove(0);
            v.reverse();
            Ok(v)
        }
    }

    #[tokio::test]
    async fn values_are_transformed_in_writes_reads_and_watches() {
        let inner: Arc<dyn Store> = Arc::new(LocalStore::memory().expect("store"));
        let s = TransformingStore::new(inner.clone(), Arc::new(Reverse));
        let mut w = s
            .watch(KeyRange::prefix(b"/a".to_vec()), WatchOptions::default())
            .await
            .expect("watch");
        s.put(PutRequest::new(b"/a/1".to_vec(), b"abc".to_vec()))
            .await
            .expect("put");
        let raw = inner
            .range(KeyRange::key(b"/a/1".to_vec()), RangeOptions::default())
            .await
            .expect("raw");
        assert_eq!(raw.kvs[0].value, b"!cba");
        let read = s
            .range(KeyRange::key(b"/a/1".to_vec()), RangeOptions::default())
            .await
            .expect("read");
        assert_eq!(read.kvs[0].value, b"abc");
        let event = w.next().await.expect("an event").expect("ok");
        assert_eq!(event.events[0].kv.value, b"abc");
    }
}
