//! Container probes: exec, httpGet and tcpSocket actions with their timing (initial delay,
//! period, timeout) and thresholds, tracked per container run.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Probe;
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

fn port_of(port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(s) => s.parse().ok(),
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
            let Some(port) = port_of(&t.port) else {
                return (false, "named ports are not supported yet".into());
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
            let Some(port) = port_of(&h.port) else {
                return (false, "named ports are not supported yet".into());
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
        (false, "the probe has no action (grpc probes are not supported yet)".into())
    })
    .await
    .unwrap_or_else(|e| (false, e.to_string()))
}
