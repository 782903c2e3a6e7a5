//! Capped capture of a run's stdout and stderr.

use std::os::fd::{AsRawFd, OwnedFd};

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
    /// Where bytes past the cap are read to be dropped; made when first needed.
    scratch: Vec<u8>,
}

/// The most one read takes.
const CHUNK: usize = 64 * 1024;

impl Stream {
    pub fn new(fd: OwnedFd, cap: u64, passthrough: Option<i32>) -> Stream {
        let _ = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        Stream { fd, cap, kept: Vec::new(), total: 0, open: true, passthrough, scratch: Vec::new() }
    }

    /// Reads what is there; true when this read crossed the cap.
    pub fn read_some(&mut self) -> bool {
        let was_under = self.total <= self.cap;
        loop {
            let before = self.kept.len();
            let room = self.cap.saturating_sub(before as u64).min(CHUNK as u64) as usize;
            // Under the cap, reads go straight into what is kept, which grows with what comes
            // (no buffer is zeroed, none at all for a stream that stays empty); past it, into
            // a scratch buffer whose bytes are dropped.
            let read = if room > 0 {
                if self.kept.capacity() - before < room {
                    let grown = (2 * self.kept.capacity()).max(before + room).min(self.cap as usize);
                    self.kept.reserve_exact(grown - before);
                }
                let spare = self.kept.spare_capacity_mut();
                // SAFETY: read(2) writes at most `room` bytes into the spare capacity, and we
                // count as initialized only what it wrote.
                let n = unsafe { libc::read(self.fd.as_raw_fd(), spare.as_mut_ptr().cast(), room) };
                if n > 0 {
                    unsafe { self.kept.set_len(before + n as usize) };
                }
                n
            } else {
                if self.scratch.is_empty() {
                    self.scratch = vec![0; CHUNK];
                }
                // SAFETY: read(2) into a buffer of that length.
                unsafe { libc::read(self.fd.as_raw_fd(), self.scratch.as_mut_ptr().cast(), CHUNK) }
            };
            match read {
                0 => {
                    self.open = false;
                    break;
                }
                n if n > 0 => {
                    if let Some(fd) = self.passthrough {
                        // SAFETY: hutch's own stdout or stderr.
                        let out = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                        let _ = nix::unistd::write(out, &self.kept[before..]);
                    }
                    self.total += n as u64;
                }
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => continue,
                _ => break, // EAGAIN: nothing more for now
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
