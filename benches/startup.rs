//! Start-up cost: `/bin/true` run to completion through `hutch run`, `hutch sandbox run` (the
//! default profile), bubblewrap, runc and crun, in the same run, interleaved, on the same rootfs.
//! Prints per-runtime medians and the ratios.
//!
//! Debian's crun refuses this machine's hybrid cgroups unless the cgroup2 mount is hidden, so the
//! benchmark moves itself into a private mount namespace without it; every runtime runs there.
//! Every runtime's state root is on a tmpfs, as /run is on a usual host (here / is ext4, whose
//! journal would otherwise be timed with each state write).
//!
//! `cargo bench --bench startup` (as root). HUTCH_BENCH_RUNS sets the runs per runtime (40).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Builds the command that runs `/bin/true` once, given a state root and a container id.
type Launcher = Box<dyn Fn(&Path, &str) -> Command>;

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("startup bench: needs root");
        return;
    }
    // Cargo passes --bench; a filter argument that does not match "startup" skips us.
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"startup".contains(a.as_str())) {
        return;
    }
    let runs: usize = std::env::var("HUTCH_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    hide_cgroup2();
    let dir = tempfile::Builder::new().prefix("hutch-bench-").tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    make_bundle(&bundle);
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    nix::mount::mount(Some("tmpfs"), &state, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>)
        .expect("mount a tmpfs for the state roots");

    // Every runtime runs from a copy of its executable whose page cache was dropped, so that all
    // start as an installed program does after a reboot: read back on demand. A file written
    // just now (as cargo writes hutch) is held in large folios and ran hutch about 1 ms (of 6)
    // faster than the same bytes read back on demand, so a just-built hutch would otherwise race
    // long-installed runtimes on unequal terms (these machines also run a DAMON pageout scheme,
    // which evicts what is idle).
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let hutch = cold_copy(&bin, Path::new(env!("CARGO_BIN_EXE_hutch")));
    report_startup_order(&hutch);
    let hutch_run = hutch.clone();
    let mut runtimes: Vec<(&str, Launcher)> = vec![(
        "hutch",
        Box::new(move |root: &Path, id: &str| {
            let mut c = Command::new(&hutch_run);
            c.arg("--root").arg(root).args(["run", "--bundle"]).arg(bundle_of(root)).arg(id);
            c
        }),
    )];
    // The harness path: a sandbox run under the default profile (user namespace, seccomp,
    // Landlock, capped pipes, result JSON).
    runtimes.push((
        "hutch-sandbox",
        Box::new(move |root: &Path, _id: &str| {
            let mut c = Command::new(&hutch);
            c.arg("--root")
                .arg(root)
                .args(["sandbox", "run", "--rootfs"])
                .arg(bundle_of(root).join("rootfs"));
            c.args(["--result", "/dev/null", "--", "/bin/true"]);
            c
        }),
    ));
    if let Some(bwrap) = which("bwrap") {
        let bwrap = cold_copy(&bin, &bwrap);
        runtimes.push((
            "bwrap",
            Box::new(move |root: &Path, _id: &str| {
                let mut c = Command::new(&bwrap);
                c.args(["--unshare-all", "--die-with-parent", "--ro-bind"])
                    .arg(bundle_of(root).join("rootfs"))
                    .arg("/");
                c.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/true"]);
                c
            }),
        ));
    }
    for rt in ["runc", "crun"] {
        if let Some(path) = which(rt) {
            let path = cold_copy(&bin, &path);
            runtimes.push((
                rt,
                Box::new(move |root: &Path, id: &str| {
                    let mut c = Command::new(&path);
                    c.arg("--root").arg(root).args(["run", "--bundle"]).arg(bundle_of(root)).arg(id);
                    c
                }),
            ));
        }
    }

    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); runtimes.len()];
    let mut failed: Vec<Option<String>> = vec![None; runtimes.len()];
    // One warm-up each, then interleaved runs so drift hits every runtime alike.
    for i in 0..=runs {
        for (k, (name, make)) in runtimes.iter().enumerate() {
            if failed[k].is_some() {
                continue;
            }
            let root = state.join(format!("root-{name}"));
            let id = format!("bench-{name}-{i}");
            let t = Instant::now();
            let out = make(&root, &id)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            let took = t.elapsed();
            if !out.status.success() {
                failed[k] = Some(String::from_utf8_lossy(&out.stderr).trim().to_string());
                continue;
            }
            if i > 0 {
                samples[k].push(took);
            }
        }
    }
    let _ = nix::mount::umount2(&state, nix::mount::MntFlags::MNT_DETACH);

    println!("startup: /bin/true through `run`, {runs} runs each, median (p10..p90)");
    let medians: Vec<Option<f64>> = samples.iter_mut().map(|s| median(s)).collect();
    for (k, (name, _)) in runtimes.iter().enumerate() {
        match (&failed[k], medians[k]) {
            (Some(err), _) => println!("  {name:13} failed: {err}"),
            (None, Some(m)) => {
                let s = &samples[k];
                let p = |q: f64| s[((s.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
                println!("  {name:13} {m:7.2} ms  ({:.2}..{:.2})", p(0.1), p(0.9));
            }
            _ => {}
        }
    }
    let median_of = |name: &str| runtimes.iter().position(|(n, _)| *n == name).and_then(|k| medians[k]);
    for ours in ["hutch", "hutch-sandbox"] {
        let Some(h) = median_of(ours) else { continue };
        for (k, (name, _)) in runtimes.iter().enumerate() {
            if name.starts_with("hutch") {
                continue;
            }
            if let Some(m) = medians[k] {
                println!("  ratio {ours}/{name}: {:.2}", h / m);
            }
        }
    }
}

/// What src/bin/hutch/startup.order placed together in this binary (build.rs): a list gone
/// stale after much renaming places less of a start there; benches/startup_order.py renews it.
fn report_startup_order(hutch: &Path) {
    let run = |cmd: &str, args: &[&str]| {
        let out = Command::new(cmd).args(args).arg(hutch).output().ok()?;
        String::from_utf8(out.stdout).ok()
    };
    let (Some(sections), Some(symbols)) = (run("readelf", &["-SW"]), run("nm", &["--defined-only"])) else {
        return;
    };
    // "[Nr] Name Type Address Off Size ..."
    let Some((start, size)) = sections.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().skip_while(|w| *w != ".text.startup_order").collect();
        let hex = |i: usize| u64::from_str_radix(f.get(i)?, 16).ok();
        Some((hex(2)?, hex(4)?))
    }) else {
        println!("startup order: not in this build (no .text.startup_order section)");
        return;
    };
    let placed = symbols
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split(' ').next()?, 16).ok())
        .filter(|a| (start..start + size).contains(a))
        .count();
    println!("startup order: {placed} functions in {} KiB ahead of the rest of .text", size / 1024);
}

fn bundle_of(root: &Path) -> PathBuf {
    root.parent().unwrap().parent().unwrap().join("bundle")
}

fn median(s: &mut [Duration]) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    s.sort();
    Some(s[s.len() / 2].as_secs_f64() * 1e3)
}

fn which(prog: &str) -> Option<PathBuf> {
    let out = Command::new("sh").args(["-c", &format!("command -v {prog}")]).output().ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// A copy of `exe` in `dir`, under its own name, written out and dropped from the page cache.
fn cold_copy(dir: &Path, exe: &Path) -> PathBuf {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let to = dir.join(exe.file_name().unwrap());
    std::fs::copy(exe, &to).unwrap_or_else(|e| panic!("copy {}: {e}", exe.display()));
    let f = std::fs::File::open(&to).unwrap();
    f.sync_all().unwrap();
    posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).expect("drop the copy's page cache");
    to
}

/// A private mount namespace without the cgroup2 mount (for crun), shared by all runtimes.
fn hide_cgroup2() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare mount namespace");
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let fstype = line.split(" - ").nth(1).and_then(|r| r.split(' ').next());
        if fstype == Some("cgroup2") && fields[4].starts_with("/sys/fs/cgroup/") {
            let _ = umount2(fields[4], MntFlags::MNT_DETACH);
        }
    }
}

fn make_bundle(bundle: &Path) {
    std::fs::create_dir_all(bundle).unwrap();
    let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/mkrootfs.sh");
    assert!(Command::new("bash").arg(mk).arg(bundle.join("rootfs")).status().unwrap().success());
    let out = Command::new("runc").arg("spec").current_dir(bundle).status();
    if out.map(|s| s.success()).unwrap_or(false) {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        v["process"]["terminal"] = false.into();
        v["process"]["args"] = serde_json::json!(["/bin/true"]);
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    } else {
        let mut v = serde_json::to_value(hutch::spec::default_spec()).unwrap();
        v["process"]["terminal"] = false.into();
        v["process"]["args"] = serde_json::json!(["/bin/true"]);
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    }
}
