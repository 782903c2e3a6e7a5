//! What a sandbox sees of the host: its root (a rootfs directory, a bundle's, or a read-only
//! view of the host's own system directories), extra binds, and device nodes passed through.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, Mount};

use super::profile::Profile;
use crate::error::{Error, Result};

/// Host directories a host view shows, read-only, when they exist: enough to run the host's
/// programs and their libraries, nothing of its users' files.
pub const HOST_VIEW: &[&str] =
    &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"];

/// `--bind SRC:DST[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub readonly: bool,
}

impl FromStr for Bind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Bind, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, ro) = match parts.as_slice() {
            [src, dst] => (*src, *dst, false),
            [src, dst, "ro"] => (*src, *dst, true),
            [src, dst, "rw"] => (*src, *dst, false),
            _ => return Err(format!("{s:?}: expected SRC:DST or SRC:DST:ro")),
        };
        if !src.starts_with('/') || !dst.starts_with('/') {
            return Err(format!("{s:?}: both paths must be absolute"));
        }
        Ok(Bind { source: src.into(), destination: dst.into(), readonly: ro })
    }
}

/// The empty root a host view is built on, under the state root: only mount points, and the
/// host's top-level symbolic links (/bin -> usr/bin on a merged-/usr system). Made once.
pub fn host_root(state_root: &Path) -> Result<PathBuf> {
    let dir = state_root.join(".host-root");
    if dir.is_dir() {
        return Ok(dir);
    }
    let io = |what: String| move |e: std::io::Error| Error::Io { context: what, source: e };
    std::fs::create_dir_all(state_root).map_err(io(format!("create {}", state_root.display())))?;
    let tmp = state_root.join(format!(".host-root.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    for d in ["proc", "dev", "sys", "tmp", "run", "root"] {
        std::fs::create_dir(tmp.join(d)).map_err(io(format!("create {d}")))?;
    }
    for p in HOST_VIEW {
        let name = &p[1..];
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(p).map_err(io(format!("readlink {p}")))?;
                std::os::unix::fs::symlink(target, tmp.join(name)).map_err(io(format!("symlink {name}")))?;
            }
            Ok(m) if m.is_dir() => {
                std::fs::create_dir(tmp.join(name)).map_err(io(format!("create {name}")))?
            }
            _ => {}
        }
    }
    // Another hutch may have made it meanwhile; either copy is as good.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(dir)
}

/// Mounts for a host view: each existing directory of HOST_VIEW bound read-only.
pub fn host_view_mounts() -> Vec<Mount> {
    HOST_VIEW
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .map(|p| bind_mount(Path::new(p), Path::new(p), true))
        .collect()
}

fn bind_mount(src: &Path, dst: &Path, readonly: bool) -> Mount {
    let mut options = vec!["rbind", "nosuid", "nodev"];
    if readonly {
        options.push("ro");
    }
    mount(src, dst, &options)
}

fn mount(src: &Path, dst: &Path, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dst.into());
    m.set_typ(Some("bind".into()));
    m.set_source(Some(src.into()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// The profile's binds (those present) and `--bind`s, as OCI mounts.
pub fn bind_mounts(profile: &Profile, file: &Path, binds: &[Bind]) -> Result<Vec<Mount>> {
    let mut out = Vec::new();
    for (i, b) in profile.binds.iter().enumerate() {
        let matches = expand(&b.source);
        if matches.is_empty() && b.required {
            return Err(Error::config(
                file,
                format!("binds[{i}].source"),
                format!("{}: nothing matches", b.source),
            ));
        }
        let pattern = b.source.contains(['*', '?', '[']);
        for src in matches {
            let dst = match (&b.destination, pattern) {
                (Some(d), true) => Path::new(d).join(src.file_name().unwrap_or_default()),
                (Some(d), false) => PathBuf::from(d),
                (None, _) => src.clone(),
            };
            out.push(bind_mount(&src, &dst, b.readonly));
        }
    }
    for b in binds {
        if !b.source.exists() {
            return Err(Error::Usage(format!("--bind {}: no such file or directory", b.source.display())));
        }
        out.push(bind_mount(&b.source, &b.destination, b.readonly));
    }
    Ok(out)
}

/// Creates the targets of bind `mounts` missing in `rootfs`, from the host side: inside the
/// sandbox's user namespace a root-owned rootfs cannot be written. Paths are resolved inside
/// the rootfs (no symbolic link leads out of it).
pub fn make_targets(rootfs: &Path, mounts: &[Mount]) -> Result<()> {
    use crate::rootfs::resolve::{resolve, Create};
    let dir = std::fs::File::open(rootfs)
        .map_err(|e| Error::Io { context: format!("open {}", rootfs.display()), source: e })?;
    for m in mounts.iter().filter(|m| m.typ().as_deref() == Some("bind")) {
        let (Some(src), dst) = (m.source(), m.destination()) else { continue };
        let create = if src.is_dir() { Create::Dir } else { Create::File };
        resolve(std::os::fd::AsFd::as_fd(&dir), dst, create).map_err(|e| {
            Error::Usage(format!("bind target {} in {}: {e}", dst.display(), rootfs.display()))
        })?;
    }
    Ok(())
}

/// The profile's device nodes that exist here: a bind mount each, and a device cgroup rule
/// allowing it.
pub fn devices(profile: &Profile, file: &Path) -> Result<(Vec<Mount>, Vec<LinuxDeviceCgroup>)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let (mut mounts, mut rules) = (Vec::new(), Vec::new());
    for (i, d) in profile.devices.iter().enumerate() {
        for node in expand(&d.path) {
            let meta = std::fs::metadata(&node).map_err(|e| {
                Error::config(file, format!("devices[{i}].path"), format!("{}: {e}", node.display()))
            })?;
            let typ = if meta.file_type().is_char_device() {
                LinuxDeviceType::C
            } else if meta.file_type().is_block_device() {
                LinuxDeviceType::B
            } else {
                return Err(Error::config(
                    file,
                    format!("devices[{i}].path"),
                    format!("{} is not a device node", node.display()),
                ));
            };
            let dst = match &d.into {
                Some(dir) => Path::new(dir).join(node.file_name().unwrap_or_default()),
                None => node.clone(),
            };
            let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
            mounts.push(mount(&node, &dst, &["bind", "nosuid"]));
            let mut rule = LinuxDeviceCgroup::default();
            rule.set_allow(true);
            rule.set_typ(Some(typ));
            rule.set_major(Some(major as i64));
            rule.set_minor(Some(minor as i64));
            rule.set_access(Some("rwm".into()));
            rules.push(rule);
        }
    }
    Ok((mounts, rules))
}

/// The existing paths a pattern (or plain path) names, sorted.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        glob::glob(pattern).map(|g| g.filter_map(|p| p.ok()).collect()).unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::Bind;

    #[test]
    fn binds_parse() {
        assert_eq!(
            "/a:/b:ro".parse::<Bind>().unwrap(),
            Bind { source: "/a".into(), destination: "/b".into(), readonly: true }
        );
        assert!(!"/a:/b".parse::<Bind>().unwrap().readonly);
        assert!("a:/b".parse::<Bind>().is_err());
        assert!("/a:/b:rx".parse::<Bind>().is_err());
        assert!("/a".parse::<Bind>().is_err());
    }
}
