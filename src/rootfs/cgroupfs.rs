//! The OCI "cgroup" mount: the container's view of the cgroup hierarchies.
//!
//! On a pure cgroup v2 host it is one cgroup2 mount (rooted at the container's cgroup when the
//! container has a cgroup namespace; without one it shows the whole tree, as with runc). On v1
//! and hybrid hosts it is a tmpfs with one mount per host hierarchy under the same name (cpu,
//! memory, systemd, unified, ...): a fresh cgroup mount inside a cgroup namespace, else a bind of
//! the container's own cgroup directory, so it never sees the host's tree.

use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::mount::{mount as sys_mount, MsFlags};

use super::mounts::{remount_bind, Options};
use super::resolve::{proc_path, resolve, Create};

pub fn mount(
    rootfs: BorrowedFd<'_>,
    dest: &Path,
    at: &Path,
    opts: &Options,
    cgroupns: bool,
) -> Result<(), String> {
    let flags = opts.flags & !MsFlags::MS_RDONLY;
    let ro = opts.flags.contains(MsFlags::MS_RDONLY);
    if crate::cgroups::is_unified() {
        return mount_fs(at, "cgroup2", opts.flags, None);
    }
    mount_fs(at, "tmpfs", flags, Some("mode=755"))?;
    // `at` names the directory under the new tmpfs; walk again to stand on the tmpfs itself.
    let top = resolve(rootfs, dest, Create::No).map_err(|e| e.to_string())?;
    let at = &proc_path(&top);
    let me = procfs::process::Process::myself().map_err(|e| format!("read /proc/self: {e}"))?;
    let mounts = me.mountinfo().map_err(|e| format!("read mountinfo: {e}"))?;
    let groups = me.cgroups().map_err(|e| format!("read /proc/self/cgroup: {e}"))?;
    for mi in mounts.into_iter().filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2") {
        let Some(name) = mi.mount_point.file_name() else {
            continue;
        };
        // Only the host's top-level hierarchies, not a cgroup mount of some other container.
        if mi.mount_point.parent() != Some(Path::new("/sys/fs/cgroup")) {
            continue;
        }
        let sub = at.join(name);
        std::fs::create_dir_all(&sub).map_err(|e| format!("mkdir {}: {e}", sub.display()))?;
        let opts_list: Vec<String> = mi
            .super_options
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "rw" | "ro"))
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            })
            .collect();
        if cgroupns {
            let data = (mi.fs_type == "cgroup").then(|| opts_list.join(","));
            mount_fs(&sub, &mi.fs_type, opts.flags, data.as_deref())?;
        } else {
            // The container is already in its cgroup: bind that directory of each hierarchy.
            let own = groups.0.iter().find(|g| match mi.fs_type.as_str() {
                "cgroup2" => g.hierarchy == 0,
                _ => !g.controllers.is_empty() && g.controllers.iter().all(|c| opts_list.contains(c)),
            });
            let rel = own.map(|g| g.pathname.trim_start_matches('/').to_string()).unwrap_or_default();
            let src = mi.mount_point.join(rel);
            sys_mount(Some(&src), &sub, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(|e| format!("bind {}: {e}", src.display()))?;
            remount_bind(&sub, opts.flags, MsFlags::empty())?;
        }
    }
    if ro {
        remount_bind(at, MsFlags::MS_RDONLY, MsFlags::empty())?;
    }
    Ok(())
}

fn mount_fs(at: &Path, typ: &str, flags: MsFlags, data: Option<&str>) -> Result<(), String> {
    sys_mount(Some(typ), at, Some(typ), flags, data)
        .map_err(|e| format!("mount {typ} on {}: {e}", at.display()))
}
