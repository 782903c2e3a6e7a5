//! /dev inside the container: the default device nodes, the usual symlinks, and
//! `linux.devices`.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve::{file_in, proc_path, resolve, Create};

/// The nodes every container gets (runtime-spec "Default Devices").
const DEFAULT: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Creates the default nodes. In a user namespace mknod is not allowed, so the host's nodes are
/// bind-mounted instead.
pub fn create_default(rootfs: BorrowedFd<'_>, userns: bool) -> Result<(), String> {
    let dev = userns
        .then(|| resolve(rootfs, Path::new("/dev"), Create::Dir))
        .transpose()
        .map_err(|e| format!("/dev: {e}"))?;
    for (path, major, minor) in DEFAULT {
        if let Some(dev) = &dev {
            let name = Path::new(path).file_name().expect("a node's name");
            let fd = file_in(dev.as_fd(), name).map_err(|e| format!("{path}: {e}"))?;
            mount(Some(path), &proc_path(&fd), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| format!("bind {path}: {e}"))?;
        } else {
            make_node(rootfs, Path::new(path), SFlag::S_IFCHR, major, minor, 0o666, 0, 0)
                .map_err(|e| format!("{path}: {e}"))?;
        }
    }
    Ok(())
}

/// /dev/fd, /dev/std{in,out,err}, /dev/core and, with a devpts mount, /dev/ptmx.
pub fn create_symlinks(rootfs: BorrowedFd<'_>, devpts: bool) -> Result<(), String> {
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    let dev = resolve(rootfs, Path::new("/dev"), Create::Dir).map_err(|e| format!("/dev: {e}"))?;
    if devpts {
        // The container's ptmx must be the one of its own devpts instance.
        let _ = nix::unistd::unlinkat(&dev, "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir);
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        match symlinkat(target, &dev, name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(format!("/dev/{name}: {e}")),
        }
    }
    Ok(())
}

/// `linux.devices`. In a user namespace mknod is refused, so the host's node at the same path
/// is bind-mounted instead, as runc does.
pub fn create_config_devices(
    rootfs: BorrowedFd<'_>,
    devices: &[LinuxDevice],
    userns: bool,
) -> Result<(), String> {
    for (i, d) in devices.iter().enumerate() {
        let field = || format!("linux.devices[{i}] ({})", d.path().display());
        if userns {
            let fd = resolve(rootfs, d.path(), Create::File).map_err(|e| format!("{}: {e}", field()))?;
            mount(Some(d.path()), &proc_path(&fd), None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| format!("{}: bind the host's node in a user namespace: {e}", field()))?;
            continue;
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => return Err(format!("linux.devices[{i}].type: \"a\" is not a node type")),
        };
        let (major, minor) = (d.major() as u64, d.minor() as u64);
        make_node(
            rootfs,
            d.path(),
            kind,
            major,
            minor,
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )
        .map_err(|e| format!("linux.devices[{i}] ({}): {e}", d.path().display()))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    rootfs: BorrowedFd<'_>,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), String> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or("no file name")?;
    let dir = resolve(rootfs, parent, Create::Dir).map_err(|e| e.to_string())?;
    let dir = nix::fcntl::openat(
        dir.as_fd(),
        ".",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open parent: {e}"))?;
    let _ = nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    // mknod applies the umask: create, then set the exact mode.
    mknodat(&dir, name, kind, Mode::from_bits_truncate(mode), makedev(major, minor))
        .map_err(|e| format!("mknod: {e}"))?;
    nix::sys::stat::fchmodat(
        &dir,
        name,
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )
    .or_else(|e| if e == nix::errno::Errno::EOPNOTSUPP { Ok(()) } else { Err(e) })
    .map_err(|e| format!("chmod: {e}"))?;
    fchownat(
        &dir,
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| format!("chown: {e}"))?;
    Ok(())
}
