//! Unpacking one image layer into its own directory, ready to be an overlayfs lower layer:
//! gzip, zstd or plain tar; the uncompressed digest (the diff ID) checked; OCI whiteouts turned
//! into overlayfs whiteouts.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// A reader that hashes what passes through it.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    /// Bytes read so far.
    pub len: u64,
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Reads what is left and returns `sha256:<hex>` of everything read.
    pub(crate) fn finish(mut self) -> std::io::Result<String> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok(format!("sha256:{}", hex(&self.hasher.finalize())))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The uncompressed stream of a layer blob, whatever its compression.
fn decompressed<'a>(blob: impl Read + 'a) -> anyhow::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(1 << 16, blob);
    let head = reader.fill_buf().context("reading the layer")?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(reader)
                .map_err(|e| anyhow::anyhow!("reading a zstd layer: {e}"))?,
        )
    } else {
        Box::new(reader)
    })
}

/// Unpacks a layer blob into `dest` (created) and returns its diff ID (`sha256:` of the
/// uncompressed tar).
pub fn unpack(blob: impl Read, dest: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut hashing = Hashing::new(decompressed(blob)?);
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        for entry in archive.entries().context("reading the layer's tar")? {
            let mut entry = entry.context("reading the layer's tar")?;
            let path = entry.path().context("a layer entry's path")?.into_owned();
            if path.components().any(|c| matches!(c, Component::ParentDir)) {
                bail!("layer entry {} leaves the layer", path.display());
            }
            let Some(file) = path.file_name().map(|f| f.as_bytes().to_vec()) else {
                entry.unpack_in(dest)?;
                continue;
            };
            let parent = dest.join(path.parent().unwrap_or(Path::new("")));
            if file == b".wh..wh..opq" {
                std::fs::create_dir_all(&parent)?;
                set_xattr(&parent, "trusted.overlay.opaque", b"y")?;
            } else if let Some(hidden) = file.strip_prefix(b".wh.") {
                std::fs::create_dir_all(&parent)?;
                let target = parent.join(std::ffi::OsStr::from_bytes(hidden));
                let _ = std::fs::remove_file(&target);
                let _ = std::fs::remove_dir_all(&target);
                nix::sys::stat::mknod(
                    &target,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::empty(),
                    nix::sys::stat::makedev(0, 0),
                )
                .with_context(|| format!("whiteout {}", target.display()))?;
            } else {
                entry
                    .unpack_in(dest)
                    .with_context(|| format!("unpacking {}", path.display()))?;
            }
        }
    }
    Ok(hashing.finish()?)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> anyhow::Result<()> {
    let p = CString::new(path.as_os_str().as_bytes())?;
    let n = CString::new(name)?;
    // SAFETY: both strings are NUL-terminated and live across the call; value is a valid
    // buffer of value.len() bytes.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setting {name} on {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, name, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn a_gzip_layer_unpacks_and_its_diff_id_is_the_plain_tar_digest() {
        let tar = layer(&[("etc/motd", b"hi\n")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let dir = tempfile::tempdir().expect("tmp");
        let diff_id = unpack(&gz[..], dir.path())
            .map_err(|e| format!("{e:#}"))
            .expect("unpack");
        assert_eq!(diff_id, format!("sha256:{}", hex(&Sha256::digest(&tar))));
        assert_eq!(
            std::fs::read(dir.path().join("etc/motd")).expect("motd"),
            b"hi\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("etc/motd"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn a_zstd_layer_unpacks() {
        let tar = layer(&[("bin/tool", b"zstd-content")]);
        let zst = ruzstd::encoding::compress_to_vec(
            &tar[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert!(zst.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
        let dir = tempfile::tempdir().expect("tmp");
        let diff_id = unpack(&zst[..], dir.path())
            .map_err(|e| format!("{e:#}"))
            .expect("unpack");
        assert_eq!(diff_id, format!("sha256:{}", hex(&Sha256::digest(&tar))));
        assert_eq!(
            std::fs::read(dir.path().join("bin/tool")).expect("file"),
            b"zstd-content"
        );
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let tar = layer(&[("etc/.wh.passwd", b""), ("etc/motd", b"x")]);
        let dir = tempfile::tempdir().expect("tmp");
        unpack(&tar[..], dir.path()).expect("unpack");
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::symlink_metadata(dir.path().join("etc/passwd")).expect("whiteout");
        assert!(meta.file_type().is_char_device());
        assert!(!dir.path().join("etc/.wh.passwd").exists());
    }

    #[test]
    fn a_truncated_gzip_layer_is_an_error() {
        let tar = layer(&[("a", &[7u8; 4096])]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let dir = tempfile::tempdir().expect("tmp");
        assert!(unpack(&gz[..gz.len() / 2], dir.path()).is_err());
    }
}
