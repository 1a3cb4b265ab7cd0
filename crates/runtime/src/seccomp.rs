//! The RuntimeDefault seccomp profile: the syscalls Docker's and containerd's default profiles
//! keep from unprivileged containers (kernel modules, keyrings, namespaces, mounts, tracing,
//! clocks, reboot, ...) fail with EPERM; everything else is allowed. Built as a BPF program
//! with seccompiler (pure Rust, no libseccomp needed).

use std::collections::BTreeMap;

use anyhow::Context;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

/// The denied syscalls.
const DENIED: &[libc::c_long] = &[
    libc::SYS_acct,
    libc::SYS_add_key,
    libc::SYS_bpf,
    libc::SYS_clock_adjtime,
    libc::SYS_clock_settime,
    libc::SYS_delete_module,
    libc::SYS_finit_module,
    libc::SYS_get_mempolicy,
    libc::SYS_init_module,
    libc::SYS_ioperm,
    libc::SYS_iopl,
    libc::SYS_kcmp,
    libc::SYS_kexec_file_load,
    libc::SYS_kexec_load,
    libc::SYS_keyctl,
    libc::SYS_lookup_dcookie,
    libc::SYS_mbind,
    libc::SYS_mount,
    libc::SYS_move_pages,
    libc::SYS_name_to_handle_at,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_perf_event_open,
    libc::SYS_pivot_root,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_ptrace,
    libc::SYS_quotactl,
    libc::SYS_reboot,
    libc::SYS_request_key,
    libc::SYS_set_mempolicy,
    libc::SYS_setns,
    libc::SYS_settimeofday,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_sysfs,
    libc::SYS__sysctl,
    libc::SYS_umount2,
    libc::SYS_unshare,
    libc::SYS_uselib,
    libc::SYS_userfaultfd,
    libc::SYS_ustat,
];

/// The RuntimeDefault filter for this machine's architecture.
pub fn runtime_default() -> anyhow::Result<BpfProgram> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        DENIED.iter().map(|nr| (*nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH
            .try_into()
            .map_err(|e| anyhow::anyhow!("seccomp: {e:?}"))?,
    )
    .map_err(|e| anyhow::anyhow!("seccomp: {e}"))?;
    BpfProgram::try_from(filter).map_err(|e| anyhow::anyhow!("seccomp: {e}"))
}

/// Installs the RuntimeDefault filter on the calling thread (inherited across exec).
pub fn apply_runtime_default() -> anyhow::Result<()> {
    let program = runtime_default()?;
    seccompiler::apply_filter(&program)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("installing the RuntimeDefault seccomp profile")
}
