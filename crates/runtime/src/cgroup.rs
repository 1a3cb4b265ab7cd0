//! Container cgroups on cgroup v1 (a hierarchy per controller) and on cgroup v2 (one unified
//! hierarchy): limits from a container's resources, joining, OOM-kill counts and usage.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The limits a container runs under, from its requests and limits.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// cpu.shares (v1) from the cpu request: 1024 per core, at least 2.
    pub cpu_shares: u64,
    /// CFS quota per period in µs from the cpu limit; none without one.
    pub cpu_quota_us: Option<u64>,
    /// The CFS period in µs.
    pub cpu_period_us: u64,
    /// The memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// The most processes and threads.
    pub pids: Option<u64>,
}

/// Controllers tugboat sets up on cgroup v1.
const V1_CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];

/// The cgroup layout of this machine.
#[derive(Clone, Debug)]
pub enum Cgroups {
    /// cgroup v1: each controller's mount point.
    V1(Vec<(String, PathBuf)>),
    /// cgroup v2: the unified hierarchy's mount point.
    V2(PathBuf),
}

impl Cgroups {
    /// Finds the cgroup hierarchies from /proc/self/mountinfo.
    pub fn detect() -> anyhow::Result<Cgroups> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in info.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split_whitespace().nth(4).unwrap_or_default();
            let mut r = right.split_whitespace();
            let fstype = r.next().unwrap_or_default();
            let super_opts = r.nth(1).unwrap_or_default();
            match fstype {
                "cgroup2" => v2 = Some(PathBuf::from(mount_point)),
                "cgroup" => {
                    for c in super_opts.split(',') {
                        if V1_CONTROLLERS.contains(&c) {
                            v1.push((c.to_string(), PathBuf::from(mount_point)));
                        }
                    }
                }
                _ => {}
            }
        }
        // A v2 mount holding controllers while v1 holds none is the unified layout.
        if let Some(root) = v2
            && (v1.is_empty()
                || std::fs::read_to_string(root.join("cgroup.controllers"))
                    .is_ok_and(|c| c.contains("memory")))
        {
            return Ok(Cgroups::V2(root));
        }
        if v1.iter().any(|(c, _)| c == "memory") {
            return Ok(Cgroups::V1(v1));
        }
        anyhow::bail!("no usable cgroup hierarchy is mounted (looked for memory on v1 and v2)")
    }

    /// The directories of the cgroup `rel` (e.g. `tugboat/pod<uid>/<container>`).
    fn dirs(&self, rel: &str) -> Vec<(String, PathBuf)> {
        match self {
            Cgroups::V1(ctrls) => ctrls
                .iter()
                .map(|(c, root)| (c.clone(), root.join(rel)))
                .collect(),
            Cgroups::V2(root) => vec![("unified".into(), root.join(rel))],
        }
    }

    fn dir(&self, controller: &str, rel: &str) -> Option<PathBuf> {
        match self {
            Cgroups::V1(ctrls) => ctrls
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, root)| root.join(rel)),
            Cgroups::V2(root) => Some(root.join(rel)),
        }
    }

    /// Creates the cgroup and writes its limits.
    pub fn create(&self, rel: &str, limits: &Limits) -> anyhow::Result<()> {
        if let Cgroups::V2(root) = self {
            // Each ancestor must hand the controllers down.
            let mut dir = root.clone();
            for part in Path::new(rel).components() {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory +pids");
                dir = dir.join(part);
                create_dir(&dir)?;
            }
        }
        for (_, dir) in self.dirs(rel) {
            create_dir(&dir)?;
        }
        match self {
            Cgroups::V1(_) => {
                if let Some(d) = self.dir("cpu", rel) {
                    write(&d, "cpu.shares", limits.cpu_shares.max(2))?;
                    write(&d, "cpu.cfs_period_us", limits.cpu_period_us.max(1000))?;
                    if let Some(q) = limits.cpu_quota_us {
                        write(&d, "cpu.cfs_quota_us", q.max(1000))?;
                    }
                }
                if let (Some(d), Some(m)) = (self.dir("memory", rel), limits.memory_bytes) {
                    write(&d, "memory.limit_in_bytes", m)?;
                    // No swap beyond the limit, where the kernel accounts swap.
                    let _ = std::fs::write(d.join("memory.memsw.limit_in_bytes"), m.to_string());
                }
                if let (Some(d), Some(p)) = (self.dir("pids", rel), limits.pids) {
                    write(&d, "pids.max", p)?;
                }
            }
            Cgroups::V2(root) => {
                let d = root.join(rel);
                write(&d, "cpu.weight", shares_to_weight(limits.cpu_shares))?;
                let quota = limits
                    .cpu_quota_us
                    .map_or("max".to_string(), |q| q.max(1000).to_string());
                write(
                    &d,
                    "cpu.max",
                    format!("{quota} {}", limits.cpu_period_us.max(1000)),
                )?;
                if let Some(m) = limits.memory_bytes {
                    write(&d, "memory.max", m)?;
                    let _ = std::fs::write(d.join("memory.swap.max"), "0");
                }
                if let Some(p) = limits.pids {
                    write(&d, "pids.max", p)?;
                }
            }
        }
        Ok(())
    }

    /// Moves the calling process into the cgroup.
    pub fn join_self(&self, rel: &str) -> anyhow::Result<()> {
        for (_, dir) in self.dirs(rel) {
            std::fs::write(dir.join("cgroup.procs"), "0")
                .with_context(|| format!("joining {}", dir.display()))?;
        }
        Ok(())
    }

    /// How many times the kernel's OOM killer killed a process in the cgroup.
    pub fn oom_kills(&self, rel: &str) -> u64 {
        let (file, key) = match self {
            Cgroups::V1(_) => ("memory.oom_control", "oom_kill"),
            Cgroups::V2(_) => ("memory.events", "oom_kill"),
        };
        self.dir("memory", rel)
            .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
            .and_then(|s| {
                s.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok())?
                })
            })
            .unwrap_or(0)
    }

    /// Memory in use (bytes, less inactive file cache: the working set) and CPU used (ns).
    pub fn usage(&self, rel: &str) -> Usage {
        let read = |ctrl: &str, file: &str| {
            self.dir(ctrl, rel)
                .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
        };
        let stat_value = |s: &str, key: &str| {
            s.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse::<u64>().ok())?
            })
        };
        match self {
            Cgroups::V1(_) => {
                let usage = read("memory", "memory.usage_in_bytes")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let inactive = read("memory", "memory.stat")
                    .and_then(|s| stat_value(&s, "total_inactive_file"))
                    .unwrap_or(0);
                Usage {
                    memory_working_set: usage.saturating_sub(inactive),
                    cpu_ns: read("cpuacct", "cpuacct.usage")
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0),
                }
            }
            Cgroups::V2(_) => {
                let usage = read("memory", "memory.current")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let inactive = read("memory", "memory.stat")
                    .and_then(|s| stat_value(&s, "inactive_file"))
                    .unwrap_or(0);
                Usage {
                    memory_working_set: usage.saturating_sub(inactive),
                    cpu_ns: read("cpu", "cpu.stat")
                        .and_then(|s| stat_value(&s, "usage_usec"))
                        .map_or(0, |us| us * 1000),
                }
            }
        }
    }

    /// The pids in the cgroup.
    pub fn pids(&self, rel: &str) -> Vec<i32> {
        self.dir("memory", rel)
            .or_else(|| self.dir("pids", rel))
            .and_then(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Removes the cgroup (its processes must be gone), and its parent when left empty.
    pub fn remove(&self, rel: &str) {
        for (_, dir) in self.dirs(rel) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Usage figures of a cgroup.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub memory_working_set: u64,
    pub cpu_ns: u64,
}

/// cpu.shares (2–262144) to cpu.weight (1–10000), as the OCI runtimes convert them.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
        }
    }
}

fn write(dir: &Path, file: &str, value: impl ToString) -> anyhow::Result<()> {
    std::fs::write(dir.join(file), value.to_string()).with_context(|| {
        format!(
            "writing {} to {}",
            value.to_string(),
            dir.join(file).display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::shares_to_weight;

    #[test]
    fn shares_map_onto_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
