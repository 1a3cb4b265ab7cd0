//! Node pressure, as the kubelet's eviction manager sees it: the hard eviction thresholds
//! (`--eviction-hard`, Kubernetes' defaults `memory.available<100Mi,nodefs.available<10%,
//! nodefs.inodesFree<5%,imagefs.available<15%`) against what the host has left, giving the
//! node's MemoryPressure, DiskPressure and PIDPressure conditions. (Pods are not evicted.)

use std::path::Path;

/// A threshold: an absolute quantity or a percentage of the capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    Quantity(f64),
    Percent(f64),
}

impl Threshold {
    /// Whether `available` out of `capacity` is below the threshold.
    fn crossed(self, available: f64, capacity: f64) -> bool {
        match self {
            Threshold::Quantity(q) => available < q,
            Threshold::Percent(p) => capacity > 0.0 && available < capacity * p / 100.0,
        }
    }
}

/// The hard eviction thresholds the node's conditions follow.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    pub memory_available: Option<Threshold>,
    pub nodefs_available: Option<Threshold>,
    pub nodefs_inodes_free: Option<Threshold>,
    pub imagefs_available: Option<Threshold>,
    pub pid_available: Option<Threshold>,
}

impl Default for Thresholds {
    /// Kubernetes' defaults.
    fn default() -> Self {
        Thresholds {
            memory_available: Some(Threshold::Quantity(100.0 * 1024.0 * 1024.0)),
            nodefs_available: Some(Threshold::Percent(10.0)),
            nodefs_inodes_free: Some(Threshold::Percent(5.0)),
            imagefs_available: Some(Threshold::Percent(15.0)),
            pid_available: None,
        }
    }
}

impl std::str::FromStr for Thresholds {
    type Err = String;

    /// `signal<quantity|percent%,...`, as `--eviction-hard` takes it; the signals named
    /// replace the defaults, the others keep theirs.
    fn from_str(s: &str) -> Result<Thresholds, String> {
        let mut t = Thresholds::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (signal, value) = item.split_once('<').ok_or_else(|| {
                format!("{item:?}: expected SIGNAL<VALUE, e.g. memory.available<100Mi")
            })?;
            let threshold = match value.strip_suffix('%') {
                Some(p) => Threshold::Percent(
                    p.parse()
                        .map_err(|_| format!("{item:?}: {p:?} is not a percentage"))?,
                ),
                None => Threshold::Quantity(
                    tug_api::quantity::parse(value)
                        .ok_or_else(|| format!("{item:?}: {value:?} is not a quantity"))?,
                ),
            };
            let slot = match signal {
                "memory.available" => &mut t.memory_available,
                "nodefs.available" => &mut t.nodefs_available,
                "nodefs.inodesFree" => &mut t.nodefs_inodes_free,
                "imagefs.available" => &mut t.imagefs_available,
                "pid.available" => &mut t.pid_available,
                other => {
                    return Err(format!(
                        "unknown eviction signal {other:?}: memory.available, nodefs.available, nodefs.inodesFree, imagefs.available or pid.available"
                    ));
                }
            };
            *slot = Some(threshold);
        }
        Ok(t)
    }
}

/// What the host has, and has left.
#[derive(Clone, Copy, Debug, Default)]
pub struct Signals {
    pub memory_available: f64,
    pub memory_capacity: f64,
    pub fs_available: f64,
    pub fs_capacity: f64,
    pub inodes_free: f64,
    pub inodes: f64,
    pub pids_available: f64,
    pub pid_max: f64,
}

fn meminfo(field: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let kb: f64 = l
            .strip_prefix(field)?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024.0)
    })
}

impl Signals {
    /// Reads the host: MemAvailable, the filesystem holding `dir` (where images and pods
    /// live), and threads against `kernel.pid_max`.
    pub fn of_host(dir: &Path) -> Signals {
        let mut s = Signals {
            memory_available: meminfo("MemAvailable:").unwrap_or(0.0),
            memory_capacity: meminfo("MemTotal:").unwrap_or(0.0),
            ..Default::default()
        };
        if let Ok(fs) = nix::sys::statvfs::statvfs(dir) {
            let block = fs.fragment_size() as f64;
            s.fs_available = fs.blocks_available() as f64 * block;
            s.fs_capacity = fs.blocks() as f64 * block;
            s.inodes_free = fs.files_free() as f64;
            s.inodes = fs.files() as f64;
        }
        let pid_max: f64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0.0);
        // /proc/loadavg's fourth field is running/total scheduling entities (threads).
        let threads: f64 = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok())
            .unwrap_or(0.0);
        s.pid_max = pid_max;
        s.pids_available = (pid_max - threads).max(0.0);
        s
    }
}

/// Which pressures the node is under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// The pressures `signals` put the node under, by `thresholds`.
pub fn pressure(thresholds: &Thresholds, s: &Signals) -> Pressure {
    let crossed =
        |t: Option<Threshold>, avail: f64, cap: f64| t.is_some_and(|t| t.crossed(avail, cap));
    Pressure {
        memory: crossed(
            thresholds.memory_available,
            s.memory_available,
            s.memory_capacity,
        ),
        // Images live on the node's filesystem here: imagefs is nodefs.
        disk: crossed(thresholds.nodefs_available, s.fs_available, s.fs_capacity)
            || crossed(thresholds.imagefs_available, s.fs_available, s.fs_capacity)
            || crossed(thresholds.nodefs_inodes_free, s.inodes_free, s.inodes),
        pid: crossed(thresholds.pid_available, s.pids_available, s.pid_max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_replace_the_defaults_they_name() {
        let t: Thresholds = "memory.available<1Gi, pid.available<10%".parse().unwrap();
        assert_eq!(
            t.memory_available,
            Some(Threshold::Quantity(1024.0 * 1024.0 * 1024.0))
        );
        assert_eq!(t.pid_available, Some(Threshold::Percent(10.0)));
        assert_eq!(t.nodefs_available, Some(Threshold::Percent(10.0)));
        assert!("memory.free<1Gi".parse::<Thresholds>().is_err());
        assert!("memory.available=1Gi".parse::<Thresholds>().is_err());
        assert!("nodefs.available<ten%".parse::<Thresholds>().is_err());
    }

    #[test]
    fn pressure_follows_the_thresholds() {
        let s = Signals {
            memory_available: 50.0 * 1024.0 * 1024.0,
            memory_capacity: 1e10,
            fs_available: 200.0,
            fs_capacity: 1000.0,
            inodes_free: 100.0,
            inodes: 1000.0,
            pids_available: 1000.0,
            pid_max: 4000.0,
        };
        let p = pressure(&Thresholds::default(), &s);
        assert_eq!(
            p,
            Pressure {
                memory: true,
                disk: false,
                pid: false
            }
        );
        let strict: Thresholds = "nodefs.available<25%,pid.available<30%".parse().unwrap();
        let p = pressure(&strict, &s);
        assert!(p.disk && p.pid);
    }
}
