//! Container statistics in the JSON shape runc's `events` prints (libcontainer's types.Stats),
//! so that tools reading runc's output read hutch's.

use cgroups_rs::stats::{BlkioStat, CgroupStats, MemoryStats};
use serde_json::{json, Map, Value};

/// `{"type": "stats", "id": ID, "data": {...}}`.
pub fn event(id: &str, stats: &CgroupStats) -> Value {
    json!({"type": "stats", "id": id, "data": data(stats)})
}

/// `{"type": "oom", "id": ID}`.
pub fn oom_event(id: &str) -> Value {
    json!({"type": "oom", "id": id})
}

pub fn data(s: &CgroupStats) -> Value {
    let mut cpu = json!({"usage": {"kernel": 0, "user": 0}, "throttling": {}});
    if let Some(a) = &s.cpu.cpu_acct {
        cpu["usage"] = json!({
            "total": a.total_usage, "percpu": a.usage_percpu,
            // cpuacct.stat counts USER_HZ ticks; runc reports nanoseconds.
            "kernel": ticks_to_ns(a.system_usage), "user": ticks_to_ns(a.user_usage),
        });
    }
    if let Some(t) = &s.cpu.cpu_throttling {
        cpu["throttling"] = json!({
            "periods": t.periods, "throttled_periods": t.throttled_periods, "throttled_time": t.throttled_time,
        });
    }
    let m = &s.memory;
    let mut memory = Map::new();
    memory.insert("cache".into(), m.cache.into());
    for (key, entry) in [("usage", &m.memory), ("swap", &m.memory_swap), ("kernel", &m.kernel_memory)] {
        if let Some(e) = entry {
            memory.insert(key.into(), memory_entry(e));
        }
    }
    memory.insert(
        "raw".into(),
        json!({
            "cache": m.cache, "rss": m.rss, "rss_huge": m.rss_huge, "shmem": m.shmem, "mapped_file": m.mapped_file,
            "dirty": m.dirty, "writeback": m.writeback, "swap": m.swap, "pgpgin": m.pgpgin, "pgpgout": m.pgpgout,
            "pgfault": m.pgfault, "pgmajfault": m.pgmajfault, "inactive_anon": m.inactive_anon,
            "active_anon": m.active_anon, "inactive_file": m.inactive_file, "active_file": m.active_file,
            "unevictable": m.unevictable, "total_cache": m.total_cache, "total_rss": m.total_rss,
            "total_swap": m.total_swap, "total_pgfault": m.total_pgfault, "total_pgmajfault": m.total_pgmajfault,
        }),
    );
    let blkio = json!({
        "ioServiceBytesRecursive": blkio_entries(&s.blkio.io_service_bytes_recursive),
        "ioServicedRecursive": blkio_entries(&s.blkio.io_serviced_recursive),
        "ioQueueRecursive": blkio_entries(&s.blkio.io_queued_recursive),
        "ioServiceTimeRecursive": blkio_entries(&s.blkio.io_service_time_recursive),
        "ioWaitTimeRecursive": blkio_entries(&s.blkio.io_wait_time_recursive),
        "ioMergedRecursive": blkio_entries(&s.blkio.io_merged_recursive),
        "ioTimeRecursive": blkio_entries(&s.blkio.io_time_recursive),
        "sectorsRecursive": blkio_entries(&s.blkio.sectors_recursive),
    });
    let hugetlb: Map<String, Value> = s
        .hugetlb
        .iter()
        .map(|(size, h)| (size.clone(), json!({"usage": h.usage, "max": h.max_usage, "failcnt": h.fail_cnt})))
        .collect();
    json!({
        "cpu": cpu,
        "memory": memory,
        "pids": {"current": s.pids.current, "limit": limit(s.pids.limit)},
        "blkio": blkio,
        "hugetlb": hugetlb,
    })
}

fn memory_entry(e: &MemoryStats) -> Value {
    json!({"limit": limit(e.limit), "usage": e.usage, "max": e.max_usage, "failcnt": e.fail_cnt})
}

/// cgroups-rs reports "no limit" as a negative number; runc reports the largest u64.
fn limit(v: i64) -> u64 {
    if v < 0 {
        u64::MAX
    } else {
        v as u64
    }
}

fn blkio_entries(v: &[BlkioStat]) -> Value {
    v.iter().map(|b| json!({"major": b.major, "minor": b.minor, "op": b.op, "value": b.value})).collect()
}

fn ticks_to_ns(ticks: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks.saturating_mul(1_000_000_000 / hz)
}
