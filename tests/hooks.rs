//! OCI hooks: run in the spec's order, in the spec's namespaces, with the container state on
//! stdin; failures and timeouts give the spec's outcome and leave nothing behind.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Fixture;
use serde_json::{json, Value};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A hook that appends "NAME <mount namespace> <state JSON>" to `log`.
fn recorder(name: &str, log: &Path) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c",
        format!("read -r s; echo \"{name} $(readlink /proc/self/ns/mnt) $s\" >> {}", log.display())]})
}

fn entries(log: &Path) -> Vec<(String, String, Value)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let name = parts.next().unwrap().to_string();
            let ns = parts.next().unwrap().to_string();
            (name, ns, serde_json::from_str(parts.next().unwrap()).unwrap())
        })
        .collect()
}

#[test]
fn hooks_run_in_order_in_their_namespaces_with_the_state() {
    let mut f = Fixture::new("sleep 1000");
    let log = f.dir.path().join("hooks.log");
    f.config["hooks"] = json!({
        "prestart": [recorder("prestart", &log)],
        "createRuntime": [recorder("createRuntime", &log)],
        "createContainer": [recorder("createContainer", &log)],
        // Runs after pivot_root: its path and its log are inside the container.
        "startContainer": [recorder("startContainer", Path::new("/hooks.log"))],
        "poststart": [recorder("poststart", &log)],
        "poststop": [recorder("poststop", &log)],
    });
    f.write_config();
    let id = f.id();
    let out = f.hutch(&["create", "--bundle", f.bundle.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let init = f.state(&id)["pid"].as_i64().unwrap();
    let container_ns =
        std::fs::read_link(format!("/proc/{init}/ns/mnt")).unwrap().to_string_lossy().into_owned();
    let host_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap().to_string_lossy().into_owned();
    assert!(f.hutch(&["start", &id]).status.success());
    assert!(f.hutch(&["delete", "--force", &id]).status.success());
    f.assert_clean(&id);

    let got = entries(&log);
    let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]);
    let expect = [
        (&host_ns, "creating"),
        (&host_ns, "creating"),
        (&container_ns, "creating"),
        (&host_ns, "running"),
        (&host_ns, "stopped"),
    ];
    for ((name, ns, state), (want_ns, want_status)) in got.iter().zip(expect) {
        assert_eq!(ns, want_ns, "{name} ran in the wrong mount namespace");
        assert_eq!(state["status"], want_status, "{name}: {state}");
        assert_eq!(state["id"], id.as_str(), "{name}");
        assert_eq!(state["bundle"], f.bundle.to_str().unwrap(), "{name}");
    }
    assert_eq!(got[0].2["pid"], json!(init));
    let inside = entries(&f.rootfs().join("hooks.log"));
    assert_eq!(inside.len(), 1);
    assert_eq!(inside[0].0, "startContainer");
    assert_eq!(inside[0].1, container_ns);
    assert_eq!(inside[0].2["status"], "created");
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_runs_poststop() {
    let mut f = Fixture::new("true");
    let log = f.dir.path().join("hooks.log");
    f.config["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo broken >&2; exit 3"]}],
        "poststop": [recorder("poststop", &log)],
    });
    let err = f.create_fails();
    assert!(
        err.contains("hooks.createRuntime[0]") && err.contains("exit status: 3") && err.contains("broken"),
        "{err}"
    );
    assert_eq!(entries(&log).iter().map(|e| e.0.clone()).collect::<Vec<_>>(), ["poststop"]);
}

#[test]
fn a_hook_that_times_out_is_killed() {
    let mut f = Fixture::new("true");
    f.config["hooks"] =
        json!({"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    let t = Instant::now();
    let err = f.create_fails();
    assert!(err.contains("hooks.createContainer[0]") && err.contains("timed out after 1s"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_failing_start_container_hook_fails_start() {
    let mut f = Fixture::new("echo must-not-run");
    f.config["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
    f.write_config();
    let id = f.id();
    assert!(f.hutch(&["create", "--bundle", f.bundle.to_str().unwrap(), &id]).status.success());
    let out = f.hutch(&["start", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("hooks.startContainer[0]"), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("must-not-run"));
    for _ in 0..100 {
        if f.state(&id)["status"] == "stopped" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(f.state(&id)["status"], "stopped");
    assert!(f.hutch(&["delete", &id]).status.success());
    f.assert_clean(&id);
}

#[test]
fn a_failing_poststart_hook_is_only_a_warning() {
    let mut f = Fixture::new("sleep 1000");
    f.config["hooks"] = json!({"poststart": [{"path": "/bin/false"}]});
    f.write_config();
    let id = f.id();
    assert!(f.hutch(&["create", "--bundle", f.bundle.to_str().unwrap(), &id]).status.success());
    let out = f.hutch(&["start", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("hooks.poststart[0]"), "the warning is shown: {}", stderr(&out));
    assert_eq!(f.state(&id)["status"], "running");
}

#[test]
fn hook_paths_must_be_absolute() {
    let mut f = Fixture::new("true");
    f.config["hooks"] = json!({"prestart": [{"path": "relative/hook"}]});
    let err = f.create_fails();
    assert!(err.contains("hooks.prestart[0].path"), "{err}");
}
