//! The zygote of a warm sandbox (`hutch sandbox serve`): the init of a container that is built
//! once (user namespace, rootfs mounts, pivot_root, masked paths, the compiled seccomp filter)
//! and then, instead of running a program, starts runs on request.
//!
//! Each run is a fresh process tree with the isolation of a one-shot run: the zygote clones it
//! into new pid, mount, UTS, IPC and cgroup namespaces; the run's first process joins its slot's
//! cgroup (through descriptors the supervisor opened on the host, writing "0": see
//! `Cgroup::join_plan`) and network namespace, mounts its own /proc, /dev/pts, /dev/shm,
//! /dev/mqueue and tmpfs (a clean /tmp), applies the masked paths, rlimits, user, capabilities,
//! no_new_privs, Landlock and seccomp, and executes the program as pid 1 of its namespace.
//! When that process ends the kernel kills whatever else the run left.
//!
//! What is shared between runs, and why that is safe: the user namespace (nothing of it
//! outlives a run's processes without capabilities), the read-only rootfs, /dev (read-only,
//! device nodes only), sysfs (read-only), and a network namespace per slot (reused by the runs
//! of one slot, one at a time; a process without CAP_NET_ADMIN leaves nothing in it once dead).
//!
//! The zygote is pid 1 of the container's pid namespace: if it dies, every run dies with it, and
//! it dies with the supervisor (parent death signal).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Process};
use serde::{Deserialize, Serialize};

use crate::channel::{ChannelError, Receiver, Sender};
use crate::config::Config;
use crate::exec;
use crate::process::{clone::clone3_pidfd, init};
use crate::seccomp::Compiled;

/// supervisor → zygote.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Start a run. Descriptors: stdin, stdout, stderr, the error pipe, then one for each of
    /// `cgroup_files`, which the run writes "0" to.
    Run { tag: u64, slot: usize, process: Box<Process>, cgroup_files: Vec<String> },
}

/// zygote → supervisor.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The run's first process exists; its pidfd rides along.
    Started { tag: u64 },
    /// It ended (the rest of its pid namespace with it).
    Exited { tag: u64, code: Option<i32>, signal: Option<i32> },
    /// No run was started.
    Failed { tag: u64, message: String },
}

/// Where a run's setup failed, written to the error pipe; EOF alone means execve worked.
pub const EXIT_SETUP_FAILED: i32 = 125;

struct Child {
    tag: u64,
    pid: Pid,
    pidfd: OwnedFd,
}

pub(crate) fn serve(
    config: &Config,
    seccomp: Option<Compiled>,
    requests: Receiver<Request>,
    replies: Sender<Reply>,
) -> ! {
    if let Err(e) = settle(config) {
        log::error!("zygote: {e}");
        exit(1)
    }
    let own_netns = config.new_namespace(LinuxNamespaceType::Network);
    let mut netns: HashMap<usize, OwnedFd> = HashMap::new();
    let mut children: Vec<Child> = Vec::new();
    loop {
        let mut fds = vec![PollFd::new(requests.as_fd(), PollFlags::POLLIN)];
        fds.extend(children.iter().map(|c| PollFd::new(c.pidfd.as_fd(), PollFlags::POLLIN)));
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => exit(1),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        // Ends first, so a slot's next run never overlaps its last one here.
        let mut i = 0;
        children.retain(|c| {
            i += 1;
            if !ready[i] {
                return true;
            }
            let (code, signal) = match waitpid(c.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => (Some(code), None),
                Ok(WaitStatus::Signaled(_, sig, _)) => (None, Some(sig as i32)),
                Ok(_) => return true,
                Err(_) => (None, None),
            };
            let _ = replies.send(&Reply::Exited { tag: c.tag, code, signal });
            false
        });
        if ready[0] {
            match requests.recv_with_fds() {
                Ok((Request::Run { tag, slot, process, cgroup_files }, fds)) => {
                    let slot_netns = if own_netns {
                        match slot_netns(&mut netns, slot, config) {
                            Ok(fd) => Some(fd),
                            Err(message) => {
                                let _ = replies.send(&Reply::Failed { tag, message });
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    let run = RunFds::new(fds, cgroup_files);
                    match run.and_then(|run| start(config, seccomp.as_ref(), &process, &run, slot_netns)) {
                        Ok((pid, pidfd)) => {
                            let _ = replies.send_with_fds(&Reply::Started { tag }, &[pidfd.as_fd()]);
                            children.push(Child { tag, pid, pidfd });
                        }
                        Err(message) => {
                            let _ = replies.send(&Reply::Failed { tag, message });
                        }
                    }
                }
                // The supervisor is gone: so are we, and every run with us (pid 1).
                Err(ChannelError::Closed) => exit(0),
                Err(e) => {
                    log::error!("zygote: {e}");
                    exit(1)
                }
            }
        }
    }
}

/// Once, after the container is built: runs' mount namespaces are copies of ours; private
/// mounts keep what a run mounts from propagating back, and /dev becomes read-only so that no
/// run leaves a file there for the next one.
fn settle(config: &Config) -> Result<(), String> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| format!("make / private: {e}"))?;
    let dev_is_tmpfs = config
        .spec
        .mounts()
        .iter()
        .flatten()
        .any(|m| m.destination() == std::path::Path::new("/dev") && m.typ().as_deref() == Some("tmpfs"));
    if dev_is_tmpfs {
        crate::rootfs::mounts::remount_bind(
            std::path::Path::new("/dev"),
            MsFlags::MS_RDONLY,
            MsFlags::empty(),
        )
        .map_err(|e| format!("make /dev read-only: {e}"))?;
    }
    Ok(())
}

/// The network namespace of a slot, made on its first run (with `lo` up if the config asks).
fn slot_netns<'a>(
    netns: &'a mut HashMap<usize, OwnedFd>,
    slot: usize,
    config: &Config,
) -> Result<BorrowedFd<'a>, String> {
    if let std::collections::hash_map::Entry::Vacant(entry) = netns.entry(slot) {
        let own = open_ns("/proc/thread-self/ns/net")?;
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("new network namespace: {e}"))?;
        let made = open_ns("/proc/thread-self/ns/net");
        let up =
            if crate::network::wants_loopback(&config.spec) { crate::network::loopback_up() } else { Ok(()) };
        nix::sched::setns(&own, CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("back to the zygote's network namespace: {e}"))?;
        up?;
        entry.insert(made?);
    }
    Ok(netns[&slot].as_fd())
}

fn open_ns(path: &str) -> Result<OwnedFd, String> {
    std::fs::File::open(path).map(OwnedFd::from).map_err(|e| format!("open {path}: {e}"))
}

/// A run's descriptors, as the supervisor sent them.
struct RunFds {
    stdio: crate::process::Stdio,
    errors: OwnedFd,
    /// The slot's join files, with their paths.
    cgroup: Vec<(String, OwnedFd)>,
}

impl RunFds {
    fn new(fds: Vec<OwnedFd>, cgroup_files: Vec<String>) -> Result<RunFds, String> {
        if fds.len() != 4 + cgroup_files.len() {
            return Err(format!("expected {} descriptors, got {}", 4 + cgroup_files.len(), fds.len()));
        }
        let mut it = fds.into_iter();
        let mut next = || it.next().expect("counted");
        let stdio = crate::process::Stdio { stdin: next(), stdout: next(), stderr: next() };
        let errors = next();
        Ok(RunFds { stdio, errors, cgroup: cgroup_files.into_iter().zip(it).collect() })
    }
}

/// Clones the run's first process; returns its pid (in our namespace) and a pidfd of it.
fn start(
    config: &Config,
    seccomp: Option<&Compiled>,
    process: &Process,
    run: &RunFds,
    netns: Option<BorrowedFd<'_>>,
) -> Result<(Pid, OwnedFd), String> {
    let mut flags = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS;
    for (typ, flag) in [
        (LinuxNamespaceType::Uts, CloneFlags::CLONE_NEWUTS),
        (LinuxNamespaceType::Ipc, CloneFlags::CLONE_NEWIPC),
    ] {
        if config.new_namespace(typ) {
            flags |= flag;
        }
    }
    let mut pidfd = None;
    // SAFETY: the zygote is single-threaded; the child runs `run` and never returns.
    let pid = unsafe { clone3_pidfd(flags.bits() as u64, None, Some(&mut pidfd)) }
        .map_err(|e| format!("clone a run: {e}"))?;
    if pid == 0 {
        let err = run_child(config, seccomp, process, run, netns);
        let _ = nix::unistd::write(&run.errors, err.as_bytes());
        exit(EXIT_SETUP_FAILED)
    }
    Ok((Pid::from_raw(pid), pidfd.expect("CLONE_PIDFD")))
}

/// The run's first process, up to execve. Returns only with the error that stopped it.
fn run_child(
    config: &Config,
    seccomp: Option<&Compiled>,
    process: &Process,
    run: &RunFds,
    netns: Option<BorrowedFd<'_>>,
) -> String {
    init::use_stdio(&run.stdio);
    let late = process.no_new_privileges() == Some(true);
    match setup(config, seccomp.filter(|_| !late), process, run, netns) {
        Ok(prog) => init::launch(config, &prog, seccomp.filter(|_| late)),
        Err(e) => e,
    }
}

fn setup(
    config: &Config,
    early_seccomp: Option<&Compiled>,
    process: &Process,
    run: &RunFds,
    netns: Option<BorrowedFd<'_>>,
) -> Result<exec::Program, String> {
    for (path, fd) in &run.cgroup {
        crate::cgroups::join_through(std::path::Path::new(path), fd.as_fd())?;
    }
    if let Some(ns) = netns {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("join the slot's network namespace: {e}"))?;
    }
    if config.new_namespace(LinuxNamespaceType::Cgroup) {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|e| format!("new cgroup namespace: {e}"))?;
    }
    init::isolate_self(true)?;
    crate::rootfs::refresh(config)?;
    init::set_names(config)?;
    init::prepare_process(process, early_seccomp, None, 0)
}

fn exit(code: i32) -> ! {
    // SAFETY: leave without running destructors shared with the supervisor's image.
    unsafe { libc::_exit(code) }
}
