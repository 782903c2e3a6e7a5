//! The main stage: forks the intermediate (or clones init directly), makes the cgroup before
//! or after that clone, does from outside the new namespaces what they need, and waits for
//! init to be ready.

use std::os::fd::{AsFd, OwnedFd};

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxNamespaceType;

use super::clone::clone3;
use super::intermediate;
use super::message::{InitMsg, IntermediateMsg, MainMsg, StageFailure};
use crate::cgroups::{Cgroup, JoinPlan};
use crate::channel::{channel, ChannelError, Receiver, Sender};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hooks;
use crate::namespaces::{clone_flag, Join};

/// What the new process is for.
pub enum Job {
    /// A new container: new namespaces, the rootfs, and an init that waits for `start` on this
    /// listening socket, or without one runs the program as soon as the container is built
    /// (a sandbox run: spawn returns once the program is exec'd, as for `Exec`).
    Create { start_listener: Option<OwnedFd>, no_pivot: bool },
    /// One more process in the running container whose init is `target`: it joins all of that
    /// container's namespaces and runs `process` at once.
    Exec { target: Pid, process: Box<oci_spec::runtime::Process> },
    /// A warm sandbox: the container is built as for `Create`, and then its init, instead of
    /// running a program, serves runs (see `crate::sandbox::zygote`).
    Zygote {
        no_pivot: bool,
        requests: Receiver<crate::sandbox::zygote::Request>,
        replies: Sender<crate::sandbox::zygote::Reply>,
    },
}

pub struct SpawnRequest<'a> {
    pub config: &'a Config,
    pub job: Job,
    /// The OCI state hooks receive (without the pid, which is filled in), when the config has
    /// hooks to run during create.
    pub hook_state: Option<serde_json::Value>,
    pub cgroup: CgroupSetup<'a>,
    /// Descriptors 3..3+N stay open in the container.
    pub preserve_fds: i32,
    /// The compiled `linux.seccomp`, loaded by init.
    pub seccomp: Option<crate::seccomp::Compiled>,
    /// stdin, stdout and stderr for the container, instead of the caller's own.
    pub stdio: Option<Stdio>,
}

/// The cgroup the new process joins.
pub struct CgroupSetup<'a> {
    /// Makes (create) or opens (exec) the cgroup, and tells how to join it.
    pub make: Box<dyn FnOnce() -> Result<JoinPlan> + 'a>,
    /// It can be made after init is cloned (`Cgroup::joinable_after_clone`): then main makes
    /// it while init makes its namespaces.
    pub after_clone: bool,
}

impl<'a> CgroupSetup<'a> {
    /// An existing cgroup (exec).
    pub fn existing(cgroup: &'a Cgroup) -> CgroupSetup<'a> {
        CgroupSetup { make: Box::new(|| cgroup.join_plan()), after_clone: false }
    }
}

/// Descriptors that become the container's 0, 1 and 2.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

pub struct Spawned {
    pub init: Pid,
    /// The terminal's master side, when `process.terminal` is set.
    pub console: Option<OwnedFd>,
    /// The seccomp NOTIFY listener, when init loaded the filter before reporting Ready.
    pub seccomp_listener: Option<OwnedFd>,
}

/// Everything the children need, gathered before fork so they allocate little.
pub(crate) struct ChildContext<'a> {
    pub config: &'a Config,
    pub joins: Vec<Join>,
    pub job: Job,
    pub preserve_fds: i32,
    /// main → init, for the hooks rendezvous.
    pub from_main: Receiver<MainMsg>,
    pub seccomp: Option<crate::seccomp::Compiled>,
    pub stdio: Option<Stdio>,
    /// The cgroup the first child joins itself, when it was made before the clone.
    pub cgroup: Option<JoinPlan>,
    /// The namespaces init cloned directly unshares itself, while main works from outside.
    pub unshare: CloneFlags,
    /// Where init runs until main has done its part (cloned directly).
    pub placement: Option<super::clone::Placement>,
}

pub fn spawn(req: SpawnRequest<'_>) -> Result<Spawned> {
    let joins = match &req.job {
        Job::Create { .. } | Job::Zygote { .. } => open_joins(req.config)?,
        Job::Exec { target, .. } => container_joins(req.config, *target)?,
    };
    let at_once = matches!(req.job, Job::Exec { .. } | Job::Create { start_listener: None, .. });
    let sys = |what: &str| {
        let what = what.to_string();
        move |e: nix::Error| Error::Sys { context: what, source: e }
    };
    let (init_tx, from_init) = channel::<InitMsg>().map_err(sys("socketpair"))?;
    let (to_init, init_rx) = channel::<MainMsg>().map_err(sys("socketpair"))?;
    let direct = match req.job {
        Job::Create { .. } | Job::Zygote { .. } => intermediate::direct_flags(req.config, &joins),
        Job::Exec { .. } => None,
    };
    let CgroupSetup { make: make_cgroup, after_clone } = req.cgroup;
    let (mut cgroup, make_cgroup_later) = if direct.is_some() && after_clone {
        (None, Some(make_cgroup))
    } else {
        (Some(make_cgroup()?), None)
    };
    let v2_cgroup = cgroup.as_mut().and_then(|c| c.v2_dir.take()).map(|(_, dir)| dir);
    // Cloned directly, init is born in its user, pid and time namespaces (unshare moves only
    // the caller's children into the last two; the first owns the rest) and makes the rest
    // itself, the network namespace most costly among them, while main writes its id maps on
    // another CPU (`clone::Placement`).
    // Then init builds the container while main makes its cgroup (see init::LateCgroup).
    let born_in = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID | clone_flag(LinuxNamespaceType::Time);
    let ctx = ChildContext {
        config: req.config,
        joins,
        job: req.job,
        preserve_fds: req.preserve_fds,
        from_main: init_rx,
        seccomp: req.seccomp,
        stdio: req.stdio,
        cgroup,
        unshare: direct.map(|f| f - born_in).unwrap_or(CloneFlags::empty()),
        placement: direct.and_then(|_| super::clone::Placement::here()),
    };
    let v2_cgroup = v2_cgroup.as_ref().map(|fd| fd.as_fd());
    let mut guard = Reaper { pids: Vec::new() };
    let mut main_placed = None;
    let init = match direct {
        Some(flags) => {
            let placement = ctx.placement;
            // SAFETY: hutch is single-threaded here; the child becomes init and never returns.
            let init = match unsafe { clone3((flags & born_in).bits() as u64, v2_cgroup) } {
                Err(e) => return Err(Error::Io { context: "clone init".into(), source: e }),
                Ok(0) => {
                    if let Some(p) = placement {
                        p.step_aside();
                    }
                    drop((from_init, to_init));
                    intermediate::run_direct(ctx, init_tx)
                }
                Ok(child) => Pid::from_raw(child),
            };
            // Main keeps to its CPU until the spawn ends, however it ends.
            main_placed = placement.map(|p| {
                p.apart(init);
                Rejoin(p)
            });
            drop((init_tx, ctx));
            guard.pids.push(init);
            let outside = (|| {
                if flags.contains(CloneFlags::CLONE_NEWUSER) {
                    write_id_maps(req.config, init)?;
                    to_init.send(&MainMsg::IdMapsWritten).map_err(|e| lost("init", e))?;
                }
                let files = match make_cgroup_later {
                    Some(make) => make()?.into_join_files()?,
                    None => Vec::new(),
                };
                let paths = files.iter().map(|(p, _)| p.display().to_string()).collect();
                let fds: Vec<_> = files.iter().map(|(_, f)| f.as_fd()).collect();
                to_init
                    .send_with_fds(&MainMsg::CgroupReady { join_files: paths }, &fds)
                    .map_err(|e| lost("init", e))
            })();
            if let Err(e) = outside {
                // init may have failed before (making its namespaces): its reason comes first.
                let _ = kill(init, Signal::SIGKILL);
                return Err(match from_init.recv() {
                    Ok(InitMsg::Failed(f)) => f.into(),
                    _ => e,
                });
            }
            init
        }
        None => {
            let (to_mid, mid_rx) = channel::<MainMsg>().map_err(sys("socketpair"))?;
            let (mid_tx, from_mid) = channel::<IntermediateMsg>().map_err(sys("socketpair"))?;
            // SAFETY: hutch is single-threaded here; the child only runs the intermediate stage
            // and exits, it never returns here.
            let mid = match unsafe { clone3(0, v2_cgroup) } {
                Err(e) => {
                    return Err(Error::Io { context: "clone the intermediate stage".into(), source: e })
                }
                Ok(0) => {
                    drop((to_mid, from_mid, from_init, to_init));
                    intermediate::run(ctx, mid_rx, mid_tx, init_tx)
                }
                Ok(child) => Pid::from_raw(child),
            };
            drop((mid_rx, mid_tx, init_tx, ctx));
            guard.pids.push(mid);
            staged(req.config, mid, &to_mid, &from_mid, &mut guard)?
        }
    };

    let mut console = None;
    let mut seccomp_listener = None;
    loop {
        match from_init.recv_with_fds() {
            Ok((InitMsg::Console, mut fds)) if fds.len() == 1 => console = fds.pop(),
            Ok((InitMsg::SeccompListener, mut fds)) if fds.len() == 1 => seccomp_listener = fds.pop(),
            Ok((m @ (InitMsg::Console | InitMsg::SeccompListener), _)) => {
                return Err(lost("init", ChannelError::Decode(format!("{m:?} without its descriptor"))))
            }
            Ok((InitMsg::HooksPoint, _)) => {
                let mut state = req.hook_state.clone().unwrap_or_default();
                state["pid"] = init.as_raw().into();
                let state = state.to_string();
                let hooks = req.config.spec.hooks().as_ref();
                for point in [hooks::Point::Prestart, hooks::Point::CreateRuntime] {
                    hooks::run(point, hooks, &state).map_err(|e| StageFailure::new("create", e))?;
                }
                to_init.send(&MainMsg::HooksDone { state }).map_err(|e| lost("init", e))?;
            }
            Ok((InitMsg::Ready, _)) => break,
            Ok((InitMsg::Failed(f), _)) => return Err(f.into()),
            Err(e) => return Err(lost("init", e)),
        }
    }
    if at_once {
        // The process execs right after Ready; its end of the channel is close-on-exec, so EOF
        // means the exec worked and a message means it failed. A seccomp filter loaded just
        // before exec sends its NOTIFY listener first.
        loop {
            match from_init.recv_with_fds() {
                Err(ChannelError::Closed) => break,
                Ok((InitMsg::SeccompListener, mut fds)) if fds.len() == 1 => seccomp_listener = fds.pop(),
                Ok((InitMsg::Failed(f), _)) => return Err(f.into()),
                Ok((other, _)) => {
                    return Err(lost("init", ChannelError::Decode(format!("unexpected {other:?}"))))
                }
                Err(e) => return Err(lost("init", e)),
            }
        }
    }
    guard.pids.clear();
    drop(main_placed);
    Ok(Spawned { init, console, seccomp_listener })
}

/// main's side of the intermediate stage: answers its requests until it reports init's pid,
/// then reaps it.
fn staged(
    config: &Config,
    mid: Pid,
    to_mid: &Sender<MainMsg>,
    from_mid: &Receiver<IntermediateMsg>,
    guard: &mut Reaper,
) -> Result<Pid> {
    send(to_mid, MainMsg::Go)?;
    let init = loop {
        match from_mid.recv() {
            Ok(IntermediateMsg::NeedIdMaps) => {
                write_id_maps(config, mid)?;
                send(to_mid, MainMsg::IdMapsWritten)?;
            }
            Ok(IntermediateMsg::NeedTimeOffsets) => {
                write_time_offsets(config, mid)?;
                send(to_mid, MainMsg::TimeOffsetsWritten)?;
            }
            Ok(IntermediateMsg::InitPid(pid)) => break Pid::from_raw(pid),
            Ok(IntermediateMsg::Failed(f)) => return Err(f.into()),
            Err(e) => return Err(lost("intermediate", e)),
        }
    };
    guard.pids.push(init);
    // The intermediate exits right after sending the pid; reap it so it is no zombie.
    let _ = waitpid(mid, None);
    guard.pids.retain(|p| *p != mid);
    Ok(init)
}

fn send(tx: &Sender<MainMsg>, msg: MainMsg) -> Result<()> {
    tx.send(&msg).map_err(|e| lost("intermediate", e))
}

fn lost(stage: &str, e: ChannelError) -> Error {
    let message = match e {
        ChannelError::Closed => "exited before finishing setup".to_string(),
        e => e.to_string(),
    };
    StageFailure::new(stage, message).into()
}

/// Gives main back its whole mask when dropped.
struct Rejoin(super::clone::Placement);

impl Drop for Rejoin {
    fn drop(&mut self) {
        self.0.rejoin();
    }
}

/// Kills and reaps the stages it holds unless setup completed.
struct Reaper {
    pids: Vec<Pid>,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in self.pids.drain(..) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Opens the namespaces to join now, before any process moves.
fn open_joins(config: &Config) -> Result<Vec<Join>> {
    let mut joins = Vec::new();
    for (i, (typ, path)) in config.namespaces().into_iter().enumerate() {
        let Some(path) = path else { continue };
        let fd = crate::namespaces::open(&path, typ).map_err(|e| {
            Error::config(
                &config.file,
                format!("linux.namespaces[{i}].path"),
                format!("{}: {e}", path.display()),
            )
        })?;
        joins.push(Join { typ, fd });
    }
    Ok(joins)
}

/// The namespaces of a running container, to join for `exec`: every kind its config names,
/// through its init's /proc entries.
fn container_joins(config: &Config, target: Pid) -> Result<Vec<Join>> {
    use oci_spec::runtime::LinuxNamespaceType as T;
    let mut joins = Vec::new();
    for (typ, _) in config.namespaces() {
        let name = match typ {
            T::Mount => "mnt",
            T::Network => "net",
            T::Pid => "pid",
            T::Ipc => "ipc",
            T::Uts => "uts",
            T::User => "user",
            T::Cgroup => "cgroup",
            T::Time => "time",
        };
        let path = std::path::PathBuf::from(format!("/proc/{target}/ns/{name}"));
        let fd = crate::namespaces::open(&path, typ).map_err(|e| Error::Stage {
            stage: "exec".into(),
            message: format!("join {}: {e}", path.display()),
        })?;
        joins.push(Join { typ, fd });
    }
    Ok(joins)
}

fn write_id_maps(config: &Config, pid: Pid) -> Result<()> {
    let linux = config.spec.linux().as_ref().expect("validated: maps need linux");
    for (field, file, maps) in [
        ("linux.uidMappings", "uid_map", linux.uid_mappings()),
        ("linux.gidMappings", "gid_map", linux.gid_mappings()),
    ] {
        let text: String = maps
            .iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text)
            .map_err(|e| Error::config(&config.file, field, format!("write {path}: {e}")))?;
    }
    Ok(())
}

fn write_time_offsets(config: &Config, pid: Pid) -> Result<()> {
    let Some(offsets) = config.spec.linux().as_ref().and_then(|l| l.time_offsets().as_ref()) else {
        return Ok(());
    };
    let path = format!("/proc/{pid}/timens_offsets");
    for (clock, off) in offsets {
        let line = format!("{clock} {} {}\n", off.secs().unwrap_or(0), off.nanosecs().unwrap_or(0));
        std::fs::write(&path, line).map_err(|e| {
            Error::config(&config.file, format!("linux.timeOffsets.{clock}"), format!("write {path}: {e}"))
        })?;
    }
    Ok(())
}
