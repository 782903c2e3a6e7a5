//! `hutch sandbox run`: timeouts, capped output, OOM, setup errors and exit codes, as a
//! harness sees them through the result JSON.

mod common;

use std::path::Path;
use std::time::Instant;

use common::Fixture;
use serde_json::Value;

/// Runs `hutch sandbox run --result - ARGS -- CMD...` in the fixture's rootfs.
fn sandbox(f: &Fixture, args: &[&str], cmd: &[&str]) -> (i32, Value) {
    let rootfs = f.rootfs();
    let mut all = vec!["--rootfs", rootfs.to_str().unwrap()];
    all.extend_from_slice(args);
    sandbox_raw(f, &all, cmd)
}

/// No process of this fixture is left, and no sandbox state or cgroup.
fn nothing_left(f: &Fixture) {
    let root = f.root.join("sandbox");
    let left: Vec<_> = std::fs::read_dir(&root)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.iter().all(|n| n.to_string_lossy().starts_with('.')), "sandbox state left: {left:?}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(root) = std::fs::read_link(entry.path().join("root")) {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            assert!(
                stat.contains(") Z ") || !root.starts_with(f.dir.path()),
                "process {:?} left behind",
                entry.file_name()
            );
        }
    }
}

#[test]
fn exit_codes_and_output_pass_through() {
    let f = Fixture::new("");
    let (code, r) = sandbox(&f, &[], &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(code, 3);
    assert_eq!(r["status"], "exited");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["stdout"]["data"], "out\n");
    assert_eq!(r["stderr"]["data"], "err\n");
    assert_eq!(r["stdout"]["truncated"], false);
    assert!(r["wall_ms"].as_f64().unwrap() > 0.0);
    assert!(r["peak_memory_bytes"].as_u64().unwrap() > 0);
    nothing_left(&f);
}

#[test]
fn a_timeout_ends_the_whole_tree_within_tens_of_milliseconds() {
    let f = Fixture::new("");
    let rootfs = f.rootfs();
    let result = f.dir.path().join("result.json");
    let t = Instant::now();
    // A daemon in a new session, then a long sleep: both must go at 200 ms.
    let mut child = f
        .cmd(&["sandbox", "run", "--rootfs", rootfs.to_str().unwrap(), "--timeout", "200ms"])
        .args([
            "--result",
            result.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            // `; exit` keeps sh from exec'ing the last command: three processes.
            "setsid sleep 1000 & echo started; sleep 100; exit",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The run's processes, by host pid, from its cgroup while it runs.
    let procs = common::procs_dir(&format!("sbx-{}-0", child.id())).join("cgroup.procs");
    let mut pids: Vec<i32> = Vec::new();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        for p in std::fs::read_to_string(&procs).unwrap_or_default().split_whitespace() {
            let p: i32 = p.parse().unwrap();
            if !pids.contains(&p) {
                pids.push(p);
            }
        }
    };
    let took = t.elapsed().as_millis();
    let r: Value = serde_json::from_slice(&std::fs::read(&result).unwrap()).unwrap();
    assert_eq!(r["status"], "timeout", "{r}");
    assert_eq!(code, Some(124));
    let wall = r["wall_ms"].as_f64().unwrap();
    assert!((200.0..300.0).contains(&wall), "wall_ms {wall}");
    assert!(took < 2000, "hutch took {took} ms");
    assert_eq!(r["stdout"]["data"], "started\n");
    // sh, the daemon and the sleep were seen, and are gone with their cgroup.
    assert!(pids.len() >= 3, "saw only {pids:?} in {}", procs.display());
    for pid in pids {
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
        assert!(gone, "process {pid} outlived the run");
    }
    assert!(!procs.parent().unwrap().exists(), "cgroup {} left", procs.display());
    nothing_left(&f);
}

#[test]
fn output_past_the_cap_is_dropped_and_hutch_stays_small() {
    let f = Fixture::new("");
    // yes writes 64 MiB (a fixed amount, so that slow machines write as much as fast ones);
    // only the first MiB is kept.
    let rootfs = f.rootfs();
    let out = tempfile::tempfile().unwrap();
    let mut child = f
        .cmd(&[
            "sandbox",
            "run",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--result",
            "-",
            "--stdout-limit",
            "1M",
            "--timeout",
            "120s",
            "--",
            "sh",
            "-c",
            "yes | head -c 67108864",
        ])
        .stdout(out.try_clone().unwrap())
        .spawn()
        .unwrap();
    // wait4 gives this one child's peak memory.
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32);
    let _ = child.try_wait();
    let r: Value = {
        use std::io::{Read, Seek};
        let mut out = out;
        let mut text = String::new();
        out.rewind().unwrap();
        out.read_to_string(&mut text).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(r["status"], "exited", "{r}");
    assert_eq!(r["stdout"]["truncated"], true);
    assert_eq!(r["stdout"]["data"].as_str().unwrap().len(), 1 << 20);
    let written = r["stdout"]["bytes"].as_u64().unwrap();
    assert_eq!(written, 64 << 20);
    let peak = ru.ru_maxrss as u64 * 1024;
    assert!(
        peak < 48 << 20 && peak * 4 < written,
        "hutch peaked at {peak} bytes while {written} were written"
    );
    nothing_left(&f);
}

#[test]
fn the_strict_profile_stops_a_program_at_its_output_cap() {
    let f = Fixture::new("");
    let (code, r) = sandbox(&f, &["--profile", "strict", "--stdout-limit", "1M"], &["yes"]);
    assert_eq!(r["status"], "output_limit", "{r}");
    assert_eq!(code, 120);
    assert_eq!(r["stdout"]["data"].as_str().unwrap().len(), 1 << 20);
    nothing_left(&f);
}

#[test]
fn a_memory_hog_ends_as_oom() {
    let f = Fixture::new("");
    let (code, r) =
        sandbox(&f, &["--memory", "32M"], &["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"]);
    assert_eq!(r["status"], "oom", "{r}");
    assert_eq!(code, 137);
    nothing_left(&f);
}

#[test]
fn a_fork_bomb_is_contained() {
    let f = Fixture::new("");
    let (_, r) = sandbox(
        &f,
        &["--pids", "32", "--timeout", "1s"],
        &["sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 5"],
    );
    assert!(["timeout", "exited"].contains(&r["status"].as_str().unwrap()), "{r}");
    assert!(r["stderr"]["data"].as_str().unwrap().contains("can't fork"), "{r}");
    nothing_left(&f);
}

#[test]
fn a_missing_binary_is_a_setup_error_not_127() {
    let f = Fixture::new("");
    let (code, r) = sandbox(&f, &[], &["/no/such/program"]);
    assert_eq!(r["status"], "setup_error");
    assert_eq!(code, 125);
    assert!(r["setup_error"]["cause"].as_str().unwrap().contains("/no/such/program"), "{r}");
    nothing_left(&f);
}

#[test]
fn a_crash_is_reported_as_its_signal() {
    let f = Fixture::new("");
    f.add_crash_program();
    let (code, r) = sandbox(&f, &[], &["/bin/crash"]);
    assert_eq!(r["status"], "signaled", "{r}");
    assert_eq!(r["signal"], 11);
    assert_eq!(code, 139);
}

#[test]
fn no_network_means_a_down_loopback_only() {
    let f = Fixture::new("");
    let (_, r) = sandbox(&f, &[], &["sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/operstate"]);
    assert_eq!(r["stdout"]["data"], "lo\ndown\n", "{r}");
}

#[test]
fn the_default_profile_confines_writes_and_runs_unprivileged() {
    let f = Fixture::new("");
    let (_, r) = sandbox(
        &f,
        &[],
        &["sh", "-c", "echo ok > /tmp/f && cat /tmp/f; echo x > /etc/x; grep -E 'CapEff|Seccomp:' /proc/self/status; cat /proc/self/uid_map"],
    );
    let out = r["stdout"]["data"].as_str().unwrap();
    assert!(out.starts_with("ok\n"), "{r}");
    assert!(out.contains("CapEff:\t0000000000000000") && out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("1000000"), "root of its own user namespace: {out}");
    assert!(r["stderr"]["data"].as_str().unwrap().contains("/etc/x"), "{r}");
}

/// hutch's stderr for a run under the profile `file`, which must fail.
fn profile_error(f: &Fixture, file: &Path) -> String {
    let rootfs = f.rootfs();
    let out = f.hutch(&[
        "sandbox",
        "run",
        "--profile",
        file.to_str().unwrap(),
        "--rootfs",
        rootfs.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn profile_errors_name_the_file_and_field() {
    let f = Fixture::new("");
    let rootfs = f.rootfs();
    let out = f.hutch(&[
        "sandbox",
        "run",
        "--profile",
        "nosuch",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "--",
        "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown profile \"nosuch\"") && err.contains("default") && err.contains("strict"),
        "{err}"
    );
    let bad = f.dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"limits": {"memory": "lots"}}"#).unwrap();
    let err = profile_error(&f, &bad);
    assert!(err.contains("bad.json") && err.contains("limits.memory") && err.contains("lots"), "{err}");
    // A value of the wrong type is named by its path too.
    std::fs::write(&bad, r#"{"limits": {"pids": "many"}}"#).unwrap();
    let err = profile_error(&f, &bad);
    assert!(err.contains("bad.json") && err.contains("limits.pids") && err.contains("many"), "{err}");
}

/// `hutch sandbox run --result - ARGS -- CMD...`, the root chosen by ARGS.
fn sandbox_raw(f: &Fixture, args: &[&str], cmd: &[&str]) -> (i32, Value) {
    let mut all = vec!["sandbox", "run", "--result", "-"];
    all.extend_from_slice(args);
    if !cmd.is_empty() {
        all.push("--");
        all.extend_from_slice(cmd);
    }
    let out = f.hutch(&all);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn loopback_networking_serves_inside_and_reaches_nothing_of_the_host() {
    let f = Fixture::new("");
    // A listener on the host's loopback that the sandbox must not reach.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port().to_string();
    let script = format!(
        "(echo hello | nc -l -p 8080 &); for i in $(seq 50); do nc 127.0.0.1 8080 </dev/null 2>/dev/null && break; sleep 0.1; done; \
         nc 127.0.0.1 {port} </dev/null && echo reached-host; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"
    );
    let (_, r) = sandbox(&f, &["--net", "loopback"], &["sh", "-c", &script]);
    assert_eq!(r["stdout"]["data"], "hello\nlo\n", "{r}");
    nothing_left(&f);
}

#[test]
fn binds_and_a_read_only_host_view() {
    let f = Fixture::new("");
    let data = f.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "from the host\n").unwrap();
    let out = f.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Writable for the sandbox's root, which is host uid 1000000 (the default profile).
    std::os::unix::fs::chown(&out, Some(1_000_000), Some(1_000_000)).unwrap();
    let ro = format!("{}:/data:ro", data.display());
    let rw = format!("{}:/tmp/out", out.display());
    let (_, r) = sandbox(
        &f,
        &["--bind", &ro, "--bind", &rw],
        &["sh", "-c", "cat /data/in.txt; echo x > /data/new || echo refused; echo made > /tmp/out/f"],
    );
    assert_eq!(r["stdout"]["data"], "from the host\nrefused\n", "{r}");
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "made\n");
    assert!(!data.join("new").exists());

    // No --rootfs: the host's own programs, read-only, and none of its other directories.
    let (code, r) =
        sandbox_raw(&f, &[], &["sh", "-c", "test -x /usr/bin/env && ls / | tr '\\n' ' '; touch /usr/x"]);
    assert_ne!(code, 0);
    let listing = r["stdout"]["data"].as_str().unwrap();
    assert!(listing.contains("usr") && listing.contains("etc"), "{r}");
    assert!(!listing.contains("home") && !listing.contains("work"), "{r}");
    assert!(r["stderr"]["data"].as_str().unwrap().contains("Read-only"), "{r}");
    nothing_left(&f);
}

#[test]
fn a_bundle_gives_the_rootfs_and_the_process() {
    let mut f = Fixture::new("echo from the bundle; pwd");
    f.config["process"]["cwd"] = serde_json::json!("/tmp");
    f.write_config();
    let bundle = f.bundle.to_str().unwrap().to_string();
    let (code, r) = sandbox_raw(&f, &["--bundle", &bundle], &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["stdout"]["data"], "from the bundle\n/tmp\n");
    // A command after -- replaces the bundle's args.
    let (_, r) = sandbox_raw(&f, &["--bundle", &bundle], &["echo", "given"]);
    assert_eq!(r["stdout"]["data"], "given\n");
    nothing_left(&f);
}

#[test]
fn cpu_time_ends_a_busy_run() {
    let f = Fixture::new("");
    let (code, r) =
        sandbox(&f, &["--cpu-time", "300ms", "--timeout", "10s"], &["sh", "-c", "while :; do :; done"]);
    assert_eq!(r["status"], "timeout", "{r}");
    assert_eq!(r["limit"], "cpu_time");
    assert_eq!(code, 124);
    let cpu = r["cpu_user_ms"].as_f64().unwrap() + r["cpu_sys_ms"].as_f64().unwrap();
    assert!(cpu >= 300.0, "{r}");
    // A sleeping program uses no CPU: the wall-clock limit ends it.
    let (_, r) = sandbox(&f, &["--cpu-time", "300ms", "--timeout", "500ms"], &["sleep", "5"]);
    assert_eq!(r["limit"], "wall_time", "{r}");
    nothing_left(&f);
}

#[test]
fn the_gpu_profile_passes_device_nodes_and_libraries_through() {
    let f = Fixture::new("");
    // Stand-ins for /dev/nvidia0 and /dev/nvidiactl (the null and zero devices' numbers) and
    // for a driver library.
    let dev = f.dir.path().join("dev");
    std::fs::create_dir(&dev).unwrap();
    for (name, minor) in [("nvidia0", 3), ("nvidiactl", 5)] {
        let path = dev.join(name);
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, minor),
        )
        .unwrap();
        // As the real nodes are: usable by anyone (mknod applies the umask).
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    }
    let lib = f.dir.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    std::fs::write(lib.join("libcuda.so.1"), "not really a library\n").unwrap();
    let stock: Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/gpu.json")).unwrap(),
    )
    .unwrap();
    let mut profile = stock.clone();
    profile["seccomp"] =
        serde_json::json!(Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/seccomp/default.json"));
    profile["devices"] = serde_json::json!([{"path": format!("{}/nvidia*", dev.display()), "into": "/dev"}]);
    profile["binds"] = serde_json::json!([{"source": format!("{}/libcuda*", lib.display()), "destination": "/usr/lib/x86_64-linux-gnu"}]);
    let file = f.dir.path().join("gpu.json");
    std::fs::write(&file, profile.to_string()).unwrap();
    let (code, r) = sandbox(
        &f,
        &["--profile", file.to_str().unwrap()],
        &["sh", "-c", "echo x > /dev/nvidia0 && head -c 3 /dev/nvidiactl | wc -c && cat /usr/lib/x86_64-linux-gnu/libcuda.so.1 && ls /dev | grep -c nvidia"],
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["stdout"]["data"], "3\nnot really a library\n2\n");
    // The stock profile on a host without a GPU runs without them.
    let (code, r) = sandbox(&f, &["--profile", "gpu"], &["sh", "-c", "ls /dev | grep -c nvidia"]);
    assert_eq!(code, 1, "{r}");
    nothing_left(&f);
}

#[test]
fn delegated_tiers_fail_clearly_and_select_explains_its_choice() {
    let f = Fixture::new("");
    for p in ["gvisor", "vm"] {
        let (code, r) = sandbox(&f, &["--profile", p], &["true"]);
        assert_eq!(code, 125);
        assert_eq!(r["setup_error"]["stage"], "profile");
        assert!(r["setup_error"]["cause"].as_str().unwrap().contains("delegation is not built yet"), "{r}");
    }
    let select = |args: &[&str]| -> Value {
        let mut all = vec!["sandbox", "select", "--json"];
        all.extend_from_slice(args);
        let out = f.hutch(&all);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for (args, want) in [
        (&["--security", "low"][..], "default"),
        (&["--security", "medium"][..], "strict"),
        (&["--security", "low", "--network"][..], "network"),
        (&["--security", "medium", "--gpu"][..], "gpu"),
        (&["--security", "high"][..], "gvisor"),
        (&["--security", "critical", "--gpu"][..], "vm"),
    ] {
        let v = select(args);
        assert_eq!(v["profile"], want, "{args:?}");
        assert!(!v["reason"].as_str().unwrap().is_empty());
    }
    // run --security uses the choice.
    let (_, r) = sandbox(&f, &["--security", "medium"], &["sh", "-c", "yes | head -c 2000000"]);
    assert_eq!(r["status"], "output_limit", "strict stops output past its cap: {r}");
    let (code, _) = sandbox(&f, &["--security", "critical"], &["true"]);
    assert_eq!(code, 125);
}

#[test]
fn new_profile_fields_are_checked() {
    let f = Fixture::new("");
    for (doc, field) in [
        (r#"{"binds": [{"source": "relative"}]}"#, "binds[0].source"),
        (r#"{"devices": [{"path": "/dev/x", "into": "dev"}]}"#, "devices[0].into"),
        (r#"{"delegate": "qemu"}"#, "delegate"),
        (r#"{"network": "wifi"}"#, "network"),
    ] {
        let file = f.dir.path().join("p.json");
        std::fs::write(&file, doc).unwrap();
        let err = profile_error(&f, &file);
        assert!(err.contains("p.json") && err.contains(field), "{doc}: {err}");
    }
}

#[test]
fn a_sandbox_joins_only_the_v1_controllers_it_uses() {
    if common::cgroup_v2() {
        return; // one hierarchy there
    }
    let f = Fixture::new("");
    let rootfs = f.rootfs();
    let mut child = f
        .cmd(&[
            "sandbox",
            "run",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--result",
            "/dev/null",
            "--",
            "sleep",
            "2",
        ])
        .spawn()
        .unwrap();
    let id = format!("sbx-{}-0", child.id());
    let memory = Path::new("/sys/fs/cgroup/memory/hutch").join(&id);
    let end = Instant::now() + std::time::Duration::from_secs(10);
    while !memory.exists() && Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let present: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .filter(|h| h.path().join("hutch").join(&id).exists())
        .map(|h| h.file_name().to_string_lossy().into_owned())
        .collect();
    let _ = child.wait();
    let mut present = present;
    present.sort();
    assert_eq!(present, ["cpuacct", "devices", "memory", "pids"]);
    nothing_left(&f);
}

#[test]
fn a_profiles_seccomp_file_is_compiled_once_and_again_when_it_changes() {
    let f = Fixture::new("");
    let profile = f.dir.path().join("p.json");
    std::fs::write(&profile, r#"{"seccomp": "s.json", "tmpfs": [{"path": "/tmp", "size": "1M"}]}"#).unwrap();
    let seccomp = f.dir.path().join("s.json");
    let denying = |names: &str| {
        format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": {names}, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}}]}}"#
        )
    };
    let cmd = ["sh", "-c", "mkdir /tmp/x && echo made"];
    std::fs::write(&seccomp, denying(r#"["mkdir", "mkdirat"]"#)).unwrap();
    let (code, r) = sandbox(&f, &["--profile", profile.to_str().unwrap()], &cmd);
    assert_ne!(code, 0, "{r}");
    assert_eq!(r["stdout"]["data"], "", "{r}");
    // The same path with other bytes is another filter: the cache is keyed by the content.
    std::fs::write(&seccomp, denying(r#"["acct"]"#)).unwrap();
    let (code, r) = sandbox(&f, &["--profile", profile.to_str().unwrap()], &cmd);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["stdout"]["data"], "made\n", "{r}");
    let cached = std::fs::read_dir(f.root.join("sandbox/.seccomp-cache")).unwrap().count();
    assert_eq!(cached, 2);
    // A file that does not parse, or a profile that does not compile, is named with the field.
    for (text, field) in [
        ("{\"defaultAction\": ", "(document)"),
        (
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}"#,
            "listenerPath",
        ),
    ] {
        std::fs::write(&seccomp, text).unwrap();
        let err = profile_error(&f, &profile);
        assert!(err.contains("s.json") && err.contains(field), "{text}: {err}");
    }
    nothing_left(&f);
}
