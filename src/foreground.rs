//! Supervising a container in the foreground (`hutch run` without --detach): signals sent to
//! hutch go to the container's init, a terminal is relayed between hutch's stdio and the
//! container's pty, and the exit status comes back the way a shell reports it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{read, write, Pid};

use crate::error::{Context, Result};

/// Signals hutch passes on to the container rather than acting on.
const FORWARDED: [Signal; 10] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGPWR,
    Signal::SIGWINCH,
];

/// The shell's convention: the exit code, or 128+N for death by signal N.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Blocks the forwarded signals and SIGCHLD; call before `start` so none is missed.
pub struct SignalGuard {
    old: SigSet,
    fd: SignalFd,
}

impl SignalGuard {
    pub fn new() -> Result<SignalGuard> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(s);
        }
        set.add(Signal::SIGCHLD);
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))
            .context(|| "block signals".into())?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context(|| "signalfd".into())?;
        Ok(SignalGuard { old, fd })
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

/// Puts a terminal in raw mode for as long as it lives.
struct RawMode {
    fd: i32,
    saved: Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd: fd.as_raw_fd(), saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: stdin outlives this guard.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &self.saved);
    }
}

/// Waits for `init` to exit while forwarding signals and relaying `console`. Returns the
/// shell-style exit code.
pub fn supervise(init: Pid, console: Option<OwnedFd>, signals: SignalGuard) -> Result<i32> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let _raw = console.as_ref().and_then(|m| {
        if let Some((rows, cols)) = crate::terminal::size_of(stdin.as_fd()) {
            let _ = crate::terminal::resize(m.as_fd(), rows, cols);
        }
        RawMode::enter(stdin.as_fd())
    });
    let mut stdin_open = console.is_some();
    let mut master_open = console.is_some();
    let mut buf = vec![0u8; 16 * 1024];
    let mut code = None;
    loop {
        if code.is_none() {
            code = reap(init);
        }
        if code.is_some() && !master_open {
            break;
        }
        let mut fds = vec![PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &console {
            if master_open {
                fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open && code.is_none() {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        // Once init is gone, only drain what the pty still holds.
        let timeout = if code.is_some() { PollTimeout::ZERO } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context(|| "poll".into()),
            Ok(0) => break,
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(info)) = signals.fd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match sig {
                    Signal::SIGCHLD => {}
                    Signal::SIGWINCH => {
                        if let (Some(m), Some((r, c))) = (&console, crate::terminal::size_of(stdin.as_fd())) {
                            let _ = crate::terminal::resize(m.as_fd(), r, c);
                        }
                    }
                    sig => {
                        let _ = kill(init, sig);
                    }
                }
            }
        }
        let Some(m) = &console else { continue };
        let mut i = 1;
        if master_open {
            if ready.get(i) == Some(&true) {
                match read(m.as_fd(), &mut buf) {
                    Ok(0) | Err(Errno::EIO) => master_open = false,
                    Ok(n) => write_all(stdout.as_fd(), &buf[..n]),
                    Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                    Err(_) => master_open = false,
                }
            }
            i += 1;
        }
        if stdin_open && code.is_none() && ready.get(i) == Some(&true) {
            match read(stdin.as_fd(), &mut buf) {
                Ok(0) => stdin_open = false,
                Ok(n) => write_all(m.as_fd(), &buf[..n]),
                Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
    }
    drop(signals);
    Ok(code.unwrap_or(255))
}

/// Init's exit code once it has exited. Only init is waited for: the caller's other children
/// are not ours to reap (init is our child through CLONE_PARENT; the intermediate was reaped).
fn reap(init: Pid) -> Option<i32> {
    match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => None,
        Ok(status) => exit_code(status),
        // ECHILD: someone else reaped it; report it as killed rather than wait forever.
        Err(_) => Some(128 + Signal::SIGKILL as i32),
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(_) => return,
        }
    }
}
