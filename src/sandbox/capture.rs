//! Capped capture of a run's stdout and stderr.

use std::os::fd::{AsFd, OwnedFd};

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Captured {
    /// The captured bytes as text (invalid UTF-8 replaced).
    pub data: String,
    /// Bytes the program wrote in all.
    pub bytes: u64,
    pub truncated: bool,
}

/// One captured output stream: at most `cap` bytes are kept; the rest is read and dropped, so
/// the program never blocks on a full pipe and hutch's memory stays bounded.
pub struct Stream {
    pub fd: OwnedFd,
    cap: u64,
    kept: Vec<u8>,
    total: u64,
    pub open: bool,
    passthrough: Option<i32>,
    /// The read buffer, allocated once (calloc'd: its pages are touched only as reads fill them).
    buf: Vec<u8>,
}

impl Stream {
    pub fn new(fd: OwnedFd, cap: u64, passthrough: Option<i32>) -> Stream {
        let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        Stream { fd, cap, kept: Vec::new(), total: 0, open: true, passthrough, buf: vec![0; 64 * 1024] }
    }

    /// Reads what is there; true when this read crossed the cap.
    pub fn read_some(&mut self) -> bool {
        let was_under = self.total <= self.cap;
        loop {
            match nix::unistd::read(self.fd.as_fd(), &mut self.buf) {
                Ok(0) => {
                    self.open = false;
                    break;
                }
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.kept.len() as u64) as usize;
                    let keep = &self.buf[..n.min(room)];
                    self.kept.extend_from_slice(keep);
                    if let Some(fd) = self.passthrough {
                        // SAFETY: hutch's own stdout or stderr.
                        let _ = nix::unistd::write(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, keep);
                    }
                    self.total += n as u64;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break, // EAGAIN: nothing more for now
            }
        }
        was_under && self.total > self.cap
    }

    pub fn captured(self) -> Captured {
        Captured {
            data: String::from_utf8_lossy(&self.kept).into_owned(),
            bytes: self.total,
            truncated: self.total > self.cap,
        }
    }
}
