//! The `mounts` of a config: parsing their options and mounting them inside the rootfs.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{fstatvfs, FsFlags};
use oci_spec::runtime::Mount;

use super::resolve::{proc_path, resolve, Create};
use super::{cgroupfs, mount_setattr};

/// What a config mount asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    Bind {
        recursive: bool,
    },
    /// The OCI "cgroup" type: the container's view of the host's cgroup hierarchies.
    Cgroup,
    Filesystem(String),
}

impl MountKind {
    pub fn of(m: &Mount) -> Result<MountKind, String> {
        let opts = m.options().as_deref().unwrap_or_default();
        let recursive = opts.iter().any(|o| o == "rbind");
        if recursive || opts.iter().any(|o| o == "bind") || m.typ().as_deref() == Some("bind") {
            if m.source().is_none() {
                return Err("a bind mount needs a source".into());
            }
            return Ok(MountKind::Bind { recursive });
        }
        match m.typ().as_deref() {
            None | Some("") => Err("type: missing (and no bind option)".into()),
            Some("cgroup") => Ok(MountKind::Cgroup),
            Some(t) if known_filesystem(t) => Ok(MountKind::Filesystem(t.to_string())),
            Some(t) => Err(format!("type: unknown filesystem type {t:?} (not in /proc/filesystems)")),
        }
    }
}

/// Whether the kernel knows the filesystem type. The types of every container's standard
/// mounts are taken as known (a kernel without one fails that mount, naming it); others are
/// looked up in /proc/filesystems, read once per process.
fn known_filesystem(typ: &str) -> bool {
    if matches!(typ, "proc" | "sysfs" | "tmpfs" | "devpts" | "mqueue") {
        return true;
    }
    static TYPES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TYPES
        .get_or_init(|| {
            std::fs::read_to_string("/proc/filesystems")
                .map(|s| s.lines().filter_map(|l| l.split_whitespace().last().map(str::to_string)).collect())
                .unwrap_or_default()
        })
        .iter()
        .any(|t| t == typ)
}

/// Parsed fstab-style options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub flags: MsFlags,
    /// Flags named but cleared ("rw", "suid", ...), so a remount does not keep them.
    pub cleared: MsFlags,
    pub propagation: MsFlags,
    /// Recursive attributes (rro, rnosuid, ...) applied with mount_setattr.
    pub attr_set: u64,
    pub attr_clr: u64,
    /// Everything else goes to the filesystem as its data string.
    pub data: Vec<String>,
}

impl Options {
    pub fn parse(opts: &[String]) -> Options {
        let mut o = Options {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: MsFlags::empty(),
            attr_set: 0,
            attr_clr: 0,
            data: Vec::new(),
        };
        for opt in opts {
            if let Some((set, flag)) = flag(opt) {
                if set {
                    o.flags |= flag;
                    o.cleared &= !flag;
                } else {
                    o.flags &= !flag;
                    o.cleared |= flag;
                }
            } else if let Some(p) = super::propagation_flags(opt) {
                o.propagation |= p;
            } else if let Some((set, attr)) = mount_setattr::recursive_attr(opt) {
                if set {
                    o.attr_set |= attr;
                } else {
                    o.attr_clr |= attr;
                }
            } else if opt == "bind" || opt == "rbind" {
                // The kind of mount, not a flag.
            } else {
                o.data.push(opt.clone());
            }
        }
        o
    }

    pub fn data(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

/// (set?, flag) for a flag option.
fn flag(opt: &str) -> Option<(bool, MsFlags)> {
    use MsFlags as F;
    Some(match opt {
        "defaults" => (true, F::empty()),
        "ro" => (true, F::MS_RDONLY),
        "rw" => (false, F::MS_RDONLY),
        "nosuid" => (true, F::MS_NOSUID),
        "suid" => (false, F::MS_NOSUID),
        "nodev" => (true, F::MS_NODEV),
        "dev" => (false, F::MS_NODEV),
        "noexec" => (true, F::MS_NOEXEC),
        "exec" => (false, F::MS_NOEXEC),
        "sync" => (true, F::MS_SYNCHRONOUS),
        "async" => (false, F::MS_SYNCHRONOUS),
        "dirsync" => (true, F::MS_DIRSYNC),
        "remount" => (true, F::MS_REMOUNT),
        "mand" => (true, F::MS_MANDLOCK),
        "nomand" => (false, F::MS_MANDLOCK),
        "noatime" => (true, F::MS_NOATIME),
        "atime" => (false, F::MS_NOATIME),
        "nodiratime" => (true, F::MS_NODIRATIME),
        "diratime" => (false, F::MS_NODIRATIME),
        "relatime" => (true, F::MS_RELATIME),
        "norelatime" => (false, F::MS_RELATIME),
        "strictatime" => (true, F::MS_STRICTATIME),
        "nostrictatime" => (false, F::MS_STRICTATIME),
        "lazytime" => (true, F::MS_LAZYTIME),
        "nolazytime" => (false, F::MS_LAZYTIME),
        "silent" => (true, F::MS_SILENT),
        "loud" => (false, F::MS_SILENT),
        "iversion" => (true, F::MS_I_VERSION),
        "noiversion" => (false, F::MS_I_VERSION),
        _ => return None,
    })
}

/// Flags a bind remount must keep: in a user namespace the kernel refuses to drop flags that
/// the original mount has locked, so a remount carries over what is already set.
pub fn locked_flags(fd: BorrowedFd<'_>) -> MsFlags {
    let Ok(st) = fstatvfs(fd) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (st_flag, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(st_flag) {
            out |= ms;
        }
    }
    out
}

/// Mounts one config mount inside `rootfs`. `bundle` anchors relative bind sources.
pub fn mount_one(rootfs: BorrowedFd<'_>, bundle: &Path, m: &Mount, cgroupns: bool) -> Result<(), String> {
    let kind = MountKind::of(m)?;
    let opts = Options::parse(m.options().as_deref().unwrap_or_default());
    let source: Option<PathBuf> = m.source().as_ref().map(|s| match kind {
        MountKind::Bind { .. } if s.is_relative() => bundle.join(s),
        _ => s.clone(),
    });
    let create = match (&kind, &source) {
        (MountKind::Bind { .. }, Some(src)) => {
            let meta = std::fs::metadata(src).map_err(|e| format!("source {}: {e}", src.display()))?;
            if meta.is_dir() {
                Create::Dir
            } else {
                Create::File
            }
        }
        _ => Create::Dir,
    };
    let target = resolve(rootfs, m.destination(), create).map_err(|e| format!("destination: {e}"))?;
    let at = proc_path(&target);
    let mut flags_after = MsFlags::empty();
    match kind {
        MountKind::Bind { recursive } => {
            let src = source.expect("checked by MountKind::of");
            let mut flags = MsFlags::MS_BIND;
            if recursive {
                flags |= MsFlags::MS_REC;
            }
            mount(Some(&src), &at, None::<&str>, flags, None::<&str>)
                .map_err(|e| format!("bind {}: {e}", src.display()))?;
            // A bind ignores all other flags: they need a remount.
            flags_after = opts.flags & !MsFlags::MS_REMOUNT;
        }
        MountKind::Cgroup => cgroupfs::mount(rootfs, m.destination(), &at, &opts, cgroupns)?,
        MountKind::Filesystem(typ) => {
            let src = source.unwrap_or_else(|| PathBuf::from(&typ));
            match mount(Some(&src), &at, Some(typ.as_str()), opts.flags, opts.data().as_deref()) {
                Ok(()) => {}
                // A user namespace that shares the host's network namespace may not mount a fresh
                // sysfs; like runc, bind the host's instead (its flags follow below).
                Err(nix::errno::Errno::EPERM) if typ == "sysfs" => {
                    mount(Some("/sys"), &at, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                        .map_err(|e| format!("bind /sys in place of sysfs: {e}"))?;
                    flags_after = opts.flags & !MsFlags::MS_REMOUNT;
                }
                Err(e) => return Err(format!("mount {typ}: {e}")),
            }
        }
    }
    if flags_after.is_empty() && opts.propagation.is_empty() && opts.attr_set == 0 && opts.attr_clr == 0 {
        return Ok(());
    }
    // `target` still names the directory under the new mount; walk again to reach the mount.
    let mounted = resolve(rootfs, m.destination(), Create::No).map_err(|e| format!("destination: {e}"))?;
    let at = proc_path(&mounted);
    if !flags_after.is_empty() {
        remount_bind(&at, flags_after, opts.cleared)?;
    }
    if !opts.propagation.is_empty() {
        mount(None::<&str>, &at, None::<&str>, opts.propagation, None::<&str>)
            .map_err(|e| format!("set propagation: {e}"))?;
    }
    if opts.attr_set != 0 || opts.attr_clr != 0 {
        mount_setattr::apply_recursive(mounted.as_fd(), opts.attr_set, opts.attr_clr)
            .map_err(|e| format!("recursive mount attributes: {e}"))?;
    }
    Ok(())
}

/// Remounts a bind mount with `add` flags, keeping the locked ones except those `clear`ed.
pub fn remount_bind(at: &Path, add: MsFlags, clear: MsFlags) -> Result<(), String> {
    let fd = nix::fcntl::open(
        at,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("reopen for remount: {e}"))?;
    let keep = locked_flags(fd.as_fd()) & !clear;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | keep | add;
    mount(None::<&str>, at, None::<&str>, flags, None::<&str>).map_err(|e| format!("remount {add:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Options {
        Options::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_and_propagation() {
        let o = opts(&["nosuid", "noexec", "mode=755", "size=65536k", "rprivate", "ro"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.data().as_deref(), Some("mode=755,size=65536k"));
    }

    #[test]
    fn later_option_wins() {
        let o = opts(&["ro", "rw"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
    }
}
