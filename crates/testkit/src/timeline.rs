//! A timeline of what a multi-node cluster did while a test ran, for the message of a test
//! that fails rarely: when endpoints and pods changed, to the millisecond.

use std::process::Command;
use std::time::Duration;

use crate::up::{LocalCluster, host};

/// Unix time in milliseconds.
pub fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A record, for a failure's message, of what a cluster did while a test ran: one node's
/// Service endpoints for port 8080 each time they change, and the selected pods as they change.
pub struct Timeline {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    rules: std::thread::JoinHandle<Vec<String>>,
    pods: std::process::Child,
    pod_lines: std::thread::JoinHandle<Vec<String>>,
}

impl Timeline {
    /// Starts recording node `node`'s endpoints and the pods `selector` selects.
    pub fn start(c: &LocalCluster, node: u32, selector: &str) -> Timeline {
        use std::io::BufRead;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ns = c.netns(node);
        let flag = stop.clone();
        let rules = std::thread::spawn(move || {
            let mut log = Vec::new();
            let mut last = String::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let rules = host(&["ip", "netns", "exec", &ns, "nft", "list", "ruleset"]);
                let mut eps: Vec<&str> = rules
                    .split_whitespace()
                    .filter(|w| w.ends_with(":8080"))
                    .collect();
                eps.sort();
                eps.dedup();
                let now = eps.join(" ");
                if now != last {
                    log.push(format!("{} rules: {now}", unix_ms()));
                    last = now;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            log
        });
        let columns = "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,IP:.status.podIP,READY:.status.conditions[?(@.type==\"Ready\")].status,DELETED:.metadata.deletionTimestamp";
        let mut pods = Command::new(crate::server::kubectl_path())
            .args([
                "get",
                "pods",
                "-l",
                selector,
                "-w",
                "--no-headers",
                "-o",
                columns,
            ])
            .env("KUBECONFIG", &c.kubeconfig)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        let out = pods.stdout.take().expect("piped");
        let pod_lines = std::thread::spawn(move || {
            std::io::BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .map(|l| format!("{} pod: {l}", unix_ms()))
                .collect()
        });
        Timeline {
            stop,
            rules,
            pods,
            pod_lines,
        }
    }

    /// Stops recording; the events in time order.
    pub fn finish(mut self) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.pods.kill();
        let _ = self.pods.wait();
        let mut all = self.rules.join().unwrap_or_default();
        all.extend(self.pod_lines.join().unwrap_or_default());
        all.sort();
        all.join("\n")
    }
}
