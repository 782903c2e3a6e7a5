//! A run's resource use, read straight from its cgroup's files: CPU time in nanoseconds, peak
//! memory and OOM kills. Cheaper than a full stats read (a sandbox reads it after every run) and
//! resettable, so that a warm sandbox's slot cgroup measures each run on its own.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::Cgroup;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_user_ns: u64,
    pub cpu_sys_ns: u64,
    pub peak_memory_bytes: u64,
    pub oom_kills: u64,
}

impl Usage {
    pub fn cpu_ns(&self) -> u64 {
        self.cpu_user_ns + self.cpu_sys_ns
    }
}

pub struct Meter {
    v2: bool,
    /// v1: cpuacct.usage_user and cpuacct.usage_sys; v2: cpu.stat.
    cpu: Vec<File>,
    /// v1: memory.max_usage_in_bytes; v2: memory.peak (reset per open file, kernel 6.12+).
    peak: Option<File>,
    /// v1: memory.oom_control; v2: memory.events.
    oom: Option<File>,
    /// Counters at the last reset.
    base: Usage,
}

impl Meter {
    pub fn new(cgroup: &Cgroup) -> Meter {
        let v2 = cgroup.is_v2();
        let open = |dir: Option<std::path::PathBuf>, name: &str, write: bool| {
            let path = dir?.join(name);
            std::fs::OpenOptions::new().read(true).write(write).open(Path::new(&path)).ok()
        };
        let (cpu, peak, oom) = if v2 {
            let dir = cgroup.controller_dir("memory");
            (
                open(dir.clone(), "cpu.stat", false).into_iter().collect(),
                open(dir.clone(), "memory.peak", true).or_else(|| open(dir.clone(), "memory.peak", false)),
                open(dir, "memory.events", false),
            )
        } else {
            let cpu = cgroup.controller_dir("cpuacct");
            let mem = cgroup.controller_dir("memory");
            (
                ["cpuacct.usage_user", "cpuacct.usage_sys"]
                    .iter()
                    .filter_map(|f| open(cpu.clone(), f, false))
                    .collect(),
                open(mem.clone(), "memory.max_usage_in_bytes", true),
                open(mem, "memory.oom_control", false),
            )
        };
        let mut m = Meter { v2, cpu, peak, oom, base: Usage::default() };
        m.reset();
        m
    }

    /// From now on, `read` counts from zero.
    pub fn reset(&mut self) {
        if let Some(f) = &mut self.peak {
            let _ = f.write_all(if self.v2 { b"reset" } else { b"0" });
        }
        self.base = Usage::default();
        self.base = self.read();
        self.base.peak_memory_bytes = 0;
    }

    /// Use since the last reset.
    pub fn read(&mut self) -> Usage {
        let (user, sys) = if self.v2 {
            let stat = self.cpu.first_mut().map(read_all).unwrap_or_default();
            (field(&stat, "user_usec") * 1000, field(&stat, "system_usec") * 1000)
        } else {
            let mut nums = self.cpu.iter_mut().map(|f| read_all(f).trim().parse::<u64>().unwrap_or(0));
            (nums.next().unwrap_or(0), nums.next().unwrap_or(0))
        };
        let peak = self.peak.as_mut().map(read_all).and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let ooms = self.oom.as_mut().map(|f| field(&read_all(f), "oom_kill")).unwrap_or(0);
        Usage {
            cpu_user_ns: user.saturating_sub(self.base.cpu_user_ns),
            cpu_sys_ns: sys.saturating_sub(self.base.cpu_sys_ns),
            peak_memory_bytes: peak,
            oom_kills: ooms.saturating_sub(self.base.oom_kills),
        }
    }
}

fn read_all(f: &mut File) -> String {
    let mut s = String::new();
    let _ = f.seek(SeekFrom::Start(0)).and_then(|_| f.read_to_string(&mut s));
    s
}

/// The number after `key ` in a "key value" per line file.
fn field(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_found_by_whole_key() {
        let t = "oom 3\noom_kill 2\noom_group_kill 1\n";
        assert_eq!(field(t, "oom_kill"), 2);
        assert_eq!(field(t, "oom"), 3);
        assert_eq!(field(t, "missing"), 0);
    }
}
