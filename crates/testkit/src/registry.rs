//! A real OCI registry for pull tests: Debian's `docker-registry` (distribution 2.8) on a free
//! loopback port with filesystem storage, optionally behind htpasswd basic auth. Images are
//! pushed with curl through the registry's HTTP API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::image::Built;

/// A running registry, killed when dropped.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    credentials: Option<(String, String)>,
    child: Child,
    _dir: TempDir,
}

impl Registry {
    /// Starts a registry; with `credentials`, it requires them (basic auth, htpasswd).
    pub fn start(credentials: Option<(&str, &str)>) -> Registry {
        let dir = TempDir::new().expect("temp dir");
        let port = crate::server::free_port();
        let mut config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}, secret: tugboat-test}}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = credentials {
            let htpasswd = dir.path().join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd (apache2-utils; scripts/test.sh installs it)");
            std::fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth: {{htpasswd: {{realm: tugboat, path: {}}}}}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write the registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry (scripts/test.sh installs it)");
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            host,
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            child,
            _dir: dir,
        }
    }

    fn curl(&self, args: &[&str], body: Option<&Path>) -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-f", "-D", "-", "-o", "/dev/null"]);
        if let Some((u, p)) = &self.credentials {
            cmd.args(["-u", &format!("{u}:{p}")]);
        }
        if let Some(b) = body {
            cmd.arg("--data-binary").arg(format!("@{}", b.display()));
        }
        let out = cmd.args(args).output().expect("curl");
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Pushes an image as `repo:tag`.
    pub fn push(&self, repo: &str, tag: &str, image: &Built) {
        let dir = TempDir::new().expect("temp dir");
        for (digest, bytes) in image.blobs() {
            let headers = self.curl(
                &[
                    "-X",
                    "POST",
                    &format!("http://{}/v2/{repo}/blobs/uploads/", self.host),
                ],
                None,
            );
            let location = headers
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("location")
                        .then(|| v.trim().to_string())
                })
                .expect("an upload location");
            let location = if location.starts_with('/') {
                format!("http://{}{location}", self.host)
            } else {
                location
            };
            let sep = if location.contains('?') { '&' } else { '?' };
            let file = dir.path().join("blob");
            std::fs::write(&file, bytes).expect("write blob");
            self.curl(
                &[
                    "-X",
                    "PUT",
                    "-H",
                    "Content-Type: application/octet-stream",
                    &format!("{location}{sep}digest={digest}"),
                ],
                Some(&file),
            );
        }
        let file = dir.path().join("manifest");
        std::fs::write(&file, &image.manifest).expect("write manifest");
        self.curl(
            &[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/vnd.oci.image.manifest.v1+json",
                &format!("http://{}/v2/{repo}/manifests/{tag}", self.host),
            ],
            Some(&file),
        );
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
