//! Building the container's root filesystem: mounts, /dev, pivot_root, masked and read-only
//! paths. Runs in init, inside the new mount namespace.
//!
//! Order, and why:
//! 1. make the whole tree slave (or `rootfsPropagation`) so nothing we mount reaches the host;
//! 2. bind the rootfs onto itself so it is a mount point pivot_root can use;
//! 3. config mounts in order, each resolved inside the rootfs (see `resolve`);
//! 4. /dev nodes and symlinks, when /dev is ours (not a bind of the host's);
//! 5. create `process.cwd` while we are still root;
//! 6. pivot_root (or MS_MOVE + chroot with --no-pivot) and detach the old root;
//! 7. after sysctls are written (see the init order): read-only paths, masked paths, and finally
//!    a read-only root.

pub mod cgroupfs;
pub mod devices;
pub mod mount_setattr;
pub mod mounts;
pub mod resolve;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, chroot, fchdir, pivot_root};

use crate::config::Config;
use resolve::{proc_path, resolve, Create};

/// Propagation flags for a propagation option name.
pub fn propagation_flags(name: &str) -> Option<MsFlags> {
    use MsFlags as F;
    Some(match name {
        "private" => F::MS_PRIVATE,
        "rprivate" => F::MS_PRIVATE | F::MS_REC,
        "shared" => F::MS_SHARED,
        "rshared" => F::MS_SHARED | F::MS_REC,
        "slave" => F::MS_SLAVE,
        "rslave" => F::MS_SLAVE | F::MS_REC,
        "unbindable" => F::MS_UNBINDABLE,
        "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
        _ => return None,
    })
}

/// Steps 1 to 5: everything up to pivot_root. Errors name the config field.
pub fn prepare(config: &Config, cgroupns: bool) -> Result<(), String> {
    let linux = config.spec.linux().as_ref();
    let propagation = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flags)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mount(None::<&str>, "/", None::<&str>, propagation | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| format!("linux.rootfsPropagation: make / {propagation:?}: {e}"))?;
    mount(
        Some(&config.rootfs),
        &config.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| format!("root.path: bind {} onto itself: {e}", config.rootfs.display()))?;
    // A shared parent would make pivot_root fail; keep the rootfs' own mount private.
    if propagation.contains(MsFlags::MS_SHARED) {
        mount(None::<&str>, &config.rootfs, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)
            .map_err(|e| format!("root.path: make private: {e}"))?;
    }
    let rootfs = open_dir(&config.rootfs).map_err(|e| format!("root.path: open: {e}"))?;
    let mounts = config.spec.mounts().as_deref().unwrap_or_default();
    for (i, m) in mounts.iter().enumerate() {
        mounts::mount_one(rootfs.as_fd(), &config.bundle, m, cgroupns)
            .map_err(|e| format!("mounts[{i}] ({}): {e}", m.destination().display()))?;
    }
    // New or joined: either way, device nodes cannot be made there, only bound.
    let userns = config.has_namespace(oci_spec::runtime::LinuxNamespaceType::User);
    let dev_is_bound = mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && matches!(mounts::MountKind::of(m), Ok(mounts::MountKind::Bind { .. }))
    });
    if !dev_is_bound {
        devices::create_default(rootfs.as_fd(), userns)?;
        let has_devpts = mounts.iter().any(|m| m.destination() == Path::new("/dev/pts"));
        devices::create_symlinks(rootfs.as_fd(), has_devpts)?;
    }
    if let Some(devs) = linux.and_then(|l| l.devices().as_ref()) {
        devices::create_config_devices(rootfs.as_fd(), devs, userns)?;
    }
    resolve(rootfs.as_fd(), config.process().cwd(), Create::Dir).map_err(|e| format!("process.cwd: {e}"))?;
    Ok(())
}

/// Step 6: make the rootfs the root and let go of the old one.
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<(), String> {
    if no_pivot {
        chdir(rootfs).map_err(|e| format!("chdir rootfs: {e}"))?;
        mount(Some(rootfs), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(|e| format!("move rootfs to /: {e}"))?;
        chroot(".").map_err(|e| format!("chroot: {e}"))?;
    } else {
        let old = open_dir(Path::new("/")).map_err(|e| format!("open old root: {e}"))?;
        let new = open_dir(rootfs).map_err(|e| format!("open rootfs: {e}"))?;
        fchdir(&new).map_err(|e| format!("chdir rootfs: {e}"))?;
        // pivot_root(".", ".") stacks the old root on top of the new one; no put_old directory
        // needs to exist inside the container.
        pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
        fchdir(&old).map_err(|e| format!("chdir old root: {e}"))?;
        mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| format!("make old root slave: {e}"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach old root: {e}"))?;
    }
    chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// Step 7, inside the container: readonlyPaths, maskedPaths, then `root.readonly`.
pub fn finish(config: &Config) -> Result<(), String> {
    protect_paths(config, |_| true)?;
    if config.spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        mounts::remount_bind(Path::new("/"), MsFlags::MS_RDONLY, MsFlags::empty())
            .map_err(|e| format!("root.readonly: {e}"))?;
    }
    Ok(())
}

/// Mounts a warm sandbox's zygote leaves to each run (see `crate::sandbox::zygote`): those
/// that must be the run's own, because they show its pid or IPC namespace or hold what it writes.
/// /dev itself is shared (read-only) and keeps its device nodes.
pub fn is_per_run(m: &oci_spec::runtime::Mount) -> bool {
    matches!(m.typ().as_deref(), Some("proc" | "devpts" | "mqueue" | "tmpfs"))
        && m.destination() != Path::new("/dev")
}

/// A warm sandbox run, in its own copy of the zygote's finished tree: fresh instances of the
/// per-run mounts, then the masked and read-only paths that lie in them.
pub fn refresh(config: &Config) -> Result<(), String> {
    let root = open_dir(Path::new("/")).map_err(|e| format!("open /: {e}"))?;
    let fresh: Vec<_> = config.spec.mounts().iter().flatten().filter(|m| is_per_run(m)).collect();
    for m in &fresh {
        mounts::mount_one(root.as_fd(), &config.bundle, m, false)
            .map_err(|e| format!("mounts ({}): {e}", m.destination().display()))?;
    }
    protect_paths(config, |p| fresh.iter().any(|m| Path::new(p).starts_with(m.destination())))
}

/// readonlyPaths, then maskedPaths, those of them `which` selects.
fn protect_paths(config: &Config, which: impl Fn(&str) -> bool) -> Result<(), String> {
    let root = open_dir(Path::new("/")).map_err(|e| format!("open /: {e}"))?;
    let linux = config.spec.linux().as_ref();
    for (i, p) in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten().enumerate() {
        if !which(p) {
            continue;
        }
        let Some(fd) = existing(&root, p).map_err(|e| format!("linux.readonlyPaths[{i}] ({p}): {e}"))? else {
            continue;
        };
        let at = proc_path(&fd);
        mount(Some(&at), &at, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| format!("linux.readonlyPaths[{i}] ({p}): bind: {e}"))?;
        let mounted =
            existing(&root, p).ok().flatten().ok_or(format!("linux.readonlyPaths[{i}] ({p}): vanished"))?;
        // One call where the remount takes three (it must read the flags to keep); the remount
        // remains for kernels before 5.12.
        if mount_setattr::apply_recursive(mounted.as_fd(), mount_setattr::MOUNT_ATTR_RDONLY, 0).is_err() {
            mounts::remount_bind(
                &proc_path(&mounted),
                MsFlags::MS_RDONLY | MsFlags::MS_REC,
                MsFlags::empty(),
            )
            .map_err(|e| format!("linux.readonlyPaths[{i}] ({p}): {e}"))?;
        }
    }
    for (i, p) in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten().enumerate() {
        if !which(p) {
            continue;
        }
        let Some(fd) = existing(&root, p).map_err(|e| format!("linux.maskedPaths[{i}] ({p}): {e}"))? else {
            continue;
        };
        let at = proc_path(&fd);
        let is_dir = nix::sys::stat::fstat(fd.as_fd())
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .unwrap_or(false);
        let r = if is_dir {
            mount(Some("tmpfs"), &at, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
        } else {
            mount(Some("/dev/null"), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        };
        r.map_err(|e| format!("linux.maskedPaths[{i}] ({p}): {e}"))?;
    }
    Ok(())
}

fn existing(root: &OwnedFd, p: &str) -> Result<Option<OwnedFd>, String> {
    match resolve(root.as_fd(), Path::new(p), Create::No) {
        Ok(fd) => Ok(Some(fd)),
        Err(resolve::ResolveError::Sys { errno: nix::errno::Errno::ENOENT, .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn open_dir(p: &Path) -> nix::Result<OwnedFd> {
    open(p, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
}
