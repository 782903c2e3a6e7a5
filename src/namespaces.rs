//! Namespace kinds, checking a namespace file's type, joining and creating namespaces.

use std::os::fd::{AsFd, OwnedFd, RawFd};

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::LinuxNamespaceType;

/// ioctl(2) on a namespace file: which kind of namespace it is (linux/nsfs.h).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

pub fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_retain(typ as libc::c_int)
}

/// Fails unless `fd` is a namespace file of kind `typ`.
pub fn check_type(fd: RawFd, typ: LinuxNamespaceType) -> Result<(), String> {
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor.
    let got = unsafe { libc::ioctl(fd, NS_GET_NSTYPE as _) };
    if got < 0 {
        return Err(format!("not a namespace file ({})", std::io::Error::last_os_error()));
    }
    if got != typ as libc::c_int {
        return Err(format!("is not a {typ} namespace"));
    }
    Ok(())
}

/// A namespace to join, opened before anything else moves.
pub struct Join {
    pub typ: LinuxNamespaceType,
    pub fd: OwnedFd,
}

/// Joins namespaces in the order that keeps us privileged: the user namespace first (it grants
/// the rights for the others), the mount namespace last (it changes how later paths resolve;
/// the others are already open, so that only matters to the caller).
pub fn join_all(joins: &[Join]) -> nix::Result<()> {
    let rank = |t: LinuxNamespaceType| match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 2,
        _ => 1,
    };
    let mut order: Vec<&Join> = joins.iter().collect();
    order.sort_by_key(|j| rank(j.typ));
    for j in order {
        setns(j.fd.as_fd(), clone_flag(j.typ))?;
    }
    Ok(())
}

pub fn unshare_flags(flags: CloneFlags) -> nix::Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags)
}
