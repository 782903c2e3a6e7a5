//! Terminals: the container's pty, handing its master to a console socket, and relaying it
//! for a foreground `run`.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use nix::sys::socket::{
    connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::unistd::dup2_stdin;

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);
nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, Winsize);

/// In init, after pivot_root: opens a pty from the container's /dev/ptmx, makes its slave the
/// controlling terminal and stdio, and returns the master.
pub fn setup_pty(size: Option<oci_spec::runtime::Box>) -> Result<OwnedFd, String> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("open /dev/ptmx: {e}"))?;
    grantpt(&master).map_err(|e| format!("grantpt: {e}"))?;
    unlockpt(&master).map_err(|e| format!("unlockpt: {e}"))?;
    let name = ptsname_r(&master).map_err(|e| format!("ptsname: {e}"))?;
    let slave =
        nix::fcntl::open(Path::new(&name), OFlag::O_RDWR | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .map_err(|e| format!("open {name}: {e}"))?;
    if let Some(b) = size {
        resize(slave.as_fd(), b.height() as u16, b.width() as u16).map_err(|e| format!("set size: {e}"))?;
    }
    // SAFETY: TIOCSCTTY with arg 0 on a tty we opened; we are a session leader.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(format!("make {name} the controlling terminal: {}", std::io::Error::last_os_error()));
    }
    dup2_stdin(&slave).map_err(|e| format!("dup2: {e}"))?;
    nix::unistd::dup2_stdout(&slave).map_err(|e| format!("dup2: {e}"))?;
    nix::unistd::dup2_stderr(&slave).map_err(|e| format!("dup2: {e}"))?;
    // SAFETY: the master's descriptor is ours; PtyMaster closes it otherwise.
    Ok(unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) })
}

pub fn resize(tty: BorrowedFd<'_>, rows: u16, cols: u16) -> nix::Result<()> {
    let ws = Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one Winsize.
    unsafe { set_winsize(tty.as_raw_fd(), &ws) }.map(drop)
}

pub fn size_of(tty: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one Winsize.
    unsafe { get_winsize(tty.as_raw_fd(), &mut ws) }.ok()?;
    Some((ws.ws_row, ws.ws_col))
}

/// Sends the pty master to the unix socket at `path`, as runc does for `--console-socket`.
pub fn send_to_socket(path: &Path, master: BorrowedFd<'_>) -> Result<(), String> {
    let sock = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| format!("socket: {e}"))?;
    let addr = UnixAddr::new(path).map_err(|e| format!("{}: {e}", path.display()))?;
    connect(sock.as_raw_fd(), &addr).map_err(|e| format!("connect {}: {e}", path.display()))?;
    let name = b"/dev/ptmx";
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("send to {}: {e}", path.display()))?;
    Ok(())
}

/// Receives a pty master sent to a `--console-socket` listener (the other end of
/// `send_to_socket`), waiting at most `timeout` for the sender.
pub fn receive_from_socket(
    listener: &std::os::unix::net::UnixListener,
    timeout: std::time::Duration,
) -> Result<OwnedFd, String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let ms =
        PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::NONE);
    if poll(&mut fds, ms).map_err(|e| format!("console socket: {e}"))? == 0 {
        return Err("console socket: nothing was sent".into());
    }
    let (conn, _) = listener.accept().map_err(|e| format!("console socket: accept: {e}"))?;
    let mut buf = [0u8; 256];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("console socket: recvmsg: {e}"))?;
    for c in msg.cmsgs().map_err(|e| format!("console socket: {e}"))? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(raw) = c {
            if let Some(&fd) = raw.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err("console socket: the message carried no descriptor".into())
}
