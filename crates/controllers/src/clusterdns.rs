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
/// port, target port).
async fn publish_service(
    client: &kube::Client,
    ns: &str,
    name: &str,
    cluster_ip: &str,
    labels: serde_json::Value,
    address: Ipv4Addr,
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
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
        "ports": ports.iter().map(|(n, proto, _, target)| json!({
            "name": n, "protocol": proto, "port": target
        })).collect::<Vec<_>>(),
    });
    Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .patch(name, &pp, &Patch::Apply(slice))
        .await?;
    Ok(())
}

/// Publishes `kubernetes` (the API server on `address:api_port`) and, with a DNS port,
/// `kube-dns`, retrying until the API accepts them; then keeps them: one deleted (with its
/// EndpointSlice) is published again within a second, as kube-apiserver's own controller
/// recreates `kubernetes`.
pub async fn publish(
    client: kube::Client,
    address: Ipv4Addr,
    api_port: u16,
    dns_port: Option<u16>,
) {
    let mut published = vec![("default", "kubernetes")];
    if dns_port.is_some() {
        published.push(("kube-system", "kube-dns"));
    }
    loop {
        let mut result = publish_service(
            &client,
            "default",
            "kubernetes",
            KUBERNETES_IP,
            json!({"component": "apiserver", "provider": "kubernetes"}),
            address,
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
                address,
                &[("dns", "UDP", 53, port), ("dns-tcp", "TCP", 53, port)],
            )
            .await;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "publishing the control plane's Services failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some((ns, name)) = first_missing(&client, &published).await {
                tracing::info!(
                    namespace = ns,
                    name,
                    "a control-plane Service or its EndpointSlice was deleted; publishing it again"
                );
                break;
            }
        }
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
