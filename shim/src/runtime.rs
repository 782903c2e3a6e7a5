//! Running hutch's own binary for every container operation, as containerd's runc shim runs
//! runc: the container is set up by a fresh single-threaded process, never by the shim's
//! threads (see docs/ARCHITECTURE.md, "The containerd shim").
//!
//! The shim is a subreaper and the containerd-shim crate reaps every child on SIGCHLD, so a
//! command's exit is taken from the crate's monitor (subscribed before the spawn), never from
//! `Child::wait`.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use containerd_shim::monitor::{monitor_subscribe, wait_pid, Topic};

/// Which hutch and which state root: from the runtime options containerd passes, or defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
}

/// The container's standard streams, for `create` and `exec`.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Where the runtime options are kept in the bundle, for the `delete` action of a new shim.
const RUNTIME_FILE: &str = "hutch-runtime.json";

impl Runtime {
    /// `binary` and `root` as the options give them (empty: the defaults): hutch beside the
    /// shim's own executable, else on PATH; state under /run/containerd/hutch/NAMESPACE.
    pub fn new(binary: &str, root: &str, namespace: &str) -> Runtime {
        let binary = if !binary.is_empty() {
            PathBuf::from(binary)
        } else {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("hutch")))
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("hutch"))
        };
        let root = if root.is_empty() { PathBuf::from("/run/containerd/hutch") } else { PathBuf::from(root) };
        Runtime { binary, root: root.join(namespace) }
    }

    pub fn save(&self, bundle: &Path) -> std::io::Result<()> {
        let v = serde_json::json!({"binary": self.binary, "root": self.root});
        std::fs::write(bundle.join(RUNTIME_FILE), v.to_string())
    }

    pub fn load(bundle: &Path) -> Option<Runtime> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join(RUNTIME_FILE)).ok()?).ok()?;
        Some(Runtime { binary: v["binary"].as_str()?.into(), root: v["root"].as_str()?.into() })
    }

    /// Runs `hutch --root ROOT ARGS` to its end. With `stdio`, those are its streams (the
    /// container's) and its errors are read from `log` (JSON lines); without, its stdout is
    /// returned and its stderr is the error. Err is the message of a failed command.
    pub fn run(&self, args: &[&str], stdio: Option<ChildStdio>, log: &Path) -> Result<String, String> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root).arg("--log").arg(log).args(["--log-format", "json"]);
        cmd.args(args);
        let captured = stdio.is_none();
        match stdio {
            Some(s) => {
                cmd.stdin(Stdio::from(s.stdin)).stdout(Stdio::from(s.stdout)).stderr(Stdio::from(s.stderr));
            }
            None => {
                cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        let what = format!("hutch {}", args.first().copied().unwrap_or_default());
        let sub = monitor_subscribe(Topic::Pid).map_err(|e| format!("{what}: {e}"))?;
        let log_len = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let mut child = cmd.spawn().map_err(|e| format!("{what}: run {}: {e}", self.binary.display()))?;
        let pid = child.id() as i32;
        let (mut out, mut err) = (String::new(), String::new());
        if captured {
            // stderr is small (one error at most); reading it on a thread keeps a full stdout
            // pipe from blocking hutch while we wait on stderr.
            let stderr = child.stderr.take();
            let reader = std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut e) = stderr {
                    let _ = e.read_to_string(&mut s);
                }
                s
            });
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_string(&mut out);
            }
            err = reader.join().unwrap_or_default();
        }
        let code = wait_pid(pid, sub);
        // Reaped by the crate's reaper already: dropping `child` does not wait.
        drop(child);
        if code == 0 {
            return Ok(out);
        }
        let logged = last_error(log, log_len);
        let message = logged.or_else(|| Some(err.trim().to_string()).filter(|e| !e.is_empty()));
        Err(format!("{what} failed (exit {code}): {}", message.unwrap_or_else(|| "no message".into())))
    }
}

/// The last error hutch logged to `log` after byte `from`.
fn last_error(log: &Path, from: u64) -> Option<String> {
    let text = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(text.get(from as usize..)?);
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error")
        .find_map(|v| v["msg"].as_str().map(str::to_string))
}
