//! OCI hooks, each run where and when the runtime spec says:
//!
//! | hook            | run by                  | namespaces | when                               |
//! |-----------------|-------------------------|------------|------------------------------------|
//! | prestart        | main (`create`)         | runtime    | namespaces made, before pivot_root |
//! | createRuntime   | main (`create`)         | runtime    | right after prestart               |
//! | createContainer | init                    | container  | after createRuntime, before pivot  |
//! | startContainer  | init                    | container  | on `start`, just before execve     |
//! | poststart       | `start`                 | runtime    | after the program started          |
//! | poststop        | `delete`                | runtime    | after the container is gone        |
//!
//! Each hook gets the container's state JSON on stdin, exactly its own `env`, and is killed
//! after `timeout` seconds. A failing prestart, createRuntime, createContainer or
//! startContainer hook fails that step (and the container with it); a failing poststart or
//! poststop hook is logged and ignored, as the spec says.

use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Point {
    pub const ALL: [Point; 6] = [
        Point::Prestart,
        Point::CreateRuntime,
        Point::CreateContainer,
        Point::StartContainer,
        Point::Poststart,
        Point::Poststop,
    ];

    /// The field's name in config.json.
    pub fn name(self) -> &'static str {
        match self {
            Point::Prestart => "prestart",
            Point::CreateRuntime => "createRuntime",
            Point::CreateContainer => "createContainer",
            Point::StartContainer => "startContainer",
            Point::Poststart => "poststart",
            Point::Poststop => "poststop",
        }
    }

    pub fn hooks(self, hooks: Option<&Hooks>) -> &[Hook] {
        let Some(h) = hooks else { return &[] };
        let list = match self {
            Point::Prestart => h.prestart(),
            Point::CreateRuntime => h.create_runtime(),
            Point::CreateContainer => h.create_container(),
            Point::StartContainer => h.start_container(),
            Point::Poststart => h.poststart(),
            Point::Poststop => h.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// Runs the hooks of `point` in order; the first failure stops the rest.
pub fn run(point: Point, hooks: Option<&Hooks>, state: &str) -> Result<(), String> {
    for (i, hook) in point.hooks(hooks).iter().enumerate() {
        run_one(hook, state)
            .map_err(|e| format!("hooks.{}[{i}] ({}): {e}", point.name(), hook.path().display()))?;
    }
    Ok(())
}

/// Runs the hooks of a point whose failures only warrant a warning.
pub fn run_and_warn(point: Point, hooks: Option<&Hooks>, state: &str) {
    if let Err(e) = run(point, hooks, state) {
        log::warn!("{e}");
    }
}

fn run_one(hook: &Hook, state: &str) -> Result<(), String> {
    let args = hook.args().as_deref().unwrap_or_default();
    // The hook's output is kept in memory for the error message, never in a pipe that could
    // fill up and stall it.
    let output = memfd().map_err(|e| format!("memfd: {e}"))?;
    let mut cmd = Command::new(hook.path());
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(args.iter().skip(1)).env_clear().stdin(Stdio::piped());
    cmd.stdout(output.try_clone().map_err(|e| e.to_string())?)
        .stderr(output.try_clone().map_err(|e| e.to_string())?);
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().map_err(|e| format!("start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = hook.timeout().filter(|t| *t > 0).map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut nap = Duration::from_micros(200);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", hook.timeout().unwrap_or_default()));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    };
    if status.success() {
        return Ok(());
    }
    let mut out = output;
    let mut text = String::new();
    let _ = out.rewind();
    let _ = out.read_to_string(&mut text);
    let tail: String = text.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!("{status}: {}", tail.trim()))
}

fn memfd() -> nix::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(c"hutch-hook", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(std::fs::File::from(fd))
}
