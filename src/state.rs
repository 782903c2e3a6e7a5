//! The state store: `<root>/<id>/state.json`, one directory per container.
//!
//! Every command that reads or changes a container holds an exclusive flock on its directory,
//! so two commands never interleave. state.json is written to a temporary file and renamed, so a
//! reader never sees half of it. The init's pid is kept with its start time (from procfs): a pid
//! that the kernel has since given to another process is recognised and never signalled.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

pub const DEFAULT_ROOT: &str = "/run/hutch";
const STATE_FILE: &str = "state.json";
const CONFIG_COPY: &str = "config.json";
/// The socket init listens on until `start`.
pub const START_SOCKET: &str = "notify.sock";

/// The lifecycle states of the OCI runtime spec. `Creating` is stored when a create begins, so
/// that a create that dies half-way still says which cgroup to clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
    Paused,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
        };
        f.write_str(s)
    }
}

/// What hutch remembers about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// `Creating`, `Created` until start succeeds, then `Running`; `Stopped` is never stored, it
    /// is seen.
    pub status: Status,
    pub pid: i32,
    /// The init's start time in clock ticks after boot (/proc/<pid>/stat field 22).
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    pub cgroup: String,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// How much of the Landlock policy this kernel enforces, when the container has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<crate::landlock_policy::Level>,
}

/// A container's directory, locked for as long as this value lives.
pub struct StateDir {
    pub dir: PathBuf,
    _lock: Flock<File>,
}

pub fn check_id(id: &str) -> Result<()> {
    let why = if id.is_empty() {
        "empty"
    } else if id == "." || id == ".." {
        "not a name"
    } else if id.len() > 1024 {
        "longer than 1024 bytes"
    } else if id.starts_with('.') {
        "it must not start with '.' (those names are hutch's own)"
    } else if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b)) {
        "only letters, digits, '_', '+', '-' and '.' are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidId { id: id.to_string(), why })
}

impl StateDir {
    /// Creates and locks the directory of a new container; fails if the id is taken.
    pub fn create(root: &Path, id: &str) -> Result<StateDir> {
        check_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .context(|| format!("create state root {}", root.display()))?;
        let dir = root.join(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()))
            }
            Err(e) => return Err(Error::Io { context: format!("create {}", dir.display()), source: e }),
        }
        Ok(Self::lock(dir, FlockArg::LockExclusive)?.expect("a blocking lock is always taken"))
    }

    /// Opens and locks an existing container's directory, waiting for another command on it.
    pub fn open(root: &Path, id: &str) -> Result<StateDir> {
        Self::open_with(root, id, FlockArg::LockExclusive)?.ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Like `open`, but `None` at once when another command holds the container.
    pub fn try_open(root: &Path, id: &str) -> Result<Option<StateDir>> {
        Self::open_with(root, id, FlockArg::LockExclusiveNonblock)
    }

    fn open_with(root: &Path, id: &str, how: FlockArg) -> Result<Option<StateDir>> {
        check_id(id)?;
        let dir = root.join(id);
        let sd = match Self::lock(dir, how) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            r => r?,
        };
        let Some(sd) = sd else { return Ok(None) };
        if sd.still_at_path() {
            Ok(Some(sd))
        } else {
            Err(Error::NotFound(id.to_string()))
        }
    }

    /// Whether the directory we locked is still the one at the path: while we waited for the
    /// lock, its holder may have deleted the container and another with the same id been made.
    fn still_at_path(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let (Ok(locked), Ok(now)) = (self._lock.metadata(), fs::metadata(&self.dir)) else { return false };
        (now.dev(), now.ino()) == (locked.dev(), locked.ino())
    }

    /// Lets the lock go, so that other commands (state, kill, list) can reach a container that
    /// this one only waits on; `UnlockedDir::lock` takes it back.
    pub fn unlock(self) -> UnlockedDir {
        let dir = self.dir;
        // Cannot fail on a descriptor we hold locked (nix's Flock panics on drop if it does).
        let file = self._lock.unlock().unwrap_or_else(|(_, e)| panic!("unlock {}: {e}", dir.display()));
        UnlockedDir { dir, file }
    }

    fn lock(dir: PathBuf, how: FlockArg) -> Result<Option<StateDir>> {
        let f = File::open(&dir).context(|| format!("open {}", dir.display()))?;
        Self::lock_file(dir, f, how)
    }

    fn lock_file(dir: PathBuf, f: File, how: FlockArg) -> Result<Option<StateDir>> {
        match Flock::lock(f, how) {
            Ok(lock) => Ok(Some(StateDir { dir, _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(Error::Sys { context: format!("lock {}", dir.display()), source: e }),
        }
    }

    /// The start socket, named through our descriptor of the directory: a unix socket path
    /// must fit in 108 bytes, and `<root>/<64-hex-id>/notify.sock` under containerd's roots does
    /// not always.
    pub fn start_socket(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}/{START_SOCKET}", self._lock.as_raw_fd()))
    }

    pub fn load(&self) -> Result<Option<State>> {
        let path = self.dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Io { context: format!("{}", path.display()), source: e.into() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io { context: format!("read {}", path.display()), source: e }),
        }
    }

    pub fn save(&self, state: &State) -> Result<()> {
        self.write(STATE_FILE, &serde_json::to_vec(state).expect("state serializes"))
    }

    /// The container's config as it was at create, for `exec` (the bundle may change later).
    pub fn save_config(&self, spec: &oci_spec::runtime::Spec) -> Result<()> {
        self.write(CONFIG_COPY, &serde_json::to_vec(spec).expect("spec serializes"))
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_COPY)
    }

    /// Writes a file of the state directory atomically.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .context(|| format!("write {}", tmp.display()))?;
        f.write_all(bytes).context(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, self.dir.join(name)).context(|| format!("rename {}", tmp.display()))
    }

    /// Removes the directory; the lock goes with the value.
    pub fn remove(self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io { context: format!("remove {}", self.dir.display()), source: e }),
        }
    }
}

/// A container's directory whose lock was let go (`StateDir::unlock`).
pub struct UnlockedDir {
    dir: PathBuf,
    /// Kept open: while it is, no other directory can take its inode number.
    file: File,
}

impl UnlockedDir {
    /// Takes the lock again, waiting for another command that holds it; `None` when the
    /// container was deleted meanwhile.
    pub fn lock(self) -> Result<Option<StateDir>> {
        let sd = StateDir::lock_file(self.dir, self.file, FlockArg::LockExclusive)?;
        Ok(sd.filter(StateDir::still_at_path))
    }
}

/// Writes `content` to `path` atomically (temp file + rename), as for --pid-file.
pub fn write_atomic(path: &Path, content: &str) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, content).context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).context(|| format!("rename to {}", path.display()))
}

/// Ids of all containers under `root`, sorted.
pub fn ids(root: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::Io { context: format!("read {}", root.display()), source: e }),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state root of the test's own, removed whatever the test's outcome.
    struct Root(PathBuf);

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn root() -> Root {
        let r = std::env::temp_dir().join(format!("hutch-state-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&r);
        Root(r)
    }

    #[test]
    fn an_unlocked_directory_is_locked_again_only_while_it_is_the_same_container() {
        let guard = root();
        let root = &guard.0;
        let dir = StateDir::create(root, "c").unwrap();
        let unlocked = dir.unlock();
        // While it is let go, another command can take the lock.
        let other = StateDir::try_open(root, "c").unwrap().expect("the lock was let go");
        drop(other);
        let dir = unlocked.lock().unwrap().expect("still the same container");

        // Deleted meanwhile, and the id taken by a new container: not ours any more.
        let unlocked = dir.unlock();
        StateDir::open(root, "c").unwrap().remove().unwrap();
        assert!(unlocked.lock().unwrap().is_none(), "a deleted container was locked again");
        let unlocked = StateDir::create(root, "c").unwrap().unlock();
        let newer = StateDir::open(root, "c").unwrap();
        newer.remove().unwrap();
        let _again = StateDir::create(root, "c").unwrap().unlock();
        assert!(unlocked.lock().unwrap().is_none(), "another container with the same id was taken for ours");
    }
}
