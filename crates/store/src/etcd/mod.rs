//! The etcd backend: the [`Store`] trait over a real etcd v3 cluster, spoken to over gRPC.
//!
//! The gRPC messages are hand-written prost structs (see [`proto`]) and the services are called
//! through tonic's generic client, so building needs neither `protoc` nor generated code.

mod proto;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use http::uri::PathAndQuery;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};
use tonic_prost::ProstCodec;

use crate::watch::WATCH_BUFFER;
use crate::{
    Compare, CompareOp, CompareTarget, DeleteResponse, Error, Event, EventKind, KeyRange, KeyValue,
    Lease, PutResponse, RangeOptions, RangeResponse, Result, SnapshotInfo, Store, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchOptions, WatchResponse, WatchStream, check_limits,
};

const RANGE: &str = "/etcdserverpb.KV/Range";
const TXN: &str = "/etcdserverpb.KV/Txn";
const COMPACT: &str = "/etcdserverpb.KV/Compact";
const WATCH: &str = "/etcdserverpb.Watch/Watch";
const LEASE_GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
const LEASE_REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
const LEASE_KEEP_ALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
const SNAPSHOT: &str = "/etcdserverpb.Maintenance/Snapshot";
const MEMBER_ADD: &str = "/etcdserverpb.Cluster/MemberAdd";
const MEMBER_REMOVE: &str = "/etcdserverpb.Cluster/MemberRemove";
const MEMBER_LIST: &str = "/etcdserverpb.Cluster/MemberList";

/// Largest response message accepted (etcd's own client allows up to `i32::MAX`); tonic's
/// default of 4 MiB would make large range reads fail.
const MAX_DECODING_MESSAGE: usize = i32::MAX as usize;

/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`EtcdStore::connect`] waits for the first answer from the cluster.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long reads are retried while etcd has no leader.
const READ_RETRY: Duration = Duration::from_secs(5);

/// How long to wait for etcd to say up to where history has been compacted (only on the error
/// path of a read or compaction that hit compacted history).
const COMPACTED_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The key the revision and compaction probes look at; it never needs to exist.
const PROBE_KEY: &[u8] = b"\0tug-revision-probe";

/// Client TLS for etcd: the CA that signed the members' serving certificates and this
/// client's certificate (all PEM).
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// The CA certificate.
    pub ca: String,
    /// The client certificate.
    pub cert: String,
    /// The client certificate's key.
    pub key: String,
}

/// One member of an etcd cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's ID.
    pub id: u64,
    /// Its name (empty until a member that was added has started).
    pub name: String,
    /// Where its peers reach it.
    pub peer_urls: Vec<String>,
    /// Where clients reach it (empty until it has started).
    pub client_urls: Vec<String>,
}

impl From<proto::Member> for Member {
    fn from(m: proto::Member) -> Self {
        Member {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_ur_ls,
            client_urls: m.client_ur_ls,
        }
    }
}

/// A store backed by an etcd v3 cluster, spoken to over gRPC (HTTP/2, with TLS for `https://`
/// endpoints).
///
/// Cloning is cheap: clones share the connection(s).
#[derive(Clone)]
pub struct EtcdStore {
    channel: Channel,
    endpoints: Vec<String>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to an etcd cluster.
    ///
    /// `endpoints` are client URLs such as `http://127.0.0.1:2379`; a bare `host:port` is taken
    /// as `http://host:port`. With several endpoints, requests are balanced over the reachable
    /// ones. Fails with [`Error::Etcd`] when no endpoint answers a read within a few seconds.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        Self::connect_with(endpoints, None).await
    }

    /// Connects to an etcd cluster, over TLS with `tls` (endpoints then `https://host:port`).
    pub async fn connect_with(endpoints: &[String], tls: Option<&EtcdTls>) -> Result<EtcdStore> {
        let urls = endpoints
            .iter()
            .map(|e| normalize_endpoint(e, tls.is_some()))
            .collect::<Result<Vec<_>>>()?;
        if urls.is_empty() {
            return Err(Error::Etcd("no etcd endpoints given".into()));
        }
        let mut eps = Vec::with_capacity(urls.len());
        for url in &urls {
            let ep = Endpoint::from_shared(url.clone())
                .map_err(|e| Error::Etcd(format!("invalid etcd endpoint {url:?}: {e}")))?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true);
            let ep = match tls {
                Some(tls) => ep
                    .tls_config(
                        tonic::transport::ClientTlsConfig::new()
                            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca))
                            .identity(tonic::transport::Identity::from_pem(&tls.cert, &tls.key)),
                    )
                    .map_err(|e| Error::Etcd(format!("etcd TLS for {url}: {}", error_chain(&e))))?,
                None => ep,
            };
            eps.push(ep);
        }
        let shown = urls.join(",");
        let channel = match eps.as_slice() {
            [one] => one.connect().await.map_err(|e| {
                Error::Etcd(format!("cannot reach etcd at {shown}: {}", error_chain(&e)))
            })?,
            _ => Channel::balance_list(eps.into_iter()),
        };
        let store = EtcdStore {
            channel,
            endpoints: urls,
        };
        match tokio::time::timeout(PROBE_TIMEOUT, store.latest_revision()).await {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(e)) => Err(Error::Etcd(format!("cannot reach etcd at {shown}: {e}"))),
            Err(_) => Err(Error::Etcd(format!(
                "cannot reach etcd at {shown}: no answer within {}s",
                PROBE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The endpoints this store talks to, as normalized URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The cluster's members.
    pub async fn members(&self) -> Result<Vec<Member>> {
        let resp: proto::MemberListResponse = self
            .unary(MEMBER_LIST, proto::MemberListRequest { linearizable: true })
            .await
            .map_err(|s| status_error("member list", &s))?;
        Ok(resp.members.into_iter().map(Member::from).collect())
    }

    /// Adds a member that peers will reach at `peer_url`; returns it and every member.
    pub async fn add_member(&self, peer_url: &str) -> Result<(Member, Vec<Member>)> {
        let resp: proto::MemberAddResponse = self
            .unary(
                MEMBER_ADD,
                proto::MemberAddRequest {
                    peer_ur_ls: vec![peer_url.to_string()],
                    is_learner: false,
                },
            )
            .await
            .map_err(|s| status_error("member add", &s))?;
        let added = resp
            .member
            .map(Member::from)
            .ok_or_else(|| Error::Etcd("member add: etcd returned no member".into()))?;
        Ok((added, resp.members.into_iter().map(Member::from).collect()))
    }

    /// Removes member `id`.
    pub async fn remove_member(&self, id: u64) -> Result<()> {
        let _: proto::MemberRemoveResponse = self
            .unary(MEMBER_REMOVE, proto::MemberRemoveRequest { id })
            .await
            .map_err(|s| status_error("member remove", &s))?;
        Ok(())
    }

    fn grpc(&self) -> tonic::client::Grpc<Channel> {
        tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_DECODING_MESSAGE)
    }

    /// Waits until the channel can take a request.
    async fn ready(&self, grpc: &mut tonic::client::Grpc<Channel>) -> Result<(), Status> {
        grpc.ready().await.map_err(|e| {
            Status::unavailable(format!(
                "cannot reach etcd at {}: {}",
                self.endpoints.join(","),
                error_chain(&e)
            ))
        })
    }

    /// One unary call. Reads (which change nothing) are retried for a few seconds while the
    /// cluster is between leaders (`leader changed`, `no leader`, a member restarting), as
    /// etcd's own client retries them; writes are not, since a write that failed that way
    /// may still have been applied.
    async fn unary<Req, Resp>(&self, path: &'static str, req: Req) -> Result<Resp, Status>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let retried = matches!(path, RANGE | MEMBER_LIST);
        let deadline = Instant::now() + READ_RETRY;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.unary_once(path, req.clone()).await {
                Err(status)
                    if retried
                        && status.code() == tonic::Code::Unavailable
                        && Instant::now() + pause < deadline =>
                {
                    tracing::debug!(error = %status.message(), "etcd unavailable; retrying a read");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    async fn unary_once<Req, Resp>(&self, path: &'static str, req: Req) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc();
        self.ready(&mut grpc).await?;
        let resp = grpc
            .unary(
                tonic::Request::new(req),
                PathAndQuery::from_static(path),
                ProstCodec::<Req, Resp>::default(),
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// Opens a bidirectional stream whose requests come from `requests`.
    async fn bidi<Req, Resp>(
        &self,
        path: &'static str,
        requests: mpsc::Receiver<Req>,
    ) -> Result<Streaming<Resp>, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc();
        self.ready(&mut grpc).await?;
        let resp = grpc
            .streaming(
                tonic::Request::new(ReceiverStream::new(requests)),
                PathAndQuery::from_static(path),
                ProstCodec::<Req, Resp>::default(),
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// The current revision, without any error classification (used on error paths).
    async fn latest_revision(&self) -> Result<i64> {
        let req = proto::RangeRequest {
            key: PROBE_KEY.to_vec(),
            count_only: true,
            ..Default::default()
        };
        let resp: proto::RangeResponse = self
            .unary(RANGE, req)
            .await
            .map_err(|s| status_error("range", &s))?;
        Ok(header_revision(&resp.header))
    }

    /// Asks etcd up to where history has been compacted, by starting a watch at
    /// `start_revision` (which must lie below the compacted revision for etcd to say) and
    /// reading the compact revision it is refused with. Returns `fallback` when etcd does not
    /// say within a short time.
    async fn compacted_revision(&self, start_revision: i64, fallback: i64) -> i64 {
        let probe = async {
            let (req_tx, req_rx) = mpsc::channel(1);
            let create = proto::WatchRequest {
                request_union: Some(proto::watch_request::RequestUnion::CreateRequest(
                    proto::WatchCreateRequest {
                        key: PROBE_KEY.to_vec(),
                        start_revision: start_revision.max(1),
                        ..Default::default()
                    },
                )),
            };
            req_tx.send(create).await.ok()?;
            let mut stream = self
                .bidi::<_, proto::WatchResponse>(WATCH, req_rx)
                .await
                .ok()?;
            // Keep `req_tx` alive: closing the request side ends etcd's whole watch stream.
            while let Ok(Some(resp)) = stream.message().await {
                if resp.compact_revision != 0 {
                    return Some(resp.compact_revision);
                }
                if resp.canceled {
                    return None;
                }
            }
            drop(req_tx);
            None
        };
        match tokio::time::timeout(COMPACTED_PROBE_TIMEOUT, probe).await {
            Ok(Some(rev)) => rev,
            _ => fallback,
        }
    }

    /// Maps the error of a read at revision `requested` (compacted or future revisions get
    /// their own errors; everything else becomes [`Error::Etcd`]).
    async fn read_error(&self, op: &str, status: Status, requested: i64) -> Error {
        match classify(&status) {
            Known::Compacted => Error::Compacted {
                requested,
                compacted: self.compacted_revision(requested, 0).await,
            },
            Known::FutureRevision => Error::FutureRevision {
                requested,
                current: self.latest_revision().await.unwrap_or(0),
            },
            _ => status_error(op, &status),
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn range(&self, range: KeyRange, opts: RangeOptions) -> Result<RangeResponse> {
        crate::check_key(&range.start)?;
        let req = range_request(&range, &opts);
        match self.unary::<_, proto::RangeResponse>(RANGE, req).await {
            Ok(resp) => {
                let revision = header_revision(&resp.header);
                Ok(range_response(resp, revision))
            }
            Err(status) => Err(self.read_error("range", status, opts.revision).await),
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        check_limits(&txn)?;
        let req = proto::TxnRequest {
            compare: txn.compare.iter().map(compare).collect(),
            success: txn.success.iter().map(request_op).collect(),
            failure: txn.failure.iter().map(request_op).collect(),
        };
        let resp = match self.unary::<_, proto::TxnResponse>(TXN, req).await {
            Ok(resp) => resp,
            Err(status) => {
                return Err(match classify(&status) {
                    Known::LeaseNotFound => Error::LeaseNotFound(txn_lease(&txn)),
                    Known::Compacted | Known::FutureRevision => {
                        self.read_error("txn", status, txn_read_revision(&txn))
                            .await
                    }
                    Known::Other => status_error("txn", &status),
                });
            }
        };
        let revision = header_revision(&resp.header);
        let responses = resp
            .responses
            .into_iter()
            .map(|op| response_op(op, revision))
            .collect::<Result<Vec<_>>>()?;
        Ok(TxnResponse {
            succeeded: resp.succeeded,
            responses,
            revision,
        })
    }

    async fn watch(&self, range: KeyRange, opts: WatchOptions) -> Result<WatchStream> {
        let (key, range_end) = etcd_range(&range);
        let start_revision = opts.start_revision.max(0);
        let create = proto::WatchRequest {
            request_union: Some(proto::watch_request::RequestUnion::CreateRequest(
                proto::WatchCreateRequest {
                    key,
                    range_end,
                    start_revision,
                    progress_notify: true,
                    prev_kv: opts.prev_kv,
                },
            )),
        };
        let (req_tx, req_rx) = mpsc::channel(4);
        req_tx
            .send(create)
            .await
            .map_err(|_| Error::Internal("watch request channel closed".into()))?;
        let stream = self
            .bidi::<_, proto::WatchResponse>(WATCH, req_rx)
            .await
            .map_err(|s| status_error("watch", &s))?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let (progress_tx, progress_rx) = mpsc::channel(1);
        let task = tokio::spawn(run_watch(
            stream,
            req_tx,
            progress_rx,
            tx,
            start_revision,
            opts.prev_kv,
            opts.progress_interval,
        ));
        Ok(WatchStream::new(rx, task, progress_tx))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let req = proto::CompactionRequest {
            revision,
            physical: true,
        };
        match self
            .unary::<_, proto::CompactionResponse>(COMPACT, req)
            .await
        {
            Ok(_) => Ok(()),
            Err(status) => Err(match classify(&status) {
                // Compacting at or below the compacted revision: etcd does not say where that
                // is, a watch just below `revision` does (and it is at least `revision`).
                Known::Compacted => Error::Compacted {
                    requested: revision,
                    compacted: self.compacted_revision(revision - 1, revision).await,
                },
                Known::FutureRevision => Error::FutureRevision {
                    requested: revision,
                    current: self.latest_revision().await.unwrap_or(0),
                },
                _ => status_error("compact", &status),
            }),
        }
    }

    async fn lease_grant(&self, ttl_secs: i64) -> Result<Lease> {
        if ttl_secs <= 0 {
            return Err(Error::InvalidTtl(ttl_secs));
        }
        let req = proto::LeaseGrantRequest {
            ttl: ttl_secs,
            id: 0,
        };
        let resp: proto::LeaseGrantResponse = self
            .unary(LEASE_GRANT, req)
            .await
            .map_err(|s| status_error("lease grant", &s))?;
        if !resp.error.is_empty() {
            return Err(Error::Etcd(format!("lease grant: {}", resp.error)));
        }
        Ok(Lease {
            id: resp.id,
            ttl: resp.ttl,
        })
    }

    async fn lease_keep_alive(&self, id: i64) -> Result<i64> {
        let (req_tx, req_rx) = mpsc::channel(1);
        req_tx
            .send(proto::LeaseKeepAliveRequest { id })
            .await
            .map_err(|_| Error::Internal("keep-alive request channel closed".into()))?;
        let map = |s: Status| match classify(&s) {
            Known::LeaseNotFound => Error::LeaseNotFound(id),
            _ => status_error("lease keep-alive", &s),
        };
        let mut stream = self
            .bidi::<_, proto::LeaseKeepAliveResponse>(LEASE_KEEP_ALIVE, req_rx)
            .await
            .map_err(map)?;
        let resp = stream.message().await.map_err(map)?;
        drop(req_tx);
        match resp {
            Some(r) if r.ttl > 0 => Ok(r.ttl),
            Some(_) => Err(Error::LeaseNotFound(id)),
            None => Err(Error::Etcd(
                "lease keep-alive: stream closed without an answer".into(),
            )),
        }
    }

    async fn lease_revoke(&self, id: i64) -> Result<()> {
        let req = proto::LeaseRevokeRequest { id };
        match self
            .unary::<_, proto::LeaseRevokeResponse>(LEASE_REVOKE, req)
            .await
        {
            Ok(_) => Ok(()),
            Err(status) => Err(match classify(&status) {
                Known::LeaseNotFound => Error::LeaseNotFound(id),
                _ => status_error("lease revoke", &status),
            }),
        }
    }

    async fn snapshot(&self, out: &mut (dyn std::io::Write + Send)) -> Result<SnapshotInfo> {
        // etcd (3.4) sends no header with snapshot chunks: the revision just before the
        // snapshot starts is a lower bound of the revision it holds.
        let mut revision = self.latest_revision().await?;
        let mut grpc = self.grpc();
        self.ready(&mut grpc)
            .await
            .map_err(|s| status_error("snapshot", &s))?;
        let mut stream = grpc
            .server_streaming(
                tonic::Request::new(proto::SnapshotRequest {}),
                PathAndQuery::from_static(SNAPSHOT),
                ProstCodec::<proto::SnapshotRequest, proto::SnapshotResponse>::default(),
            )
            .await
            .map_err(|s| status_error("snapshot", &s))?
            .into_inner();
        let mut bytes = 0u64;
        let mut first = true;
        let mut remaining = None;
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| status_error("snapshot", &s))?
        {
            if first {
                first = false;
                let rev = header_revision(&chunk.header);
                if rev > 0 {
                    revision = rev;
                }
            }
            out.write_all(&chunk.blob)
                .map_err(|e| Error::io("writing etcd snapshot", e))?;
            bytes += chunk.blob.len() as u64;
            remaining = Some(chunk.remaining_bytes);
        }
        if remaining != Some(0) {
            return Err(Error::Etcd(format!(
                "snapshot: stream ended early after {bytes} bytes"
            )));
        }
        out.flush()
            .map_err(|e| Error::io("writing etcd snapshot", e))?;
        Ok(SnapshotInfo { revision, bytes })
    }
}

/// Asks etcd for a progress notification on a watch; false (after reporting it) when the
/// request side of the stream is gone.
async fn request_progress(
    req_tx: &mpsc::Sender<proto::WatchRequest>,
    tx: &mpsc::Sender<Result<WatchResponse>>,
) -> bool {
    let progress = proto::WatchRequest {
        request_union: Some(proto::watch_request::RequestUnion::ProgressRequest(
            proto::WatchProgressRequest {},
        )),
    };
    if req_tx.send(progress).await.is_err() {
        let _ = tx
            .send(Err(Error::Etcd("watch: request stream closed".into())))
            .await;
        return false;
    }
    true
}

/// Forwards one etcd watch stream to a [`WatchStream`] until either side ends.
///
/// `req_tx` is the request side of the gRPC stream: it must live as long as the watch (etcd
/// ends the whole stream when the client closes its side), and carries progress requests.
async fn run_watch(
    mut stream: Streaming<proto::WatchResponse>,
    req_tx: mpsc::Sender<proto::WatchRequest>,
    mut progress_requests: mpsc::Receiver<()>,
    tx: mpsc::Sender<Result<WatchResponse>>,
    start_revision: i64,
    prev_kv: bool,
    progress_interval: Option<Duration>,
) {
    let next_deadline = || progress_interval.map(|d| Instant::now() + d);
    let mut deadline = next_deadline();
    // The revision after the last event delivered: what a compaction took away from us.
    let mut wanted = start_revision;
    loop {
        let idle = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let asked = async {
            match progress_requests.recv().await {
                Some(()) => (),
                None => std::future::pending().await,
            }
        };
        let msg = tokio::select! {
            msg = stream.message() => msg,
            () = asked => {
                if !request_progress(&req_tx, &tx).await {
                    return;
                }
                continue;
            }
            () = idle => {
                if !request_progress(&req_tx, &tx).await {
                    return;
                }
                deadline = next_deadline();
                continue;
            }
            () = tx.closed() => return,
        };
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                let _ = tx
                    .send(Err(Error::Etcd("watch: stream closed by etcd".into())))
                    .await;
                return;
            }
            Err(status) => {
                let _ = tx.send(Err(status_error("watch", &status))).await;
                return;
            }
        };
        if resp.compact_revision != 0 {
            let _ = tx
                .send(Err(Error::Compacted {
                    requested: wanted,
                    compacted: resp.compact_revision,
                }))
                .await;
            return;
        }
        if resp.canceled {
            let reason = if resp.cancel_reason.is_empty() {
                "cancelled by etcd".to_string()
            } else {
                resp.cancel_reason
            };
            let _ = tx.send(Err(Error::WatchCancelled(reason))).await;
            return;
        }
        if resp.created && resp.events.is_empty() {
            continue;
        }
        let out = match watch_response(resp, prev_kv) {
            Ok(Some(out)) => out,
            Ok(None) => continue,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if let Some(last) = out.events.last() {
            wanted = last.kv.mod_revision + 1;
        }
        if tx.send(Ok(out)).await.is_err() {
            return;
        }
        deadline = next_deadline();
    }
}

/// Converts one etcd watch response with events, or a progress notification; `None` for a
/// response that carries nothing (no events and no revision).
fn watch_response(resp: proto::WatchResponse, prev_kv: bool) -> Result<Option<WatchResponse>> {
    let header_rev = header_revision(&resp.header);
    let mut events = Vec::with_capacity(resp.events.len());
    for ev in resp.events {
        let kind = match proto::event::EventType::try_from(ev.r#type) {
            Ok(proto::event::EventType::Put) => EventKind::Put,
            Ok(proto::event::EventType::Delete) => EventKind::Delete,
            Err(_) => {
                let other = ev.r#type;
                return Err(Error::Etcd(format!("watch: unknown event type {other}")));
            }
        };
        events.push(Event {
            kind,
            kv: ev.kv.map(key_value).unwrap_or_default(),
            prev_kv: if prev_kv {
                ev.prev_kv.map(key_value)
            } else {
                None
            },
        });
    }
    // With events, the revision is that of the last one: etcd's header revision is the store's
    // current revision, which, while a watch catches up from an old revision in batches, can
    // lie beyond events still to come. Once caught up the two are the same.
    let revision = match events.last() {
        Some(last) => last.kv.mod_revision,
        None if header_rev > 0 => header_rev,
        None => return Ok(None),
    };
    Ok(Some(WatchResponse { events, revision }))
}

/// What a gRPC error from etcd means to the store.
enum Known {
    Compacted,
    FutureRevision,
    LeaseNotFound,
    Other,
}

fn classify(status: &Status) -> Known {
    let msg = status.message();
    if msg.contains("required revision has been compacted") {
        Known::Compacted
    } else if msg.contains("required revision is a future revision") {
        Known::FutureRevision
    } else if msg.contains("requested lease not found") {
        Known::LeaseNotFound
    } else {
        Known::Other
    }
}

/// An [`Error::Etcd`] for a failed call, with the status code and any underlying cause.
fn status_error(op: &str, status: &Status) -> Error {
    let mut msg = format!("{op}: {} ({:?})", status.message(), status.code());
    if let Some(source) = std::error::Error::source(status) {
        let cause = error_chain(source);
        if !msg.contains(&cause) {
            msg.push_str(": ");
            msg.push_str(&cause);
        }
    }
    Error::Etcd(msg)
}

/// An error and its sources, joined by `: ` (tonic's transport errors say little on top level).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = c.source();
    }
    out
}

/// `http://` is added to bare `host:port`; TLS is not supported.
fn normalize_endpoint(endpoint: &str, tls: bool) -> Result<String> {
    let e = endpoint.trim().trim_end_matches('/');
    let scheme = if tls { "https" } else { "http" };
    if e.is_empty() {
        return Err(Error::Etcd("empty etcd endpoint".into()));
    }
    if e.starts_with("https://") && !tls {
        return Err(Error::Etcd(format!(
            "etcd endpoint {e}: https needs client certificates; use http:// or give them"
        )));
    }
    if e.starts_with(&format!("{scheme}://")) {
        Ok(e.to_string())
    } else if e.contains("://") {
        Err(Error::Etcd(format!(
            "etcd endpoint {e}: unsupported scheme, use {scheme}://host:port"
        )))
    } else {
        Ok(format!("{scheme}://{e}"))
    }
}

fn header_revision(header: &Option<proto::ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

/// `key` and `range_end` as etcd expects them for a [`KeyRange`].
///
/// etcd reads `range_end = "\0"` as "every key >= key" and rejects an empty key, so a range
/// that holds no key at all is sent as `[s, s)` instead.
fn etcd_range(range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
    match &range.end {
        None => (range.start.clone(), Vec::new()),
        Some(end) => {
            // Keys are never empty in etcd, so an empty start is the same as "\0".
            let start = if range.start.is_empty() {
                vec![0]
            } else {
                range.start.clone()
            };
            if end.is_empty() {
                (start, vec![0])
            } else if end.as_slice() <= start.as_slice() {
                (start.clone(), start)
            } else {
                (start, end.clone())
            }
        }
    }
}

fn range_request(range: &KeyRange, opts: &RangeOptions) -> proto::RangeRequest {
    let (key, range_end) = etcd_range(range);
    proto::RangeRequest {
        key,
        range_end,
        limit: opts.limit.max(0),
        revision: opts.revision.max(0),
        serializable: false,
        keys_only: opts.keys_only,
        count_only: opts.count_only,
    }
}

fn range_response(resp: proto::RangeResponse, revision: i64) -> RangeResponse {
    RangeResponse {
        kvs: resp.kvs.into_iter().map(key_value).collect(),
        count: resp.count,
        more: resp.more,
        revision,
    }
}

fn key_value(kv: proto::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

fn compare(c: &Compare) -> proto::Compare {
    use proto::compare::TargetUnion;
    use proto::compare::{CompareResult as R, CompareTarget as T};
    let result = match c.op {
        CompareOp::Equal => R::Equal,
        CompareOp::Greater => R::Greater,
        CompareOp::Less => R::Less,
        CompareOp::NotEqual => R::NotEqual,
    };
    let (target, union) = match &c.target {
        CompareTarget::Version(v) => (T::Version, TargetUnion::Version(*v)),
        CompareTarget::CreateRevision(v) => (T::Create, TargetUnion::CreateRevision(*v)),
        CompareTarget::ModRevision(v) => (T::Mod, TargetUnion::ModRevision(*v)),
        CompareTarget::Value(v) => (T::Value, TargetUnion::Value(v.clone())),
        CompareTarget::Lease(v) => (T::Lease, TargetUnion::Lease(*v)),
    };
    proto::Compare {
        result: result as i32,
        target: target as i32,
        key: c.key.clone(),
        target_union: Some(union),
    }
}

fn request_op(op: &TxnOp) -> proto::RequestOp {
    use proto::request_op::Request;
    let request = match op {
        TxnOp::Range(range, opts) => Request::RequestRange(range_request(range, opts)),
        TxnOp::Put(p) => Request::RequestPut(proto::PutRequest {
            key: p.key.clone(),
            value: p.value.clone(),
            lease: p.lease,
            prev_kv: p.prev_kv,
            ignore_value: false,
            ignore_lease: false,
        }),
        TxnOp::Delete(d) => {
            let (key, range_end) = etcd_range(&d.range);
            Request::RequestDeleteRange(proto::DeleteRangeRequest {
                key,
                range_end,
                prev_kv: d.prev_kv,
            })
        }
    };
    proto::RequestOp {
        request: Some(request),
    }
}

fn response_op(op: proto::ResponseOp, revision: i64) -> Result<TxnOpResponse> {
    use proto::response_op::Response;
    match op.response {
        Some(Response::ResponseRange(r)) => Ok(TxnOpResponse::Range(range_response(r, revision))),
        Some(Response::ResponsePut(p)) => Ok(TxnOpResponse::Put(PutResponse {
            prev_kv: p.prev_kv.map(key_value),
            revision,
        })),
        Some(Response::ResponseDeleteRange(d)) => Ok(TxnOpResponse::Delete(DeleteResponse {
            deleted: d.deleted,
            prev_kvs: d.prev_kvs.into_iter().map(key_value).collect(),
            revision,
        })),
        None => Err(Error::Etcd(
            "txn: etcd returned an operation response of an unknown kind".into(),
        )),
    }
}

/// The lease a transaction's puts name (etcd does not say which one it could not find).
fn txn_lease(txn: &Txn) -> i64 {
    txn.success
        .iter()
        .chain(txn.failure.iter())
        .find_map(|op| match op {
            TxnOp::Put(p) if p.lease != 0 => Some(p.lease),
            _ => None,
        })
        .unwrap_or(0)
}

/// The oldest revision a transaction's reads ask for, or 0.
fn txn_read_revision(txn: &Txn) -> i64 {
    txn.success
        .iter()
        .chain(txn.failure.iter())
        .filter_map(|op| match op {
            TxnOp::Range(_, o) if o.revision > 0 => Some(o.revision),
            _ => None,
        })
        .min()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_to_etcd_conventions() {
        assert_eq!(
            etcd_range(&KeyRange::key(b"a".to_vec())),
            (b"a".to_vec(), vec![])
        );
        assert_eq!(etcd_range(&KeyRange::all()), (vec![0], vec![0]));
        assert_eq!(
            etcd_range(&KeyRange::prefix(b"/p/".to_vec())),
            (b"/p/".to_vec(), b"/p0".to_vec())
        );
        // Empty ranges never become "\0" (which etcd reads as unbounded).
        assert_eq!(
            etcd_range(&KeyRange::range(b"b".to_vec(), vec![0])),
            (b"b".to_vec(), b"b".to_vec())
        );
        assert_eq!(
            etcd_range(&KeyRange::range(Vec::new(), b"x".to_vec())),
            (vec![0], b"x".to_vec())
        );
    }

    #[test]
    fn endpoints_are_normalized() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", false).ok(),
            Some("http://127.0.0.1:2379".to_string())
        );
        assert_eq!(
            normalize_endpoint("http://h:1/", false).ok(),
            Some("http://h:1".to_string())
        );
        assert!(normalize_endpoint("https://h:1", false).is_err());
        assert!(normalize_endpoint(" ", false).is_err());
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", true).ok(),
            Some("https://127.0.0.1:2379".to_string())
        );
        assert!(normalize_endpoint("http://h:1", true).is_err());
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(
            classify(&Status::out_of_range(
                "etcdserver: mvcc: required revision has been compacted"
            )),
            Known::Compacted
        ));
        assert!(matches!(
            classify(&Status::out_of_range(
                "etcdserver: mvcc: required revision is a future revision"
            )),
            Known::FutureRevision
        ));
        assert!(matches!(
            classify(&Status::not_found("etcdserver: requested lease not found")),
            Known::LeaseNotFound
        ));
    }
}
