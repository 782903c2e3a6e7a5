//! Task stats for `ctr task metrics` and the CRI's ContainerStats: hutch's cgroup statistics as
//! containerd's cgroups v1 Metrics, or v2 Metrics on a pure cgroup v2 host, packed in an Any.

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageField;

/// A limit cgroups-rs reports as negative is no limit: the largest u64, as runc's shim says.
fn limit(v: i64) -> u64 {
    if v < 0 {
        u64::MAX
    } else {
        v as u64
    }
}

fn ticks_to_ns(ticks: u64) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks.saturating_mul(1_000_000_000 / hz)
}

pub fn any(cgroup: &hutch::cgroups::Cgroup) -> Result<Any, String> {
    let s = cgroup.stats().map_err(|e| e.to_string())?;
    let packed = if cgroup.is_v2() {
        containerd_shim::util::convert_to_any(Box::new(for_v2(&s)))
    } else {
        containerd_shim::util::convert_to_any(Box::new(for_v1(&s)))
    };
    packed.map_err(|e| e.to_string())
}

fn for_v1(s: &cgroups_rs::CgroupStats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    m.pids = MessageField::some(v1::PidsStat {
        current: s.pids.current,
        limit: limit(s.pids.limit),
        ..Default::default()
    });
    // ctr dereferences cpu.usage and memory.usage whenever cpu and memory are set: always fill them.
    let mut usage = v1::CPUUsage::new();
    if let Some(a) = &s.cpu.cpu_acct {
        usage.total = a.total_usage;
        usage.per_cpu = a.usage_percpu.clone();
        usage.user = ticks_to_ns(a.user_usage);
        usage.kernel = ticks_to_ns(a.system_usage);
    }
    let mut throttling = v1::Throttle::new();
    if let Some(t) = &s.cpu.cpu_throttling {
        throttling.periods = t.periods;
        throttling.throttled_periods = t.throttled_periods;
        throttling.throttled_time = t.throttled_time;
    }
    m.cpu = MessageField::some(v1::CPUStat {
        usage: MessageField::some(usage),
        throttling: MessageField::some(throttling),
        ..Default::default()
    });
    let r = &s.memory;
    let entry = |e: &Option<cgroups_rs::stats::MemoryStats>| {
        let mut m = v1::MemoryEntry::new();
        if let Some(e) = e {
            m.limit = limit(e.limit);
            m.usage = e.usage;
            m.max = e.max_usage;
            m.failcnt = e.fail_cnt;
        }
        MessageField::some(m)
    };
    m.memory = MessageField::some(v1::MemoryStat {
        cache: r.cache,
        rss: r.rss,
        rss_huge: r.rss_huge,
        mapped_file: r.mapped_file,
        dirty: r.dirty,
        writeback: r.writeback,
        pg_pg_in: r.pgpgin,
        pg_pg_out: r.pgpgout,
        pg_fault: r.pgfault,
        pg_maj_fault: r.pgmajfault,
        inactive_anon: r.inactive_anon,
        active_anon: r.active_anon,
        inactive_file: r.inactive_file,
        active_file: r.active_file,
        unevictable: r.unevictable,
        hierarchical_memory_limit: limit(r.hierarchical_memory_limit),
        hierarchical_swap_limit: limit(r.hierarchical_memsw_limit),
        total_cache: r.total_cache,
        total_rss: r.total_rss,
        total_rss_huge: r.total_rss_huge,
        total_mapped_file: r.total_mapped_file,
        total_dirty: r.total_dirty,
        total_writeback: r.total_writeback,
        total_pg_pg_in: r.total_pgpgin,
        total_pg_pg_out: r.total_pgpgout,
        total_pg_fault: r.total_pgfault,
        total_pg_maj_fault: r.total_pgmajfault,
        total_inactive_anon: r.total_inactive_anon,
        total_active_anon: r.total_active_anon,
        total_inactive_file: r.total_inactive_file,
        total_active_file: r.total_active_file,
        total_unevictable: r.total_unevictable,
        usage: entry(&r.memory),
        swap: entry(&r.memory_swap),
        kernel: entry(&r.kernel_memory),
        ..Default::default()
    });
    m
}

fn for_v2(s: &cgroups_rs::CgroupStats) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    m.pids = MessageField::some(v2::PidsStat {
        current: s.pids.current,
        limit: limit(s.pids.limit),
        ..Default::default()
    });
    let mut cpu = v2::CPUStat::new();
    if let Some(a) = &s.cpu.cpu_acct {
        cpu.usage_usec = a.total_usage / 1000;
        cpu.user_usec = ticks_to_ns(a.user_usage) / 1000;
        cpu.system_usec = ticks_to_ns(a.system_usage) / 1000;
    }
    if let Some(t) = &s.cpu.cpu_throttling {
        cpu.nr_periods = t.periods;
        cpu.nr_throttled = t.throttled_periods;
        cpu.throttled_usec = t.throttled_time / 1000;
    }
    m.cpu = MessageField::some(cpu);
    let r = &s.memory;
    let (usage, usage_limit, max_usage) =
        r.memory.as_ref().map_or((0, u64::MAX, 0), |m| (m.usage, limit(m.limit), m.max_usage));
    let (swap_usage, swap_limit) =
        r.memory_swap.as_ref().map_or((0, u64::MAX), |m| (m.usage, limit(m.limit)));
    m.memory = MessageField::some(v2::MemoryStat {
        file: r.cache,
        anon: r.rss,
        shmem: r.shmem,
        file_mapped: r.mapped_file,
        file_dirty: r.dirty,
        file_writeback: r.writeback,
        inactive_anon: r.inactive_anon,
        active_anon: r.active_anon,
        inactive_file: r.inactive_file,
        active_file: r.active_file,
        unevictable: r.unevictable,
        pgfault: r.pgfault,
        pgmajfault: r.pgmajfault,
        usage,
        usage_limit,
        max_usage,
        swap_usage,
        swap_limit,
        ..Default::default()
    });
    m
}
