//! clone3(2) used like fork(2), with the flags fork cannot pass.

use std::os::fd::{AsRawFd, BorrowedFd};

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// 0x200000000 (libc declares it as a 32-bit int, which it does not fit).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks with `flags` (e.g. CLONE_PARENT, namespaces), born inside the cgroup2 directory
/// `cgroup` when given. Returns 0 in the child and the child's pid in the parent.
///
/// # Safety
/// As fork: the caller must be single-threaded, or the child may only do what is safe after
/// forking a multi-threaded process.
pub unsafe fn clone3(flags: u64, cgroup: Option<BorrowedFd<'_>>) -> std::io::Result<libc::pid_t> {
    // SAFETY: passed on to the caller.
    unsafe { clone3_pidfd(flags, cgroup, None) }
}

/// As `clone3`; with `pidfd`, the parent also gets a pidfd of the child there (CLONE_PIDFD).
///
/// # Safety
/// As `clone3`.
pub unsafe fn clone3_pidfd(
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
    pidfd: Option<&mut Option<std::os::fd::OwnedFd>>,
) -> std::io::Result<libc::pid_t> {
    let mut args = CloneArgs { flags, ..Default::default() };
    let mut raw_pidfd: libc::c_int = -1;
    if pidfd.is_some() {
        args.flags |= libc::CLONE_PIDFD as u64;
        args.pidfd = &mut raw_pidfd as *mut libc::c_int as u64;
    }
    // With CLONE_PARENT the kernel gives the child the caller's own exit signal.
    if flags & libc::CLONE_PARENT as u64 == 0 {
        args.exit_signal = libc::SIGCHLD as u64;
    }
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: a fork-like clone3 (no shared memory, no new stack); the caller vouches for the
    // rest.
    let rc = unsafe {
        libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>())
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if let (Some(out), true) = (pidfd, rc > 0) {
        // SAFETY: the kernel filled in a new descriptor that nothing else owns.
        *out = Some(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw_pidfd) });
    }
    Ok(rc as libc::pid_t)
}

/// Where main and a new init run while they set up a container side by side.
///
/// The scheduler puts a new task on its parent's CPU, and wakes a task where its waker runs:
/// on these machines an idle second CPU then pulls one of them only at its next balancing,
/// often ~0.5 ms later, so main's id maps and cgroups and init's namespaces and mounts ran one
/// after the other, and main, woken by init's messages, waited behind init. So from the clone
/// until main has done its part, each keeps to its own CPUs: main to the one it cloned on,
/// init to the others. Main moves init away after the clone and init moves itself, whichever
/// runs first; init takes back the caller's whole mask itself once main is done (before it
/// joins its cgroup, whose cpuset has the last word, and long before its program runs), and
/// main when the spawn ends.
#[derive(Clone, Copy)]
pub struct Placement {
    mask: nix::sched::CpuSet,
    here: nix::sched::CpuSet,
    elsewhere: nix::sched::CpuSet,
}

impl Placement {
    /// The caller's CPU and mask, when it may run on another CPU too.
    pub fn here() -> Option<Placement> {
        use nix::sched::{sched_getaffinity, sched_getcpu, CpuSet};
        let cpu = sched_getcpu().ok()?;
        let mask = sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
        let mut elsewhere = mask;
        elsewhere.unset(cpu).ok()?;
        let mut here = CpuSet::new();
        here.set(cpu).ok()?;
        (0..CpuSet::count()).any(|c| elsewhere.is_set(c) == Ok(true)).then_some(Placement {
            mask,
            here,
            elsewhere,
        })
    }

    /// In main, after the clone: init to the other CPUs, main to its own.
    pub fn apart(&self, init: nix::unistd::Pid) {
        use nix::sched::sched_setaffinity;
        let _ = sched_setaffinity(init, &self.elsewhere);
        let _ = sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.here);
    }

    /// In init, first thing: off main's CPU.
    pub fn step_aside(&self) {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.elsewhere);
    }

    /// The caller's whole mask again, for main or init.
    pub fn rejoin(&self) {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.mask);
    }
}
