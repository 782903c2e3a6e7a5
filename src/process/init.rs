//! The init stage: turns a forked copy of hutch into the container's first process.
//!
//! The order, and why each step sits where it does:
//!  1. PR_SET_PDEATHSIG: if main dies during setup, init dies too, instead of lingering; and
//!     non-dumpable, so no container process can open our /proc/<pid>/exe (hutch's binary).
//!  2. setsid: the container gets its own session (and can take a controlling terminal).
//!  3. rootfs::prepare: mounts, /dev, cwd, while we still see the host's paths.
//!  4. rootfs::enter: pivot_root; from here on only the container's files are reachable.
//!  5. terminal: the pty comes from the container's own devpts; its master goes to main.
//!  6. hostname and domainname.
//!  7. sysctls, before /proc/sys becomes read-only in the next step.
//!  8. rootfs::finish: readonlyPaths, maskedPaths, then a read-only root. An init cloned
//!     directly joins its cgroup here (`LateCgroup`), which main made meanwhile, and unshares
//!     its cgroup namespace; before step 3 when a cgroup filesystem is mounted or hooks run.
//!  9. oomScoreAdj and rlimits, while we are still fully privileged.
//! 10. no_new_privs.
//! 11. user and capabilities: bounding set first (needs CAP_SETPCAP), then setgroups/setgid/
//!     setuid with PR_SET_KEEPCAPS, then the remaining sets (see `capabilities`).
//! 12. umask, cwd (after the user change, so it is checked with the user's rights).
//! 13. resolve the program in PATH now, so a missing binary fails `create`, not `start`.
//! 14. close every descriptor but stdio and --preserve-fds at exec; reset signals.
//! 15. tell main we are Ready, then wait on the start socket (unless the container starts at
//!     once, as a sandbox run does).
//! 16. after start: startContainer hooks, then Landlock (after every mount, as late as
//!     possible), then a no_new_privs seccomp filter (it could refuse the landlock calls).
//! 17. execve; if it fails, the error goes back to `start` on the same socket (to main on the
//!     channel for a container that starts at once). Steps 16-17 are `finish`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::{sethostname, setsid};
use oci_spec::runtime::LinuxNamespaceType;

use super::message::{InitMsg, MainMsg, StageFailure};
use super::spawn::Job;
use crate::channel::{Receiver, Sender};
use crate::config::Config;
use crate::seccomp::Compiled;
use crate::{capabilities, exec, hooks, rlimits, rootfs, terminal};

pub const STAGE: &str = "init";

/// What `start` sends to release init.
pub const START: &[u8] = b"start";
/// What init answers on the start connection: an error message follows this byte...
pub const START_ERROR: u8 = b'E';
/// ...or this byte carries the seccomp listener (SCM_RIGHTS). EOF alone means exec worked.
pub const START_LISTENER: u8 = b'L';

pub(crate) fn run(
    config: &Config,
    job: Job,
    tx: Sender<InitMsg>,
    from_main: Receiver<MainMsg>,
    mut cgroup: LateCgroup,
    seccomp: Option<Compiled>,
    preserve_fds: i32,
) -> ! {
    if let Job::Zygote { no_pivot, requests, replies } = job {
        // A warm sandbox: the container is built as for create, then this process serves runs.
        let built = isolate_self(true).and_then(|()| build(config, no_pivot, &tx, &from_main, &mut cgroup));
        if let Err(message) = built {
            let _ = tx.send(&InitMsg::Failed(StageFailure::new(STAGE, message)));
            exit(1)
        }
        if tx.send(&InitMsg::Ready).is_err() {
            exit(1)
        }
        drop(tx);
        crate::sandbox::zygote::serve(config, seccomp, requests, replies)
    }
    let (process, create) = match &job {
        Job::Create { no_pivot, .. } => (config.process(), Some((*no_pivot, &mut cgroup))),
        Job::Exec { process, .. } => (&**process, None),
        Job::Zygote { .. } => unreachable!("handled above"),
    };
    // With no_new_privs the filter goes in as late as possible (fewest syscalls it must allow);
    // without, it must go in while CAP_SYS_ADMIN is still held (step 11).
    let late = process.no_new_privileges() == Some(true);
    let early_seccomp = seccomp.as_ref().filter(|_| !late);
    let (prog, hook_state) =
        match steps(config, process, create, &tx, &from_main, early_seccomp, preserve_fds) {
            Ok(done) => done,
            Err(message) => {
                let _ = tx.send(&InitMsg::Failed(StageFailure::new(STAGE, message)));
                exit(1)
            }
        };
    if tx.send(&InitMsg::Ready).is_err() {
        exit(1)
    }
    let late_seccomp = seccomp.as_ref().filter(|_| late);
    let Job::Create { start_listener: Some(start_listener), .. } = job else {
        // exec, or a container that starts at once: main learns of success by the channel
        // closing on exec, of a failure by a message on it.
        let mut listener_to_main = |l: OwnedFd| {
            tx.send_with_fds(&InitMsg::SeccompListener, &[l.as_fd()])
                .map_err(|e| format!("linux.seccomp: hand over the listener: {e}"))
        };
        let (code, e) = finish(config, &prog, hook_state.as_deref(), late_seccomp, &mut listener_to_main);
        let _ = tx.send(&InitMsg::Failed(StageFailure::new(STAGE, e)));
        exit(code)
    };
    drop(tx);
    let Ok(mut conn) = wait_for_start(start_listener) else { exit(1) };
    // `start` forwards the listener to the agent at listenerPath.
    let mut listener_to_start = |l: OwnedFd| {
        send_fd(&conn, START_LISTENER, l.as_fd())
            .map_err(|e| format!("linux.seccomp: hand over the listener: {e}"))
    };
    let (code, e) = finish(config, &prog, hook_state.as_deref(), late_seccomp, &mut listener_to_start);
    let _ = conn.write_all(format!("{}{e}", START_ERROR as char).as_bytes());
    exit(code)
}

/// Steps 16 and 17: startContainer hooks (given their state), Landlock, a late seccomp filter
/// (its NOTIFY listener goes to `listener`), execve. Returns only on failure: the exit code
/// (127 when execve itself failed, as a shell's) and the error.
fn finish(
    config: &Config,
    prog: &exec::Program,
    hook_state: Option<&str>,
    seccomp: Option<&Compiled>,
    listener: &mut dyn FnMut(OwnedFd) -> Result<(), String>,
) -> (i32, String) {
    let mut setup = || -> Result<(), String> {
        if let Some(state) = hook_state {
            hooks::run(hooks::Point::StartContainer, config.spec.hooks().as_ref(), state)?;
        }
        apply_landlock(config)?;
        if let Some(c) = seccomp {
            let loaded =
                crate::seccomp::load(c).map_err(|e| format!("linux.seccomp: load the filter: {e}"))?;
            if let Some(l) = loaded {
                listener(l)?;
            }
        }
        Ok(())
    };
    match setup() {
        Err(e) => (1, e),
        Ok(()) => (127, format!("exec {}: {}", prog.path.display(), exec::execve(prog))),
    }
}

/// The end of a warm sandbox run's setup, in the run's own first process: Landlock, a late
/// seccomp filter, execve. Returns only on failure, with the error.
pub(crate) fn launch(config: &Config, prog: &exec::Program, seccomp: Option<&Compiled>) -> String {
    finish(config, prog, None, seccomp, &mut |_| {
        Err("linux.seccomp: a NOTIFY action has no agent here".into())
    })
    .1
}

/// Makes the given descriptors this process's stdin, stdout and stderr (before anything else).
pub(crate) fn use_stdio(stdio: &super::spawn::Stdio) {
    use std::os::fd::AsRawFd;
    for (fd, to) in [(&stdio.stdin, 0), (&stdio.stdout, 1), (&stdio.stderr, 2)] {
        // SAFETY: dup2 onto the standard descriptors of this single-threaded child.
        if unsafe { libc::dup2(fd.as_raw_fd(), to) } < 0 {
            exit(1)
        }
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: leave without running destructors or atexit handlers inherited from main.
    unsafe { libc::_exit(code) }
}

/// `create` is `Some((no_pivot, cgroup))` for a new container; `None` for an exec into a
/// running one, which skips the steps that build the container (3, 4, 6, 7, 8).
fn steps(
    config: &Config,
    process: &oci_spec::runtime::Process,
    create: Option<(bool, &mut LateCgroup)>,
    tx: &Sender<InitMsg>,
    from_main: &Receiver<MainMsg>,
    seccomp: Option<&Compiled>,
    preserve_fds: i32,
) -> Result<(exec::Program, Option<String>), String> {
    let terminal = process.terminal() == Some(true);
    let exec = create.is_none();
    isolate_self(!exec || terminal)?;
    let hook_state = match create {
        Some((no_pivot, cgroup)) => build(config, no_pivot, tx, from_main, cgroup)?,
        None => None,
    };
    if terminal && exec {
        send_console(process, tx)?;
    }
    let prog = prepare_process(process, seccomp, Some(tx), preserve_fds)?;
    Ok((prog, hook_state))
}

/// Steps 1 and 2.
pub(crate) fn isolate_self(new_session: bool) -> Result<(), String> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| format!("set parent death signal: {e}"))?;
    // Until execve, this process is hutch's binary, and for exec it already sits in the
    // container's pid namespace: non-dumpable, its /proc/<pid>/exe cannot be opened from there
    // (CVE-2019-5736). execve of the container's program makes it dumpable again.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("set non-dumpable: {e}"))?;
    if new_session {
        setsid().map_err(|e| format!("setsid: {e}"))?;
    }
    Ok(())
}

/// Steps 3 to 8: the container's filesystem, terminal, names and protected paths. Returns the
/// state startContainer hooks will get, when there are hooks.
fn build(
    config: &Config,
    no_pivot: bool,
    tx: &Sender<InitMsg>,
    from_main: &Receiver<MainMsg>,
    cgroup: &mut LateCgroup,
) -> Result<Option<String>, String> {
    if LateCgroup::needed_by_mounts_or_hooks(config) {
        cgroup.enter(from_main)?;
    }
    // 3, 4
    rootfs::prepare(config, config.new_namespace(LinuxNamespaceType::Cgroup))?;
    let hook_state = create_hooks(config, tx, from_main)?;
    rootfs::enter(&config.rootfs, no_pivot).map_err(|e| format!("root.path: {e}"))?;
    // 5
    if config.process().terminal() == Some(true) {
        send_console(config.process(), tx)?;
    }
    // 6
    set_names(config)?;
    if config.new_namespace(LinuxNamespaceType::Network) && crate::network::wants_loopback(&config.spec) {
        crate::network::loopback_up()?;
    }
    // 7, 8
    for (key, value) in config.spec.linux().iter().flat_map(|l| l.sysctl().iter().flatten()) {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| format!("linux.sysctl.{key}: write {path}: {e}"))?;
    }
    rootfs::finish(config)?;
    cgroup.enter(from_main)?;
    Ok(hook_state)
}

/// The cgroup of an init that main cloned directly, which main makes while init builds the
/// container: init joins it through the files main sends (`MainMsg::CgroupReady`), then
/// unshares its cgroup namespace, rooted there. That happens before the program runs, and
/// before the mounts when a cgroup filesystem is mounted (it shows the namespace's view) or
/// hooks run (they may look at init's cgroup).
pub(crate) struct LateCgroup {
    pending: bool,
    new_namespace: bool,
    /// Where init keeps until main is done (`clone::Placement`).
    placement: Option<super::clone::Placement>,
}

impl LateCgroup {
    /// Main is making it; `new_namespace`: unshare a cgroup namespace once in it.
    pub(crate) fn pending(new_namespace: bool, placement: Option<super::clone::Placement>) -> LateCgroup {
        LateCgroup { pending: true, new_namespace, placement }
    }

    /// Joined before init was born (the intermediate's path).
    pub(crate) fn joined() -> LateCgroup {
        LateCgroup { pending: false, new_namespace: false, placement: None }
    }

    fn needed_by_mounts_or_hooks(config: &Config) -> bool {
        let cgroupfs =
            |m: &oci_spec::runtime::Mount| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2"));
        config.spec.mounts().iter().flatten().any(cgroupfs) || config.spec.hooks().is_some()
    }

    /// Joins it, once.
    fn enter(&mut self, from_main: &Receiver<MainMsg>) -> Result<(), String> {
        if !std::mem::take(&mut self.pending) {
            return Ok(());
        }
        let (files, fds) = match from_main.recv_with_fds() {
            Ok((MainMsg::CgroupReady { join_files }, fds)) if join_files.len() == fds.len() => {
                (join_files, fds)
            }
            Ok((got, _)) => return Err(format!("expected CgroupReady from main, got {got:?}")),
            Err(e) => return Err(format!("waiting for CgroupReady: {e}")),
        };
        // Main is done: the caller's whole mask again, before the cgroup's cpuset applies.
        if let Some(p) = self.placement.take() {
            p.rejoin();
        }
        for (path, fd) in files.iter().zip(&fds) {
            crate::cgroups::join_through(std::path::Path::new(path), fd.as_fd())?;
        }
        if self.new_namespace {
            crate::namespaces::unshare_flags(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| format!("linux.namespaces: unshare cgroup: {e}"))?;
        }
        Ok(())
    }
}

/// Step 5: the pty comes from the container's own devpts; its master goes to main.
fn send_console(process: &oci_spec::runtime::Process, tx: &Sender<InitMsg>) -> Result<(), String> {
    let master = terminal::setup_pty(process.console_size()).map_err(|e| format!("process.terminal: {e}"))?;
    tx.send_with_fds(&InitMsg::Console, &[master.as_fd()])
        .map_err(|e| format!("process.terminal: send console: {e}"))
}

/// Step 6: hostname and domainname.
pub(crate) fn set_names(config: &Config) -> Result<(), String> {
    if let Some(h) = config.spec.hostname() {
        sethostname(h).map_err(|e| format!("hostname: {e}"))?;
    }
    if let Some(d) = config.spec.domainname() {
        set_domainname(d).map_err(|e| format!("domainname: {e}"))?;
    }
    Ok(())
}

/// Steps 9 to 14: the process's limits, privileges, user, directory and program. An early
/// seccomp filter's NOTIFY listener goes to main over `tx`.
pub(crate) fn prepare_process(
    process: &oci_spec::runtime::Process,
    seccomp: Option<&Compiled>,
    tx: Option<&Sender<InitMsg>>,
    preserve_fds: i32,
) -> Result<exec::Program, String> {
    // 9
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EACCES) {
                " (lowering it needs CAP_SYS_RESOURCE in the initial user namespace, which hutch lacks here)"
            } else {
                ""
            };
            format!("process.oomScoreAdj: {adj}: {e}{hint}")
        })?;
    }
    rlimits::apply(process.rlimits().as_deref().unwrap_or_default())?;

    // 10, 11
    if process.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs().map_err(|e| format!("process.noNewPrivileges: {e}"))?;
    }
    if let Some(c) = seccomp {
        load_seccomp(c, tx)?;
    }
    capabilities::switch_user(process)?;

    // 12
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(Mode::from_bits_truncate(umask));
    nix::unistd::chdir(process.cwd())
        .map_err(|e| format!("process.cwd: {}: {e}", process.cwd().display()))?;

    // 13
    let prog = exec::Program::find(process).map_err(|e| format!("process.args[0]: {e}"))?;

    // 14
    close_on_exec_from(3 + preserve_fds)?;
    reset_signals();
    nix::sys::prctl::set_pdeathsig(None).map_err(|e| format!("clear parent death signal: {e}"))?;
    Ok(prog)
}

/// The last step before execve (and before a late seccomp filter, which could refuse the
/// landlock syscalls): the container's Landlock policy, if it has one.
fn apply_landlock(config: &Config) -> Result<(), String> {
    let Some(policy) = config.landlock() else { return Ok(()) };
    crate::landlock_policy::apply(policy)
        .map(drop)
        .map_err(|e| format!("annotations.{}: {e}", crate::landlock_policy::ANNOTATION))
}

/// Loads the filter; a NOTIFY listener goes to main, which hands it to the agent.
fn load_seccomp(c: &Compiled, tx: Option<&Sender<InitMsg>>) -> Result<(), String> {
    match (crate::seccomp::load(c).map_err(|e| format!("linux.seccomp: load the filter: {e}"))?, tx) {
        (Some(listener), Some(tx)) => tx
            .send_with_fds(&InitMsg::SeccompListener, &[listener.as_fd()])
            .map_err(|e| format!("linux.seccomp: hand over the listener: {e}")),
        (Some(_), None) => Err("linux.seccomp: a NOTIFY action has no agent here".into()),
        (None, _) => Ok(()),
    }
}

fn send_fd(
    conn: &std::os::unix::net::UnixStream,
    tag: u8,
    fd: std::os::fd::BorrowedFd<'_>,
) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let fds = [fd.as_raw_fd()];
    nix::sys::socket::sendmsg::<()>(
        conn.as_raw_fd(),
        &[std::io::IoSlice::new(&[tag])],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Between the mounts and pivot_root: main runs prestart and createRuntime hooks, then init runs
/// createContainer hooks. Returns the state startContainer hooks will get, when there are hooks.
fn create_hooks(
    config: &Config,
    tx: &Sender<InitMsg>,
    from_main: &Receiver<MainMsg>,
) -> Result<Option<String>, String> {
    use hooks::Point;
    let hooks = config.spec.hooks().as_ref();
    let early = [Point::Prestart, Point::CreateRuntime, Point::CreateContainer, Point::StartContainer];
    if early.iter().all(|p| p.hooks(hooks).is_empty()) {
        return Ok(None);
    }
    tx.send(&InitMsg::HooksPoint).map_err(|e| format!("hooks: {e}"))?;
    let state = match from_main.recv() {
        Ok(MainMsg::HooksDone { state }) => state,
        Ok(other) => return Err(format!("hooks: unexpected {other:?} from main")),
        Err(e) => return Err(format!("hooks: waiting for main: {e}")),
    };
    hooks::run(Point::CreateContainer, hooks, &state)?;
    let mut start_state: serde_json::Value =
        serde_json::from_str(&state).map_err(|e| format!("hooks: {e}"))?;
    start_state["status"] = "created".into();
    Ok(Some(start_state.to_string()))
}

/// 15: blocks until `hutch start` connects and says start. The connection stays open (it is
/// close-on-exec) so that `start` learns whether execve worked.
fn wait_for_start(listener: OwnedFd) -> Result<std::os::unix::net::UnixStream, String> {
    let listener = UnixListener::from(listener);
    loop {
        let (mut conn, _) = listener.accept().map_err(|e| format!("wait for start: {e}"))?;
        let mut buf = [0u8; 16];
        match conn.read(&mut buf) {
            Ok(n) if &buf[..n] == START => return Ok(conn),
            // Anything else (a probe, a dropped client) is ignored; keep waiting.
            _ => continue,
        }
    }
}

fn set_domainname(name: &str) -> nix::Result<()> {
    // SAFETY: the pointer and length describe a valid buffer for the duration of the call.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    nix::errno::Errno::result(rc).map(drop)
}

/// Marks every descriptor from `first` up close-on-exec, and clears it below (preserved fds).
fn close_on_exec_from(first: i32) -> Result<(), String> {
    for fd in 3..first {
        nix::fcntl::fcntl(
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(|e| format!("--preserve-fds: fd {fd}: {e}"))?;
    }
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let rc =
        unsafe { libc::syscall(libc::SYS_close_range, first as u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if rc < 0 {
        return Err(format!("close_range: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The container starts with default signal dispositions and nothing blocked, whatever hutch's
/// caller had (Rust itself ignores SIGPIPE).
fn reset_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL is always sound.
            let _ = unsafe { sigaction(sig, &dfl) };
        }
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
