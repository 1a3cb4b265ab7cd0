//! Getting into containers: logs -f, exec (with and without a terminal), attach, cp.

use super::*;

#[test]
fn logs_follow_streams_while_the_container_writes() {
    let (s, _dir) = cluster();
    apply(
        &s,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox:test, command: [sh, -c, "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done"]}
"#,
    );
    wait_phase(&s, "ticker", "Running", Duration::from_secs(60));
    let mut child = Command::new(tug_testkit::server::kubectl_path())
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .args(["logs", "-f", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout");
    let started = Instant::now();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(out).lines() {
        let line = line.expect("line");
        lines.push((started.elapsed(), line));
    }
    let _ = child.wait();
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        text,
        ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5", "tick 6"]
    );
    // Streamed: the last line came well after the first.
    let spread = lines[5].0 - lines[0].0;
    assert!(
        spread >= Duration::from_millis(800),
        "lines arrived at once: {lines:?}"
    );
}

#[test]
fn kubectl_exec_runs_commands_passes_stdin_and_exit_codes_and_cleans_up_after_a_lost_client() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: shell}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sleep, \"3600\"]}}\n"
        ),
    );
    wait_phase(&s, "shell", "Running", Duration::from_secs(60));
    assert_eq!(
        ok(&s, &["exec", "shell", "--", "cat", "/etc/hostname"]).trim(),
        "shell"
    );
    let o = kubectl(
        &s,
        &[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err"));
    let o = kubectl(
        &s,
        &["exec", "-i", "shell", "--", "tr", "a-z", "A-Z"],
        Some("piped in\n"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "PIPED IN\n");
    let o = kubectl(&s, &["exec", "shell", "--", "no-such-command"], None);
    assert!(!o.status.success());
    let o = kubectl(&s, &["exec", "missing", "--", "true"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("pods \"missing\" not found"),
        "{err}"
    );

    // A client that goes away mid-command takes the command with it.
    let mut lost = Command::new(tug_testkit::server::kubectl_path())
        .env("KUBECONFIG", &s.kubeconfig)
        .args([
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 4242",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl exec");
    let sleeping = || {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x004242\x00")
            })
            .count()
    };
    wait_until("the command to start", Duration::from_secs(30), || {
        sleeping() == 1
    });
    let _ = lost.kill();
    let _ = lost.wait();
    wait_until("the command to be killed", Duration::from_secs(30), || {
        sleeping() == 0
    });
}

#[test]
fn kubectl_cp_copies_a_file_in_and_a_directory_out_byte_for_byte() {
    let (s, dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: box}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sleep, \"3600\"]}}\n"
        ),
    );
    wait_phase(&s, "box", "Running", Duration::from_secs(60));
    // Every byte value, more than one pipe buffer's worth.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let local = dir.path().join("payload.bin");
    std::fs::write(&local, &payload).expect("payload");
    ok(
        &s,
        &["cp", &local.display().to_string(), "box:/tmp/payload.bin"],
    );
    ok(
        &s,
        &[
            "exec",
            "box",
            "--",
            "sh",
            "-c",
            "mkdir -p /out/sub && cp /tmp/payload.bin /out/sub/copy.bin && echo note > /out/note.txt",
        ],
    );
    let back = dir.path().join("back");
    ok(&s, &["cp", "box:/out", &back.display().to_string()]);
    assert_eq!(
        std::fs::read(back.join("sub/copy.bin")).expect("copied out"),
        payload
    );
    assert_eq!(
        std::fs::read_to_string(back.join("note.txt")).expect("note"),
        "note\n"
    );
}

#[test]
fn kubectl_attach_sees_what_a_running_container_writes() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: talker}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sh, -c, 'i=0; while true; do i=$((i+1)); echo tick-$i; echo tock-$i >&2; sleep 0.2; done']}}\n"
        ),
    );
    wait_phase(&s, "talker", "Running", Duration::from_secs(60));
    let mut attached = Command::new(tug_testkit::server::kubectl_path())
        .env("KUBECONFIG", &s.kubeconfig)
        .args(["attach", "talker"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl attach");
    std::thread::sleep(Duration::from_secs(3));
    let _ = attached.kill();
    let out = attached.wait_with_output().expect("attach output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ticks: Vec<&str> = stdout.lines().filter(|l| l.starts_with("tick-")).collect();
    assert!(ticks.len() >= 5, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("tock-"), "stderr: {stderr}");
    // Only what was written after attaching: not the container's first line.
    assert!(!ticks.contains(&"tick-1"), "{stdout}");
}

/// kubectl on a pseudo-terminal of its own, as a user's shell would run it: what it shows is
/// collected, and the test types into it.
pub(super) struct Terminal {
    kubectl: std::process::Child,
    master: std::fs::File,
    screen: std::sync::Arc<std::sync::Mutex<String>>,
}

fn winsize(rows: u16, cols: u16) -> nix::libc::winsize {
    nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Terminal {
    pub(super) fn spawn(s: &TugServer, args: &[&str]) -> Terminal {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        let pty = nix::pty::openpty(Some(&winsize(24, 80)), None).expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        let mut cmd = Command::new(tug_testkit::server::kubectl_path());
        cmd.env("KUBECONFIG", &s.kubeconfig)
            .args(args)
            .stdin(slave.try_clone().expect("slave"))
            .stdout(slave.try_clone().expect("slave"))
            .stderr(slave);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::libc::setsid();
                nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let kubectl = cmd.spawn().expect("kubectl");
        drop(cmd);
        let master = std::fs::File::from(pty.master);
        let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (mut reader, sc) = (master.try_clone().expect("master"), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut sc) = sc.lock() {
                    sc.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Terminal {
            kubectl,
            master,
            screen,
        }
    }

    pub(super) fn screen(&self) -> String {
        self.screen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn type_line(&mut self, line: &str) {
        use std::io::Write;
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .expect("type");
    }

    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.screen().contains(what) {
            assert!(
                Instant::now() < deadline,
                "never saw {what:?} on the terminal:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `line` until `answer` shows, a second apart: for what takes effect at some point
    /// (a resize passed on, a shell not yet reading).
    fn ask_until(&mut self, line: &str, answer: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.type_line(line);
            let asked = Instant::now();
            while asked.elapsed() < Duration::from_secs(1) {
                if self.screen().contains(answer) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                Instant::now() < deadline,
                "never saw {answer:?} for {line:?} on the terminal:\n{}",
                self.screen()
            );
        }
    }

    /// The terminal changes size (kubectl passes it on).
    fn resize(&self, rows: u16, cols: u16) {
        use std::os::fd::AsRawFd;
        // SAFETY: TIOCSWINSZ with a winsize we own.
        unsafe {
            nix::libc::ioctl(
                self.master.as_raw_fd(),
                nix::libc::TIOCSWINSZ,
                &winsize(rows, cols),
            )
        };
    }

    pub(super) fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.kubectl.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl did not end: {}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.kubectl.kill();
        let _ = self.kubectl.wait();
    }
}

#[test]
fn an_interactive_exec_through_a_terminal_runs_commands_and_sees_resizes() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: term}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sleep, \"3600\"]}}\n"
        ),
    );
    wait_phase(&s, "term", "Running", Duration::from_secs(60));
    let mut t = Terminal::spawn(&s, &["exec", "-it", "term", "--", "sh"]);
    t.ask_until("echo answer-$((6*7))", "answer-42");
    t.resize(33, 101);
    t.ask_until("stty size", "33 101");
    t.type_line("exit 5");
    assert_eq!(t.wait_exit().code(), Some(5));
}

#[test]
fn kubectl_debug_it_runs_a_shell_in_an_ephemeral_container_that_sees_its_target() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: sick}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: app, image: {IMAGE}, command: [tail, -f, /dev/null]}}\n"
        ),
    );
    wait_phase(&s, "sick", "Running", Duration::from_secs(60));
    let mut t = Terminal::spawn(
        &s,
        &[
            "debug",
            "-it",
            "sick",
            "--image=busybox:test",
            "--target=app",
            "-c",
            "dbg",
            "--",
            "sh",
        ],
    );
    t.wait_for("If you don't see a command prompt");
    // Typed into the debug container's own shell: it is on a terminal, and sees the target's
    // processes.
    t.type_line("[ -t 0 ] && pidof tail >/dev/null && echo target-$((40+2))");
    t.wait_for("target-42");
    t.resize(40, 120);
    t.ask_until("stty size", "40 120");
    t.type_line("exit 3");
    t.wait_exit();
    wait_until("the debug shell's exit", Duration::from_secs(30), || {
        jsonpath(
            &s,
            &["pod", "sick"],
            "{.status.ephemeralContainerStatuses[0].state.terminated.exitCode}",
        ) == "3"
    });
}

#[test]
fn kubectl_attach_i_feeds_the_containers_stdin() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    stdin: true
    command: [sh, -c, "while read line; do echo got-$line; done; echo input-ended"]
"#
        ),
    );
    wait_phase(&s, "reader", "Running", Duration::from_secs(60));
    let o = kubectl(&s, &["attach", "-i", "reader"], Some("one\ntwo\n"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("got-one") && out.contains("got-two"),
        "{out}\n{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(s.data_dir.join("server.log")).unwrap_or_default()
    );
    // kubectl's end of input closed the container's stdin: the loop ended.
    wait_phase(&s, "reader", "Succeeded", Duration::from_secs(30));
    let logs = ok(&s, &["logs", "reader"]);
    assert_eq!(logs, "got-one\ngot-two\ninput-ended\n");
}

#[test]
fn kubectl_debug_adds_an_ephemeral_container_that_shares_its_targets_processes() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: patient}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: app, image: {IMAGE}, command: [tail, -f, /dev/null]}}\n"
        ),
    );
    wait_phase(&s, "patient", "Running", Duration::from_secs(60));
    ok(
        &s,
        &[
            "debug",
            "patient",
            "--image=busybox:test",
            "--target=app",
            "-c",
            "dbg",
            "--",
            "sh",
            "-c",
            "pidof tail >/dev/null && echo sees-the-target",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !kubectl(&s, &["logs", "patient", "-c", "dbg"], None)
        .stdout
        .starts_with(b"sees-the-target")
    {
        assert!(
            Instant::now() < deadline,
            "no output from the debug container: {}\n{}\n{}",
            jsonpath(&s, &["pod", "patient"], "{.spec.ephemeralContainers}"),
            jsonpath(&s, &["pod", "patient"], "{.status}"),
            ok(&s, &["get", "events"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_until(
        "the debug container's status",
        Duration::from_secs(30),
        || {
            jsonpath(
                &s,
                &["pod", "patient"],
                "{.status.ephemeralContainerStatuses[0].name} {.status.ephemeralContainerStatuses[0].state.terminated.exitCode}",
            ) == "dbg 0"
        },
    );
    // Ephemeral containers are added once, never changed: the name is taken now.
    let o = kubectl(
        &s,
        &[
            "debug",
            "patient",
            "--image=busybox:test",
            "-c",
            "dbg",
            "--",
            "true",
        ],
        None,
    );
    assert!(!o.status.success(), "a second dbg was accepted");
    // It ran once and stays finished; the app was left alone.
    assert_eq!(
        jsonpath(
            &s,
            &["pod", "patient"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
}

/// `kubectl port-forward` running in the background, once it listens.
pub(super) struct PortForward {
    child: std::process::Child,
    pub(super) port: u16,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl PortForward {
    pub(super) fn start(s: &TugServer, target: &str, remote: u16) -> PortForward {
        use std::io::BufRead;
        let port = tug_testkit::server::free_port();
        let mut child = Command::new(tug_testkit::server::kubectl_path())
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .args(["port-forward", "--address", "127.0.0.1", target])
            .arg(format!("{port}:{remote}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl port-forward");
        let (tx, stderr) = std::sync::mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let out = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(out).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(
            first.starts_with(&format!("Forwarding from 127.0.0.1:{port} -> {remote}")),
            "kubectl port-forward said {first:?}; stderr: {:?}",
            stderr.try_iter().collect::<Vec<_>>()
        );
        // Keep reading stdout so that kubectl never blocks on it.
        std::thread::spawn(move || lines.for_each(drop));
        PortForward {
            child,
            port,
            stderr,
        }
    }

    /// An HTTP/1.0 GET through the forwarded port: the whole response.
    fn get(&self, path: &str) -> std::io::Result<Vec<u8>> {
        http_get(self.port, path)
    }
}

/// An HTTP/1.0 GET to a loopback port: the whole response.
pub(super) fn http_get(port: u16, path: &str) -> std::io::Result<Vec<u8>> {
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port))?;
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        write!(c, "GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n")?;
        let mut out = Vec::new();
        c.read_to_end(&mut out)?;
        Ok(out)
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of an HTTP response.
pub(super) fn body(response: &[u8]) -> &[u8] {
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    &response[at + 4..]
}

#[test]
fn kubectl_port_forward_reaches_an_httpd_in_the_pod_in_sequence_at_once_and_idle_streams_close() {
    let (s, _dir, _) = cluster_with(&["--streaming-connection-idle-timeout", "3s"]);
    apply(
        &s,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {IMAGE}
    command: [sh, -c, "mkdir -p /www && echo hello from web > /www/index.html && head -c 2000000 /dev/urandom > /www/big && exec httpd -f -p 8080 -h /www"]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"#
        ),
    );
    wait_phase(&s, "web", "Running", Duration::from_secs(60));
    let ready = Instant::now() + Duration::from_secs(30);
    while jsonpath(&s, &["pod", "web"], "{.status.containerStatuses[0].ready}") != "true" {
        assert!(
            Instant::now() < ready,
            "web never became ready: {}",
            ok(&s, &["describe", "pod", "web"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pf = PortForward::start(&s, "pod/web", 8080);
    for i in 0..100 {
        let r = pf.get("/").unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(body(&r), b"hello from web\n", "request {i}");
    }
    let port = pf.port;
    let at_once: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || http_get(port, "/").map(|r| body(&r).to_vec())))
        .collect();
    for t in at_once {
        assert_eq!(
            t.join().expect("thread").expect("request"),
            b"hello from web\n"
        );
    }
    // Two megabytes come through byte for byte.
    let big = pf.get("/big").expect("a big download");
    let there = kubectl(&s, &["exec", "web", "--", "cat", "/www/big"], None).stdout;
    assert_eq!(body(&big).len(), 2_000_000);
    assert!(
        body(&big) == there.as_slice(),
        "the download differs from the file"
    );

    // The Python client forwards over the WebSocket channel protocol instead.
    let o = tug_testkit::server::run_python(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/portforward.py"),
        &s.kubeconfig,
        &["web", "8080"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from web\n");

    // kubectl killed mid-request: the node closes the pod-side connection too.
    let mut doomed = PortForward::start(&s, "pod/web", 8080);
    let mut hanging = std::net::TcpStream::connect(("127.0.0.1", doomed.port)).expect("connect");
    std::io::Write::write_all(&mut hanging, b"GET / HTTP/1.0\r\n").expect("half a request");
    let established = || {
        let o = kubectl(&s, &["exec", "web", "--", "netstat", "-tn"], None);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains(":8080") && l.contains("ESTABLISHED"))
            .count()
    };
    // Both of its ends are in the pod (it comes in over the pod's loopback).
    wait_until(
        "the pod sees the forwarded connection",
        Duration::from_secs(20),
        || established() == 2,
    );
    let _ = doomed.child.kill();
    let _ = doomed.child.wait();
    wait_until("the node closes it", Duration::from_secs(20), || {
        established() == 0
    });
    drop(hanging);

    // Idle for longer than --streaming-connection-idle-timeout: the node closes the
    // connection and kubectl reports it lost.
    let mut pf = pf;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = pf.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "an idle port-forward was never closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let said: Vec<String> = pf.stderr.try_iter().collect();
    assert!(
        said.iter().any(|l| l.contains("lost connection to pod")),
        "{said:?}"
    );

    // An exec that passes no data for as long ends the same way, and takes its command along.
    let started = Instant::now();
    let o = kubectl(&s, &["exec", "web", "--", "sleep", "30"], None);
    assert!(!o.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the idle exec was not ended"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("streaming-connection-idle-timeout"), "{err}");
    let ps = ok(&s, &["exec", "web", "--", "ps"]);
    assert!(!ps.contains("sleep 30"), "{ps}");

    // A port nothing listens on: kubectl hears why, and the client's connection just closes.
    let closed = PortForward::start(&s, "web", 9999);
    let r = closed.get("/").unwrap_or_default();
    assert!(r.is_empty(), "{}", String::from_utf8_lossy(&r));
    let mut said = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !said.contains("error forwarding port 9999") && Instant::now() < deadline {
        if let Ok(line) = closed.stderr.recv_timeout(Duration::from_millis(200)) {
            said.push_str(&line);
        }
    }
    assert!(said.contains("error forwarding port 9999"), "{said}");
}

#[test]
fn the_python_clients_interactive_exec_carries_stdin_and_both_outputs() {
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: pyexec}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sleep, \"3600\"]}}\n"
        ),
    );
    wait_phase(&s, "pyexec", "Running", Duration::from_secs(60));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/exec.py");
    let out = tug_testkit::server::run_python(&script, &s.kubeconfig, &["pyexec"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python exec: ok"));
}
