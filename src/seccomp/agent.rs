//! Handing a seccomp NOTIFY listener to the agent at `linux.seccomp.listenerPath`, as runc does:
//! one message on a unix stream socket, the container process state as JSON with the listener
//! attached by SCM_RIGHTS.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use nix::sys::socket::{
    connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};

/// The runtime-spec "container process state": `fds` names the descriptors in order.
pub fn message(pid: i32, metadata: Option<&str>, state: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": oci_spec::runtime::VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata.unwrap_or_default(),
        "state": state,
    })
}

pub fn send(path: &Path, listener: BorrowedFd<'_>, msg: &serde_json::Value) -> Result<(), String> {
    let sock = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| format!("socket: {e}"))?;
    let addr = UnixAddr::new(path).map_err(|e| format!("{}: {e}", path.display()))?;
    connect(sock.as_raw_fd(), &addr).map_err(|e| format!("connect {}: {e}", path.display()))?;
    let bytes = msg.to_string();
    let fds = [listener.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(bytes.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("send to {}: {e}", path.display()))?;
    Ok(())
}
