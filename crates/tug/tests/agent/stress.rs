//! Streams under load: every byte a container writes reaches the client, then its exit status,
//! then a normal close. Each test runs a CPU burner beside it (two `yes > /dev/null`), because
//! a quiet machine hides the races between a process's exit, the draining of its output and
//! the closing of each hop (kubelet, API server, kubectl).

use std::path::PathBuf;
use std::process::Stdio;

use sha2::{Digest, Sha256};

use super::streams::{PortForward, Terminal, body};
use super::*;

/// Two busy loops, for as long as it lives.
struct CpuBurner(Vec<std::process::Child>);

impl CpuBurner {
    fn start() -> CpuBurner {
        CpuBurner(
            (0..2)
                .map(|_| {
                    Command::new("yes")
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("yes")
                })
                .collect(),
        )
    }
}

impl Drop for CpuBurner {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `len` random bytes, written to `path` too.
fn random_file(path: &Path, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::fill(&mut data[..]);
    std::fs::write(path, &data).expect("writing a random file");
    data
}

/// Random text of about `len` bytes in lines (for logs and terminals, which are line based).
fn random_text(path: &Path, len: usize) -> String {
    let mut raw = vec![0u8; len / 2];
    rand::fill(&mut raw[..]);
    let text: String = raw
        .chunks(32)
        .map(|line| {
            let mut l: String = line.iter().map(|b| format!("{b:02x}")).collect();
            l.push('\n');
            l
        })
        .collect();
    std::fs::write(path, &text).expect("writing a random text");
    text
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A cluster, and a folder of the test's for the files its pods see at /data.
fn cluster_with_files() -> (TugServer, ClusterDir, PathBuf) {
    let (s, dir) = cluster();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).expect("files dir");
    (s, dir, files)
}

/// Fails the test with every failure reported, if there was any.
fn assert_all_delivered(failures: Vec<String>, of: usize, what: &str) {
    assert!(
        failures.is_empty(),
        "{} of {of} {what} did not deliver everything:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Starts a pod `name` running `command` (in `sh -c`) with the host folder `files` at /data,
/// and waits for it to run.
fn start_pod(s: &TugServer, name: &str, files: &Path, command: &str, extra: &str) {
    apply(
        s,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  volumes: [{{name: files, hostPath: {{path: "{}"}}}}]
  containers:
  - name: c
    image: {IMAGE}
    command: [sh, -c, {command:?}]
    volumeMounts: [{{name: files, mountPath: /data}}]
{extra}
"#,
            files.display()
        ),
    );
    wait_phase(s, name, "Running", Duration::from_secs(60));
}

/// Runs `job(i)` for i in 0..total, `at_once` at a time; the failures it reported.
fn in_parallel(
    total: usize,
    at_once: usize,
    job: impl Fn(usize) -> Result<(), String> + Sync,
) -> Vec<String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..at_once {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    if let Err(e) = job(i)
                        && let Ok(mut f) = failures.lock()
                    {
                        f.push(e);
                    }
                }
            });
        }
    });
    failures.into_inner().unwrap_or_default()
}

/// What went wrong with a kubectl run whose output should have been `want`, if anything.
fn compare(what: &str, o: &std::process::Output, want: &[u8]) -> Result<(), String> {
    if o.status.success() && o.stdout == want {
        return Ok(());
    }
    Err(format!(
        "{what}: {} bytes (want {}), SHA-256 {} (want {}), {}: {}",
        o.stdout.len(),
        want.len(),
        sha256(&o.stdout),
        sha256(want),
        o.status,
        String::from_utf8_lossy(&o.stderr).trim()
    ))
}

#[test]
fn forty_execs_of_a_2mb_file_four_at_a_time_deliver_every_byte_under_load() {
    let (s, _dir, files) = cluster_with_files();
    let data = random_file(&files.join("big"), 2 << 20);
    start_pod(&s, "box", &files, "exec sleep 3600", "");
    let _burner = CpuBurner::start();
    let failures = in_parallel(40, 4, |i| {
        let o = kubectl(&s, &["exec", "box", "--", "cat", "/data/big"], None);
        compare(&format!("exec {i}"), &o, &data)
    });
    assert_all_delivered(failures, 40, "execs");
}

/// `kubectl exec POD -- cat PATH` with its output read at `per_second` bytes a second: a slow
/// client, which keeps the bytes queued on the kubelet's and the API server's side while the
/// command has long ended and kubectl's pings (every 5 s) keep coming.
fn slow_exec(s: &TugServer, pod: &str, path: &str, per_second: usize) -> std::process::Output {
    use std::io::Read;
    let mut child = Command::new(tug_testkit::server::kubectl_path())
        .env("KUBECONFIG", &s.kubeconfig)
        .args(["exec", pod, "--", "cat", path])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl exec");
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut e = Vec::new();
        let _ = stderr.read_to_end(&mut e);
        e
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let chunk = per_second / 10;
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().expect("kubectl exec");
    std::process::Output {
        status,
        stdout: out,
        stderr: errors.join().unwrap_or_default(),
    }
}

#[test]
fn slow_clients_of_exec_get_every_byte_after_the_command_has_ended() {
    let (s, _dir, files) = cluster_with_files();
    let data = random_file(&files.join("big"), 2 << 20);
    start_pod(&s, "box", &files, "exec sleep 3600", "");
    let _burner = CpuBurner::start();
    // Each read over about 8 s: past kubectl's first ping.
    let failures = in_parallel(8, 4, |i| {
        compare(
            &format!("slow exec {i}"),
            &slow_exec(&s, "box", "/data/big", 256 << 10),
            &data,
        )
    });
    assert_all_delivered(failures, 8, "slow execs");
}

#[test]
fn an_exec_that_exits_right_after_writing_a_megabyte_delivers_all_of_it_with_and_without_a_terminal()
 {
    let (s, _dir, files) = cluster_with_files();
    let data = random_file(&files.join("big"), 2 << 20);
    let text = random_text(&files.join("text"), 1 << 20);
    start_pod(&s, "box", &files, "exec sleep 3600", "");
    let _burner = CpuBurner::start();
    let megabyte = &data[..1 << 20];
    let failures = in_parallel(20, 4, |i| {
        let o = kubectl(
            &s,
            &["exec", "box", "--", "head", "-c", "1048576", "/data/big"],
            None,
        );
        compare(&format!("exec {i}"), &o, megabyte)
    });
    assert_all_delivered(failures, 20, "execs");
    // Through a terminal (kubectl on a pseudo-terminal of the test's, `exec -it`), the
    // container's line discipline turns each \n into \r\n; kubectl's raw terminal passes it on.
    let on_terminal = text.replace('\n', "\r\n");
    let failures = in_parallel(8, 4, |i| {
        let mut t = Terminal::spawn(&s, &["exec", "-it", "box", "--", "cat", "/data/text"]);
        let status = t.wait_exit();
        // kubectl has exited: what it wrote is on the test's side of the terminal.
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.screen().len() < on_terminal.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let screen = t.screen();
        if status.success() && screen == on_terminal {
            return Ok(());
        }
        Err(format!(
            "exec -it {i}: {status}, {} bytes (want {}), SHA-256 {} (want {}); ends with {:?}",
            screen.len(),
            on_terminal.len(),
            sha256(screen.as_bytes()),
            sha256(on_terminal.as_bytes()),
            &screen[screen.len().saturating_sub(200)..]
        ))
    });
    assert_all_delivered(failures, 8, "execs on a terminal");
}

#[test]
fn kubectl_cp_of_20mb_into_a_pod_and_back_is_byte_exact_under_load() {
    let (s, dir, files) = cluster_with_files();
    let local = dir.path().join("local");
    std::fs::create_dir_all(&local).expect("local dir");
    start_pod(&s, "box", &files, "exec sleep 3600", "");
    let _burner = CpuBurner::start();
    for round in 0..2 {
        let source = local.join(format!("in-{round}"));
        let data = random_file(&source, 20 << 20);
        let into = format!("box:/tmp/copy-{round}");
        let o = kubectl(&s, &["cp", &source.display().to_string(), &into], None);
        assert!(
            o.status.success(),
            "round {round}: cp in: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // The copy in the pod, checked there.
        let there = ok(
            &s,
            &[
                "exec",
                "box",
                "--",
                "sha256sum",
                &format!("/tmp/copy-{round}"),
            ],
        );
        assert_eq!(
            there.split_whitespace().next(),
            Some(sha256(&data).as_str()),
            "round {round}: the copy in the pod differs"
        );
        let back = local.join(format!("back-{round}"));
        let o = kubectl(&s, &["cp", &into, &back.display().to_string()], None);
        assert!(
            o.status.success(),
            "round {round}: cp out: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let returned = std::fs::read(&back).expect("the copy back");
        assert_eq!(
            (returned.len(), sha256(&returned)),
            (data.len(), sha256(&data)),
            "round {round}: the copy back differs"
        );
    }
}

#[test]
fn twenty_port_forward_downloads_of_8mb_are_byte_exact_under_load() {
    let (s, _dir, files) = cluster_with_files();
    let data = random_file(&files.join("big"), 8 << 20);
    start_pod(
        &s,
        "web",
        &files,
        "exec httpd -f -p 8080 -h /data",
        "    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}",
    );
    wait_until("web to be ready", Duration::from_secs(30), || {
        jsonpath(&s, &["pod", "web"], "{.status.containerStatuses[0].ready}") == "true"
    });
    let _burner = CpuBurner::start();
    let pf = PortForward::start(&s, "pod/web", 8080);
    let port = pf.port;
    let failures = in_parallel(20, 4, |i| match super::streams::http_get(port, "/big") {
        Ok(r) if body(&r) == data.as_slice() => Ok(()),
        Ok(r) => Err(format!(
            "download {i}: {} bytes (want {}), SHA-256 {}",
            body(&r).len(),
            data.len(),
            sha256(body(&r))
        )),
        Err(e) => Err(format!("download {i}: {e}")),
    });
    assert_all_delivered(failures, 20, "downloads");
}

#[test]
fn attach_and_logs_follow_deliver_everything_a_container_writes_before_it_ends() {
    let (s, _dir, files) = cluster_with_files();
    let text = random_text(&files.join("text"), 1 << 20);
    let _burner = CpuBurner::start();
    // attach -i: the container waits for a line on stdin, writes the text and ends.
    start_pod(
        &s,
        "attached",
        &files,
        "read go; cat /data/text",
        "    stdin: true\n    stdinOnce: true",
    );
    let o = kubectl(&s, &["attach", "-i", "attached"], Some("go\n"));
    compare("attach -i", &o, text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    // logs -f, started while the container runs, ends with it and has every line.
    start_pod(&s, "logged", &files, "sleep 3; cat /data/text", "");
    let o = kubectl(&s, &["logs", "-f", "logged"], None);
    compare("logs -f", &o, text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
}
