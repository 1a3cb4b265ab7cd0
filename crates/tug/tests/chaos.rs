//! The chaos suite: an HA cluster of `tug up --servers 3 --nodes 3` under steady load
//! (ConfigMap writes at about 200/s through whichever server answers, requests to a Service
//! from a client pod, a Deployment rolling) while servers are killed, an etcd member is
//! killed, a server is cut off, every node agent restarts and every server restarts in turn.
//! Every acknowledged write must be readable afterwards; the longest time without an
//! answered write, without scheduling and without a Service answer is measured per fault.
//! `TUG_CHAOS_ROUNDS` repeats the faults (the benchmark in docs/benchmarks.md uses 10).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use tug_testkit::tug_bin;
use tug_testkit::up::LocalCluster;

const IMAGE: &str = "docker.io/library/busybox:test";

/// The tests here run one at a time: their timings must not suffer from each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Writers, each writing ConfigMaps one after another, moving to the next server when one
/// fails: together about `WRITE_RATE` a second when the cluster takes that many (a debug
/// build of three servers on two cores takes 50–80).
const WRITERS: usize = 16;
const WRITE_RATE: u32 = 200;
/// How long a writer waits for an answer before trying another server: a writer whose server
/// is cut off learns it no sooner.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// What the writers saw.
#[derive(Default)]
struct Writes {
    acknowledged: Vec<String>,
    /// When each writer's last write was acknowledged.
    last_ok: Vec<Option<Instant>>,
    /// The longest time any writer went between two acknowledged writes (a request that
    /// hangs until its timeout counts in full), since the last reset.
    longest_gap: Duration,
}

/// The load on the cluster's API: writers on a runtime of their own.
struct WriteLoad {
    writes: Arc<Mutex<Writes>>,
    stop: Arc<AtomicBool>,
    runtime: Option<std::thread::JoinHandle<()>>,
}

impl WriteLoad {
    fn start(kubeconfigs: Vec<PathBuf>) -> WriteLoad {
        let writes = Arc::new(Mutex::new(Writes {
            last_ok: vec![None; WRITERS],
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (writes.clone(), stop.clone());
        let runtime = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut apis = Vec::new();
                for path in &kubeconfigs {
                    let kc = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
                    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                        .await
                        .expect("config");
                    config.connect_timeout = Some(Duration::from_secs(2));
                    config.read_timeout = Some(REQUEST_TIMEOUT);
                    config.write_timeout = Some(REQUEST_TIMEOUT);
                    let client = kube::Client::try_from(config).expect("client");
                    apis.push(Api::<ConfigMap>::namespaced(client, "load"));
                }
                let tasks: Vec<_> = (0..WRITERS)
                    .map(|i| {
                        let (apis, w, s) = (apis.clone(), w.clone(), s.clone());
                        tokio::spawn(async move { writer(i, apis, w, s).await })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        WriteLoad {
            writes,
            stop,
            runtime: Some(runtime),
        }
    }

    /// The longest gap since the last call, and resets it.
    fn take_gap(&self) -> Duration {
        let mut w = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let open = w
            .last_ok
            .iter()
            .flatten()
            .map(|t| now - *t)
            .max()
            .unwrap_or_default();
        std::mem::take(&mut w.longest_gap).max(open)
    }

    fn stop(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(rt) = self.runtime.take() {
            let _ = rt.join();
        }
        let w = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        w.acknowledged.clone()
    }
}

async fn writer(i: usize, apis: Vec<Api<ConfigMap>>, w: Arc<Mutex<Writes>>, stop: Arc<AtomicBool>) {
    let mut server = i % apis.len();
    let mut n = 0u64;
    // Each writer's share of the rate: one write per period at most.
    let period = Duration::from_secs(WRITERS as u64) / WRITE_RATE;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let name = format!("w{i}-{n}");
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"load": "yes"}},
            "data": {"n": n.to_string()},
        }))
        .expect("configmap");
        let result = apis[server].create(&PostParams::default(), &cm).await;
        let now = Instant::now();
        {
            let mut state = w.lock().unwrap_or_else(|e| e.into_inner());
            let acknowledged = match result {
                Ok(_) => true,
                // Created before an error reached us: acknowledged all the same.
                Err(kube::Error::Api(e)) => e.code == 409,
                Err(_) => false,
            };
            if acknowledged {
                state.acknowledged.push(name);
                n += 1;
                if let Some(last) = state.last_ok[i].replace(now) {
                    state.longest_gap = state.longest_gap.max(now - last);
                }
            } else {
                server = (server + 1) % apis.len();
            }
        }
        tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
    }
}

/// The client pod's record of Service requests: `UPTIME ok|fail` lines.
fn service_gap(c: &LocalCluster, since: f64) -> (Duration, usize) {
    // Only the lines since the fault began (the whole log grows by ~50 lines a second).
    let window = format!(
        "--since={}s",
        (pod_clock(c) - since).max(0.0).ceil() as u64 + 5
    );
    let text = any_server(c, &["logs", "client", &window]);
    let mut longest = 0f64;
    let mut failing: Option<f64> = None;
    let mut answered = 0;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(t), Some(r)) = (
            parts.next().and_then(|t| t.parse::<f64>().ok()),
            parts.next(),
        ) else {
            continue;
        };
        if t < since {
            continue;
        }
        if r == "ok" {
            answered += 1;
            if let Some(f) = failing.take() {
                longest = longest.max(t - f);
            }
        } else {
            failing.get_or_insert(t);
        }
    }
    (Duration::from_secs_f64(longest), answered)
}

/// What each server says of the web Service's pods, slices and the controller leader: the
/// story of a Service that does not answer.
fn service_state(c: &LocalCluster) -> String {
    let mut out = String::new();
    for j in 1..=3 {
        for args in [
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.metadata.resourceVersion} {.status.podIP} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
            ][..],
            &[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.metadata.resourceVersion} {.endpoints}{\"\\n\"}{end}",
            ][..],
            &[
                "get",
                "lease",
                "-n",
                "kube-system",
                "kube-controller-manager",
                "-o",
                "jsonpath={.spec.holderIdentity} {.spec.renewTime}",
            ][..],
        ] {
            let mut all = vec!["--request-timeout=5s"];
            all.extend_from_slice(args);
            let o = tug_testkit::kubectl::kubectl_with_config(&c.server_kubeconfig(j), &all, None);
            out.push_str(&format!(
                "server-{j} {}: {}{}\n",
                args[1],
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    out
}

/// The client pod's clock (seconds since its node booted: /proc/uptime).
fn pod_clock(c: &LocalCluster) -> f64 {
    any_server(
        c,
        &["exec", "client", "--", "cut", "-d ", "-f1", "/proc/uptime"],
    )
    .trim()
    .parse()
    .unwrap_or(0.0)
}

/// The server holding the scheduler's Lease (`server-J`), asked through any server.
fn leader(c: &LocalCluster) -> String {
    for j in 1..=3 {
        let out = tug_testkit::kubectl::kubectl_with_config(
            &c.server_kubeconfig(j),
            &[
                "get",
                "lease",
                "-n",
                "kube-system",
                "kube-scheduler",
                "-o",
                "jsonpath={.spec.holderIdentity}",
                "--request-timeout=3s",
            ],
            None,
        );
        let holder = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && !holder.is_empty() {
            return holder.split('_').next().unwrap_or_default().to_string();
        }
    }
    panic!("no server answers with the scheduler's holder");
}

/// kubectl against whichever server answers first.
fn any_server(c: &LocalCluster, args: &[&str]) -> String {
    let mut errors = Vec::new();
    for j in 1..=3 {
        let mut all = vec!["--request-timeout=5s"];
        all.extend_from_slice(args);
        let out = tug_testkit::kubectl::kubectl_with_config(&c.server_kubeconfig(j), &all, None);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        errors.push(format!(
            "server-{j}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    panic!("no server answers {args:?}: {errors:#?}\n{}", c.logs());
}

/// Whether kubectl succeeds against any server.
fn any_server_output(c: &LocalCluster, args: &[&str]) -> bool {
    (1..=3).any(|j| {
        tug_testkit::kubectl::kubectl_with_config(&c.server_kubeconfig(j), args, None)
            .status
            .success()
    })
}

/// Waits until `check` holds, up to `limit`; returns how long it took.
fn within(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what} took longer than {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    start.elapsed()
}

/// A pod created now is scheduled within the limit; returns how long it took.
fn time_to_schedule(c: &LocalCluster, name: &str) -> Duration {
    let start = Instant::now();
    any_server(
        c,
        &[
            "run",
            name,
            &format!("--image={IMAGE}"),
            "--restart=Never",
            "--",
            "sleep",
            "600",
        ],
    );
    within(
        &format!("scheduling {name}"),
        Duration::from_secs(30),
        || !any_server(c, &["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"]).is_empty(),
    );
    start.elapsed()
}

/// Waits until server `j` is ready again (answers /readyz).
fn server_ready(c: &LocalCluster, j: u32) {
    within(
        &format!("server-{j} ready"),
        Duration::from_secs(60),
        || {
            tug_testkit::kubectl::kubectl_with_config(
                &c.server_kubeconfig(j),
                &["get", "--raw", "/readyz", "--request-timeout=3s"],
                None,
            )
            .status
            .success()
        },
    );
}

#[derive(Default)]
struct Figures {
    rows: Vec<(String, Duration, Duration, String)>,
}

impl Figures {
    fn record(&mut self, fault: &str, writes: Duration, service: Duration, note: String) {
        eprintln!(
            "CHAOS {fault}: writes unavailable {:.2}s, Service unanswered {:.2}s{}",
            writes.as_secs_f64(),
            service.as_secs_f64(),
            if note.is_empty() {
                String::new()
            } else {
                format!(", {note}")
            }
        );
        self.rows.push((fault.to_string(), writes, service, note));
    }
}

#[test]
fn an_ha_cluster_survives_servers_etcd_members_links_and_agents_failing_under_load() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tug_testkit::image::busybox_archive(tmp.path(), IMAGE);
    let c = LocalCluster::start_with(
        tug_bin!(),
        3,
        &[archive],
        &[
            "--servers",
            "3",
            "--heartbeat-interval",
            "2",
            "--server-arg=--leader-elect-lease-duration=8s",
            "--server-arg=--leader-elect-renew-deadline=6s",
            "--server-arg=--leader-elect-retry-period=1s",
        ],
    );
    let rounds: usize = std::env::var("TUG_CHAOS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);

    // The workload: a Service of two web pods, a client asking it ~50 times a second, a
    // Deployment to roll.
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: load}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: http
        image: {IMAGE}
        command: [sh, -c, "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: roll}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: roll}}}}
  template:
    metadata: {{labels: {{app: roll}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{{name: s, image: {IMAGE}, command: [sleep, "3600"]}}]
"#
    ));
    c.ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    c.ok(&["rollout", "status", "deploy/roll", "--timeout=120s"]);
    let web_ip = c.jsonpath(&["svc", "web"], "{.spec.clusterIP}");
    c.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, "while true; do read up _ < /proc/uptime; if timeout 1 wget -q -O /dev/null http://{web_ip}/; then echo $up ok; else echo $up fail; fi; sleep 0.02; done"]
"#
    ));
    c.wait_running("client");
    let kubeconfigs: Vec<PathBuf> = (1..=3).map(|j| c.server_kubeconfig(j)).collect();
    let load = WriteLoad::start(kubeconfigs);
    let loaded = Instant::now();
    let mut figures = Figures::default();
    std::thread::sleep(Duration::from_secs(3));
    let _ = load.take_gap();

    for round in 0..rounds {
        // 1. Kill -9 the leader: writes resume through the others, scheduling resumes, the
        //    Deployment finishes rolling.
        let t0 = pod_clock(&c);
        let lead = leader(&c);
        c.stop_process(&lead, "KILL");
        // kubectl with the admin kubeconfig (through `tug lb`) goes on working.
        let through = within("kubectl through tug lb", Duration::from_secs(10), || {
            c.kubectl(&["--request-timeout=3s", "get", "namespace", "load"], None)
                .status
                .success()
        });
        any_server(
            &c,
            &["set", "env", "deploy/roll", &format!("ROUND={round}")],
        );
        let scheduled = time_to_schedule(&c, &format!("after-kill-{round}"));
        assert!(
            scheduled < Duration::from_secs(15),
            "scheduling resumed after {scheduled:?}"
        );
        std::thread::sleep(Duration::from_secs(3));
        let writes = load.take_gap();
        let (service, answered) = service_gap(&c, t0);
        assert!(
            answered > 0,
            "the Service answered nothing since {t0}\n{}",
            service_state(&c)
        );
        figures.record(
            "kill -9 leader",
            writes,
            service,
            format!(
                "scheduling after {:.1}s, kubectl through tug lb after {:.1}s",
                scheduled.as_secs_f64(),
                through.as_secs_f64()
            ),
        );
        assert!(
            writes <= Duration::from_secs(5),
            "writes stopped for {writes:?}"
        );
        assert!(
            through <= Duration::from_secs(5),
            "kubectl through tug lb failed for {through:?}"
        );
        any_server(&c, &["rollout", "status", "deploy/roll", "--timeout=120s"]);
        c.start_process(&lead);
        server_ready(&c, lead.trim_start_matches("server-").parse().unwrap_or(1));

        // 2. Kill -9 one etcd member: writes go on; the member comes back.
        let t0 = pod_clock(&c);
        let victim = if lead == "server-2" {
            "server-3"
        } else {
            "server-2"
        };
        let member = format!("{}/etcd/data", c.data_dir_of(victim).display());
        let pids = LocalCluster::pids_of("etcd", &member);
        assert_eq!(pids.len(), 1, "{victim}'s etcd member: {pids:?}");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pids[0].to_string()])
            .status();
        within(
            "the etcd member to come back",
            Duration::from_secs(30),
            || {
                LocalCluster::pids_of("etcd", &member)
                    .iter()
                    .any(|p| *p != pids[0])
            },
        );
        server_ready(
            &c,
            victim.trim_start_matches("server-").parse().unwrap_or(2),
        );
        std::thread::sleep(Duration::from_secs(2));
        let writes = load.take_gap();
        let (service, _) = service_gap(&c, t0);
        figures.record("kill -9 etcd member", writes, service, String::new());
        assert!(
            writes <= Duration::from_secs(5),
            "writes stopped for {writes:?}"
        );

        // 3. Cut the leader's link: it stops leading (no two schedulers bind), the others
        //    take over; healing the link brings it back.
        let t0 = pod_clock(&c);
        let lead = leader(&c);
        let j: u32 = lead.trim_start_matches("server-").parse().unwrap_or(1);
        let link = c.server_link(j);
        let _ = std::process::Command::new("ip")
            .args(["link", "set", &link, "down"])
            .status();
        let scheduled = time_to_schedule(&c, &format!("after-cut-{round}"));
        // Cut off, it acknowledges no write (asked from inside its own namespace).
        let cut_off = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}-{lead}", c.name))
            .arg(tug_testkit::server::kubectl_path())
            .arg("--kubeconfig")
            .arg(c.server_kubeconfig(j))
            .args([
                "--request-timeout=5s",
                "create",
                "configmap",
                &format!("cut-off-{round}"),
            ])
            .output()
            .expect("kubectl in the cut-off server's namespace");
        assert!(
            !cut_off.status.success(),
            "a server cut off acknowledged a write"
        );
        std::thread::sleep(Duration::from_secs(3));
        let _ = std::process::Command::new("ip")
            .args(["link", "set", &link, "up"])
            .status();
        server_ready(&c, j);
        let writes = load.take_gap();
        let (service, _) = service_gap(&c, t0);
        figures.record(
            "partition leader",
            writes,
            service,
            format!("scheduling after {:.1}s", scheduled.as_secs_f64()),
        );
        // No node runs a pod bound to another node (a stale view of the cut-off server must
        // not make a pod run twice).
        let bound = any_server(
            &c,
            &[
                "get",
                "pods",
                "-A",
                "-o",
                "jsonpath={range .items[*]}{.metadata.uid} {.spec.nodeName}{\"\\n\"}{end}",
            ],
        );
        let bound: std::collections::HashMap<&str, &str> =
            bound.lines().filter_map(|l| l.split_once(' ')).collect();
        for i in 1..=3 {
            let node = format!("node-{i}");
            let sandboxes = c.data_dir_of(&node).join("sandboxes");
            for entry in std::fs::read_dir(&sandboxes)
                .expect("the node's sandboxes")
                .flatten()
            {
                let uid = entry.file_name().to_string_lossy().into_owned();
                if let Some(other) = bound.get(uid.as_str()) {
                    assert_eq!(*other, node, "{node} runs pod {uid}, bound to {other}");
                }
            }
        }
        // Writers whose server was cut off waited their timeout first.
        assert!(
            writes <= REQUEST_TIMEOUT + Duration::from_secs(5),
            "writes stopped for {writes:?}"
        );

        // 4. Every node agent killed and restarted in turn: pods keep running.
        let t0 = pod_clock(&c);
        let before = any_server(
            &c,
            &[
                "get",
                "pods",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}{\"\\n\"}{end}",
            ],
        );
        for i in 1..=3 {
            let node = format!("node-{i}");
            c.stop_process(&node, "KILL");
            std::thread::sleep(Duration::from_secs(1));
            c.start_process(&node);
            within(&format!("{node} Ready"), Duration::from_secs(60), || {
                any_server(
                    &c,
                    &[
                        "get",
                        "node",
                        &node,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                    ],
                ) == "True"
            });
        }
        std::thread::sleep(Duration::from_secs(3));
        let after = any_server(
            &c,
            &[
                "get",
                "pods",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}{\"\\n\"}{end}",
            ],
        );
        let running = |text: &str| -> BTreeSet<String> {
            text.lines()
                .filter(|l| l.starts_with("web-") || l.starts_with("client"))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            running(&before),
            running(&after),
            "pods restarted with their agents"
        );
        let writes = load.take_gap();
        let (service, _) = service_gap(&c, t0);
        figures.record("restart every agent", writes, service, String::new());
        assert!(
            service <= Duration::from_secs(5),
            "the Service went unanswered for {service:?}"
        );

        // 6. Every server restarted in turn (SIGTERM, then started again) under load.
        let t0 = pod_clock(&c);
        for j in 1..=3 {
            let name = format!("server-{j}");
            c.stop_process(&name, "TERM");
            c.start_process(&name);
            server_ready(&c, j);
        }
        let writes = load.take_gap();
        let (service, _) = service_gap(&c, t0);
        figures.record("rolling restart", writes, service, String::new());
        assert!(
            writes <= Duration::from_secs(5),
            "writes stopped for {writes:?}"
        );
    }

    // No acknowledged write is lost; no pod was bound twice.
    let acknowledged = load.stop();
    let stored: BTreeSet<String> = any_server(
        &c,
        &[
            "get",
            "configmaps",
            "-n",
            "load",
            "-l",
            "load",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains(*n))
        .collect();
    for round in 0..rounds {
        let out = any_server_output(&c, &["get", "configmap", &format!("cut-off-{round}")]);
        assert!(!out, "the write refused while cut off is there");
    }
    eprintln!(
        "CHAOS writes acknowledged {}, lost {}, {:.0} writes/s",
        acknowledged.len(),
        lost.len(),
        acknowledged.len() as f64 / loaded.elapsed().as_secs_f64()
    );
    assert!(
        acknowledged.len() > 1000,
        "the load wrote only {}",
        acknowledged.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged writes lost: {:?}",
        &lost[..lost.len().min(20)]
    );
    let events = any_server(
        &c,
        &[
            "get",
            "events",
            "-A",
            "--field-selector",
            "reason=Scheduled",
            "-o",
            "jsonpath={range .items[*]}{.involvedObject.uid} {.count}{\"\\n\"}{end}",
        ],
    );
    let mut seen = BTreeSet::new();
    for line in events.lines() {
        let mut parts = line.split_whitespace();
        let uid = parts.next().unwrap_or_default().to_string();
        let count: u32 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
        assert!(
            count <= 1 && seen.insert(uid.clone()),
            "pod {uid} was scheduled twice:\n{events}"
        );
    }
    for (fault, writes, service, note) in &figures.rows {
        eprintln!(
            "CHAOS | {fault} | {:.2} | {:.2} | {note} |",
            writes.as_secs_f64(),
            service.as_secs_f64()
        );
    }
}

/// The restore drill on `tug up --servers 3`: a snapshot saved beside a running server, a
/// namespace full of objects deleted, every server stopped, the snapshot restored into the
/// first (a cluster of one), the servers started again (the others rejoin from scratch):
/// everything from the snapshot is back with the same UIDs, revisions moving forward.
#[test]
fn a_tug_up_ha_cluster_is_restored_from_one_snapshot() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bin = tug_bin!();
    let c = LocalCluster::start_with(bin, 1, &[], &["--servers", "3"]);
    c.ok(&["create", "namespace", "drill"]);
    for i in 0..20 {
        c.ok(&[
            "create",
            "configmap",
            &format!("cm-{i}"),
            "-n",
            "drill",
            "--from-literal=k=v",
        ]);
    }
    let uids = |c: &LocalCluster| -> BTreeSet<String> {
        any_server(
            c,
            &[
                "get",
                "configmaps",
                "-n",
                "drill",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.metadata.uid}{\"\\n\"}{end}",
            ],
        )
        .lines()
        .filter(|l| l.starts_with("cm-"))
        .map(str::to_string)
        .collect()
    };
    let before = uids(&c);
    assert_eq!(before.len(), 20);
    let server = c.data_dir_of("server-1");
    let snapshot = c.dir.path().join("drill.snap");
    let out = std::process::Command::new(bin)
        .args(["snapshot", "save"])
        .arg(&snapshot)
        .arg("--data-dir")
        .arg(&server)
        .output()
        .expect("tug snapshot save");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved: i64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "revision")
        .nth(1)
        .and_then(|r| r.parse().ok())
        .expect("the saved revision");

    c.ok(&["delete", "namespace", "drill", "--timeout=60s"]);
    for j in 1..=3 {
        c.stop_process(&format!("server-{j}"), "TERM");
    }
    let out = std::process::Command::new(bin)
        .args(["snapshot", "restore"])
        .arg(&snapshot)
        .arg("--data-dir")
        .arg(&server)
        .output()
        .expect("tug snapshot restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for j in 1..=3 {
        c.start_process(&format!("server-{j}"));
        server_ready(&c, j);
    }
    assert_eq!(uids(&c), before, "the same objects, with the same UIDs");
    any_server(&c, &["create", "configmap", "after", "-n", "drill"]);
    let after: i64 = any_server(
        &c,
        &[
            "get",
            "configmap",
            "after",
            "-n",
            "drill",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    )
    .trim()
    .parse()
    .expect("resourceVersion");
    assert!(
        after > saved,
        "revisions move forward: {after} after {saved}"
    );
    within(
        "three servers in the kubernetes Service",
        Duration::from_secs(30),
        || {
            any_server(
                &c,
                &[
                    "get",
                    "endpointslice",
                    "kubernetes",
                    "-o",
                    "jsonpath={.endpoints[*].addresses[0]}",
                ],
            )
            .split_whitespace()
            .count()
                == 3
        },
    );
    // The node's agent reaches them all again.
    within("node-1 Ready", Duration::from_secs(60), || {
        any_server(
            &c,
            &[
                "get",
                "node",
                "node-1",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        ) == "True"
    });
}
