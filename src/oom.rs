//! Noticing OOM kills inside a container's cgroup.
//!
//! The kernel counts them: `oom_kill` in v1's memory.oom_control and in v2's memory.events. A
//! watcher remembers the count and reports each increase. To wake up when it happens rather than
//! on the next poll, v1 registers an eventfd through cgroup.event_control and v2 watches
//! memory.events with inotify (the kernel signals a modification of that file on every event).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

pub struct OomWatcher {
    /// memory.oom_control (v1) or memory.events (v2).
    counter: PathBuf,
    seen: u64,
    /// An eventfd (v1) or inotify descriptor (v2) that becomes readable on an event.
    wake: Option<OwnedFd>,
    /// v1 keeps memory.oom_control open for the eventfd registration to stay valid.
    _control: Option<File>,
}

impl OomWatcher {
    /// Watches the memory cgroup directory `dir` (for v1, the memory hierarchy's).
    pub fn new(dir: PathBuf, v2: bool) -> std::io::Result<OomWatcher> {
        let counter = dir.join(if v2 { "memory.events" } else { "memory.oom_control" });
        let seen = read_count(&counter)?;
        let (wake, control) = if v2 {
            (inotify(&counter).ok(), None)
        } else {
            eventfd(&dir, &counter).map_or((None, None), |(w, c)| (Some(w), Some(c)))
        };
        Ok(OomWatcher { counter, seen, wake, _control: control })
    }

    /// OOM kills since the last call (or since the watcher was made).
    pub fn take(&mut self) -> u64 {
        let now = read_count(&self.counter).unwrap_or(self.seen);
        let new = now.saturating_sub(self.seen);
        self.seen = now;
        new
    }

    /// Waits up to `timeout` for something to happen, then returns the new OOM kills.
    pub fn wait(&mut self, timeout: Duration) -> u64 {
        if let Some(w) = &self.wake {
            let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            if let Ok(n) = poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::NONE)) {
                if n > 0 {
                    let mut buf = [0u8; 4096];
                    let _ = nix::unistd::read(w.as_fd(), &mut buf);
                }
            }
        } else {
            std::thread::sleep(timeout);
        }
        self.take()
    }
}

/// The OOM kills the kernel has counted so far in the memory cgroup directory `dir`.
pub fn kills(dir: &std::path::Path, v2: bool) -> u64 {
    read_count(&dir.join(if v2 { "memory.events" } else { "memory.oom_control" })).unwrap_or(0)
}

fn read_count(path: &PathBuf) -> std::io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok()))
        .unwrap_or(0))
}

fn inotify(path: &PathBuf) -> nix::Result<OwnedFd> {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
    ino.add_watch(path, AddWatchFlags::IN_MODIFY)?;
    Ok(OwnedFd::from(ino))
}

fn eventfd(dir: &std::path::Path, counter: &PathBuf) -> std::io::Result<(OwnedFd, File)> {
    let control = File::open(counter)?;
    let efd = nix::sys::eventfd::EventFd::from_value_and_flags(
        0,
        nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
    )?;
    let efd = OwnedFd::from(efd);
    std::fs::write(dir.join("cgroup.event_control"), format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()))?;
    Ok((efd, control))
}
