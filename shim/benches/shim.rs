//! The shim against containerd's runc shim, on one private containerd, in the same run:
//! 1. wall time of HUTCH_BENCH_RUNS (50) `ctr run --rm IMAGE ID true`, interleaved, as a ratio;
//! 2. the shim's resident memory per running container (one `sleep` task per shim).
//!
//! `cargo bench -p containerd-shim-hutch` (as root; needs containerd, runc, umoci, skopeo).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Containerd, HUTCH, RUNC};

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn exe_name(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("shim bench: needs root");
        return;
    }
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"shim".contains(a.as_str())) {
        return;
    }
    let runs: usize = std::env::var("HUTCH_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let c = Containerd::start("shimbench");
    // One of each first: the image's snapshot and both binaries are warm after it.
    for rt in [HUTCH, RUNC] {
        assert!(c.run(rt, "warmup", &["true"]).status.success(), "{rt} does not run");
    }
    let mut total = [Duration::ZERO; 2];
    for i in 0..runs {
        for (k, rt) in [HUTCH, RUNC].into_iter().enumerate() {
            let id = format!("b{k}-{i}");
            let t = Instant::now();
            let out = c.run(rt, &id, &["true"]);
            total[k] += t.elapsed();
            assert!(out.status.success(), "{rt}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let per = |d: Duration| d.as_secs_f64() * 1e3 / runs as f64;
    println!("shim: {runs} x `ctr run --rm busybox true`, interleaved");
    println!("  hutch shim  {:8.1} ms total {:7.1} ms/run", total[0].as_secs_f64() * 1e3, per(total[0]));
    println!("  runc shim   {:8.1} ms total {:7.1} ms/run", total[1].as_secs_f64() * 1e3, per(total[1]));
    println!("  ratio hutch/runc (wall): {:.2}", total[0].as_secs_f64() / total[1].as_secs_f64());

    // Memory: N running containers per runtime, one shim each (ctr groups by container).
    let n = 5;
    let mut rss = [Vec::new(), Vec::new()];
    for (k, rt) in [HUTCH, RUNC].into_iter().enumerate() {
        let before = c.shims();
        for i in 0..n {
            let id = format!("m{k}-{i}");
            let fifo = c.fifo_dir();
            let runc_root = c.run.join("runc").display().to_string();
            let mut a = vec!["run", "-d", "--runtime", rt, "--fifo-dir", fifo.as_str()];
            if rt == RUNC {
                a.extend(["--runc-root", runc_root.as_str()]);
            }
            a.extend([common::BUSYBOX, id.as_str(), "sleep", "1000"]);
            c.ctr(&a).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        for pid in c.shims().into_iter().filter(|p| !before.contains(p)) {
            rss[k].push((exe_name(pid), rss_kib(pid)));
        }
    }
    let avg =
        |v: &[(String, u64)]| v.iter().map(|(_, r)| *r).sum::<u64>() as f64 / v.len().max(1) as f64 / 1024.0;
    println!("shim: resident memory per running container ({n} containers, one shim each)");
    println!(
        "  {:28} {:6.1} MiB",
        rss[0].first().map(|(n, _)| n.as_str()).unwrap_or("hutch shim"),
        avg(&rss[0])
    );
    println!(
        "  {:28} {:6.1} MiB",
        rss[1].first().map(|(n, _)| n.as_str()).unwrap_or("runc shim"),
        avg(&rss[1])
    );
    println!("  ratio hutch/runc (RSS): {:.2}", avg(&rss[0]) / avg(&rss[1]));
}
