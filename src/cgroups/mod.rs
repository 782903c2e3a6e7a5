//! The container's cgroup, through `cgroups-rs`: created before the intermediate stage starts
//! (so every container process is born inside it), limits from `linux.resources`, the list of
//! member processes for `kill --all`, and removal on delete.
//!
//! Works on v1, hybrid (v1 controllers plus a cgroup2 mount; the v1 controllers are used) and
//! pure v2 hosts, whichever `cgroups-rs` detects.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::hierarchies;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::MaxValue;
use cgroups_rs::{CgroupPid, FreezerState, Manager};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemory, LinuxResources,
};

use crate::error::{Error, Result};

pub mod devices;
pub mod meter;
pub mod unified;
use unified::Unified;

/// What a new process needs to join a cgroup by itself (see `Cgroup::join_plan`).
pub struct JoinPlan {
    /// v1 hierarchies' `tasks` files, opened here and each written "0" by the joining process.
    /// v1 checks the opener's credentials, so a process already in a new user namespace can
    /// still join through them.
    pub v1_tasks: Vec<(std::path::PathBuf, std::fs::File)>,
    /// A cgroup2 directory for clone3(CLONE_INTO_CGROUP), with its path.
    pub v2_dir: Option<(std::path::PathBuf, OwnedFd)>,
}

impl JoinPlan {
    /// Run in the new, single-threaded process: moves it into each v1 hierarchy's cgroup.
    pub fn join_v1(&self) -> std::result::Result<(), String> {
        for (path, file) in &self.v1_tasks {
            join_through(path, file.as_fd())?;
        }
        Ok(())
    }

    /// The files a process that already runs writes "0" to, to join the cgroup: the v1 `tasks`
    /// files, and `cgroup.procs` of the cgroup2 directory (slower than CLONE_INTO_CGROUP: see
    /// `Cgroup::join_plan`). Opened here, so with the opener's credentials.
    pub fn into_join_files(self) -> Result<Vec<(std::path::PathBuf, OwnedFd)>> {
        let mut files: Vec<_> = self.v1_tasks.into_iter().map(|(p, f)| (p, OwnedFd::from(f))).collect();
        if let Some((path, dir)) = &self.v2_dir {
            let procs = nix::fcntl::openat(
                dir,
                "cgroup.procs",
                nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| Error::Sys { context: "open cgroup.procs".into(), source: e })?;
            files.push((path.join("cgroup.procs"), procs));
        }
        Ok(files)
    }
}

/// Moves the calling (single-threaded) process into a cgroup through one of its join files.
pub fn join_through(path: &Path, file: std::os::fd::BorrowedFd<'_>) -> std::result::Result<(), String> {
    nix::unistd::write(file, b"0")
        .map(drop)
        .map_err(|e| format!("join cgroup: write {}: {e}", path.display()))
}

/// The host's cgroup hierarchies, read from mountinfo once per process (they do not move while
/// hutch runs; cgroups-rs would parse mountinfo on every call).
fn hierarchy() -> Box<dyn cgroups_rs::fs::Hierarchy> {
    static V1: std::sync::OnceLock<hierarchies::V1> = std::sync::OnceLock::new();
    if is_unified() {
        return Box::new(hierarchies::V2::new());
    }
    Box::new(V1.get_or_init(hierarchies::V1::new).clone())
}

/// The annotation that narrows a container's v1 cgroup to some controllers
/// ("memory,pids,cpuacct,devices"): each v1 hierarchy costs a mkdir, writes and an rmdir per
/// container. Sandboxes use it; without it every hierarchy is joined, as runc does. A pure v2
/// host ignores it.
pub const CONTROLLERS_ANNOTATION: &str = "io.github.hutch.cgroup.controllers";

/// Whether the host runs cgroup v2 alone: asked once per process (cgroups-rs asks statfs on
/// every call, a dozen times a start).
pub fn is_unified() -> bool {
    static UNIFIED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *UNIFIED.get_or_init(hierarchies::is_cgroup2_unified_mode)
}

pub struct Cgroup {
    path: String,
    cg: cgroups_rs::fs::Cgroup,
    /// On a hybrid host, the container's cgroup in the cgroup2 mount (for the controllers only
    /// that mount has); on a pure v2 host, the container's own directory.
    unified: Option<Unified>,
}

impl Cgroup {
    /// Fills in what cgroups-rs leaves empty on cgroup v2: memory usage, peak and limit
    /// (memory.current, memory.peak, memory.max) and CPU time (cpu.stat, in clock ticks as v1's).
    fn v2_stats(dir: &Path, s: &mut cgroups_rs::CgroupStats) {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let num = |f: &str| read(f).and_then(|v| v.trim().parse::<u64>().ok());
        if s.memory.memory.is_none() {
            if let Some(usage) = num("memory.current") {
                let limit = read("memory.max").and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(-1);
                s.memory.memory = Some(cgroups_rs::stats::MemoryStats {
                    usage,
                    max_usage: num("memory.peak").unwrap_or(usage),
                    limit,
                    fail_cnt: 0,
                });
            }
        }
        if s.cpu.cpu_acct.is_none() {
            if let Some(stat) = read("cpu.stat") {
                let field = |k: &str| {
                    stat.lines().find_map(|l| l.strip_prefix(k)?.trim().parse::<u64>().ok()).unwrap_or(0)
                };
                // SAFETY: sysconf has no preconditions.
                let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
                s.cpu.cpu_acct = Some(cgroups_rs::stats::CpuAcctStats {
                    user_usage: field("user_usec ") * hz / 1_000_000,
                    system_usage: field("system_usec ") * hz / 1_000_000,
                    total_usage: field("usage_usec ") * 1000,
                    usage_percpu: Vec::new(),
                });
            }
        }
    }

    /// The cgroup path a container uses: `linux.cgroupsPath`, or `hutch/<id>`. Either is taken
    /// from the root of each hierarchy.
    pub fn path_for(cgroups_path: Option<&Path>, id: &str) -> String {
        match cgroups_path {
            Some(p) => p.to_string_lossy().trim_start_matches('/').to_string(),
            None => format!("hutch/{id}"),
        }
    }

    fn err(&self, message: impl ToString) -> Error {
        Error::Cgroup { path: self.path.clone(), message: message.to_string() }
    }

    /// The device rules to apply: the config's, then (as runc does) the default nodes every
    /// container gets and the config's own `linux.devices`, so that a deny-all rule in the
    /// config does not take /dev/null away.
    pub fn resources_with_devices(
        resources: Option<&LinuxResources>,
        devices: &[LinuxDevice],
    ) -> LinuxResources {
        let mut res = resources.cloned().unwrap_or_default();
        let mut rules = res.devices().clone().unwrap_or_default();
        let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
            let mut b = LinuxDeviceCgroupBuilder::default().allow(true).typ(typ).access(access);
            if let Some(m) = major {
                b = b.major(m);
            }
            if let Some(m) = minor {
                b = b.minor(m);
            }
            b.build().expect("complete device rule")
        };
        use LinuxDeviceType::{B, C};
        rules.push(rule(C, None, None, "m"));
        rules.push(rule(B, None, None, "m"));
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200)] {
            rules.push(rule(C, Some(major), Some(minor), "rwm"));
        }
        rules.push(rule(C, Some(136), None, "rwm"));
        for d in devices {
            rules.push(rule(d.typ(), Some(d.major()), Some(d.minor()), "rwm"));
        }
        res.set_devices(Some(rules));
        res
    }

    /// Whether a cgroup with `resources` can be joined through files after its first process is
    /// cloned (see `JoinPlan::into_join_files`) as fast as with CLONE_INTO_CGROUP: on v1 and
    /// hybrid hosts, unless limits may need the cgroup2 part of a hybrid host.
    pub fn joinable_after_clone(resources: Option<&LinuxResources>) -> bool {
        let needs_cgroup2 = resources.is_some_and(|r| {
            r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
                || r.unified().as_ref().is_some_and(|u| !u.is_empty())
        });
        !is_unified() && !needs_cgroup2
    }

    /// Creates the cgroup in every hierarchy and applies `resources`. Errors name the field of
    /// `linux.resources` that this host cannot honour.
    pub fn create(
        path: &str,
        resources: Option<&LinuxResources>,
        file: &Path,
        controllers: Option<&[String]>,
    ) -> Result<Cgroup> {
        // Taking over a cgroup that holds processes would let delete kill strangers.
        let existing = Cgroup::open(path, controllers);
        if existing.cg.exists() && !existing.procs().is_empty() {
            return Err(Error::config(
                file,
                "linux.cgroupsPath",
                format!("cgroup {path} is in use by other processes"),
            ));
        }
        // A delete of another container may remove the shared, empty `hutch` parent between
        // the mkdirs of parent and child (see remove_empty_parent): one retry covers it.
        // v1 only: a v2 cgroup is one directory, its controllers enabled by what the limits need.
        let only = controllers.filter(|_| !is_unified()).map(|c| c.to_vec());
        let cg = cgroups_rs::fs::Cgroup::new_with_specified_controllers(hierarchy(), path, only.clone())
            .or_else(|_| cgroups_rs::fs::Cgroup::new_with_specified_controllers(hierarchy(), path, only))
            .map_err(|e| Error::Cgroup { path: path.to_string(), message: format!("create: {e}") })?;
        let mut this = Cgroup { path: path.to_string(), cg, unified: None };
        if let Some(res) = resources {
            if let Err((field, message)) = this.apply(res) {
                let _ = this.destroy(Duration::from_secs(1));
                return Err(Error::config(file, format!("linux.resources{field}"), message));
            }
        }
        Ok(this)
    }

    /// Applies resources at create. cgroups-rs does most; hutch does what it leaves out: raw
    /// `unified` keys, hugetlb where only the cgroup2 mount of a hybrid host has it, and the
    /// blkio weight where the host's scheduler is BFQ.
    fn apply(&mut self, res: &LinuxResources) -> std::result::Result<(), (String, String)> {
        let mut rest = res.clone();
        let v2 = self.cg.v2();
        let v1_has = |ctl: &str| self.cg.subsystems().iter().any(|s| s.controller_name() == ctl);
        let cgroup2 = unified::mount_point();
        let v2_controllers = cgroup2.as_deref().map(unified::controllers).unwrap_or_default();
        let mut needed_v2: Vec<String> = Vec::new();
        let mut v2_writes: Vec<(String, String, String)> = Vec::new(); // (field, key, value)

        if res.network().is_some() && (v2 || !(v1_has("net_cls") && v1_has("net_prio"))) {
            return Err((".network".into(), "this host has no net_cls/net_prio controller".into()));
        }
        if let Some(limits) = res.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
            let sizes = unified::hugepage_sizes();
            for (i, l) in limits.iter().enumerate() {
                if !sizes.iter().any(|s| s == l.page_size()) {
                    return Err((
                        format!(".hugepageLimits[{i}].pageSize"),
                        format!(
                            "{:?} is not a huge page size of this kernel (it has {sizes:?})",
                            l.page_size()
                        ),
                    ));
                }
            }
            if !v2 && !v1_has("hugetlb") {
                if !v2_controllers.iter().any(|c| c == "hugetlb") {
                    return Err((".hugepageLimits".into(), "this host has no hugetlb controller".into()));
                }
                needed_v2.push("hugetlb".into());
                for (i, l) in limits.iter().enumerate() {
                    v2_writes.push((
                        format!(".hugepageLimits[{i}]"),
                        format!("hugetlb.{}.max", l.page_size()),
                        l.limit().to_string(),
                    ));
                }
                rest.set_hugepage_limits(None);
            }
        }
        if let Some(keys) = res.unified().as_ref().filter(|u| !u.is_empty()) {
            if cgroup2.is_none() {
                return Err((".unified".into(), "this host has no cgroup2 hierarchy".into()));
            }
            for (key, value) in keys {
                let ctl = key.split('.').next().unwrap_or_default();
                if ctl != "cgroup" && !v2_controllers.iter().any(|c| c == ctl) {
                    return Err((
                        format!(".unified.{key}"),
                        format!("controller {ctl:?} is not in this host's cgroup2 hierarchy (it has {v2_controllers:?})"),
                    ));
                }
                if ctl != "cgroup" && !needed_v2.iter().any(|c| c == ctl) {
                    needed_v2.push(ctl.to_string());
                }
                v2_writes.push((format!(".unified.{key}"), key.clone(), value.clone()));
            }
            rest.set_unified(None);
        }
        let bfq_weight = match res.block_io().as_ref().and_then(|b| b.weight()) {
            Some(w) if v2 || self.v1_dir("blkio").is_some_and(|d| !d.join("blkio.weight").exists()) => {
                let mut b = res.block_io().clone().unwrap_or_default();
                b.set_weight(None);
                rest.set_block_io(Some(b));
                Some(w)
            }
            _ => None,
        };

        // v2 has no devices controller: the rules become an eBPF program (cgroups-rs has none).
        let v2_devices = if v2 { rest.devices_mut().take() } else { None };
        if !v2 {
            self.set_v1_directly(&mut rest)?;
        }
        self.set_through_manager(&rest).map_err(|e| (String::new(), e))?;
        if let Some(rules) = v2_devices {
            let dir = hierarchy().root().join(&self.path);
            devices::attach(&dir, &rules).map_err(|e| (".devices".into(), e))?;
        }
        if let Some(w) = bfq_weight {
            // BFQ's file where the scheduler is BFQ, else v2's io.weight ("default N").
            let dir =
                if v2 { hierarchy().root().join(&self.path) } else { self.v1_dir("blkio").expect("checked") };
            let (file, value) = match (v2, dir.join(if v2 { "io.bfq.weight" } else { "blkio.bfq.weight" })) {
                (_, f) if f.exists() => (f, w.to_string()),
                (true, _) => (dir.join("io.weight"), format!("default {w}")),
                (false, f) => (f, w.to_string()),
            };
            std::fs::write(&file, value)
                .map_err(|e| (".blockIO.weight".into(), format!("write {}: {e}", file.display())))?;
        }
        if !v2_writes.is_empty() {
            let mount = cgroup2.expect("checked");
            let part = if v2 {
                Unified { dir: mount.join(&self.path) }
            } else {
                Unified::create(&mount, &self.path, &needed_v2).map_err(|e| (String::new(), e))?
            };
            let part = self.unified.insert(part);
            for (field, key, value) in v2_writes {
                part.write(&key, &value).map_err(|e| (field, e))?;
            }
        }
        Ok(())
    }

    /// What hutch applies on v1 itself, taking it out of `rest` for cgroups-rs's FsManager: the
    /// memory limits (see below), and pids and device rules through the crate's controllers of
    /// this cgroup, already loaded. A sandbox's resources leave nothing for `set_through_manager`,
    /// so its start makes no manager.
    fn set_v1_directly(&self, rest: &mut LinuxResources) -> std::result::Result<(), (String, String)> {
        if let Some(m) = rest.memory_mut() {
            self.set_v1_memory_limits(m)?;
            m.set_limit(None);
            m.set_swap(None);
        }
        if rest.memory().as_ref().is_some_and(|m| *m == LinuxMemory::default()) {
            rest.set_memory(None);
        }
        if let Some(pids) = rest.pids_mut().take() {
            let ctl = self
                .cg
                .controller_of::<PidController>()
                .ok_or_else(|| (".pids".to_string(), missing("pids")))?;
            let max = if pids.limit() > 0 { MaxValue::Value(pids.limit()) } else { MaxValue::Max };
            ctl.set_pid_max(max).map_err(|e| (".pids.limit".to_string(), e.to_string()))?;
        }
        if let Some(rules) = rest.devices_mut().take() {
            self.set_v1_devices(&rules)?;
        }
        Ok(())
    }

    /// Device rules in order, as FsManager writes them; a rule without major or minor means
    /// every number (runtime spec), which cgroups-rs writes as `*` only when given -1.
    fn set_v1_devices(&self, rules: &[LinuxDeviceCgroup]) -> std::result::Result<(), (String, String)> {
        use cgroups_rs::fs::devices::{DevicePermissions, DevicesController};
        let ctl = self
            .cg
            .controller_of::<DevicesController>()
            .ok_or_else(|| (".devices".to_string(), missing("devices")))?;
        for (i, r) in rules.iter().enumerate() {
            let field = || format!(".devices[{i}]");
            let typ = r.typ().unwrap_or_default().as_str().chars().next();
            let typ = cgroups_rs::fs::devices::DeviceType::from_char(typ)
                .ok_or_else(|| (field(), format!("type {:?} is not a, b or c", r.typ())))?;
            let access = r.access().clone().unwrap_or_default();
            let perms: Vec<DevicePermissions> =
                access.chars().filter_map(DevicePermissions::from_char).collect();
            let (major, minor) = (r.major().unwrap_or(-1), r.minor().unwrap_or(-1));
            let written = if r.allow() {
                ctl.allow_device(typ, major, minor, &perms)
            } else {
                ctl.deny_device(typ, major, minor, &perms)
            };
            written.map_err(|e| (field(), e.to_string()))?;
        }
        Ok(())
    }

    /// v1's memory and memory+swap limits, written in the order the kernel accepts (memsw
    /// never below the memory limit at any step). cgroups-rs learns the current limit by
    /// reading memory.stat and ten more files, a visible part of a sandbox's start; one read
    /// of memory.limit_in_bytes does. As in runc, limit -1 without swap lifts both.
    fn set_v1_memory_limits(&self, m: &LinuxMemory) -> std::result::Result<(), (String, String)> {
        let limit = m.limit().unwrap_or(0);
        let swap = match m.swap().unwrap_or(0) {
            0 if limit == -1 => -1,
            s => s,
        };
        if limit == 0 && swap == 0 {
            return Ok(());
        }
        let dir = self
            .v1_dir("memory")
            .ok_or_else(|| (".memory".to_string(), "this host has no memory controller".to_string()))?;
        let io = |field: &str, file: &Path, e: std::io::Error| {
            (format!(".memory.{field}"), format!("{}: {e}", file.display()))
        };
        let write = |field: &str, name: &str, value: i64| {
            let file = dir.join(name);
            std::fs::write(&file, value.to_string()).map_err(|e| io(field, &file, e))
        };
        let swap_first = limit != 0 && swap != 0 && {
            let file = dir.join("memory.limit_in_bytes");
            let now = std::fs::read_to_string(&file).map_err(|e| io("limit", &file, e))?;
            swap == -1 || now.trim().parse::<i64>().unwrap_or(i64::MAX) < swap
        };
        if swap_first {
            write("swap", "memory.memsw.limit_in_bytes", swap)?;
        }
        if limit != 0 {
            write("limit", "memory.limit_in_bytes", limit)?;
        }
        if swap != 0 && !swap_first {
            write("swap", "memory.memsw.limit_in_bytes", swap)?;
        }
        Ok(())
    }

    /// The directory of a v1 controller's hierarchy for this cgroup.
    /// The directory holding `controller`'s files: its v1 hierarchy's, or the cgroup2 one.
    pub fn controller_dir(&self, controller: &str) -> Option<std::path::PathBuf> {
        if self.cg.v2() {
            return Some(hierarchy().root().join(&self.path));
        }
        self.v1_dir(controller)
    }

    fn v1_dir(&self, controller: &str) -> Option<std::path::PathBuf> {
        self.cg
            .subsystems()
            .iter()
            .find(|s| s.controller_name() == controller)
            .map(|s| s.to_controller().path().to_path_buf())
    }

    /// An existing container's cgroup, in the v1 `controllers` it was made with when it was
    /// narrowed to some (CONTROLLERS_ANNOTATION), else in every hierarchy.
    pub fn open(path: &str, controllers: Option<&[String]>) -> Cgroup {
        if is_unified() {
            return Cgroup {
                path: path.to_string(),
                cg: cgroups_rs::fs::Cgroup::load(hierarchy(), path),
                unified: None,
            };
        }
        let unified = unified::mount_point().and_then(|m| Unified::existing(&m, path));
        let cg = match controllers {
            Some(c) => cgroups_rs::fs::Cgroup::load_with_specified_controllers(hierarchy(), path, c.to_vec()),
            None => cgroups_rs::fs::Cgroup::load(hierarchy(), path),
        };
        Cgroup { path: path.to_string(), cg, unified }
    }

    /// The v1 controllers a container's annotations narrow its cgroup to.
    pub fn controllers_of(
        annotations: Option<&std::collections::HashMap<String, String>>,
    ) -> Option<Vec<String>> {
        let list = annotations?.get(CONTROLLERS_ANNOTATION)?;
        Some(list.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect())
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// How a new process joins this cgroup without the host moving it there.
    ///
    /// Moving a process by writing its pid to cgroup.procs takes the kernel's global
    /// cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period: about 10 ms
    /// on these machines, most of a container's start-up. Two ways in skip that lock: a
    /// single-threaded process writing "0" to a v1 hierarchy's `tasks` file (it moves only
    /// itself), and clone3(CLONE_INTO_CGROUP), which creates the process inside a cgroup2
    /// directory. The intermediate stage is born with the latter and does the former.
    pub fn join_plan(&self) -> Result<JoinPlan> {
        let open_dir = |dir: std::path::PathBuf| match std::fs::File::open(&dir) {
            Ok(f) => Ok((dir, OwnedFd::from(f))),
            Err(e) => Err(self.err(format!("open {}: {e}", dir.display()))),
        };
        if self.cg.v2() {
            let dir = hierarchy().root().join(&self.path);
            return Ok(JoinPlan { v1_tasks: Vec::new(), v2_dir: Some(open_dir(dir)?) });
        }
        let mut v1_tasks = Vec::new();
        for sub in self.cg.subsystems() {
            let path = sub.to_controller().path().join("tasks");
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(f) => v1_tasks.push((path, f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.err(format!("open {}: {e}", path.display()))),
            }
        }
        let v2_dir = match &self.unified {
            Some(u) => Some(open_dir(u.dir.clone())?),
            None => None,
        };
        Ok(JoinPlan { v1_tasks, v2_dir })
    }

    pub fn add(&mut self, pid: Pid) -> Result<()> {
        self.cg
            .add_task_by_tgid(CgroupPid::from(pid.as_raw() as u64))
            .map_err(|e| self.err(format!("add pid {pid}: {e}")))?;
        match &self.unified {
            Some(u) if !is_unified() => u.add(pid).map_err(|e| self.err(e)),
            _ => Ok(()),
        }
    }

    /// The member processes, from a hierarchy the cgroup exists in (a container may use only
    /// some v1 controllers: see CONTROLLERS_ANNOTATION).
    pub fn procs(&self) -> Vec<Pid> {
        let subsystems = self.cg.subsystems();
        let Some(sub) = subsystems.iter().find(|s| s.to_controller().exists()) else { return Vec::new() };
        sub.to_controller().procs().into_iter().map(|p| Pid::from_raw(p.pid as i32)).collect()
    }

    fn manager(&self) -> Result<cgroups_rs::FsManager> {
        cgroups_rs::FsManager::new(&self.path).map_err(|e| self.err(e))
    }

    fn freezer(&self) -> Option<&FreezerController> {
        self.cg.controller_of::<FreezerController>()
    }

    pub fn is_frozen(&self) -> bool {
        self.freezer().and_then(|f| f.state().ok()).is_some_and(|s| matches!(s, FreezerState::Frozen))
    }

    /// Freezes (pause) or thaws (resume) every process of the cgroup.
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        let f = self.freezer().ok_or_else(|| self.err("no freezer controller on this host"))?;
        if frozen { f.freeze() } else { f.thaw() }.map_err(|e| self.err(e))
    }

    /// Signals every process. With SIGKILL on v2 that is cgroup.kill; otherwise the cgroup is
    /// frozen first, so that nothing can fork a new member between listing and signalling, and
    /// then left as it was (a paused container stays paused), except after SIGKILL: frozen
    /// processes only die once thawed.
    pub fn signal_all(&self, sig: Signal) -> Result<()> {
        if sig == Signal::SIGKILL && self.cg.v2() && self.cg.kill().is_ok() {
            return Ok(());
        }
        let was_frozen = self.is_frozen();
        let froze = !was_frozen && self.set_frozen(true).is_ok();
        for pid in self.procs() {
            let _ = kill(pid, sig);
        }
        if froze || (was_frozen && sig == Signal::SIGKILL) {
            let _ = self.set_frozen(false);
        }
        Ok(())
    }

    /// Applies new limits to a live cgroup (`hutch update`).
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        if self.cg.v2() && resources.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(self.err("update: changing device rules on cgroup v2 is not supported"));
        }
        let mut rest = resources.clone();
        if !self.cg.v2() {
            self.set_v1_directly(&mut rest).map_err(|(field, e)| self.err(format!("update{field}: {e}")))?;
        }
        self.set_through_manager(&rest).map_err(|e| self.err(format!("update: {e}")))
    }

    /// Hands what hutch did not write itself to cgroups-rs's FsManager, which is not made when
    /// nothing is left (making one reads /proc/self/cgroup and mountinfo three times).
    fn set_through_manager(&self, rest: &LinuxResources) -> std::result::Result<(), String> {
        if *rest == LinuxResources::default() {
            return Ok(());
        }
        let mut manager = cgroups_rs::FsManager::new(&self.path).map_err(|e| e.to_string())?;
        manager.set(rest).map_err(|e| e.to_string())
    }

    pub fn stats(&self) -> Result<cgroups_rs::CgroupStats> {
        let mut s = self.manager()?.stats();
        if self.cg.v2() {
            Self::v2_stats(&hierarchy().root().join(&self.path), &mut s);
        }
        Ok(s)
    }

    /// The directory holding the memory controller's files, for OOM watching.
    pub fn memory_dir(&self) -> Option<std::path::PathBuf> {
        if self.cg.v2() {
            return Some(hierarchy().root().join(&self.path));
        }
        self.v1_dir("memory")
    }

    pub fn is_v2(&self) -> bool {
        self.cg.v2()
    }

    /// The default parent (`hutch`) is hutch's own: once its last container is gone it goes too,
    /// in each hierarchy the container used. rmdir refuses while another container's cgroup
    /// is in it.
    fn remove_empty_parent(&self) {
        let Some(("hutch", _)) = self.path.split_once('/') else { return };
        let dirs = self.cg.subsystems().iter().map(|s| s.to_controller().path().to_path_buf());
        for dir in dirs.chain(self.unified.iter().map(|u| u.dir.clone())) {
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }

    /// The common end of a container whose processes are all gone: one rmdir per directory,
    /// without listing members or checking what exists first (rmdir refuses a cgroup that
    /// still has members or child cgroups, and `destroy` then takes the long way).
    fn remove_if_empty(&self) -> bool {
        let dirs: Vec<PathBuf> = if self.cg.v2() {
            vec![hierarchy().root().join(&self.path)]
        } else {
            let v1 = self.cg.subsystems().iter().map(|s| s.to_controller().path().to_path_buf());
            v1.chain(self.unified.iter().map(|u| u.dir.clone())).collect()
        };
        dirs.iter().all(|d| match std::fs::remove_dir(d) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        })
    }

    /// Kills every member, waits until the cgroup is empty, and removes it.
    pub fn destroy(&self, timeout: Duration) -> Result<()> {
        let hybrid_part = self.unified.as_ref().filter(|_| !is_unified());
        if !self.cg.exists() && hybrid_part.is_none() {
            return Ok(());
        }
        if self.remove_if_empty() {
            self.remove_empty_parent();
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.procs().is_empty()
                && (!self.cg.exists() || self.cg.delete().is_ok())
                && hybrid_part.is_none_or(|u| u.remove().is_ok())
            {
                self.remove_empty_parent();
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.err(format!("still busy after {timeout:?}: pids {:?}", self.procs())));
            }
            self.signal_all(Signal::SIGKILL)?;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Why a v1 cgroup lacks a controller its limits need.
fn missing(controller: &str) -> String {
    format!(
        "the cgroup has no {controller} controller (this host has none, or the annotation \
         {CONTROLLERS_ANNOTATION} leaves it out)"
    )
}
