//! The control plane's own Services and the cluster DNS zone.
//!
//! [`publish`] keeps `default/kubernetes` (10.96.0.1:443, the API server) and
//! `kube-system/kube-dns` (10.96.0.10:53, the DNS server) pointing at the address nodes reach
//! the control plane at, through EndpointSlices of their own. [`serve_zone`] keeps a
//! [`DnsServer`]'s zone in step with Services and EndpointSlices, as Kubernetes' DNS
//! specification says: `<svc>.<ns>.svc.<domain>` (the ClusterIP, or each ready pod of a
//! headless Service), `<hostname>.<svc>.<ns>.svc.<domain>` for pods with a hostname,
//! `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV records for named ports, PTR records, and
//! CNAMEs for ExternalName Services.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tug_network::dns::{DnsServer, Zone};

const MANAGER: &str = "tugboat-control-plane";
/// The API server's Service address.
pub const KUBERNETES_IP: &str = tug_api::cluster::KUBERNETES_SERVICE_IP;
/// The cluster DNS Service address (the kubelet's default `clusterDNS`).
pub const DNS_IP: &str = tug_api::cluster::DNS_SERVICE_IP;

/// Applies a control-plane Service and its one EndpointSlice (`ports`: name, protocol, service
/// port, target port), with one ready endpoint per address.
async fn publish_service(
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster_ip: &str,
    labels: serde_json::Value,
    addresses: &[Ipv4Addr],
    ports: &[(&str, &str, u16, u16)],
) -> Result<(), kube::Error> {
    let pp = PatchParams::apply(MANAGER).force();
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "ports": ports.iter().map(|(n, proto, port, target)| json!({
                "name": n, "protocol": proto, "port": port, "targetPort": target
            })).collect::<Vec<_>>(),
        }
    });
    Api::<Service>::namespaced(client.clone(), ns)
        .patch(name, &pp, &Patch::Apply(svc))
        .await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {
            "kubernetes.io/service-name": name,
            "endpointslice.kubernetes.io/managed-by": MANAGER,
        }},
        "addressType": "IPv4",
        "endpoints": addresses.iter().map(|a| json!(
            {"addresses": [a.to_string()], "conditions": {"ready": true}}
        )).collect::<Vec<_>>(),
        "ports": ports.iter().map(|(n, proto, _, target)| json!({
            "name": n, "protocol": proto, "port": target
        })).collect::<Vec<_>>(),
    });
    Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .patch(name, &pp, &Patch::Apply(slice))
        .await?;
    Ok(())
}

/// The label of every API server's Lease, as kube-apiserver labels its identity Leases.
pub const SERVER_LEASE_LABEL: &str = "apiserver.kubernetes.io/identity=kube-apiserver";
/// The annotation on a server's Lease with the address it serves on.
const ADDRESS_ANNOTATION: &str = "tugboat.dev/advertise-address";
/// How long a server's Lease holds without renewal (kube-apiserver's endpoint reconciler TTL).
const SERVER_LEASE_SECONDS: i64 = 15;
/// How often a server renews its Lease.
const SERVER_LEASE_RENEW: Duration = Duration::from_secs(5);

/// One API server of the cluster, as the `kubernetes` Service lists it.
#[derive(Clone, Debug)]
pub struct ServerId {
    /// The server's name (its node name): its Lease is `kube-apiserver-<name>` in kube-system.
    pub name: String,
    /// The address nodes and pods reach it at.
    pub address: Ipv4Addr,
}

impl ServerId {
    fn lease_name(&self) -> String {
        format!("kube-apiserver-{}", self.name)
    }
}

/// Renews this server's Lease.
async fn renew(client: &kube::Client, me: &ServerId) -> Result<(), kube::Error> {
    let (key, value) = SERVER_LEASE_LABEL.split_once('=').unwrap_or_default();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": me.lease_name(), "namespace": "kube-system",
                     "labels": {key: value},
                     "annotations": {ADDRESS_ANNOTATION: me.address.to_string()}},
        "spec": {"holderIdentity": me.name, "leaseDurationSeconds": SERVER_LEASE_SECONDS,
                 "renewTime": tug_api::time::now_micro()},
    });
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .patch(
            &me.lease_name(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(lease),
        )
        .await?;
    Ok(())
}

/// The addresses of the servers whose Leases are current, sorted (always `me`'s).
async fn live_servers(client: &kube::Client, me: &ServerId) -> Result<Vec<Ipv4Addr>, kube::Error> {
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .list(&kube::api::ListParams::default().labels(SERVER_LEASE_LABEL))
        .await?;
    let now = jiff::Timestamp::now();
    let mut live: Vec<Ipv4Addr> = leases
        .items
        .iter()
        .filter(|l| {
            let spec = l.spec.as_ref();
            let renewed = spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0);
            let duration = spec.and_then(|s| s.lease_duration_seconds).unwrap_or(0);
            renewed.is_some_and(|t| now.as_second() - t.as_second() <= i64::from(duration))
        })
        .filter_map(|l| {
            l.metadata
                .annotations
                .as_ref()?
                .get(ADDRESS_ANNOTATION)?
                .parse()
                .ok()
        })
        .collect();
    live.push(me.address);
    live.sort();
    live.dedup();
    Ok(live)
}

/// Removes this server's Lease (on shutdown), so the others drop it from the `kubernetes`
/// Service at once instead of after the Lease's duration.
pub async fn withdraw(client: kube::Client, me: &ServerId) {
    match Api::<Lease>::namespaced(client, "kube-system")
        .delete(&me.lease_name(), &Default::default())
        .await
    {
        Ok(_) => {
            tracing::info!(lease = %me.lease_name(), "withdrew this server from the kubernetes Service")
        }
        Err(e) => tracing::warn!(error = %e, "withdrawing this server's lease failed"),
    }
}

/// Publishes `kubernetes` (the API servers on their addresses, `api_port`) and, with a DNS
/// port, `kube-dns`, retrying until the API accepts them; then keeps them. Every server keeps
/// a Lease of its own and lists the servers whose Leases are current, as kube-apiserver's
/// lease endpoint reconciler does, so servers agree on the endpoints and a dead server drops
/// out within the Lease's duration. A deleted Service or EndpointSlice is published again
/// within a second, as kube-apiserver's own controller recreates `kubernetes`.
pub async fn publish(client: kube::Client, me: ServerId, api_port: u16, dns_port: Option<u16>) {
    let mut published = vec![("default", "kubernetes")];
    if dns_port.is_some() {
        published.push(("kube-system", "kube-dns"));
    }
    let mut last: Option<Vec<Ipv4Addr>> = None;
    let mut renewed: Option<tokio::time::Instant> = None;
    loop {
        if renewed.is_none_or(|t| t.elapsed() >= SERVER_LEASE_RENEW) {
            match renew(&client, &me).await {
                Ok(()) => renewed = Some(tokio::time::Instant::now()),
                Err(e) => tracing::warn!(error = %e, "renewing this server's lease failed"),
            }
        }
        let live = match live_servers(&client, &me).await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "listing the servers' leases failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let missing = first_missing(&client, &published).await;
        if let Some((ns, name)) = missing
            && last.is_some()
        {
            tracing::info!(
                namespace = ns,
                name,
                "a control-plane Service or its EndpointSlice was deleted; publishing it again"
            );
        }
        if last.as_ref() != Some(&live) || missing.is_some() {
            let mut result = publish_service(
                &client,
                "default",
                "kubernetes",
                KUBERNETES_IP,
                json!({"component": "apiserver", "provider": "kubernetes"}),
                &live,
                &[("https", "TCP", 443, api_port)],
            )
            .await;
            if let (Ok(()), Some(port)) = (&result, dns_port) {
                result = publish_service(
                    &client,
                    "kube-system",
                    "kube-dns",
                    DNS_IP,
                    json!({"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}),
                    &live,
                    &[("dns", "UDP", 53, port), ("dns-tcp", "TCP", 53, port)],
                )
                .await;
            }
            match result {
                Ok(()) => {
                    if last.is_some() {
                        tracing::info!(servers = ?live, "the kubernetes Service's endpoints changed");
                    }
                    last = Some(live);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "publishing the control plane's Services failed; retrying")
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The first of `published` whose Service or EndpointSlice is gone (errors count as there).
async fn first_missing<'a>(
    client: &kube::Client,
    published: &[(&'a str, &'a str)],
) -> Option<(&'a str, &'a str)> {
    for &(ns, name) in published {
        let service = Api::<Service>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await;
        let slice = Api::<EndpointSlice>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await;
        if matches!(service, Ok(None)) || matches!(slice, Ok(None)) {
            return Some((ns, name));
        }
    }
    None
}

/// The DNS records of the cluster's Services.
pub fn zone_of<'a>(
    services: impl Iterator<Item = &'a Service>,
    slices: &[std::sync::Arc<EndpointSlice>],
    domain: &str,
) -> Zone {
    let mut zone = Zone::default();
    for svc in services {
        let (Some(name), Some(ns)) = (&svc.metadata.name, &svc.metadata.namespace) else {
            continue;
        };
        let Some(spec) = &svc.spec else {
            continue;
        };
        let base = format!("{name}.{ns}.svc.{domain}");
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = &spec.external_name {
                zone.add_cname(&base, target);
            }
            continue;
        }
        let proto = |p: Option<&String>| p.map(|p| p.to_ascii_lowercase()).unwrap_or("tcp".into());
        match spec.cluster_ip.as_deref() {
            Some("None") => {
                zone.add_empty(&base);
                let publish_all = spec.publish_not_ready_addresses == Some(true);
                for slice in slices.iter().filter(|s| {
                    s.metadata.namespace.as_ref() == Some(ns)
                        && s.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("kubernetes.io/service-name"))
                            == Some(name)
                        && s.address_type == "IPv4"
                }) {
                    for ep in slice.endpoints.iter().flatten() {
                        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                        if !ready && !publish_all {
                            continue;
                        }
                        let Some(ip) = ep
                            .addresses
                            .first()
                            .and_then(|a| a.parse::<Ipv4Addr>().ok())
                        else {
                            continue;
                        };
                        let host = ep
                            .hostname
                            .clone()
                            .unwrap_or_else(|| ip.to_string().replace('.', "-"));
                        let fqdn = format!("{host}.{base}");
                        zone.add_a(&base, ip, false);
                        zone.add_a(&fqdn, ip, ep.hostname.is_some());
                        for p in slice.ports.iter().flatten() {
                            if let (Some(pn), Some(port)) = (&p.name, p.port)
                                && !pn.is_empty()
                                && let Ok(port) = u16::try_from(port)
                            {
                                zone.add_srv(
                                    &format!("_{pn}._{}.{base}", proto(p.protocol.as_ref())),
                                    port,
                                    &fqdn,
                                );
                            }
                        }
                    }
                }
            }
            Some(ip) => {
                let Ok(ip) = ip.parse::<Ipv4Addr>() else {
                    continue;
                };
                zone.add_a(&base, ip, true);
                for p in spec.ports.iter().flatten() {
                    if let Some(pn) = &p.name
                        && !pn.is_empty()
                        && let Ok(port) = u16::try_from(p.port)
                    {
                        zone.add_srv(
                            &format!("_{pn}._{}.{base}", proto(p.protocol.as_ref())),
                            port,
                            &base,
                        );
                    }
                }
            }
            None => {}
        }
    }
    zone
}

/// Keeps `server`'s zone in step with the cluster until the task is dropped.
pub async fn serve_zone(client: kube::Client, server: DnsServer, domain: String) {
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let svc_events = reflector::reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let mut events = futures::stream::select(svc_events, slice_events).boxed();
    loop {
        if events.next().await.is_none() {
            return;
        }
        // Let a burst of changes settle, then rebuild once.
        while let Ok(Some(())) =
            tokio::time::timeout(Duration::from_millis(20), events.next()).await
        {}
        rebuild(&server, &services, &slices, &domain);
    }
}

fn rebuild(
    server: &DnsServer,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    domain: &str,
) {
    let svcs = services.state();
    let zone = zone_of(svcs.iter().map(|s| s.as_ref()), &slices.state(), domain);
    server.set_zone(zone);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headless_services_resolve_to_ready_pods_and_their_hostnames() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "db-1", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.1.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.1.1.5"], "conditions": {"ready": true}},
                {"addresses": ["10.1.2.5"], "conditions": {"ready": false}}
            ]
        }))
        .unwrap();
        let server = DnsServer::new("cluster.local", Vec::new());
        server.set_zone(zone_of(
            [&svc].into_iter(),
            &[std::sync::Arc::new(slice)],
            "cluster.local",
        ));
        let debug = format!("{:?}", zone_of([&svc].into_iter(), &[], "cluster.local"));
        assert!(debug.contains("db.default.svc.cluster.local."), "{debug}");
        use hickory_proto::op::{Message, Query};
        use hickory_proto::rr::{Name, RecordType};
        let ask = |name: &str, kind| {
            let mut m = Message::new();
            m.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
            Message::from_vec(&server.answer(&m.to_vec().unwrap()).unwrap()).unwrap()
        };
        assert_eq!(
            ask("db.default.svc.cluster.local.", RecordType::A)
                .answers()
                .len(),
            2
        );
        assert_eq!(
            ask("db-0.db.default.svc.cluster.local.", RecordType::A)
                .answers()
                .len(),
            1
        );
        assert_eq!(
            ask("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV)
                .answers()
                .len(),
            2
        );
    }
}
