//! The cluster DNS server: answers for the cluster domain from a [`Zone`] built from Services
//! and their endpoints (Kubernetes' DNS specification: A, SRV, PTR and CNAME records), and
//! forwards every other name to the host's resolvers.
//!
//! Messages are parsed and written with hickory-proto (the DNS wire format, maintained and
//! fuzzed); the UDP and TCP loops are small enough to keep here, which keeps the answer path
//! free of a resolver framework's caching and policies.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Seconds clients may cache an answer.
const TTL: u32 = 5;

/// The cluster's names. Keys are lower-case fully qualified names with the trailing dot.
#[derive(Default, Clone, Debug)]
pub struct Zone {
    a: HashMap<String, Vec<Ipv4Addr>>,
    srv: HashMap<String, Vec<(u16, String)>>,
    ptr: HashMap<String, String>,
    cname: HashMap<String, String>,
}

fn fqdn(name: &str) -> String {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// The reverse-lookup name of an address (`d.c.b.a.in-addr.arpa.`).
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
}

impl Zone {
    /// Adds an address record (and its reverse, unless `name` is only an alias).
    pub fn add_a(&mut self, name: &str, ip: Ipv4Addr, reverse: bool) {
        let name = fqdn(name);
        let v = self.a.entry(name.clone()).or_default();
        if !v.contains(&ip) {
            v.push(ip);
        }
        if reverse {
            self.ptr.entry(reverse_name(ip)).or_insert(name);
        }
    }

    /// Adds a service record: `port` on `target`.
    pub fn add_srv(&mut self, name: &str, port: u16, target: &str) {
        let entry = (port, fqdn(target));
        let v = self.srv.entry(fqdn(name)).or_default();
        if !v.contains(&entry) {
            v.push(entry);
        }
    }

    /// Makes `name` an alias of `target`.
    pub fn add_cname(&mut self, name: &str, target: &str) {
        self.cname.insert(fqdn(name), fqdn(target));
    }

    /// Marks `name` as existing with no address (a headless Service without ready pods).
    pub fn add_empty(&mut self, name: &str) {
        self.a.entry(fqdn(name)).or_default();
    }

    fn exists(&self, name: &str) -> bool {
        self.a.contains_key(name)
            || self.cname.contains_key(name)
            || self.srv.contains_key(name)
            || self.ptr.contains_key(name)
    }
}

/// The server: the zone (replaced whole as the cluster changes), the cluster domain, and where
/// other names go.
#[derive(Clone)]
pub struct DnsServer {
    zone: Arc<RwLock<Arc<Zone>>>,
    domain: String,
    upstream: Vec<SocketAddr>,
}

impl DnsServer {
    /// A server for `domain` (`cluster.local`) forwarding other names to `upstream`.
    pub fn new(domain: &str, upstream: Vec<SocketAddr>) -> DnsServer {
        DnsServer {
            zone: Arc::default(),
            domain: fqdn(domain),
            upstream,
        }
    }

    /// Replaces the zone.
    pub fn set_zone(&self, zone: Zone) {
        if let Ok(mut z) = self.zone.write() {
            *z = Arc::new(zone);
        }
    }

    fn zone(&self) -> Arc<Zone> {
        self.zone.read().map(|z| z.clone()).unwrap_or_default()
    }

    /// Whether `name` is the server's to answer.
    fn authoritative_for(&self, name: &str) -> bool {
        name == self.domain
            || name.ends_with(&format!(".{}", self.domain))
            || self.zone().ptr.contains_key(name)
    }

    /// The answer to a query message, or `None` when it is for another server (forward it).
    pub fn answer(&self, request: &[u8]) -> Option<Vec<u8>> {
        let req = Message::from_vec(request).ok()?;
        let mut resp = Message::new();
        resp.set_id(req.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(req.recursion_desired())
            .set_recursion_available(true);
        resp.add_queries(req.queries().iter().cloned());
        let Some(q) = req.queries().first() else {
            resp.set_response_code(ResponseCode::FormErr);
            return resp.to_vec().ok();
        };
        let name = fqdn(&q.name().to_ascii());
        if !self.authoritative_for(&name) {
            return None;
        }
        resp.set_authoritative(true);
        let zone = self.zone();
        let record = |rdata: RData, owner: &str| -> Option<Record> {
            Some(Record::from_rdata(
                Name::from_ascii(owner).ok()?,
                TTL,
                rdata,
            ))
        };
        let mut owner = name.clone();
        // Follow an alias within the zone; a name outside it is left to the client.
        if let Some(target) = zone.cname.get(&name) {
            if let Some(r) = record(RData::CNAME(CNAME(Name::from_ascii(target).ok()?)), &name) {
                resp.add_answer(r);
            }
            if q.query_type() == RecordType::CNAME || !zone.exists(target) {
                return resp.to_vec().ok();
            }
            owner = target.clone();
        }
        let pod_ip = self.pod_address(&owner);
        match q.query_type() {
            RecordType::A | RecordType::ANY => {
                for ip in zone
                    .a
                    .get(&owner)
                    .into_iter()
                    .flatten()
                    .chain(pod_ip.iter())
                {
                    if let Some(r) = record(RData::A(A(*ip)), &owner) {
                        resp.add_answer(r);
                    }
                }
            }
            RecordType::SRV => {
                for (port, target) in zone.srv.get(&owner).into_iter().flatten() {
                    let Ok(t) = Name::from_ascii(target) else {
                        continue;
                    };
                    if let Some(r) = record(RData::SRV(SRV::new(0, 100, *port, t)), &owner) {
                        resp.add_answer(r);
                    }
                    for ip in zone.a.get(target).into_iter().flatten() {
                        if let Some(r) = record(RData::A(A(*ip)), target) {
                            resp.add_additional(r);
                        }
                    }
                }
            }
            RecordType::PTR => {
                if let Some(target) = zone.ptr.get(&owner)
                    && let Ok(t) = Name::from_ascii(target)
                    && let Some(r) = record(RData::PTR(PTR(t)), &owner)
                {
                    resp.add_answer(r);
                }
            }
            _ => {}
        }
        if resp.answers().is_empty() && !zone.exists(&owner) && pod_ip.is_none() {
            resp.set_response_code(ResponseCode::NXDomain);
        }
        resp.to_vec().ok()
    }

    /// `a-b-c-d.<namespace>.pod.<domain>`: the pod address the name spells.
    fn pod_address(&self, name: &str) -> Option<Ipv4Addr> {
        let rest = name.strip_suffix(&format!(".pod.{}", self.domain))?;
        let (ip, _ns) = rest.split_once('.')?;
        ip.replace('-', ".").parse().ok()
    }

    /// Passes a query to the upstream resolvers; the first answer wins.
    async fn forward(&self, request: &[u8]) -> Option<Vec<u8>> {
        for up in &self.upstream {
            let bind: SocketAddr = if up.is_ipv4() {
                "0.0.0.0:0".parse().ok()?
            } else {
                "[::]:0".parse().ok()?
            };
            let Ok(sock) = UdpSocket::bind(bind).await else {
                continue;
            };
            if sock.send_to(request, up).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
            {
                buf.truncate(n);
                return Some(buf);
            }
        }
        None
    }

    /// The answer to `request`, forwarded if it is not ours; SERVFAIL if nobody answers.
    async fn respond(&self, request: &[u8]) -> Option<Vec<u8>> {
        // What does not parse is dropped, not forwarded.
        let req = Message::from_vec(request).ok()?;
        if let Some(a) = self.answer(request) {
            return Some(a);
        }
        if let Some(a) = self.forward(request).await {
            return Some(a);
        }
        let mut resp = Message::new();
        resp.set_id(req.id())
            .set_message_type(MessageType::Response)
            .set_response_code(ResponseCode::ServFail);
        resp.add_queries(req.queries().iter().cloned());
        resp.to_vec().ok()
    }

    /// Answers queries on `socket` until the task is dropped.
    pub async fn serve_udp(self, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let request = buf[..n].to_vec();
            let (server, socket) = (self.clone(), socket.clone());
            tokio::spawn(async move {
                if let Some(mut answer) = server.respond(&request).await {
                    // Too big for UDP: send what fits with the truncation bit set.
                    if answer.len() > 512 && answer.len() > 2 {
                        answer.truncate(512);
                        answer[2] |= 0x02;
                    }
                    let _ = socket.send_to(&answer, from).await;
                }
            });
        }
    }

    /// Answers queries on TCP connections (length-prefixed messages) until dropped.
    pub async fn serve_tcp(self, listener: TcpListener) {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let server = self.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 2];
                    let read =
                        tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut len))
                            .await;
                    if !matches!(read, Ok(Ok(_))) {
                        return;
                    }
                    let mut request = vec![0u8; u16::from_be_bytes(len) as usize];
                    if conn.read_exact(&mut request).await.is_err() {
                        return;
                    }
                    let Some(answer) = server.respond(&request).await else {
                        return;
                    };
                    let Ok(n) = u16::try_from(answer.len()) else {
                        return;
                    };
                    if conn.write_all(&n.to_be_bytes()).await.is_err()
                        || conn.write_all(&answer).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    }
}

/// The name servers of a resolv.conf, skipping `skip` (the cluster DNS itself).
pub fn nameservers(resolv_conf: &str, skip: &[Ipv4Addr]) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .filter(|ip| !matches!(ip, std::net::IpAddr::V4(v4) if skip.contains(v4)))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(server: &DnsServer, name: &str, kind: RecordType) -> Option<Message> {
        let mut m = Message::new();
        m.set_id(7).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        server
            .answer(&m.to_vec().unwrap())
            .map(|b| Message::from_vec(&b).unwrap())
    }

    fn server() -> DnsServer {
        let s = DnsServer::new("cluster.local", Vec::new());
        let mut z = Zone::default();
        z.add_a(
            "web.default.svc.cluster.local",
            "10.96.0.20".parse().unwrap(),
            true,
        );
        z.add_srv(
            "_http._tcp.web.default.svc.cluster.local",
            80,
            "web.default.svc.cluster.local",
        );
        z.add_cname("ext.default.svc.cluster.local", "example.invalid");
        s.set_zone(z);
        s
    }

    #[test]
    fn services_resolve_with_their_ports_and_reverse_names() {
        let s = server();
        let a = ask(&s, "WEB.default.svc.cluster.local.", RecordType::A).unwrap();
        assert_eq!(a.id(), 7);
        assert_eq!(a.response_code(), ResponseCode::NoError);
        assert_eq!(a.answers().len(), 1);
        assert_eq!(
            a.answers()[0].data(),
            &RData::A(A("10.96.0.20".parse().unwrap()))
        );
        let srv = ask(
            &s,
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
        )
        .unwrap();
        assert_eq!(srv.answers().len(), 1);
        assert_eq!(srv.additionals().len(), 1);
        let ptr = ask(&s, "20.0.96.10.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(
            ptr.answers()[0].data(),
            &RData::PTR(PTR(
                Name::from_ascii("web.default.svc.cluster.local.").unwrap()
            ))
        );
        let cname = ask(&s, "ext.default.svc.cluster.local.", RecordType::A).unwrap();
        assert_eq!(cname.answers().len(), 1);
        assert!(matches!(cname.answers()[0].data(), RData::CNAME(_)));
    }

    #[test]
    fn unknown_cluster_names_do_not_exist_and_others_are_forwarded() {
        let s = server();
        let nx = ask(&s, "nope.default.svc.cluster.local.", RecordType::A).unwrap();
        assert_eq!(nx.response_code(), ResponseCode::NXDomain);
        // The search path makes clients ask for `web.default.svc.cluster.local.svc...`.
        let nx = ask(
            &s,
            "web.default.svc.cluster.local.svc.cluster.local.",
            RecordType::A,
        )
        .unwrap();
        assert_eq!(nx.response_code(), ResponseCode::NXDomain);
        // An existing name without AAAA records: no data, not NXDOMAIN.
        let aaaa = ask(&s, "web.default.svc.cluster.local.", RecordType::AAAA).unwrap();
        assert_eq!(aaaa.response_code(), ResponseCode::NoError);
        assert!(aaaa.answers().is_empty());
        let pod = ask(&s, "10-1-2-3.default.pod.cluster.local.", RecordType::A).unwrap();
        assert_eq!(
            pod.answers()[0].data(),
            &RData::A(A("10.1.2.3".parse().unwrap()))
        );
        assert!(ask(&s, "example.org.", RecordType::A).is_none());
        assert!(s.answer(b"garbage").is_none());
    }

    #[test]
    fn resolv_conf_nameservers() {
        let ns = nameservers(
            "search x\nnameserver 10.96.0.10\nnameserver 198.51.100.53\n",
            &["10.96.0.10".parse().unwrap()],
        );
        assert_eq!(ns, ["198.51.100.53:53".parse().unwrap()]);
    }
}
