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
        Fixture::new("timeout 1 sh -c 'while :; do :; done'; grep nr_throttled /sys/fs/cgroup/cpu/cpu.stat");
    f.config["linux"]["resources"]["cpu"] = json!({"quota": 10000, "period": 100000});
    let out = f.run_ok();
    let throttled: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(throttled > 0, "{out}");
}

#[test]
fn devices_outside_the_allow_list_cannot_be_opened() {
    // The node can be made (c *:* m), but the cgroup refuses to open it.
    let mut f =
        Fixture::new("mknod /tmp/mem c 1 1 && head -c1 /tmp/mem; echo null >/dev/null && echo null-ok");
    f.config["process"]["capabilities"]["bounding"] = json!(["CAP_MKNOD"]);
    f.config["process"]["capabilities"]["effective"] = json!(["CAP_MKNOD"]);
    f.config["process"]["capabilities"]["permitted"] = json!(["CAP_MKNOD"]);
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{err}");
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
    let mut f = Fixture::new("i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.01; done");
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
