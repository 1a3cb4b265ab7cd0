//! Container probes: exec, httpGet, tcpSocket and grpc actions with their timing (initial
//! delay, period, timeout) and thresholds, tracked per container run; named ports resolved
//! against the container's ports.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, GRPCAction, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tug_runtime::Runtime;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    /// As events name it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// One probe's record for one container run.
#[derive(Clone, Debug, Default)]
pub struct Record {
    successes: i32,
    failures: i32,
    last: Option<Instant>,
    /// The settled result: Some(true) once successThreshold successes in a row, Some(false)
    /// after failureThreshold failures in a row.
    pub result: Option<bool>,
}

/// Probe records by (container run ID, kind).
#[derive(Default)]
pub struct Probes {
    records: HashMap<(String, Kind), Record>,
}

/// What a probe run concluded, to act on.
pub struct Outcome {
    pub kind: Kind,
    /// Failures reached the threshold: a liveness or startup probe restarts the container.
    pub settled: bool,
    pub message: String,
}

impl Probes {
    /// The settled result of a probe of a run.
    pub fn result(&self, id: &str, kind: Kind) -> Option<bool> {
        self.records
            .get(&(id.to_string(), kind))
            .and_then(|r| r.result)
    }

    /// Forgets runs no longer present.
    pub fn retain(&mut self, live: &std::collections::HashSet<String>) {
        self.records.retain(|(id, _), _| live.contains(id));
    }

    /// Runs the probe if it is due, and records its result.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &mut self,
        rt: &Arc<dyn Runtime>,
        pod_uid: &str,
        pod_ip: &str,
        id: &str,
        kind: Kind,
        probe: &Probe,
        started: Instant,
    ) -> Option<Outcome> {
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let rec = self.records.entry((id.to_string(), kind)).or_default();
        if started.elapsed() < delay || rec.last.is_some_and(|l| l.elapsed() < period) {
            return None;
        }
        rec.last = Some(Instant::now());
        let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let (ok, message) = act(rt, pod_uid, pod_ip, id, probe, timeout).await;
        let rec = self.records.entry((id.to_string(), kind)).or_default();
        if ok {
            rec.successes += 1;
            rec.failures = 0;
            if rec.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                rec.result = Some(true);
            }
            None
        } else {
            rec.failures += 1;
            rec.successes = 0;
            let settled = rec.failures >= probe.failure_threshold.unwrap_or(3).max(1);
            if settled {
                rec.result = Some(false);
            }
            Some(Outcome {
                kind,
                settled,
                message,
            })
        }
    }
}

fn port_of(port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(s) => s
            .parse()
            .map_err(|_| format!("couldn't find port: {s} in the container's ports")),
    }
}

/// Replaces a port named after one of the container's ports by its number.
fn resolve_port(port: &mut IntOrString, c: &Container) {
    if let IntOrString::String(name) = port
        && let Some(p) = c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
    {
        *port = IntOrString::Int(p.container_port);
    }
}

/// The probe with its httpGet or tcpSocket port resolved when it names a container port.
pub fn with_named_ports(probe: &Probe, c: &Container) -> Probe {
    let mut p = probe.clone();
    if let Some(h) = p.http_get.as_mut() {
        resolve_port(&mut h.port, c);
    }
    if let Some(t) = p.tcp_socket.as_mut() {
        resolve_port(&mut t.port, c);
    }
    p
}

/// The hook with its httpGet or tcpSocket port resolved when it names a container port.
pub fn hook_with_named_ports(hook: &LifecycleHandler, c: &Container) -> LifecycleHandler {
    let mut h = hook.clone();
    if let Some(g) = h.http_get.as_mut() {
        resolve_port(&mut g.port, c);
    }
    if let Some(t) = h.tcp_socket.as_mut() {
        resolve_port(&mut t.port, c);
    }
    h
}

/// A grpc probe: the standard health service (`grpc.health.v1.Health/Check`) on the port, in
/// the pod's network namespace; healthy when it answers SERVING.
async fn grpc_check(
    rt: &Arc<dyn Runtime>,
    pod_uid: &str,
    g: &GRPCAction,
    timeout: Duration,
) -> (bool, String) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let Ok(port) = u16::try_from(g.port) else {
        return (false, format!("invalid port {}", g.port));
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (rt, uid) = (rt.clone(), pod_uid.to_string());
    // Every connection is made inside the pod's network namespace, then handed to tonic.
    let connector = tower::service_fn(move |_: http::Uri| {
        let (rt, uid) = (rt.clone(), uid.clone());
        async move {
            let stream = tokio::task::spawn_blocking(move || {
                rt.connect_in_pod(&uid, addr, timeout)
                    .map_err(|e| std::io::Error::other(format!("{e:#}")))
            })
            .await
            .map_err(std::io::Error::other)??;
            stream.set_nonblocking(true)?;
            let stream = tokio::net::TcpStream::from_std(stream)?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let service = g.service.clone().unwrap_or_default();
    let check = async {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1")
            .connect_with_connector(connector)
            .await
            .map_err(|e| format!("failed to connect service \"{addr}\": {e}"))?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest { service })
            .await
            .map_err(|s| format!("rpc error: code = {:?} desc = {}", s.code(), s.message()))?;
        Ok::<_, String>(answer.into_inner().status)
    };
    match tokio::time::timeout(timeout, check).await {
        Err(_) => (
            false,
            format!("timeout: health rpc did not complete within {timeout:?}"),
        ),
        Ok(Err(e)) => (false, e),
        Ok(Ok(status)) if status == ServingStatus::Serving as i32 => (true, String::new()),
        Ok(Ok(status)) => {
            let name = ServingStatus::try_from(status)
                .map(|s| s.as_str_name())
                .unwrap_or("UNKNOWN");
            (
                false,
                format!("service unhealthy (responded with \"{name}\")"),
            )
        }
    }
}

/// Runs a lifecycle hook (postStart, preStop): exec, httpGet, tcpSocket or sleep. Success,
/// and a message on failure.
pub async fn run_hook(
    rt: &Arc<dyn Runtime>,
    pod_uid: &str,
    pod_ip: &str,
    id: &str,
    hook: &k8s_openapi::api::core::v1::LifecycleHandler,
    timeout: Duration,
) -> (bool, String) {
    if let Some(s) = &hook.sleep {
        let secs = Duration::from_secs(s.seconds.max(0) as u64).min(timeout);
        tokio::time::sleep(secs).await;
        return (true, String::new());
    }
    let probe = Probe {
        exec: hook.exec.clone(),
        http_get: hook.http_get.clone(),
        tcp_socket: hook.tcp_socket.clone(),
        ..Default::default()
    };
    act(rt, pod_uid, pod_ip, id, &probe, timeout).await
}

/// Runs the probe's action once: success, and a message on failure.
async fn act(
    rt: &Arc<dyn Runtime>,
    pod_uid: &str,
    pod_ip: &str,
    id: &str,
    probe: &Probe,
    timeout: Duration,
) -> (bool, String) {
    if let Some(g) = &probe.grpc {
        return grpc_check(rt, pod_uid, g, timeout).await;
    }
    let rt = rt.clone();
    let (uid, id) = (pod_uid.to_string(), id.to_string());
    let probe = probe.clone();
    let pod_ip = pod_ip.to_string();
    tokio::task::spawn_blocking(move || {
        if let Some(e) = &probe.exec {
            let cmd = e.command.clone().unwrap_or_default();
            return match rt.exec(&id, &cmd, timeout) {
                Ok((0, _)) => (true, String::new()),
                Ok((code, out)) => (
                    false,
                    format!(
                        "command {:?} exited with {code}: {}",
                        cmd.join(" "),
                        String::from_utf8_lossy(&out).trim()
                    ),
                ),
                Err(e) => (false, format!("{e:#}")),
            };
        }
        let host = |h: &Option<String>| {
            h.clone()
                .filter(|h| !h.is_empty() && *h != pod_ip)
                .unwrap_or_else(|| "127.0.0.1".into())
        };
        if let Some(t) = &probe.tcp_socket {
            let port = match port_of(&t.port) {
                Ok(p) => p,
                Err(e) => return (false, e),
            };
            let addr = match format!("{}:{port}", host(&t.host)).parse() {
                Ok(a) => a,
                Err(e) => return (false, format!("bad address: {e}")),
            };
            return match rt.connect_in_pod(&uid, addr, timeout) {
                Ok(_) => (true, String::new()),
                Err(e) => (false, format!("dial tcp {addr}: {e:#}")),
            };
        }
        if let Some(h) = &probe.http_get {
            let port = match port_of(&h.port) {
                Ok(p) => p,
                Err(e) => return (false, e),
            };
            let addr: std::net::SocketAddr = match format!("{}:{port}", host(&h.host)).parse() {
                Ok(a) => a,
                Err(e) => return (false, format!("bad address: {e}")),
            };
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            let url = format!("http://{addr}{path}");
            let result = (|| -> anyhow::Result<u16> {
                let mut s = rt.connect_in_pod(&uid, addr, timeout)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                let mut req = format!(
                    "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n"
                );
                for hd in h.http_headers.clone().unwrap_or_default() {
                    req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
                }
                req.push_str("\r\n");
                s.write_all(req.as_bytes())?;
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf)?;
                let line = String::from_utf8_lossy(&buf[..n]);
                line.split_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("not an HTTP response"))
            })();
            return match result {
                Ok(code) if (200..400).contains(&code) => (true, String::new()),
                Ok(code) => (false, format!("HTTP probe failed with statuscode: {code}")),
                Err(e) => (false, format!("Get \"{url}\": {e:#}")),
            };
        }
        (false, "the probe has no action".into())
    })
    .await
    .unwrap_or_else(|e| (false, e.to_string()))
}
