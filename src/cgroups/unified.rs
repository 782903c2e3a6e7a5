//! The cgroup2 side of a container's cgroup where cgroups-rs does not reach.
//!
//! - On a hybrid host (v1 controllers plus a cgroup2 mount, e.g. /sys/fs/cgroup/unified) some
//!   controllers live only in the cgroup2 mount; on these machines hugetlb does. The container
//!   then also gets a cgroup there, at the same relative path, for those controllers.
//! - `linux.resources.unified` (raw cgroup2 keys) is written here on hybrid and pure v2 hosts
//!   alike: cgroups-rs does not apply it.

use std::fs;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;

/// The host's cgroup2 mount point: /sys/fs/cgroup on a pure v2 host, or the cgroup2 mount
/// beside the v1 hierarchies on a hybrid one.
pub fn mount_point() -> Option<PathBuf> {
    if super::is_unified() {
        return Some(PathBuf::from("/sys/fs/cgroup"));
    }
    static HYBRID: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    HYBRID.get_or_init(hybrid_mount_point).clone()
}

fn hybrid_mount_point() -> Option<PathBuf> {
    // Where systemd mounts it, known by one statfs instead of a parse of mountinfo.
    let usual = Path::new("/sys/fs/cgroup/unified");
    if nix::sys::statfs::statfs(usual)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    {
        return Some(usual.to_path_buf());
    }
    let me = procfs::process::Process::myself().ok()?;
    me.mountinfo()
        .ok()?
        .into_iter()
        .find(|m| m.fs_type == "cgroup2" && m.mount_point.starts_with("/sys/fs/cgroup"))
        .map(|m| m.mount_point)
}

/// Controllers the cgroup2 hierarchy offers.
pub fn controllers(mount: &Path) -> Vec<String> {
    fs::read_to_string(mount.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A cgroup in the cgroup2 hierarchy.
#[derive(Debug, Clone)]
pub struct Unified {
    pub dir: PathBuf,
}

impl Unified {
    /// Creates `path` under `mount` with `needed` controllers enabled on the way down.
    pub fn create(mount: &Path, path: &str, needed: &[String]) -> Result<Unified, String> {
        let mut dir = mount.to_path_buf();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for part in &parts {
            for ctl in needed {
                let control = dir.join("cgroup.subtree_control");
                let enabled = fs::read_to_string(&control).unwrap_or_default();
                if !enabled.split_whitespace().any(|c| c == ctl) {
                    fs::write(&control, format!("+{ctl}"))
                        .map_err(|e| format!("enable {ctl} in {}: {e}", control.display()))?;
                }
            }
            dir.push(part);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("mkdir {}: {e}", dir.display())),
            }
        }
        Ok(Unified { dir })
    }

    /// The cgroup at `path`, if a create made one.
    pub fn existing(mount: &Path, path: &str) -> Option<Unified> {
        let dir = mount.join(path.trim_start_matches('/'));
        dir.is_dir().then_some(Unified { dir })
    }

    pub fn write(&self, key: &str, value: &str) -> Result<(), String> {
        if key.contains('/') || key.starts_with('.') {
            return Err(format!("{key:?} is not a cgroup file name"));
        }
        let file = self.dir.join(key);
        fs::write(&file, value).map_err(|e| format!("write {value:?} to {}: {e}", file.display()))
    }

    pub fn add(&self, pid: Pid) -> Result<(), String> {
        self.write("cgroup.procs", &pid.to_string())
    }

    pub fn remove(&self) -> std::io::Result<()> {
        match fs::remove_dir(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

/// Huge page sizes this kernel supports, as the OCI spec writes them ("2MB", "1GB").
pub fn hugepage_sizes() -> Vec<String> {
    let Ok(dir) = fs::read_dir("/sys/kernel/mm/hugepages") else { return vec![] };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
            Some(match kb {
                kb if kb >= 1 << 20 && kb % (1 << 20) == 0 => format!("{}GB", kb >> 20),
                kb if kb >= 1 << 10 && kb % (1 << 10) == 0 => format!("{}MB", kb >> 10),
                kb => format!("{kb}KB"),
            })
        })
        .collect()
}
