//! A container's root filesystem: the image's layers in an overlay, /proc, /sys and /dev,
//! and the pod's volumes.

use super::*;

pub(super) fn mount_overlay(spec: &ContainerSpec, dir: &Path, rootfs: &Path) -> anyhow::Result<()> {
    let upper = dir.join("upper");
    let work = dir.join("work");
    for d in [&upper, &work, &rootfs.to_path_buf()] {
        std::fs::create_dir_all(d)?;
    }
    let empty = dir.join("empty");
    let mut lowers: Vec<PathBuf> = spec.layers.iter().rev().cloned().collect();
    if lowers.is_empty() {
        std::fs::create_dir_all(&empty)?;
        lowers.push(empty);
    }
    // Layer paths are long; relative to their common directory they fit in a page.
    let common = lowers[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let relative = lowers.iter().all(|l| l.parent() == Some(common.as_path()));
    let lower = lowers
        .iter()
        .map(|l| {
            if relative {
                l.file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .unwrap_or_default()
            } else {
                l.display().to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    if relative {
        nix::unistd::chdir(&common)?;
    }
    mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .context("mounting the overlay root filesystem")?;
    Ok(())
}

/// /proc, /sys, /dev and its device nodes.
pub(super) fn mount_system(rootfs: &Path) -> anyhow::Result<()> {
    let at = |p: &str| rootfs.join(p.trim_start_matches('/'));
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    std::fs::create_dir_all(at("/proc"))?;
    mount(
        Some("proc"),
        &at("/proc"),
        Some("proc"),
        nosuid,
        None::<&str>,
    )
    .context("mounting /proc")?;
    std::fs::create_dir_all(at("/sys"))?;
    if mount(
        Some("sysfs"),
        &at("/sys"),
        Some("sysfs"),
        nosuid | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .is_err()
    {
        // A container in the node's network namespace may not mount a fresh sysfs.
        mount(
            Some("/sys"),
            &at("/sys"),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .context("binding /sys")?;
        let _ = mount(
            None::<&str>,
            &at("/sys"),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        );
    }
    std::fs::create_dir_all(at("/dev"))?;
    mount(
        Some("tmpfs"),
        &at("/dev"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .context("mounting /dev")?;
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = at(&format!("/dev/{dev}"));
        std::fs::write(&target, b"")?;
        mount(
            Some(format!("/dev/{dev}").as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("binding /dev/{dev}"))?;
    }
    std::fs::create_dir_all(at("/dev/pts"))?;
    mount(
        Some("devpts"),
        &at("/dev/pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .context("mounting /dev/pts")?;
    std::fs::create_dir_all(at("/dev/shm"))?;
    mount(
        Some("shm"),
        &at("/dev/shm"),
        Some("tmpfs"),
        nosuid,
        Some("mode=1777,size=65536k"),
    )
    .context("mounting /dev/shm")?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(target, at(&format!("/dev/{link}")))?;
    }
    Ok(())
}

pub(super) fn mount_one(rootfs: &Path, m: &crate::spec::Mount) -> anyhow::Result<()> {
    let target = rootfs.join(m.destination.trim_start_matches('/'));
    if m.source.as_os_str().is_empty() {
        std::fs::create_dir_all(&target)?;
        let size = m
            .tmpfs_size
            .map(|s| format!(",size={s}"))
            .unwrap_or_default();
        mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("mode=1777{size}").as_str()),
        )
        .with_context(|| format!("mounting a tmpfs at {}", m.destination))?;
        return Ok(());
    }
    if m.source.is_dir() {
        std::fs::create_dir_all(&target)?;
    } else if !target.exists() {
        if let Some(p) = target.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::write(&target, b"")?;
    }
    mount(
        Some(&m.source),
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("mounting {} at {}", m.source.display(), m.destination))?;
    if m.read_only {
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("making {} read-only", m.destination))?;
    }
    Ok(())
}
