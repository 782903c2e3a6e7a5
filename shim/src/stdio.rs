//! A process's standard streams between containerd's fifos and the container.
//!
//! Without a terminal the container gets pipes the shim owns, and threads copy between them and
//! the fifos: the shim can then close stdin on request and tell containerd about the end of the
//! output (EOF on the fifo) once every holder of the container's pipes has gone. With a terminal,
//! hutch sends the pty master to a console socket and the threads copy through the master.
//!
//! stdout and stderr fifos are opened read-write: the open never blocks, and a containerd that
//! restarts finds the output it missed still in the fifo. An empty path means "not wanted".
//!
//! A process's exit is reported once its output has been copied and its reader has taken it
//! from the fifo (`Output`): a client may stop reading when it learns of the exit (ctr 1.6
//! closes its fifos then), and output still in the pipe, the pty or the fifo would be lost.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::runtime::ChildStdio;

/// The fifo paths containerd gave for a process.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The shim's side of a process's streams, kept while the process lives.
#[derive(Default)]
pub struct Io {
    /// The writer of the container's stdin pipe, or the pty master: dropped by close_io.
    stdin: Arc<Mutex<Option<File>>>,
    /// containerd's stdin fifo, which the stdin thread may still be waiting to open.
    stdin_path: String,
    /// The pty master, for resize.
    pub console: Option<Arc<File>>,
    /// The copies of the process's output still running.
    pub output: Arc<Output>,
}

/// How long output may take to drain after the process's exit: longer only when something it
/// left behind (a daemon in a shared or the host's pid namespace) still holds its stdout, or
/// when nobody reads the fifo.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Counts a process's output copy threads that have not ended yet.
#[derive(Default)]
pub struct Output {
    copying: Mutex<usize>,
    done: Condvar,
}

impl Output {
    /// Waits until every copy has ended or `limit` has passed: true if they all ended. A
    /// process that leaves a daemon holding its stdout never ends its copy.
    pub fn wait_copied(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut n = self.copying.lock().expect("output lock");
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = self.done.wait_timeout(n, left).expect("output lock").0;
        }
        true
    }

    pub fn copied(&self) -> bool {
        *self.copying.lock().expect("output lock") == 0
    }

    fn begin(&self) {
        *self.copying.lock().expect("output lock") += 1;
    }

    fn end(&self) {
        *self.copying.lock().expect("output lock") -= 1;
        self.done.notify_all();
    }
}

/// A console socket hutch sends the pty master to; removed when dropped.
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// A socket under the system's temp dir: bundle paths can pass the 108 bytes of sun_path.
    pub fn new() -> std::io::Result<ConsoleSocket> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hutch-shim-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(ConsoleSocket { path, listener })
    }

    pub fn receive(&self) -> Result<OwnedFd, String> {
        hutch::terminal::receive_from_socket(&self.listener, Duration::from_secs(10))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

fn null(write: bool) -> std::io::Result<OwnedFd> {
    Ok(OpenOptions::new().read(!write).write(write).open("/dev/null")?.into())
}

/// Opens an output fifo without blocking (see the module comment).
fn open_output(path: &str) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(path)
}

/// Copies `from` to `to` until EOF or an error on either side, then drops both and counts the
/// copy ended in `output`.
fn copy_thread(mut from: File, mut to: File, name: &str, output: &Arc<Output>) {
    let name = name.to_string();
    output.begin();
    let output = output.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            drop(from);
            wait_taken(&to, OUTPUT_GRACE);
            drop(to);
            output.end();
        })
        .expect("thread spawn");
}

nix::ioctl_read_bad!(fionread, libc::FIONREAD, libc::c_int);

/// Waits (up to `limit`) until the reader of `fifo` has taken what was written to it.
fn wait_taken(fifo: &File, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int, the bytes in the fifo not read yet.
    while unsafe { fionread(fifo.as_raw_fd(), &mut unread) }.is_ok()
        && unread > 0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Copies containerd's stdin fifo into `to` (which close_io may take away). The fifo is opened
/// on the thread: the open waits for containerd's writer.
fn stdin_thread(path: String, to: Arc<Mutex<Option<File>>>) {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let Ok(mut from) = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(&path) else {
                return;
            };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut guard = to.lock().expect("stdin lock");
                let written = guard.as_mut().is_some_and(|w| w.write_all(&buf[..n]).is_ok());
                if !written {
                    return;
                }
            }
            // containerd closed stdin: so does the container's (a pty's master stays).
            let mut guard = to.lock().expect("stdin lock");
            if guard.as_ref().is_some_and(|f| !is_tty(f)) {
                *guard = None;
            }
        })
        .expect("thread spawn");
}

fn is_tty(f: &File) -> bool {
    nix::unistd::isatty(f.as_fd()).unwrap_or(false)
}

impl Io {
    /// Pipes for a process without a terminal: returns the shim's side (copying already) and
    /// the streams to give hutch.
    pub fn pipes(paths: &Paths) -> std::io::Result<(Io, ChildStdio)> {
        let stdin_w = Arc::new(Mutex::new(None));
        let stdin = if paths.stdin.is_empty() {
            null(false)?
        } else {
            let (r, w) = pipe()?;
            *stdin_w.lock().expect("stdin lock") = Some(File::from(w));
            stdin_thread(paths.stdin.clone(), stdin_w.clone());
            r
        };
        let output = Arc::new(Output::default());
        let mut out = Vec::new();
        for (path, name) in [(&paths.stdout, "stdout"), (&paths.stderr, "stderr")] {
            if path.is_empty() {
                out.push(null(true)?);
                continue;
            }
            let fifo = open_output(path)?;
            let (r, w) = pipe()?;
            copy_thread(File::from(r), fifo, name, &output);
            out.push(w);
        }
        let stderr = out.pop().expect("two");
        let stdout = out.pop().expect("two");
        let io = Io { stdin: stdin_w, stdin_path: paths.stdin.clone(), console: None, output };
        Ok((io, ChildStdio { stdin, stdout, stderr }))
    }

    /// For a process with a terminal, once hutch has sent its pty master: copies stdin's fifo
    /// into the master and the master into stdout's fifo (a terminal has no separate stderr).
    pub fn console(paths: &Paths, master: OwnedFd) -> std::io::Result<Io> {
        let master = File::from(master);
        let output = Arc::new(Output::default());
        if !paths.stdout.is_empty() {
            copy_thread(master.try_clone()?, open_output(&paths.stdout)?, "console", &output);
        }
        let stdin_w = Arc::new(Mutex::new(Some(master.try_clone()?)));
        if !paths.stdin.is_empty() {
            stdin_thread(paths.stdin.clone(), stdin_w.clone());
        }
        Ok(Io { stdin: stdin_w, stdin_path: paths.stdin.clone(), console: Some(Arc::new(master)), output })
    }

    /// Streams for hutch when the process has a terminal: hutch's own stdio is not the
    /// container's, so /dev/null.
    pub fn null_stdio() -> std::io::Result<ChildStdio> {
        Ok(ChildStdio { stdin: null(false)?, stdout: null(true)?, stderr: null(true)? })
    }

    /// close_io: the container's stdin reaches EOF (for a terminal: sends EOF, ^D).
    pub fn close_stdin(&self) {
        let mut guard = self.stdin.lock().expect("stdin lock");
        if let Some(f) = guard.as_mut() {
            if is_tty(f) {
                let _ = f.write_all(&[4]);
                return;
            }
        }
        *guard = None;
    }

    /// The process is gone: lets go of its stdin, and wakes a stdin thread still waiting for
    /// containerd's writer (a writer's open completes a waiting reader's; then it reads EOF).
    pub fn close(&self) {
        *self.stdin.lock().expect("stdin lock") = None;
        if !self.stdin_path.is_empty() {
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&self.stdin_path);
        }
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<(), String> {
        let Some(c) = &self.console else { return Err("the process has no terminal".into()) };
        hutch::terminal::resize(c.as_fd(), height as u16, width as u16).map_err(|e| format!("resize: {e}"))
    }
}

impl Paths {
    /// The paths of a request, each checked to name a fifo containerd created (or be empty), and
    /// not a `binary://` or `file://` log URI, which this shim does not support.
    pub fn checked(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Result<Paths, String> {
        for (field, path) in [("stdin", stdin), ("stdout", stdout), ("stderr", stderr)] {
            if path.contains("://") {
                return Err(format!(
                    "{field}: {path:?}: log URIs (binary://, file://) are not supported; give a fifo"
                ));
            }
            if !path.is_empty() && !Path::new(path).exists() {
                return Err(format!("{field}: {path}: no such fifo"));
            }
        }
        Ok(Paths { stdin: stdin.into(), stdout: stdout.into(), stderr: stderr.into(), terminal })
    }
}
