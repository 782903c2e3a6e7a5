//! What the shim knows of each container and process: pids, status, exits, streams, waiters.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Instant, SystemTime};

use containerd_shim::api::Status;

use crate::stdio::{Io, Paths};

/// How a process ended: its status as runc's shim reports it (a code, or 128 + signal).
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

/// A process's exit, set once; Wait blocks on it.
#[derive(Default)]
pub struct ExitCell {
    exit: Mutex<Option<Exit>>,
    cond: Condvar,
}

impl ExitCell {
    /// Sets the exit unless it is set already; true if this call set it.
    pub fn set(&self, exit: Exit) -> bool {
        let mut e = self.exit.lock().expect("exit lock");
        if e.is_some() {
            return false;
        }
        *e = Some(exit);
        self.cond.notify_all();
        true
    }

    pub fn get(&self) -> Option<Exit> {
        *self.exit.lock().expect("exit lock")
    }

    pub fn wait(&self) -> Exit {
        let mut e = self.exit.lock().expect("exit lock");
        loop {
            if let Some(x) = *e {
                return x;
            }
            e = self.cond.wait(e).expect("exit lock");
        }
    }
}

/// The init process or an exec'd one.
pub struct Process {
    /// The exec id; empty for init.
    pub exec_id: String,
    pub pid: i32,
    pub paths: Paths,
    pub status: Status,
    pub exit: Arc<ExitCell>,
    /// Its exit was reaped: the pid is no longer its own, though the exit may wait for the
    /// output to drain before it is recorded.
    pub reaped: bool,
    pub io: Io,
    /// An exec's OCI process JSON, until it starts.
    pub spec: Option<serde_json::Value>,
}

impl Process {
    pub fn new(exec_id: &str, paths: Paths) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            pid: 0,
            paths,
            status: Status::CREATED,
            exit: Arc::default(),
            reaped: false,
            io: Io::default(),
            spec: None,
        }
    }

    /// The status with a recorded exit taken into account.
    pub fn status(&self) -> Status {
        if self.exit.get().is_some() {
            Status::STOPPED
        } else {
            self.status
        }
    }
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: crate::runtime::Runtime,
    pub init: Process,
    pub execs: HashMap<String, Process>,
    /// Mounted by the shim from CreateTaskRequest.rootfs, unmounted at delete.
    pub mounted_rootfs: bool,
    /// Set when the OOM watcher should stop (the container is deleted).
    pub oom: Option<Arc<crate::oom::Watch>>,
    /// While Start runs, init's exit waits here: containerd must see TaskStart before TaskExit.
    pub starting: bool,
    pub held_exit: Option<Exit>,
}

impl Container {
    pub fn process(&self, exec_id: &str) -> Option<&Process> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }

    pub fn process_mut(&mut self, exec_id: &str) -> Option<&mut Process> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }
}

/// An exit the shim could not match to a process yet: a short-lived process can end before
/// the shim has read its pid file. Kept a while, then dropped (the monitor also reports the
/// exits of the shim's hutch commands, which match nothing).
pub struct Unmatched {
    pub pid: i32,
    pub exit: Exit,
    pub seen: Instant,
}

/// Everything the task service holds, under one lock: matching an exit to a process and
/// recording a new pid must not interleave.
#[derive(Default)]
pub struct Table {
    pub containers: HashMap<String, Container>,
    pub unmatched: Vec<Unmatched>,
}

impl Table {
    /// Takes a kept exit of `pid` that happened after `since`.
    pub fn take_unmatched(&mut self, pid: i32, since: Instant) -> Option<Exit> {
        let i = self.unmatched.iter().position(|u| u.pid == pid && u.seen >= since)?;
        Some(self.unmatched.swap_remove(i).exit)
    }

    pub fn keep_unmatched(&mut self, pid: i32, exit: Exit) {
        let now = Instant::now();
        self.unmatched.retain(|u| now.duration_since(u.seen).as_secs() < 60);
        self.unmatched.push(Unmatched { pid, exit, seen: now });
    }
}
