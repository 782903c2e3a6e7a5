//! The container lifecycle: create, start, state, kill, delete, as the OCI runtime spec
//! defines them, over the state store and the process stages.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::cgroups::Cgroup;
use crate::config::Config;
use crate::error::{Context, Error, Result};
use crate::hooks;
use crate::process::{self, CgroupSetup, Job, SpawnRequest};
use crate::state::{self, State, StateDir, Status};

/// How long delete waits for a killed container's processes to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    /// Where to send the terminal's master; without it, `create` returns the master.
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// The container lives only as long as this process (a sandbox run; init has a parent-death
    /// signal): no copy of its config is kept for later commands (exec, hooks), and its state
    /// is written once, by start. Until then a directory without state still tells `delete`
    /// the default cgroup to remove.
    pub ephemeral: bool,
    /// A filter compiled already (a sandbox profile's), loaded instead of compiling
    /// linux.seccomp.
    pub seccomp: Option<crate::seccomp::Compiled>,
}

pub struct Container {
    pub state: State,
    dir: StateDir,
}

/// A container whose lock was let go (`Container::unlock`).
pub struct Unlocked {
    state: State,
    dir: crate::state::UnlockedDir,
}

impl Unlocked {
    /// The container, locked again; `None` when another command deleted it meanwhile. Its
    /// state is as it was at `unlock`: what another command may have changed since (pause,
    /// resume) does not matter to a forced delete.
    pub fn lock(self) -> Result<Option<Container>> {
        Ok(self.dir.lock()?.map(|dir| Container { state: self.state, dir }))
    }
}

/// What `exec` needs besides the container.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub process: oci_spec::runtime::Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: i32,
}

/// An exec'd process.
pub struct Execd {
    /// A child of the calling process (CLONE_PARENT), so a foreground exec can wait for it.
    pub pid: Pid,
    pub console: Option<OwnedFd>,
}

/// What `create` gives back besides the container.
pub struct Created {
    pub container: Container,
    /// The pty master when the process has a terminal and no console socket was given.
    pub console: Option<OwnedFd>,
}

/// Creates a container: its init runs and waits for `start`. On any failure nothing is left:
/// no process, cgroup, mount (they died with init's mount namespace) or state directory.
pub fn create(opts: &CreateOptions) -> Result<Created> {
    state::check_id(&opts.id)?;
    let config = Config::load(&opts.bundle)?;
    create_from_config(opts, &config)
}

pub fn create_from_config(opts: &CreateOptions, config: &Config) -> Result<Created> {
    create_with_stdio(opts, config, None)
}

/// Like `create_from_config`, with the container's stdin, stdout and stderr given explicitly
/// (a harness's pipes) instead of inherited from the caller.
pub fn create_with_stdio(
    opts: &CreateOptions,
    config: &Config,
    stdio: Option<process::Stdio>,
) -> Result<Created> {
    let no_pivot = opts.no_pivot;
    create_job(opts, config, stdio, true, |start_listener| Job::Create { start_listener, no_pivot })
}

/// create and start in one: the program starts as soon as the container is built, with no
/// start socket and no wait for `start` (`run`, a sandbox run). The hooks run at the same
/// points as for create then start. Returns a running container.
pub fn create_running(
    opts: &CreateOptions,
    config: &Config,
    stdio: Option<process::Stdio>,
) -> Result<Created> {
    let no_pivot = opts.no_pivot;
    create_job(opts, config, stdio, false, |_| Job::Create { start_listener: None, no_pivot })
}

/// A warm sandbox's container: built as by create, with an init that serves runs over these
/// channels instead of waiting for start (see `crate::sandbox::zygote`).
pub fn create_zygote(
    opts: &CreateOptions,
    config: &Config,
    stdio: process::Stdio,
    requests: crate::channel::Receiver<crate::sandbox::zygote::Request>,
    replies: crate::channel::Sender<crate::sandbox::zygote::Reply>,
) -> Result<Created> {
    let no_pivot = opts.no_pivot;
    create_job(opts, config, Some(stdio), false, |_| Job::Zygote { no_pivot, requests, replies })
}

/// Builds a container for `job`, which gets the listening start socket when `waits_for_start`.
fn create_job(
    opts: &CreateOptions,
    config: &Config,
    stdio: Option<process::Stdio>,
    waits_for_start: bool,
    job: impl FnOnce(Option<OwnedFd>) -> Job,
) -> Result<Created> {
    let dir = StateDir::create(&opts.root, &opts.id)?;
    let linux = config.spec.linux().as_ref();
    let cg_path = Cgroup::path_for(linux.and_then(|l| l.cgroups_path().as_deref()), &opts.id);
    let mut state = State {
        id: opts.id.clone(),
        status: Status::Creating,
        pid: 0,
        pid_start: 0,
        bundle: config.bundle.clone(),
        rootfs: config.rootfs.clone(),
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        owner: owner_name(),
        cgroup: cg_path.clone(),
        annotations: config.spec.annotations().clone().unwrap_or_default(),
        landlock: config.landlock().map(|p| p.level_here()),
    };
    if let Some(level) = state.landlock {
        log::info!(
            "{}: Landlock policy {level} on this kernel (ABI {})",
            opts.id,
            crate::landlock_policy::kernel_abi()
        );
    }
    let mut cleanup = Cleanup { dir: Some(dir), cgroup: None };
    let default_cgroup = linux.and_then(|l| l.cgroups_path().as_ref()).is_none();
    if !(opts.ephemeral && default_cgroup) {
        // Should this process die half-way, `delete` learns from this which cgroup to remove.
        cleanup.dir.as_ref().expect("set").save(&state)?;
    }
    if !opts.ephemeral {
        cleanup.dir.as_ref().expect("set").save_config(&config.spec)?;
    }
    let resources = Cgroup::resources_with_devices(
        linux.and_then(|l| l.resources().as_ref()),
        linux.and_then(|l| l.devices().as_deref()).unwrap_or_default(),
    );
    let controllers = Cgroup::controllers_of(config.spec.annotations().as_ref());
    let after_clone = Cgroup::joinable_after_clone(Some(&resources));
    let cgroup_slot = &mut cleanup.cgroup;
    let make_cgroup = move || {
        let cg = cgroup_slot.insert(Cgroup::create(
            &cg_path,
            Some(&resources),
            &config.file,
            controllers.as_deref(),
        )?);
        cg.join_plan()
    };
    let start_listener = if waits_for_start {
        let sock_path = cleanup.dir.as_ref().expect("set").start_socket();
        let listener = UnixListener::bind(&sock_path).context(|| format!("bind {}", sock_path.display()))?;
        Some(OwnedFd::from(listener))
    } else {
        None
    };
    let job = job(start_listener);
    let runs_now = matches!(job, Job::Create { start_listener: None, .. });

    let hooks = config.spec.hooks().as_ref();
    let seccomp = match &opts.seccomp {
        Some(c) => Some(c.clone()),
        None => compile_seccomp(config, &opts.root)?,
    };
    let spawned = match process::spawn(SpawnRequest {
        config,
        seccomp,
        stdio,
        hook_state: hooks.is_some().then(|| oci_state_json(&state, Status::Creating)),
        job,
        cgroup: CgroupSetup { make: Box::new(make_cgroup), after_clone },
        preserve_fds: opts.preserve_fds,
    }) {
        Ok(spawned) => spawned,
        Err(e) => {
            // A failed create continues at delete, poststop hooks included (runtime spec).
            hooks::run_and_warn(
                hooks::Point::Poststop,
                hooks,
                &oci_state_json(&state, Status::Stopped).to_string(),
            );
            return Err(e);
        }
    };
    let init = spawned.init;
    let result = (|| {
        let pid_start = start_time(init).ok_or_else(|| Error::Stage {
            stage: "init".into(),
            message: "exited right after setup".into(),
        })?;
        state.status = if runs_now { Status::Running } else { Status::Created };
        state.pid = init.as_raw();
        state.pid_start = pid_start;
        // An ephemeral container's state is written once, when its program runs.
        if !opts.ephemeral || runs_now {
            cleanup.dir.as_ref().expect("set").save(&state)?;
        }
        if let Some(p) = &opts.pid_file {
            state::write_atomic(p, &init.to_string())?;
        }
        hand_over(
            spawned,
            &config.spec,
            &config.file,
            &oci_state_json(&state, state.status),
            opts.console_socket.as_deref(),
        )
    })();
    match result {
        Ok(console) => {
            let dir = cleanup.disarm();
            if runs_now {
                hooks::run_and_warn(
                    hooks::Point::Poststart,
                    hooks,
                    &oci_state_json(&state, Status::Running).to_string(),
                );
            }
            Ok(Created { container: Container { state, dir }, console })
        }
        Err(e) => {
            hooks::run_and_warn(
                hooks::Point::Poststop,
                hooks,
                &oci_state_json(&state, Status::Stopped).to_string(),
            );
            let _ = nix::sys::signal::kill(init, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(init, None);
            if let Some(p) = &opts.pid_file {
                let _ = std::fs::remove_file(p);
            }
            Err(e)
        }
    }
}

/// Undoes a half-made container unless disarmed.
struct Cleanup {
    dir: Option<StateDir>,
    cgroup: Option<Cgroup>,
}

impl Cleanup {
    fn disarm(&mut self) -> StateDir {
        self.cgroup = None;
        self.dir.take().expect("disarmed once")
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy(KILL_TIMEOUT) {
                log::warn!("cleanup: {e}");
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
    }
}

impl Container {
    /// Loads and locks a container; the lock is held until the value is dropped.
    pub fn load(root: &Path, id: &str) -> Result<Container> {
        Self::from_dir(StateDir::open(root, id)?)
    }

    /// Like `load`, but `None` when another command holds the container right now.
    pub fn try_load(root: &Path, id: &str) -> Result<Option<Container>> {
        StateDir::try_open(root, id)?.map(Self::from_dir).transpose()
    }

    fn from_dir(dir: StateDir) -> Result<Container> {
        // A directory without state.json: a create that died before its first write.
        let state = dir.load()?.unwrap_or_else(|| State {
            id: dir.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            status: Status::Creating,
            pid: 0,
            pid_start: 0,
            bundle: PathBuf::new(),
            rootfs: PathBuf::new(),
            created: String::new(),
            owner: String::new(),
            cgroup: String::new(),
            annotations: Default::default(),
            landlock: None,
        });
        Ok(Container { state, dir })
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Lets the container's lock go while the caller only waits on it (a sandbox run), so that
    /// other commands can reach it meanwhile; `Unlocked::lock` takes it back.
    pub fn unlock(self) -> Unlocked {
        Unlocked { state: self.state, dir: self.dir.unlock() }
    }

    /// The status as it is now: a stored status, unless init is gone. We hold the lock, so a
    /// stored `Creating` is a create that died: it shows as stopped, and delete cleans it.
    pub fn status(&self) -> Status {
        if self.state.pid <= 0 || !self.init_alive() {
            return Status::Stopped;
        }
        self.state.status
    }

    fn init_alive(&self) -> bool {
        if self.state.pid <= 0 {
            return false;
        }
        let Ok(stat) = procfs::process::Process::new(self.state.pid).and_then(|p| p.stat()) else {
            return false;
        };
        stat.starttime == self.state.pid_start && stat.state != 'Z' && stat.state != 'X'
    }

    fn bad_state(&self, message: &str) -> Error {
        Error::BadState {
            id: self.id().to_string(),
            status: self.status().to_string(),
            message: message.to_string(),
        }
    }

    /// Releases init: it execs the user's program. Errors from execve come back here.
    pub fn start(&mut self) -> Result<()> {
        if self.status() != Status::Created {
            return Err(self.bad_state("only a created container can be started"));
        }
        let sock = self.dir.start_socket();
        let mut conn = UnixStream::connect(&sock).context(|| format!("connect {}", sock.display()))?;
        conn.write_all(process::init::START).context(|| "release init".to_string())?;
        // init closes the connection by exec (it is close-on-exec) or writes why it failed; a
        // seccomp listener loaded just before exec comes this way too.
        let (reply, mut fds) = read_all_with_fds(&conn);
        let mut reply = &reply[..];
        if reply.first() == Some(&process::init::START_LISTENER) {
            reply = &reply[1..];
            if let Some(listener) = fds.pop() {
                self.forward_listener(listener.as_fd(), Status::Running)?;
            }
        }
        if reply.first() == Some(&process::init::START_ERROR) {
            return Err(Error::Stage {
                stage: "init".into(),
                message: String::from_utf8_lossy(&reply[1..]).into_owned(),
            });
        }
        self.state.status = Status::Running;
        self.dir.save(&self.state)?;
        let _ = std::fs::remove_file(&sock);
        self.hooks_and_warn(hooks::Point::Poststart, Status::Running);
        Ok(())
    }

    /// Sends a seccomp NOTIFY listener to the agent at listenerPath.
    fn forward_listener(&self, listener: std::os::fd::BorrowedFd<'_>, status: Status) -> Result<()> {
        let file = self.dir.config_path();
        let bytes = std::fs::read(&file).context(|| format!("read {}", file.display()))?;
        let spec =
            crate::config::parse(&bytes[..]).map_err(|(field, msg)| Error::config(&file, field, msg))?;
        forward_listener(&spec, &file, listener, self.state.pid, &oci_state_json(&self.state, status))
    }

    /// The container's own process, as `exec` starts from it (runc's behaviour: an exec'd
    /// process inherits env, user, cwd and capabilities unless told otherwise).
    pub fn process_template(&self) -> Result<oci_spec::runtime::Process> {
        let file = self.dir.config_path();
        let bytes = std::fs::read(&file).context(|| format!("read {}", file.display()))?;
        let spec =
            crate::config::parse(&bytes[..]).map_err(|(field, msg)| Error::config(&file, field, msg))?;
        spec.process().clone().ok_or_else(|| Error::config(&file, "process", "missing"))
    }

    /// Runs one more process in the container: it joins every namespace and the cgroup of the
    /// container and applies its own process fields. Returns its pid (a child of the caller)
    /// and, for a terminal without a console socket, the pty master.
    pub fn exec(&self, opts: &ExecOptions) -> Result<Execd> {
        let status = self.status();
        if status != Status::Running && status != Status::Created {
            return Err(self.bad_state("exec needs a created or running container"));
        }
        let file = self.dir.config_path();
        let bytes = std::fs::read(&file).context(|| format!("read {}", file.display()))?;
        let spec =
            crate::config::parse(&bytes[..]).map_err(|(field, msg)| Error::config(&file, field, msg))?;
        let config = Config::from_spec(spec, self.state.bundle.clone(), file.clone())?;
        crate::config::check_process(&opts.process, &file, "exec process")?;
        if opts.process.terminal() == Some(true) && opts.console_socket.is_none() && opts.detach {
            return Err(Error::Usage("a detached exec with a terminal needs --console-socket".into()));
        }
        let cgroup = self.cgroup();
        let root = self.dir.dir.parent().map(Path::to_path_buf).unwrap_or_default();
        let spawned = process::spawn(SpawnRequest {
            config: &config,
            seccomp: compile_seccomp(&config, &root)?,
            stdio: None,
            hook_state: None,
            job: Job::Exec { target: Pid::from_raw(self.state.pid), process: Box::new(opts.process.clone()) },
            cgroup: CgroupSetup::existing(&cgroup),
            preserve_fds: opts.preserve_fds,
        })?;
        if let Some(p) = &opts.pid_file {
            state::write_atomic(p, &spawned.init.to_string())?;
        }
        let pid = spawned.init;
        let console =
            hand_over(spawned, &config.spec, &file, &self.oci_state(), opts.console_socket.as_deref())?;
        Ok(Execd { pid, console })
    }

    /// Freezes every process of a running container.
    pub fn pause(&mut self) -> Result<()> {
        if self.status() != Status::Running {
            return Err(self.bad_state("only a running container can be paused"));
        }
        self.cgroup().set_frozen(true)?;
        self.state.status = Status::Paused;
        self.dir.save(&self.state)
    }

    /// Thaws a paused container.
    pub fn resume(&mut self) -> Result<()> {
        if self.status() != Status::Paused {
            return Err(self.bad_state("only a paused container can be resumed"));
        }
        self.cgroup().set_frozen(false)?;
        self.state.status = Status::Running;
        self.dir.save(&self.state)
    }

    /// Changes the limits of a live container.
    pub fn update(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        if self.status() == Status::Stopped {
            return Err(self.bad_state("a stopped container cannot be updated"));
        }
        self.cgroup().update(resources)
    }

    /// The container's statistics as runc's `events --stats` prints them.
    pub fn stats_event(&self) -> Result<serde_json::Value> {
        if self.status() == Status::Stopped {
            return Err(self.bad_state("container not running"));
        }
        Ok(crate::stats::event(self.id(), &self.cgroup().stats()?))
    }

    /// Every process of the container (host pids).
    pub fn pids(&self) -> Vec<Pid> {
        self.cgroup().procs()
    }

    /// Sends `sig` to init, or with `all` to every process of the container.
    pub fn kill(&self, sig: Signal, all: bool) -> Result<()> {
        let status = self.status();
        if all {
            if status == Status::Stopped && self.cgroup().procs().is_empty() {
                return Err(self.bad_state("container not running"));
            }
            return self.cgroup().signal_all(sig);
        }
        if status == Status::Stopped {
            return Err(self.bad_state("container not running"));
        }
        self.signal_init(sig)?;
        // A frozen process only dies once thawed; as runc does, a kill resumes it.
        if status == Status::Paused && sig == Signal::SIGKILL {
            self.cgroup().set_frozen(false)?;
        }
        Ok(())
    }

    /// Signals init through a pidfd opened and then checked against the saved start time, so a
    /// recycled pid is never hit.
    fn signal_init(&self, sig: Signal) -> Result<()> {
        let pidfd = pidfd_open(self.state.pid).context(|| format!("pidfd_open {}", self.state.pid))?;
        if !self.init_alive() {
            return Err(self.bad_state("container not running"));
        }
        // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                sig as i32,
                std::ptr::null::<()>(),
                0,
            )
        };
        if rc < 0 {
            return Err(Error::Io {
                context: format!("signal {sig} to {}", self.state.pid),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    pub fn cgroup(&self) -> Cgroup {
        let path = match self.state.cgroup.as_str() {
            "" => Cgroup::path_for(None, &self.state.id),
            p => p.to_string(),
        };
        Cgroup::open(&path, Cgroup::controllers_of(Some(&self.state.annotations)).as_deref())
    }

    /// Removes a container. A created or stopped one goes as is (a created init is killed, as
    /// runc does); a running one only with `force`, which kills all of its processes first.
    pub fn delete(self, force: bool) -> Result<()> {
        if !force && !matches!(self.status(), Status::Stopped | Status::Created) {
            return Err(self.bad_state("cannot delete a container that is not stopped (use --force)"));
        }
        self.destroy()
    }

    fn destroy(self) -> Result<()> {
        let cg = self.cgroup();
        if self.init_alive() {
            let _ = self.signal_init(Signal::SIGKILL);
        }
        cg.destroy(KILL_TIMEOUT)?;
        // poststop needs the config, which goes with the directory: read it first.
        let poststop = std::fs::read(self.dir.config_path()).ok();
        let state = self.state.clone();
        self.dir.remove()?;
        if let Some(spec) = poststop.and_then(|b| crate::config::parse(&b[..]).ok()) {
            hooks::run_and_warn(
                hooks::Point::Poststop,
                spec.hooks().as_ref(),
                &oci_state_json(&state, Status::Stopped).to_string(),
            );
        }
        Ok(())
    }

    /// The state as the OCI runtime spec defines it (what `hutch state` prints).
    pub fn oci_state(&self) -> serde_json::Value {
        oci_state_json(&self.state, self.status())
    }

    /// Runs the hooks of `point` that only warrant a warning when they fail.
    fn hooks_and_warn(&self, point: hooks::Point, status: Status) {
        let Ok(bytes) = std::fs::read(self.dir.config_path()) else { return };
        let Ok(spec) = crate::config::parse(&bytes[..]) else { return };
        if !point.hooks(spec.hooks().as_ref()).is_empty() {
            hooks::run_and_warn(
                point,
                spec.hooks().as_ref(),
                &oci_state_json(&self.state, status).to_string(),
            );
        }
    }
}

/// Compiles the config's seccomp profile (cached under the state root).
fn compile_seccomp(config: &Config, root: &Path) -> Result<Option<crate::seccomp::Compiled>> {
    let Some(profile) = config.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    crate::seccomp::cache::compile_cached(Some(&root.join(SECCOMP_CACHE)), profile)
        .map(Some)
        .map_err(|(field, msg)| Error::config(&config.file, format!("linux.seccomp.{field}"), msg))
}

/// Where compiled seccomp profiles are kept, under the state root.
pub const SECCOMP_CACHE: &str = ".seccomp-cache";

/// Passes on what a new process sent main: its seccomp NOTIFY listener to the agent at
/// listenerPath, and its pty master to `console_socket`. Returns the master when no socket
/// takes it.
fn hand_over(
    spawned: process::Spawned,
    spec: &oci_spec::runtime::Spec,
    file: &Path,
    state: &serde_json::Value,
    console_socket: Option<&Path>,
) -> Result<Option<OwnedFd>> {
    if let Some(listener) = &spawned.seccomp_listener {
        forward_listener(spec, file, listener.as_fd(), spawned.init.as_raw(), state)?;
    }
    match (console_socket, spawned.console) {
        (Some(sock), Some(master)) => {
            crate::terminal::send_to_socket(sock, master.as_fd())
                .map_err(|e| Error::Usage(format!("--console-socket: {e}")))?;
            Ok(None)
        }
        (_, console) => Ok(console),
    }
}

fn forward_listener(
    spec: &oci_spec::runtime::Spec,
    file: &Path,
    listener: std::os::fd::BorrowedFd<'_>,
    pid: i32,
    state: &serde_json::Value,
) -> Result<()> {
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let Some(path) = seccomp.and_then(|s| s.listener_path().as_ref()) else { return Ok(()) };
    let msg =
        crate::seccomp::agent::message(pid, seccomp.and_then(|s| s.listener_metadata().as_deref()), state);
    crate::seccomp::agent::send(path, listener, &msg)
        .map_err(|e| Error::config(file, "linux.seccomp.listenerPath", e))
}

/// Reads a stream to its end, with any descriptors that came along.
fn read_all_with_fds(conn: &UnixStream) -> (Vec<u8>, Vec<OwnedFd>) {
    use std::os::fd::{AsRawFd, FromRawFd};
    let (mut data, mut fds) = (Vec::new(), Vec::new());
    loop {
        let mut buf = [0u8; 4096];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        match nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
            Ok(msg) => {
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let nix::sys::socket::ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: the kernel just installed these descriptors for us.
                            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                        }
                    }
                }
                let n = msg.bytes;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
        }
    }
    (data, fds)
}

/// The OCI state of `state` with `status`.
pub fn oci_state_json(state: &State, status: Status) -> serde_json::Value {
    let mut v = serde_json::json!({
        "ociVersion": oci_spec::runtime::VERSION,
        "id": state.id,
        "status": status,
        "pid": if status == Status::Stopped { 0 } else { state.pid },
        "bundle": state.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
        "owner": state.owner,
    });
    let mut annotations = state.annotations.clone();
    if let Some(level) = state.landlock {
        annotations.insert(format!("{}.status", crate::landlock_policy::ANNOTATION), level.to_string());
    }
    if !annotations.is_empty() {
        v["annotations"] = serde_json::to_value(&annotations).expect("map");
    }
    v
}

fn start_time(pid: Pid) -> Option<u64> {
    procfs::process::Process::new(pid.as_raw()).and_then(|p| p.stat()).ok().map(|s| s.starttime)
}

/// The caller's user name from /etc/passwd, else its uid. Read directly, as runc's Go does:
/// hutch is linked statically, where the C library's lookup would load NSS modules at run time.
fn owner_name() -> String {
    let uid = nix::unistd::geteuid().as_raw().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid)
        .map(|f| f[0].to_string())
        .unwrap_or(uid)
}

pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}
