//! Limits proven by their effect, and the commands that observe and govern a running container:
//! events (stats and OOM), ps, pause/resume, update.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Fixture;
use serde_json::{json, Value};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Creates and starts `f`'s container in the background; returns its id.
fn start_detached(f: &mut Fixture) -> String {
    f.write_config();
    let id = f.id();
    let out = f.hutch(&["run", "--detach", "--bundle", f.bundle.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    id
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn stats(f: &Fixture, id: &str) -> Value {
    let out = f.hutch(&["events", "--stats", id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], id);
    v["data"].clone()
}

#[test]
fn memory_hog_is_oom_killed_and_events_report_it() {
    let mut f = Fixture::new("while [ ! -e /tmp/go ]; do sleep 0.02; done; dd if=/dev/zero of=/dev/null bs=96M count=1; echo dd=$?; sleep 1000");
    f.config["linux"]["resources"]["memory"] = json!({"limit": 32 << 20, "swap": 32 << 20});
    let id = start_detached(&mut f);
    let mut events = f.cmd(&["events", "--interval", "100ms", &id]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    // The first stats line shows the watcher is in place before the hog starts.
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["type"], "stats");
    assert_eq!(first["data"]["memory"]["usage"]["limit"], json!(32 << 20));
    std::fs::write(f.rootfs().join("tmp/go"), "").unwrap();
    let mut saw_oom = false;
    for line in lines.by_ref().take(200) {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["type"] == "oom" {
            assert_eq!(v["id"], id.as_str());
            saw_oom = true;
            break;
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(saw_oom, "no oom event");
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    // The subshell forks until the kernel refuses (ash then gives up); init stays, by exec.
    let mut f = Fixture::new(
        "(i=0; while [ $i -lt 60 ]; do sleep 100 & i=$((i+1)); done) 2>/tmp/err; exec sleep 1000",
    );
    f.config["linux"]["resources"]["pids"] = json!({"limit": 16});
    let id = start_detached(&mut f);
    let err = f.rootfs().join("tmp/err");
    wait_for("the fork to fail", || std::fs::read_to_string(&err).is_ok_and(|e| e.contains("can't fork")));
    let s = stats(&f, &id);
    assert_eq!(s["pids"]["limit"], json!(16));
    let current = s["pids"]["current"].as_u64().unwrap();
    assert!((10..=16).contains(&current), "pids.current {current}");
}

#[test]
fn cpu_quota_throttles() {
    let mut f =
        Fixture::new("timeout 1 sh -c 'while :; do :; done'; { grep nr_throttled /sys/fs/cgroup/cpu/cpu.stat || grep nr_throttled /sys/fs/cgroup/cpu.stat; }");
    f.config["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000});
    let out = f.run_ok();
    let throttled: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(throttled > 0, "{out}");
}

/// This process's `Cpus_allowed_list` (the CPUs it may run on).
fn cpus_allowed(status: &str) -> String {
    let line = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")).expect("Cpus_allowed_list");
    line.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn the_container_keeps_the_cpus_of_its_caller() {
    // Init is moved off main's CPU as it starts (process::clone::Placement), then given back
    // the whole mask; whichever of the two runs first moves it. Repeated, to meet both orders.
    let own = cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    for _ in 0..20 {
        let mut f = Fixture::new("cat /proc/self/status");
        assert_eq!(cpus_allowed(&f.run_ok()), own);
    }
}

#[test]
fn cpuset_cpus_confine_the_container() {
    let mut f = Fixture::new("cat /proc/self/status");
    f.config["linux"]["resources"]["cpu"] = json!({"cpus": "0"});
    assert_eq!(cpus_allowed(&f.run_ok()), "0");
}

#[test]
fn devices_outside_the_allow_list_cannot_be_opened() {
    // The node can be made (c *:* m), but the cgroup refuses to open it.
    let mut f = Fixture::new(
        "mknod /tmp/mem c 1 1 && echo made; head -c1 /tmp/mem; echo null >/dev/null && echo null-ok",
    );
    f.config["process"]["capabilities"]["bounding"] = json!(["CAP_MKNOD"]);
    f.config["process"]["capabilities"]["effective"] = json!(["CAP_MKNOD"]);
    f.config["process"]["capabilities"]["permitted"] = json!(["CAP_MKNOD"]);
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("made"), "mknod refused: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(out.contains("null-ok"), "{out}");
}

#[test]
fn stats_move_as_the_container_allocates() {
    let mut f = Fixture::new(
        "while [ ! -e /tmp/go ]; do sleep 0.02; done; dd if=/dev/zero of=/dev/shm/fill bs=1M count=30; touch /tmp/done; sleep 1000",
    );
    let id = start_detached(&mut f);
    let before = stats(&f, &id);
    let used = |s: &Value| s["memory"]["usage"]["usage"].as_u64().unwrap();
    assert!(before["pids"]["current"].as_u64().unwrap() >= 1);
    std::fs::write(f.rootfs().join("tmp/go"), "").unwrap();
    wait_for("allocation", || f.rootfs().join("tmp/done").exists());
    let after = stats(&f, &id);
    assert!(used(&after) > used(&before) + (20 << 20), "{} -> {}", used(&before), used(&after));
    assert!(
        after["cpu"]["usage"]["total"].as_u64().unwrap() > before["cpu"]["usage"]["total"].as_u64().unwrap()
    );
}

#[test]
fn pause_stops_progress_and_resume_restarts_it() {
    let mut f = Fixture::new(
        // Written by rename, so the host never reads a half-written count (a freeze can land anywhere).
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.01; done",
    );
    let id = start_detached(&mut f);
    let count = || {
        std::fs::read_to_string(f.rootfs().join("tmp/count")).ok().and_then(|s| s.trim().parse::<u64>().ok())
    };
    wait_for("counting", || count().is_some_and(|c| c > 3));
    assert!(f.hutch(&["pause", &id]).status.success());
    assert_eq!(f.state(&id)["status"], "paused");
    let frozen = count().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count().unwrap(), frozen, "progress while paused");
    let again = f.hutch(&["pause", &id]);
    assert!(stderr(&again).contains("only a running container can be paused"), "{}", stderr(&again));
    assert!(f.hutch(&["resume", &id]).status.success());
    assert_eq!(f.state(&id)["status"], "running");
    wait_for("progress after resume", || count().unwrap_or(0) > frozen + 3);
}

#[test]
fn delete_force_of_a_paused_container() {
    let mut f = Fixture::new("sleep 1000");
    let id = start_detached(&mut f);
    assert!(f.hutch(&["pause", &id]).status.success());
    assert!(f.hutch(&["delete", "--force", &id]).status.success());
    f.assert_clean(&id);
}

#[test]
fn ps_lists_the_container_processes() {
    let mut f = Fixture::new("sleep 1000 & sleep 1000");
    let id = start_detached(&mut f);
    let init = f.state(&id)["pid"].as_i64().unwrap();
    let mut pids: Vec<i64> = Vec::new();
    wait_for("two processes", || {
        pids = serde_json::from_slice(&f.hutch(&["ps", "--format", "json", &id]).stdout).unwrap();
        pids.len() == 2
    });
    assert!(pids.contains(&init), "{pids:?}");
    let table = String::from_utf8(f.hutch(&["ps", &id]).stdout).unwrap();
    let mut lines = table.lines();
    assert!(lines.next().unwrap().contains("PID"), "{table}");
    assert_eq!(lines.filter(|l| l.contains("sleep 1000")).count(), 2, "{table}");
}

#[test]
fn update_changes_a_live_limit() {
    let mut f = Fixture::new("while [ ! -e /tmp/go ]; do sleep 0.02; done; i=0; while [ $i -lt 20 ]; do sleep 100 & i=$((i+1)); done; echo spawned; sleep 1000");
    let id = start_detached(&mut f);
    let out = f.hutch(&["update", "--pids-limit", "5", "--memory", "64M", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stats(&f, &id);
    assert_eq!(s["pids"]["limit"], json!(5));
    assert_eq!(s["memory"]["usage"]["limit"], json!(64 << 20));
    std::fs::write(f.rootfs().join("tmp/go"), "").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pids: Vec<i64> = serde_json::from_slice(&f.hutch(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(pids.len() <= 5, "{} processes under a limit of 5", pids.len());
    let bad = f.hutch(&["update", "--resources", "-", &id]);
    assert!(!bad.status.success());
}

#[test]
fn memory_limits_can_be_raised_and_lowered() {
    // memory+swap may never be below memory: raising writes memsw first, lowering last.
    let mut f = Fixture::new("sleep 1000");
    f.config["linux"]["resources"]["memory"] = json!({"limit": 32 << 20, "swap": 32 << 20});
    let id = start_detached(&mut f);
    let file = f.dir.path().join("res.json");
    for mib in [128u64, 48] {
        std::fs::write(&file, json!({"memory": {"limit": mib << 20, "swap": mib << 20}}).to_string())
            .unwrap();
        let out = f.hutch(&["update", "--resources", file.to_str().unwrap(), &id]);
        assert!(out.status.success(), "to {mib} MiB: {}", stderr(&out));
        assert_eq!(stats(&f, &id)["memory"]["usage"]["limit"], json!(mib << 20), "to {mib} MiB");
    }
}

#[test]
fn update_from_a_resources_file() {
    let mut f = Fixture::new("sleep 1000");
    let id = start_detached(&mut f);
    let file = f.dir.path().join("res.json");
    std::fs::write(
        &file,
        json!({"pids": {"limit": 7}, "cpu": {"quota": 20000, "period": 100000}}).to_string(),
    )
    .unwrap();
    let out = f.hutch(&["update", "--resources", file.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stats(&f, &id)["pids"]["limit"], json!(7));
    std::fs::write(&file, r#"{"pids": {"limit": "lots"}}"#).unwrap();
    let out = f.hutch(&["update", "--resources", file.to_str().unwrap(), &id]);
    assert!(stderr(&out).contains("pids.limit"), "{}", stderr(&out));
}

fn ns_links(pid: &str) -> Vec<String> {
    ["mnt", "pid", "net", "ipc", "uts", "cgroup"]
        .iter()
        .map(|k| std::fs::read_link(format!("/proc/{pid}/ns/{k}")).unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn exec_joins_the_namespaces_and_cgroup_of_init() {
    let mut f = Fixture::new("sleep 1000");
    let id = start_detached(&mut f);
    let init = f.state(&id)["pid"].to_string();
    let script =
        "for k in mnt pid net ipc uts cgroup; do readlink /proc/self/ns/$k; done; cat /proc/self/cgroup; \
                  grep CapEff /proc/self/status; hostname";
    let out = f.hutch(&["exec", &id, "sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..6].to_vec(), ns_links(&init), "{text}");
    // The same cgroup as init, seen from inside the cgroup namespace as its root.
    let init_cg = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    // The pids hierarchy's line on v1, the one v2 line ("0::...") on pure v2.
    let tag = if common::cgroup_v2() { "0::" } else { ":pids:" };
    let line = init_cg.lines().find(|l| l.contains(tag)).unwrap();
    assert!(line.ends_with(&format!("/hutch/{id}")), "{line}");
    assert!(text.lines().any(|l| l.contains(tag) && l.ends_with(":/")), "{text}");
    // The container's own capabilities (CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE).
    assert!(text.contains("CapEff:\t0000000020000420"), "{text}");
    assert!(text.contains("hutch-test"), "{text}");
}

#[test]
fn exec_applies_its_own_process_fields() {
    let mut f = Fixture::new("sleep 1000");
    let id = start_detached(&mut f);
    let out = f.hutch(&[
        "exec",
        "--user",
        "1000:1000",
        "--env",
        "GREETING=hello",
        "--cwd",
        "/tmp",
        "--cap",
        "CAP_CHOWN",
        &id,
        "sh",
        "-c",
        "id -u; id -g; echo $GREETING; pwd; grep CapBnd /proc/self/status",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..4], ["1000", "1000", "hello", "/tmp"], "{text}");
    assert!(lines[4].ends_with("0000000020000421"), "{text}");
}

#[test]
fn exec_exit_codes_and_detach() {
    let mut f = Fixture::new("sleep 1000");
    let id = start_detached(&mut f);
    assert_eq!(f.hutch(&["exec", &id, "sh", "-c", "exit 9"]).status.code(), Some(9));
    let pid_file = f.dir.path().join("exec.pid");
    let out = f.hutch(&["exec", "--detach", "--pid-file", pid_file.to_str().unwrap(), &id, "sleep", "500"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let pids: Vec<i32> = serde_json::from_slice(&f.hutch(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    let missing = f.hutch(&["exec", &id, "no-such-program"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("not found in $PATH"), "{}", stderr(&missing));
}

#[test]
fn exec_into_a_stopped_or_unknown_container() {
    let mut f = Fixture::new("true");
    let id = start_detached(&mut f);
    wait_for("exit", || f.state(&id)["status"] == "stopped");
    let out = f.hutch(&["exec", &id, "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    let out = f.hutch(&["exec", "no-such-container", "true"]);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn exec_from_a_process_file() {
    let mut f = Fixture::new("sleep 1000");
    let id = start_detached(&mut f);
    let file = f.dir.path().join("process.json");
    std::fs::write(
        &file,
        json!({"args": ["sh", "-c", "echo $X; ulimit -n"], "cwd": "/", "env": ["X=from-file", "PATH=/bin"],
               "user": {"uid": 0, "gid": 0}, "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 77, "hard": 77}]})
        .to_string(),
    )
    .unwrap();
    let out = f.hutch(&["exec", "--process", file.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-file\n77\n");
}

#[test]
fn exec_into_a_user_namespace_container() {
    let mut f = Fixture::new("sleep 1000");
    f.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    f.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 500000, "size": 65536}]);
    f.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 500000, "size": 65536}]);
    f.config["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "cgroup");
    let id = start_detached(&mut f);
    let init = f.state(&id)["pid"].to_string();
    let out = f.hutch(&[
        "exec",
        "-u",
        "7:7",
        &id,
        "sh",
        "-c",
        "readlink /proc/self/ns/user; id -u; cat /proc/self/uid_map",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let want = std::fs::read_link(format!("/proc/{init}/ns/user")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], want.to_str().unwrap());
    assert_eq!(lines[1], "7");
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["0", "500000", "65536"]);
}

/// A shell snippet printing the first of these cgroup files that exists (v1, hybrid or v2).
fn first_of(files: &[&str]) -> String {
    let alts: Vec<String> = files.iter().map(|f| format!("cat /sys/fs/cgroup/{f} 2>/dev/null")).collect();
    format!("{{ {} || echo missing; }}", alts.join(" || "))
}

#[test]
fn hugetlb_limit_appears() {
    let sizes: Vec<String> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    if !sizes.iter().any(|s| s == "hugepages-2048kB") {
        eprintln!("skipped: no 2MB huge pages on this kernel");
        return;
    }
    // v1 hugetlb, the cgroup2 mount of a hybrid host, or pure v2.
    let mut f = Fixture::new(&first_of(&[
        "hugetlb/hugetlb.2MB.limit_in_bytes",
        "unified/hugetlb.2MB.max",
        "hugetlb.2MB.max",
    ]));
    f.config["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4 << 20}]);
    assert_eq!(f.run_ok().trim(), (4 << 20).to_string());
}

#[test]
fn hugetlb_page_size_the_kernel_lacks() {
    let mut f = Fixture::new("true");
    f.config["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "3MB", "limit": 4 << 20}]);
    let err = f.create_fails();
    assert!(err.contains("linux.resources.hugepageLimits[0].pageSize") && err.contains("3MB"), "{err}");
}

#[test]
fn unified_keys_are_written() {
    // A key whose controller the host's cgroup2 hierarchy has: hugetlb here, memory on pure v2.
    let v2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains("cgroup2"));
    let (key, value, file) = if v2 {
        ("memory.high", "50003968", "memory.high") // a whole number of pages: the kernel rounds down
    } else {
        ("hugetlb.2MB.max", "6291456", "unified/hugetlb.2MB.max")
    };
    let mut f = Fixture::new(&first_of(&[file]));
    f.config["linux"]["resources"]["unified"] = json!({ key: value });
    assert_eq!(f.run_ok().trim(), value);
}

#[test]
fn unified_key_for_a_controller_the_host_lacks() {
    let mut f = Fixture::new("true");
    f.config["linux"]["resources"]["unified"] = json!({"nosuchctl.max": "1"});
    let err = f.create_fails();
    assert!(err.contains("linux.resources.unified.nosuchctl.max"), "{err}");
}

#[test]
fn network_priorities_need_their_controllers() {
    if std::path::Path::new("/sys/fs/cgroup/net_cls").exists() {
        eprintln!("skipped: this host has net_cls");
        return;
    }
    let mut f = Fixture::new("true");
    f.config["linux"]["resources"]["network"] = json!({"classID": 1234});
    let err = f.create_fails();
    assert!(err.contains("linux.resources.network") && err.contains("net_cls"), "{err}");
}

#[test]
fn block_io_weight_and_throttle_appear() {
    // A real block device to throttle (the VM lane's root is 9p and it has none).
    let dev: Option<(u64, u64)> = std::fs::read_dir("/sys/dev/block").ok().and_then(|d| {
        d.filter_map(|e| e.ok()).find_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (ma, mi) = name.split_once(':')?;
            Some((ma.parse().ok()?, mi.parse().ok()?))
        })
    });
    let weight = first_of(&["blkio/blkio.bfq.weight", "blkio/blkio.weight", "io.bfq.weight", "io.weight"]);
    let throttle = first_of(&["blkio/blkio.throttle.read_bps_device", "io.max"]);
    let mut f = Fixture::new(&format!("{weight}; {throttle}"));
    f.config["linux"]["resources"]["blockIO"] = json!({"weight": 300});
    if let Some((major, minor)) = dev {
        f.config["linux"]["resources"]["blockIO"]["throttleReadBpsDevice"] =
            json!([{"major": major, "minor": minor, "rate": 1048576}]);
    }
    let out = f.run_ok();
    let mut lines = out.lines();
    let w = lines.next().unwrap();
    assert!(w.split_whitespace().last() == Some("300"), "{out}");
    if let Some((major, minor)) = dev {
        let t = lines.next().unwrap();
        assert!(t.starts_with(&format!("{major}:{minor}")) && t.contains("1048576"), "{out}");
    }
}
