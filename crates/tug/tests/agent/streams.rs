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

#[test]
fn an_interactive_exec_through_a_terminal_runs_commands_and_sees_resizes() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let (s, _dir) = cluster();
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: term}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {IMAGE}, command: [sleep, \"3600\"]}}\n"
        ),
    );
    wait_phase(&s, "term", "Running", Duration::from_secs(60));
    let size = |rows, cols| nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // kubectl gets a terminal of its own, as a user's shell would give it.
    let pty = nix::pty::openpty(Some(&size(24, 80)), None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let mut cmd = Command::new(tug_testkit::server::kubectl_path());
    cmd.env("KUBECONFIG", &s.kubeconfig)
        .args(["exec", "-it", "term", "--", "sh"])
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
    let mut kubectl = cmd.spawn().expect("kubectl exec -it");
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let (mut reader, screen) = (master.try_clone().expect("master"), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut sc) = screen.lock() {
                    sc.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    let seen = |what: &str| screen.lock().map(|s| s.contains(what)).unwrap_or(false);
    std::thread::sleep(Duration::from_secs(1));
    master.write_all(b"echo answer-$((6*7))\n").expect("type");
    wait_until("the shell to answer", Duration::from_secs(30), || {
        seen("answer-42")
    });
    // The terminal grows: kubectl passes it on, and the shell's terminal follows.
    // SAFETY: TIOCSWINSZ with a winsize we own.
    unsafe { nix::libc::ioctl(master.as_raw_fd(), nix::libc::TIOCSWINSZ, &size(33, 101)) };
    std::thread::sleep(Duration::from_secs(1));
    master.write_all(b"stty size\n").expect("type");
    wait_until("the new size inside", Duration::from_secs(30), || {
        seen("33 101")
    });
    master.write_all(b"exit 5\n").expect("type");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = kubectl.try_wait().expect("wait") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl did not end: {}",
            screen.lock().map(|s| s.clone()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(5));
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
