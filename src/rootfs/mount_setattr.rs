//! Recursive mount attributes (runc's `rro`, `rnosuid`, ...) through mount_setattr(2), which
//! changes a whole mount tree at once where a remount only changes its top.

use std::os::fd::{AsRawFd, BorrowedFd};

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME: u64 = 0x70;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x200000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// (set?, attribute) for a recursive option.
pub fn recursive_attr(opt: &str) -> Option<(bool, u64)> {
    Some(match opt {
        "rro" => (true, MOUNT_ATTR_RDONLY),
        "rrw" => (false, MOUNT_ATTR_RDONLY),
        "rnosuid" => (true, MOUNT_ATTR_NOSUID),
        "rsuid" => (false, MOUNT_ATTR_NOSUID),
        "rnodev" => (true, MOUNT_ATTR_NODEV),
        "rdev" => (false, MOUNT_ATTR_NODEV),
        "rnoexec" => (true, MOUNT_ATTR_NOEXEC),
        "rexec" => (false, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (true, MOUNT_ATTR_NODIRATIME),
        "rdiratime" => (false, MOUNT_ATTR_NODIRATIME),
        "rnosymfollow" => (true, MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => (false, MOUNT_ATTR_NOSYMFOLLOW),
        // The atime modes are one field: setting one clears the field first (see apply).
        "rnoatime" => (true, MOUNT_ATTR_NOATIME),
        "rstrictatime" => (true, MOUNT_ATTR_STRICTATIME),
        _ => return None,
    })
}

pub fn apply_recursive(fd: BorrowedFd<'_>, set: u64, mut clr: u64) -> std::io::Result<()> {
    if set & MOUNT_ATTR_ATIME != 0 {
        clr |= MOUNT_ATTR_ATIME;
    }
    let attr = MountAttr { attr_set: set, attr_clr: clr, propagation: 0, userns_fd: 0 };
    // SAFETY: a plain syscall on a descriptor we own, with a correctly sized struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
