//! Test images built on the spot from the machine's static busybox (Debian's
//! `busybox-static`): an OCI layout in a tar, as `tug image import` and registries take it.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/bin/busybox";

fn digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn header(path: &str, size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).expect("tar path");
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(kind);
    h
}

/// The uncompressed layer: busybox, a symlink per applet in /bin, /etc/passwd and /etc/group
/// (root and nobody), /tmp.
pub fn busybox_layer() -> Vec<u8> {
    let binary = std::fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("{BUSYBOX}: {e}; install Debian's busybox-static (scripts/test.sh does)")
    });
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    let mut b = tar::Builder::new(Vec::new());
    for dir in ["bin/", "etc/", "tmp/", "root/", "home/", "var/", "var/www/"] {
        let mode = if dir == "tmp/" { 0o1777 } else { 0o755 };
        let mut h = header(dir, 0, mode, tar::EntryType::Directory);
        h.set_cksum();
        b.append(&h, &[][..]).expect("tar dir");
    }
    let mut h = header(
        "bin/busybox",
        binary.len() as u64,
        0o755,
        tar::EntryType::Regular,
    );
    h.set_cksum();
    b.append(&h, &binary[..]).expect("tar busybox");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        let mut h = header(&format!("bin/{applet}"), 0, 0o777, tar::EntryType::Symlink);
        h.set_link_name("busybox").expect("link");
        h.set_cksum();
        b.append(&h, &[][..]).expect("tar link");
    }
    for (path, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        let mut h = header(path, text.len() as u64, 0o644, tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, text.as_bytes()).expect("tar file");
    }
    b.into_inner().expect("tar")
}

/// An image's blobs.
pub struct Built {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    /// The gzip-compressed layer.
    pub layer: Vec<u8>,
}

impl Built {
    /// The manifest's digest.
    pub fn digest(&self) -> String {
        digest(&self.manifest)
    }

    /// `(digest, bytes)` of the config and the layer.
    pub fn blobs(&self) -> [(String, &[u8]); 2] {
        [
            (digest(&self.config), &self.config),
            (digest(&self.layer), &self.layer),
        ]
    }
}

/// The busybox image with `Cmd` as its default command.
pub fn busybox(cmd: &[&str]) -> Built {
    let layer = busybox_layer();
    let diff_id = digest(&layer);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &layer).expect("gzip");
    let layer_gz = gz.finish().expect("gzip");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .expect("config");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(&layer_gz), "size": layer_gz.len()}],
    }))
    .expect("manifest");
    Built {
        config,
        manifest,
        layer: layer_gz,
    }
}

/// Writes an OCI layout tar holding one image named `name` (a full reference such as
/// `docker.io/library/busybox:test`) to `out`, with `Cmd` as its default command. Returns
/// the manifest's digest.
pub fn write_oci_archive(out: &Path, name: &str, cmd: &[&str]) -> String {
    let image = busybox(cmd);
    let manifest_digest = image.digest();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": image.manifest.len(),
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest")}}],
    }))
    .expect("index");
    let mut b = tar::Builder::new(std::fs::File::create(out).expect("create the archive"));
    let mut add = |path: String, bytes: &[u8]| {
        let mut h = header(&path, bytes.len() as u64, 0o644, tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, bytes).expect("tar");
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), &index);
    for blob in [&image.config, &image.manifest, &image.layer] {
        let d = digest(blob);
        add(
            format!("blobs/sha256/{}", d.trim_start_matches("sha256:")),
            blob,
        );
    }
    b.finish().expect("tar");
    manifest_digest
}

/// Builds the busybox test image archive in `dir` and returns its path.
pub fn busybox_archive(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join("busybox-oci.tar");
    write_oci_archive(&out, name, &["sh"]);
    out
}
