//! `hutch sandbox run`: one supervised, isolated run for a harness, with a wall-clock timeout,
//! capped output and a structured result.
//!
//! The container spec is built in memory from a profile (profiles/) and the flags, and run with
//! the same library as `hutch run`. The program's stdout and stderr are pipes that hutch reads
//! while it waits on a pidfd of the program with a poll timeout, so the timeout is precise to
//! the millisecond, hutch's memory stays bounded by the caps whatever the program writes, and the
//! end of the run (exit, timeout, output cap) kills the container's whole cgroup: daemons in new
//! sessions go too.

pub mod capture;
pub mod profile;
pub mod serve;
pub mod view;
pub mod zygote;

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::Serialize;
use serde_json::json;

use crate::cgroups::meter::{Meter, Usage};
use crate::config::Config;
use crate::container::{self, CreateOptions};
use crate::error::{Error, Result};
use crate::process::Stdio;
use crate::seccomp::Compiled;
pub use capture::Captured;
use capture::Stream;
use profile::{Network, OnOutputLimit, Profile};

/// One run, as the flags and the profile ask.
#[derive(Debug, Clone)]
pub struct Request {
    pub profile: Profile,
    pub profile_file: PathBuf,
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub timeout: Option<Duration>,
    pub memory: Option<u64>,
    pub pids: Option<i64>,
    pub stdout_limit: u64,
    pub stderr_limit: u64,
    pub on_output_limit: OnOutputLimit,
    pub stdin: Option<PathBuf>,
    pub network: Network,
    /// CPU time the whole run may use; ends it as "timeout" (limit "cpu_time").
    pub cpu_time: Option<Duration>,
    /// Extra bind mounts (`--bind`).
    pub binds: Vec<view::Bind>,
    /// The root is a read-only view of the host's system directories (`rootfs` is its
    /// skeleton, see `view::host_root`).
    pub host_view: bool,
    /// State root for the run's container.
    pub root: PathBuf,
    /// Copy the program's output to hutch's own stdout and stderr as it comes.
    pub passthrough: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Exited,
    Signaled,
    Timeout,
    Oom,
    OutputLimit,
    SetupError,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetupError {
    pub stage: String,
    pub cause: String,
}

/// A limit that ended a run before its program did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    WallTime,
    CpuTime,
    Output,
}

impl EndedBy {
    fn status(self) -> Status {
        match self {
            EndedBy::WallTime | EndedBy::CpuTime => Status::Timeout,
            EndedBy::Output => Status::OutputLimit,
        }
    }

    fn name(self) -> &'static str {
        match self {
            EndedBy::WallTime => "wall_time",
            EndedBy::CpuTime => "cpu_time",
            EndedBy::Output => "output",
        }
    }
}

/// Kills a run: its first process is pid 1 of the run's pid namespace, so the kernel kills
/// everything else in it too, daemons in new sessions included.
pub(crate) fn kill_run(pidfd: &OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal on a pidfd we own.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<()>(),
            0,
        );
    }
}

/// The v1 controllers a sandbox needs: its limits (memory, pids), its measurements (cpuacct)
/// and its device rules. A run is killed through its pid namespace, so it needs no freezer.
pub(crate) fn controllers() -> Vec<String> {
    ["memory", "pids", "cpuacct", "devices"].map(String::from).to_vec()
}

/// How often CPU time is checked against `cpu_time`.
pub(crate) const CPU_CHECK: Duration = Duration::from_millis(10);

/// The result document (docs/sandbox.md).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub status: Status,
    /// Which limit ended the run: "wall_time" or "cpu_time" (status timeout), "output"
    /// (status output_limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<&'static str>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub wall_ms: f64,
    pub cpu_user_ms: f64,
    pub cpu_sys_ms: f64,
    pub peak_memory_bytes: u64,
    pub stdout: Captured,
    pub stderr: Captured,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_error: Option<SetupError>,
}

impl Outcome {
    fn setup_error(e: &Error) -> Outcome {
        Outcome::setup_error_in("runtime", e)
    }

    /// A run that never started; `stage` names where, unless the error itself says.
    pub fn setup_error_in(default_stage: &str, e: &Error) -> Outcome {
        let (stage, cause) = match e {
            Error::Stage { stage, message } => (stage.clone(), message.clone()),
            Error::Usage(message) => (default_stage.to_string(), message.clone()),
            Error::Config { file, field, message } => {
                ("config".to_string(), format!("{}: {field}: {message}", file.display()))
            }
            other => (default_stage.to_string(), other.to_string()),
        };
        Outcome {
            status: Status::SetupError,
            limit: None,
            exit_code: None,
            signal: None,
            wall_ms: 0.0,
            cpu_user_ms: 0.0,
            cpu_sys_ms: 0.0,
            peak_memory_bytes: 0,
            stdout: Captured::default(),
            stderr: Captured::default(),
            setup_error: Some(SetupError { stage, cause }),
        }
    }

    /// hutch's own exit code: the program's, or one that says why the run ended.
    pub fn exit_code(&self) -> i32 {
        match self.status {
            Status::Exited => self.exit_code.unwrap_or(0),
            Status::Signaled => 128 + self.signal.unwrap_or(0),
            Status::Timeout => 124,
            Status::Oom => 137,
            Status::OutputLimit => 120,
            Status::SetupError => 125,
        }
    }
}

/// The OCI spec for a request.
pub fn spec(req: &Request) -> Result<oci_spec::runtime::Spec> {
    let p = &req.profile;
    if let Some(d) = p.delegate {
        return Err(Error::Stage {
            stage: "profile".into(),
            message: format!(
                "{}: the {} tier runs on {}, which hutch hands over to Docker or Kubernetes; that delegation is not built yet, so this profile cannot run here",
                req.profile_file.display(),
                match d { profile::Delegate::Gvisor => "gvisor", profile::Delegate::Vm => "vm" },
                match d { profile::Delegate::Gvisor => "gVisor (runsc)", profile::Delegate::Vm => "a VM-based runtime (Kata, Firecracker)" },
            ),
        });
    }
    use oci_spec::runtime::{
        LinuxCapabilities, LinuxIdMappingBuilder, LinuxMemory, LinuxNamespace, LinuxNamespaceType as Ns,
        LinuxPids, Mount, PosixRlimitBuilder, PosixRlimitType, Process, Root, User,
    };
    let config_err = |field: &str, e: &dyn std::fmt::Display| Error::config(&req.profile_file, field, e);
    // Typed throughout: a run builds its spec on the critical path of its start.
    let mut spec = crate::spec::base_spec();
    spec.set_hostname(Some("sandbox".into()));
    let mut root = Root::default();
    root.set_path(req.rootfs.clone());
    root.set_readonly(Some(p.readonly_root));
    spec.set_root(Some(root));

    let mut env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
    env.extend(req.env.iter().cloned());
    let caps: oci_spec::runtime::Capabilities =
        serde_json::from_value(json!(p.capabilities)).map_err(|e| config_err("capabilities", &e))?;
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(caps.clone()));
    capabilities.set_effective(Some(caps.clone()));
    capabilities.set_permitted(Some(caps));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(1024u64)
        .hard(1024u64)
        .build()
        .expect("complete rlimit");
    let mut process = Process::default();
    process.set_terminal(Some(false));
    process.set_user(User::default());
    process.set_args(Some(req.args.clone()));
    process.set_env(Some(env));
    process.set_cwd(req.cwd.as_deref().unwrap_or("/").into());
    process.set_capabilities(Some(capabilities));
    process.set_no_new_privileges(Some(p.no_new_privileges));
    process.set_rlimits(Some(vec![nofile]));
    spec.set_process(Some(process));

    let mut types = vec![Ns::Pid, Ns::Ipc, Ns::Uts, Ns::Mount, Ns::Cgroup];
    if req.network != Network::Host {
        types.push(Ns::Network);
    }
    if p.user_namespace.is_some() {
        types.push(Ns::User);
    }
    let namespaces = types
        .into_iter()
        .map(|t| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(t);
            ns
        })
        .collect();

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    // A fresh cgroup mount is not allowed from a user namespace on v1; the sandbox needs none.
    mounts.retain(|m| m.typ().as_deref() != Some("cgroup"));
    if req.network == Network::Host {
        // No network namespace of its own: sysfs cannot be mounted fresh; bind the host's.
        for m in mounts.iter_mut().filter(|m| m.typ().as_deref() == Some("sysfs")) {
            m.set_typ(Some("bind".into()));
            m.set_source(Some("/sys".into()));
            m.set_options(Some(["rbind", "ro", "nosuid", "noexec", "nodev"].map(String::from).to_vec()));
        }
    }
    if req.host_view {
        mounts.extend(view::host_view_mounts());
    }
    for t in &p.tmpfs {
        let size = profile::parse_bytes(&t.size).map_err(|e| config_err("tmpfs", &e))?;
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(&t.path));
        m.set_typ(Some("tmpfs".into()));
        m.set_source(Some("tmpfs".into()));
        m.set_options(Some(vec![
            "nosuid".into(),
            "nodev".into(),
            "mode=1777".into(),
            format!("size={size}"),
        ]));
        mounts.push(m);
    }
    // After the tmpfs mounts, so that a bind can go into /tmp.
    let binds = view::bind_mounts(p, &req.profile_file, &req.binds)?;
    let (device_mounts, device_rules) = view::devices(p, &req.profile_file)?;
    if !req.host_view {
        view::make_targets(&req.rootfs, &binds)?;
    }
    mounts.extend(binds);
    mounts.extend(device_mounts);
    spec.set_mounts(Some(mounts));

    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    linux.set_namespaces(Some(namespaces));
    if let Some(u) = p.user_namespace {
        let map = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(u.host_id)
            .size(u.size)
            .build()
            .expect("complete mapping");
        linux.set_uid_mappings(Some(vec![map]));
        linux.set_gid_mappings(Some(vec![map]));
    }
    let mut resources = linux.resources().clone().unwrap_or_default();
    // The base spec's deny-all rule first, then the profile's devices.
    let mut rules = resources.devices().clone().unwrap_or_default();
    rules.extend(device_rules);
    resources.set_devices(Some(rules));
    if let Some(m) = req.memory {
        let m = i64::try_from(m).map_err(|_| Error::Usage(format!("--memory {m}: too large")))?;
        let mut memory = LinuxMemory::default();
        memory.set_limit(Some(m));
        memory.set_swap(Some(m));
        resources.set_memory(Some(memory));
    }
    if let Some(n) = req.pids {
        let mut pids = LinuxPids::default();
        pids.set_limit(n);
        resources.set_pids(Some(pids));
    }
    linux.set_resources(Some(resources));

    let mut annotations = std::collections::HashMap::new();
    if let Some(l) = &p.landlock {
        annotations.insert(crate::landlock_policy::ANNOTATION.into(), l.to_string());
    }
    if req.network == Network::Loopback {
        annotations.insert(crate::network::LOOPBACK_ANNOTATION.into(), "up".into());
    }
    annotations.insert(crate::cgroups::CONTROLLERS_ANNOTATION.into(), controllers().join(","));
    spec.set_annotations(Some(annotations));
    Ok(spec)
}

/// The profile's seccomp filter, compiled, from a cache under the state root keyed by the
/// bytes of its file, so that a run parses the file only the first time. The spec gets the
/// profile itself only when it has NOTIFY rules: their listener goes to the agent at its
/// listenerPath.
pub fn seccomp(req: &Request, spec: &mut oci_spec::runtime::Spec) -> Result<Option<Compiled>> {
    use crate::seccomp::cache::{compile_file_cached, FileError};
    let Some(file) = &req.profile.seccomp else { return Ok(None) };
    let path = req.profile_file.parent().unwrap_or(std::path::Path::new(".")).join(file);
    let compiled =
        compile_file_cached(&req.root.join(container::SECCOMP_CACHE), &path).map_err(|e| match e {
            FileError::Read(e) => {
                Error::config(&req.profile_file, "seccomp", format!("{}: {e}", path.display()))
            }
            FileError::Parse(e) => Error::config(&path, "(document)", e),
            FileError::Profile((field, message)) => Error::config(&path, field, message),
        })?;
    if compiled.has_listener() {
        let text =
            std::fs::read(&path).map_err(|e| Error::Io { context: path.display().to_string(), source: e })?;
        let profile = serde_json::from_slice(&text).map_err(|e| Error::config(&path, "(document)", e))?;
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(Some(profile));
        }
    }
    Ok(Some(compiled))
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs the request to its end and tells how it ended. Setup failures are an outcome too.
pub fn run(req: &Request) -> Outcome {
    match run_inner(req) {
        Ok(o) => o,
        Err(e) => Outcome::setup_error(&e),
    }
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Sys { context: "pipe".into(), source: e })
}

fn run_inner(req: &Request) -> Result<Outcome> {
    let mut spec = spec(req)?;
    let seccomp = seccomp(req, &mut spec)?;
    let bundle = req.rootfs.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
    let config = Config::from_spec(spec, bundle, req.profile_file.clone())?;
    let id =
        format!("sbx-{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let opts = CreateOptions {
        root: req.root.clone(),
        id: id.clone(),
        ephemeral: true,
        seccomp,
        ..Default::default()
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdin: OwnedFd = match &req.stdin {
        Some(p) => {
            std::fs::File::open(p).map_err(|e| Error::Usage(format!("--stdin {}: {e}", p.display())))?.into()
        }
        None => std::fs::File::open("/dev/null")
            .map_err(|e| Error::Io { context: "/dev/null".into(), source: e })?
            .into(),
    };
    // The program starts as soon as its container is built: no start handshake.
    let created =
        container::create_running(&opts, &config, Some(Stdio { stdin, stdout: out_w, stderr: err_w }))?;
    let t0 = Instant::now();
    let c = created.container;
    let init = Pid::from_raw(c.state.pid);
    let cgroup = c.cgroup();
    let mut meter = Meter::new(&cgroup);
    let pidfd = match container::pidfd_open(init.as_raw()) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = c.delete(true);
            return Err(Error::Io { context: "pidfd_open".into(), source: e });
        }
    };
    let c = c.unlock();

    let mut streams = [
        Stream::new(out_r, req.stdout_limit, req.passthrough.then_some(1)),
        Stream::new(err_r, req.stderr_limit, req.passthrough.then_some(2)),
    ];
    let deadline = req.timeout.map(|t| t0 + t);
    let mut ended_by: Option<EndedBy> = None;
    let mut wait_status = None;
    let end = |why: EndedBy, ended_by: &mut Option<EndedBy>| {
        if ended_by.is_none() {
            *ended_by = Some(why);
            kill_run(&pidfd);
        }
    };
    loop {
        let running = ended_by.is_none() && wait_status.is_none();
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if running && remaining == Some(Duration::ZERO) {
            end(EndedBy::WallTime, &mut ended_by);
        }
        if running && req.cpu_time.is_some_and(|c| meter.read().cpu_ns() >= c.as_nanos() as u64) {
            end(EndedBy::CpuTime, &mut ended_by);
        }
        let mut fds: Vec<PollFd> = Vec::new();
        if wait_status.is_none() {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
        }
        for s in streams.iter().filter(|s| s.open) {
            fds.push(PollFd::new(s.fd.as_fd(), PollFlags::POLLIN));
        }
        if fds.is_empty() {
            break;
        }
        let mut wake = remaining;
        if req.cpu_time.is_some() {
            wake = Some(wake.map_or(CPU_CHECK, |w| w.min(CPU_CHECK)));
        }
        let ms = match wake {
            Some(r) if ended_by.is_none() && wait_status.is_none() => {
                PollTimeout::try_from(r.as_millis().clamp(1, 60_000) as i32).unwrap_or(PollTimeout::NONE)
            }
            _ => PollTimeout::NONE,
        };
        match poll(&mut fds, ms) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::Sys { context: "poll".into(), source: e }),
            Ok(_) => {}
        }
        drop(fds);
        for s in streams.iter_mut().filter(|s| s.open) {
            if s.read_some() && req.on_output_limit == OnOutputLimit::Kill {
                end(EndedBy::Output, &mut ended_by);
            }
        }
        if wait_status.is_none() {
            if let Ok(st) = waitpid(init, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                if !matches!(st, WaitStatus::StillAlive) {
                    // The kernel ends the rest of the run's pid namespace with it; then the
                    // pipes reach EOF.
                    wait_status = Some(st);
                }
            }
        }
    }
    let wall = t0.elapsed();
    let usage = meter.read();
    if let Ok(Some(c)) = c.lock() {
        let _ = c.delete(true);
    }
    let exit = match wait_status {
        Some(WaitStatus::Exited(_, c)) => (Some(c), None),
        Some(WaitStatus::Signaled(_, s, _)) => (None, Some(s as i32)),
        _ => (None, None),
    };
    let [out, err] = streams;
    Ok(conclude(ended_by, exit, usage, wall, out, err))
}

/// The result of a run that started: how its first process ended (`exit`: code or signal),
/// or what ended it first (`ended_by`), with its resource use and output.
pub(crate) fn conclude(
    ended_by: Option<EndedBy>,
    exit: (Option<i32>, Option<i32>),
    usage: Usage,
    wall: Duration,
    out: Stream,
    err: Stream,
) -> Outcome {
    let (exit_code, signal) = exit;
    let status = ended_by.map(EndedBy::status).unwrap_or(if usage.oom_kills > 0 {
        Status::Oom
    } else if signal.is_some() {
        Status::Signaled
    } else {
        Status::Exited
    });
    Outcome {
        status,
        limit: ended_by.map(EndedBy::name),
        exit_code,
        signal,
        wall_ms: wall.as_secs_f64() * 1e3,
        cpu_user_ms: usage.cpu_user_ns as f64 / 1e6,
        cpu_sys_ms: usage.cpu_sys_ns as f64 / 1e6,
        peak_memory_bytes: usage.peak_memory_bytes,
        stdout: out.captured(),
        stderr: err.captured(),
        setup_error: None,
    }
}
