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

/// nsfs's magic number (linux/magic.h).
const NSFS_MAGIC: i64 = 0x6e736673;

/// Opens a namespace file of kind `typ`. The path is first opened O_PATH and checked to be on
/// nsfs, so a config naming a device or a FIFO never reaches that file's open (a watchdog device
/// would start its timer, a FIFO would block).
pub fn open(path: &std::path::Path, typ: LinuxNamespaceType) -> Result<OwnedFd, String> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let o_path = open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| e.to_string())?;
    let fs = nix::sys::statfs::fstatfs(&o_path).map_err(|e| e.to_string())?;
    if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
        return Err("not a namespace file".into());
    }
    let fd = open(
        std::path::Path::new(&format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&o_path))),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| e.to_string())?;
    check_type(std::os::fd::AsRawFd::as_raw_fd(&fd), typ)?;
    Ok(fd)
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
