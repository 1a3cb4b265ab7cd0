//! Driving a test server with the real kubectl.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::server::{TugServer, kubectl_path};

/// Runs kubectl against `s` with `stdin` on its standard input.
pub fn kubectl(s: &TugServer, args: &[&str], stdin: Option<&str>) -> Output {
    kubectl_with_config(&s.kubeconfig, args, stdin)
}

/// Runs kubectl with the kubeconfig at `kubeconfig` and `stdin` on its standard input. Its
/// home (its discovery cache) is the kubeconfig's directory, so that no test sees what
/// kubectl cached of another test's server on the same port.
pub fn kubectl_with_config(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(kubectl_path())
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env(
            "HOME",
            kubeconfig.parent().unwrap_or(Path::new("/nonexistent")),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(mut pipe) = child.stdin.take()
        && let Some(input) = stdin
    {
        pipe.write_all(input.as_bytes()).expect("kubectl stdin");
    }
    child.wait_with_output().expect("kubectl output")
}

/// Runs kubectl against `s` with nothing but the server's address, its CA and the bearer
/// `token` as credentials.
pub fn kubectl_with_token(s: &TugServer, token: &str, args: &[&str]) -> Output {
    let ca = s.data_dir.join("pki/ca.crt");
    Command::new(kubectl_path())
        .args([
            "--kubeconfig=/dev/null",
            &format!("--server={}", s.url),
            &format!("--certificate-authority={}", ca.display()),
            &format!("--token={token}"),
        ])
        .args(args)
        .output()
        .expect("kubectl runs")
}

/// What a command printed: its standard output, then its standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `kubectl get WHAT -o jsonpath=PATH` against `s`: its standard output, empty when kubectl
/// fails (an object not there yet).
pub fn jsonpath(s: &TugServer, what: &[&str], path: &str) -> String {
    jsonpath_with_config(&s.kubeconfig, what, path)
}

/// `get WHAT -o OUTPUT`.
fn get_args<'a>(what: &[&'a str], output: &'a str) -> Vec<&'a str> {
    ["get"]
        .into_iter()
        .chain(what.iter().copied())
        .chain(["-o", output])
        .collect()
}

/// `kubectl get WHAT -o jsonpath=PATH` against `s`; the test fails if kubectl does.
pub fn jsonpath_ok(s: &TugServer, what: &[&str], path: &str) -> String {
    let p = format!("jsonpath={path}");
    let args = get_args(what, &p);
    ok(s, &args)
}

/// `kubectl get WHAT -o jsonpath=PATH` with the kubeconfig at `kubeconfig`: its standard
/// output, empty when kubectl fails.
pub fn jsonpath_with_config(kubeconfig: &Path, what: &[&str], path: &str) -> String {
    let p = format!("jsonpath={path}");
    let args = get_args(what, &p);
    String::from_utf8_lossy(&kubectl_with_config(kubeconfig, &args, None).stdout).into_owned()
}

/// Runs kubectl and returns its output; the test fails if kubectl does.
pub fn ok(s: &TugServer, args: &[&str]) -> String {
    ok_with_input(s, args, None)
}

/// [`ok`] with `stdin` on kubectl's standard input.
pub fn ok_with_input(s: &TugServer, args: &[&str], stdin: Option<&str>) -> String {
    let o = kubectl(s, args, stdin);
    assert!(
        o.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `kubectl apply -f -` of `yaml`; the test fails if it does.
pub fn apply(s: &TugServer, yaml: &str) {
    let o = kubectl(s, &["apply", "-f", "-"], Some(yaml));
    assert!(
        o.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Waits up to 30 s for `check` to hold; the test fails with `what` if it never does.
pub fn eventually(what: &str, check: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(30), check);
}

/// Waits up to `limit` for `check` to hold; the test fails with `what` if it never does.
pub fn eventually_within(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
