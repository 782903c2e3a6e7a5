//! The container lifecycle: create, start, state, kill, delete, as the OCI runtime spec
//! defines them, over the state store and the process stages.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::cgroups::Cgroup;
use crate::config::Config;
use crate::error::{Context, Error, Result};
use crate::process::{self, SpawnRequest};
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
}

pub struct Container {
    pub state: State,
    dir: StateDir,
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
    if config.process().terminal() == Some(true) && opts.console_socket.is_none() {
        log::debug!("terminal without console socket: the caller relays the pty");
    }
    let dir = StateDir::create(&opts.root, &opts.id)?;
    let mut cleanup = Cleanup {
        dir: Some(dir),
        cgroup: None,
    };
    let linux = config.spec.linux().as_ref();
    let cg_path = Cgroup::path_for(linux.and_then(|l| l.cgroups_path().as_deref()), &opts.id);
    let resources = Cgroup::resources_with_devices(
        linux.and_then(|l| l.resources().as_ref()),
        linux
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default(),
    );
    let cgroup = cleanup
        .cgroup
        .insert(Cgroup::create(&cg_path, Some(&resources), &config.file)?);
    let sock_path = cleanup.dir.as_ref().expect("set").start_socket();
    let listener =
        UnixListener::bind(&sock_path).context(|| format!("bind {}", sock_path.display()))?;

    let spawned = process::spawn(SpawnRequest {
        config,
        start_listener: OwnedFd::from(listener),
        cgroup,
        no_pivot: opts.no_pivot,
        preserve_fds: opts.preserve_fds,
    })?;
    let init = spawned.init;
    let result = (|| {
        let pid_start = start_time(init).ok_or_else(|| Error::Stage {
            stage: "init".into(),
            message: "exited right after setup".into(),
        })?;
        let state = State {
            id: opts.id.clone(),
            status: Status::Created,
            pid: init.as_raw(),
            pid_start,
            bundle: config.bundle.clone(),
            rootfs: config.rootfs.clone(),
            created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            owner: owner_name(),
            cgroup: cg_path.clone(),
            annotations: config.spec.annotations().clone().unwrap_or_default(),
        };
        let dir = cleanup.dir.as_ref().expect("set");
        dir.save(&state)?;
        if let Some(p) = &opts.pid_file {
            state::write_atomic(p, &init.to_string())?;
        }
        let mut console = spawned.console;
        if let (Some(sock), Some(master)) = (&opts.console_socket, &console) {
            crate::terminal::send_to_socket(sock, master.as_fd())
                .map_err(|e| Error::Usage(format!("--console-socket: {e}")))?;
            console = None;
        }
        Ok((state, console))
    })();
    match result {
        Ok((state, console)) => {
            let dir = cleanup.disarm();
            Ok(Created {
                container: Container { state, dir },
                console,
            })
        }
        Err(e) => {
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
        let dir = StateDir::open(root, id)?;
        let state = dir.load(id)?.ok_or_else(|| Error::BadState {
            id: id.to_string(),
            status: Status::Creating.to_string(),
            message: "it has no state yet (a create in progress, or one that died: delete --force removes it)".into(),
        })?;
        Ok(Container { state, dir })
    }

    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// The status as it is now: a stored status, unless init is gone.
    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        self.state.status
    }

    fn init_alive(&self) -> bool {
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
        let mut conn =
            UnixStream::connect(&sock).context(|| format!("connect {}", sock.display()))?;
        conn.write_all(process::init::START)
            .context(|| "release init".to_string())?;
        // init closes the connection by exec (it is close-on-exec) or writes why exec failed.
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        if !reply.is_empty() {
            return Err(Error::Stage {
                stage: "init".into(),
                message: reply,
            });
        }
        self.state.status = Status::Running;
        self.dir.save(&self.state)?;
        let _ = std::fs::remove_file(&sock);
        Ok(())
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
        self.signal_init(sig)
    }

    /// Signals init through a pidfd opened and then checked against the saved start time, so a
    /// recycled pid is never hit.
    fn signal_init(&self, sig: Signal) -> Result<()> {
        let pidfd =
            pidfd_open(self.state.pid).context(|| format!("pidfd_open {}", self.state.pid))?;
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
        Cgroup::open(&self.state.cgroup)
    }

    /// Removes a container. A created or stopped one goes as is (a created init is killed, as
    /// runc does); a running one only with `force`, which kills all of its processes first.
    pub fn delete(self, force: bool) -> Result<()> {
        let status = self.status();
        match status {
            Status::Stopped | Status::Created => {}
            _ if force => {}
            _ => {
                return Err(
                    self.bad_state("cannot delete a container that is not stopped (use --force)")
                )
            }
        }
        self.destroy()
    }

    fn destroy(self) -> Result<()> {
        let cg = self.cgroup();
        if self.init_alive() {
            let _ = self.signal_init(Signal::SIGKILL);
        }
        cg.destroy(KILL_TIMEOUT)?;
        self.dir.remove()
    }

    /// The state as the OCI runtime spec defines it (what `hutch state` prints).
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.status();
        let mut v = serde_json::json!({
            "ociVersion": oci_spec::runtime::VERSION,
            "id": self.state.id,
            "status": status,
            "bundle": self.state.bundle,
            "rootfs": self.state.rootfs,
            "created": self.state.created,
            "owner": self.state.owner,
        });
        if status != Status::Stopped {
            v["pid"] = self.state.pid.into();
        } else {
            v["pid"] = 0.into();
        }
        if !self.state.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.state.annotations).expect("map");
        }
        v
    }
}

/// Removes a container whose create died before writing state (`delete --force` on it).
pub fn remove_stale(root: &Path, id: &str) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    if dir.load(id)?.is_some() {
        return Err(Error::Usage(format!(
            "container \"{id}\" has state; use delete"
        )));
    }
    let cg = Cgroup::open(&Cgroup::path_for(None, id));
    cg.destroy(KILL_TIMEOUT)?;
    dir.remove()
}

fn start_time(pid: Pid) -> Option<u64> {
    procfs::process::Process::new(pid.as_raw())
        .and_then(|p| p.stat())
        .ok()
        .map(|s| s.starttime)
}

fn owner_name() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
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
