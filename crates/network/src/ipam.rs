//! Pod addresses from the node's podCIDR, one file per address (`<ip>` holding the pod UID),
//! so that allocations survive agent restarts and two pods never share an address.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};

pub use tug_api::cidr::Cidr;

/// The address allocator.
pub struct Allocator {
    cidr: Cidr,
    dir: PathBuf,
    lock: Mutex<()>,
}

impl Allocator {
    /// An allocator over `cidr` keeping its records in `dir`.
    pub fn new(cidr: Cidr, dir: &Path) -> anyhow::Result<Allocator> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Allocator {
            cidr,
            dir: dir.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    /// The block.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    fn records(&self) -> Vec<(Ipv4Addr, String)> {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let ip = e.file_name().to_string_lossy().parse().ok()?;
                        let uid = std::fs::read_to_string(e.path()).ok()?;
                        Some((ip, uid.trim().to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The address of `uid`, allocating the lowest free one the first time.
    pub fn allocate(&self, uid: &str) -> anyhow::Result<Ipv4Addr> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let records = self.records();
        if let Some((ip, _)) = records.iter().find(|(_, u)| u == uid) {
            return Ok(*ip);
        }
        let used: HashSet<Ipv4Addr> = records.iter().map(|(ip, _)| *ip).collect();
        let Some(ip) = self.cidr.hosts().find(|ip| !used.contains(ip)) else {
            bail!(
                "no free pod address left in {}/{}",
                self.cidr.base,
                self.cidr.prefix
            );
        };
        std::fs::write(self.dir.join(ip.to_string()), uid)?;
        Ok(ip)
    }

    /// The address of `uid`, if it has one.
    pub fn lookup(&self, uid: &str) -> Option<Ipv4Addr> {
        self.records()
            .into_iter()
            .find(|(_, u)| u == uid)
            .map(|(ip, _)| ip)
    }

    /// Frees the address of `uid`.
    pub fn release(&self, uid: &str) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        for (ip, u) in self.records() {
            if u == uid {
                let _ = std::fs::remove_file(self.dir.join(ip.to_string()));
            }
        }
    }

    /// Frees every address not held by a pod in `live`.
    pub fn retain(&self, live: &HashSet<String>) {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        for (ip, u) in self.records() {
            if !live.contains(&u) {
                let _ = std::fs::remove_file(self.dir.join(ip.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unique_stable_and_reused_after_release() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = Allocator::new("10.244.3.0/24".parse().expect("cidr"), dir.path()).expect("ipam");
        let x = a.allocate("x").expect("x");
        let y = a.allocate("y").expect("y");
        assert_eq!(x, Ipv4Addr::new(10, 244, 3, 2));
        assert_eq!(y, Ipv4Addr::new(10, 244, 3, 3));
        assert_eq!(a.allocate("x").expect("x again"), x);
        a.release("x");
        assert_eq!(a.allocate("z").expect("z"), x);
        assert_eq!(a.lookup("y"), Some(y));
    }

    #[test]
    fn a_full_block_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = Allocator::new("10.0.0.0/30".parse().expect("cidr"), dir.path()).expect("ipam");
        assert!(a.allocate("one").is_ok());
        assert!(a.allocate("two").is_err());
        assert!("10.0.0.0/31".parse::<Cidr>().is_err());
        assert_eq!(
            "10.244.1.7/24".parse::<Cidr>().expect("cidr").gateway(),
            Ipv4Addr::new(10, 244, 1, 1)
        );
    }
}
