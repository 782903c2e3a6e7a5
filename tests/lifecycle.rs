//! The OCI lifecycle through the CLI, with runc's exit codes and errors.

mod common;

use common::{drop_namespace, Fixture};
use serde_json::json;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn create_start_kill_delete() {
    let mut f = Fixture::new("sleep 1000");
    f.write_config();
    let id = f.id();
    let pid_file = f.dir.path().join("pid");
    let out = f.hutch(&[
        "create",
        "--bundle",
        f.bundle.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st = f.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    let pid = st["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    assert_eq!(st["bundle"], f.bundle.to_str().unwrap());

    assert!(f.hutch(&["start", &id]).status.success());
    assert_eq!(f.state(&id)["status"], "running");
    // The process really is the configured one now.
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.starts_with("sleep"), "{cmdline:?}");

    let again = f.hutch(&["start", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("only a created container can be started"), "{}", stderr(&again));

    let busy = f.hutch(&["delete", &id]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(stderr(&busy).contains("not stopped"), "{}", stderr(&busy));

    assert!(f.hutch(&["kill", &id, "KILL"]).status.success());
    wait_for(|| f.state(&id)["status"] == "stopped");
    let dead = f.hutch(&["kill", &id, "TERM"]);
    assert_eq!(dead.status.code(), Some(1));
    assert!(stderr(&dead).contains("not running"), "{}", stderr(&dead));

    assert!(f.hutch(&["delete", &id]).status.success());
    f.assert_clean(&id);
    let gone = f.hutch(&["state", &id]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(stderr(&gone).contains("does not exist"), "{}", stderr(&gone));
}

fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("condition not reached in 5 s");
}

#[test]
fn delete_of_created_container_kills_its_init() {
    let mut f = Fixture::new("echo never");
    f.write_config();
    let id = f.id();
    assert!(f.hutch(&["create", "--bundle", f.bundle.to_str().unwrap(), &id]).status.success());
    let pid = f.state(&id)["pid"].as_i64().unwrap();
    assert!(f.hutch(&["delete", &id]).status.success());
    f.assert_clean(&id);
    let alive =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false);
    assert!(!alive, "init {pid} survived delete");
}

#[test]
fn kill_all_reaches_escaped_processes() {
    // A daemonised grandchild in its own session still dies with kill --all.
    let mut f = Fixture::new("setsid sh -c 'sleep 1000' & sleep 1000");
    f.write_config();
    let id = f.id();
    assert!(f.hutch(&["run", "--detach", "--bundle", f.bundle.to_str().unwrap(), &id]).status.success());
    let cg = common::procs_dir(&id);
    wait_for(|| std::fs::read_to_string(cg.join("cgroup.procs")).unwrap().lines().count() >= 2);
    assert!(f.hutch(&["kill", "--all", &id, "KILL"]).status.success());
    wait_for(|| std::fs::read_to_string(cg.join("cgroup.procs")).map(|s| s.is_empty()).unwrap_or(true));
    assert!(f.hutch(&["delete", &id]).status.success());
    f.assert_clean(&id);
}

#[test]
fn foreground_run_passes_exit_codes() {
    let mut f = Fixture::new("exit 7");
    assert_eq!(f.run().0, 7);
    // Without a pid namespace the shell can kill itself: 128 + 9.
    let mut f = Fixture::new("kill -9 $$");
    drop_namespace(&mut f.config, "pid");
    assert_eq!(f.run().0, 137);
}

#[test]
fn foreground_run_forwards_signals() {
    let mut f =
        Fixture::new("trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.05; done");
    f.write_config();
    let id = f.id();
    let mut child = f
        .cmd(&["run", "--bundle", f.bundle.to_str().unwrap(), &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(status.code(), Some(42));
    assert_eq!(rest, "got-term\n");
}

#[test]
fn list_shows_containers() {
    let mut f = Fixture::new("sleep 1000");
    f.write_config();
    let id = f.id();
    assert!(f.hutch(&["create", "--bundle", f.bundle.to_str().unwrap(), &id]).status.success());
    let table = String::from_utf8(f.hutch(&["list"]).stdout).unwrap();
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&id) && l.contains("created")), "{table}");
    let json: serde_json::Value =
        serde_json::from_slice(&f.hutch(&["list", "--format", "json"]).stdout).unwrap();
    assert_eq!(json[0]["id"], id.as_str());
    assert_eq!(json[0]["status"], "created");
}

#[test]
fn concurrent_commands_keep_state_consistent() {
    let mut f = Fixture::new("sleep 1000");
    f.write_config();
    let id = f.id();
    assert!(f.hutch(&["create", "--bundle", f.bundle.to_str().unwrap(), &id]).status.success());
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (root, id) = (f.root.clone(), id.clone());
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        let mut c = std::process::Command::new(common::hutch_bin());
                        c.arg("--root").arg(&root).args(["state", &id]);
                        common::capture(c)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let starters: Vec<_> = (0..3).map(|_| common::capture(f.cmd(&["start", &id]))).collect();
    for r in readers {
        for out in r.join().unwrap() {
            assert!(out.status.success(), "{}", stderr(&out));
            let st: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("state is always whole JSON");
            assert!(st["status"] == "created" || st["status"] == "running", "{st}");
        }
    }
    assert_eq!(starters.iter().filter(|o| o.status.success()).count(), 1, "exactly one start wins");
    assert_eq!(f.state(&id)["status"], "running");
}

#[test]
fn duplicate_and_invalid_ids() {
    let mut f = Fixture::new("sleep 1000");
    f.write_config();
    let id = f.id();
    let b = f.bundle.to_str().unwrap().to_string();
    assert!(f.hutch(&["create", "--bundle", &b, &id]).status.success());
    let dup = f.hutch(&["create", "--bundle", &b, &id]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));
    assert_eq!(f.state(&id)["status"], "created", "the failed duplicate must not hurt the original");
    let bad = f.hutch(&["create", "--bundle", &b, "../escape"]);
    assert!(stderr(&bad).contains("invalid container id"), "{}", stderr(&bad));
}

#[test]
fn spec_and_features() {
    let f = Fixture::new("true");
    let dir = f.dir.path().join("spec");
    std::fs::create_dir(&dir).unwrap();
    assert!(f.hutch(&["spec", "--bundle", dir.to_str().unwrap()]).status.success());
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["terminal"], json!(true));
    assert_eq!(spec["root"]["path"], "rootfs");
    let again = f.hutch(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(!again.status.success());
    let feat: serde_json::Value = serde_json::from_slice(&f.hutch(&["features"]).stdout).unwrap();
    assert!(feat["linux"]["namespaces"].as_array().unwrap().contains(&json!("time")));
    assert_eq!(feat["linux"]["seccomp"]["enabled"], json!(true));
    assert_eq!(
        spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO",
        "spec carries the default profile"
    );
}

#[test]
fn console_socket_receives_the_pty_master() {
    use std::os::unix::net::UnixListener;
    let mut f = Fixture::new("tty; echo from-pty");
    f.config["process"]["terminal"] = json!(true);
    f.write_config();
    let id = f.id();
    let sock = f.dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let out = f.hutch(&[
        "create",
        "--bundle",
        f.bundle.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (conn, _) = listener.accept().unwrap();
    let (_, fd) = common::recv_with_fd(&conn);
    let mut master = std::fs::File::from(fd);
    assert!(f.hutch(&["start", &id]).status.success());
    let mut text = Vec::new();
    let _ = std::io::Read::read_to_end(&mut master, &mut text); // ends with EIO once the pty closes
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("/dev/pts/0") && text.contains("from-pty"), "{text}");
}

#[test]
fn long_ids_work() {
    // containerd uses 64-hex ids under long roots; the start socket must still be reachable.
    let mut f = Fixture::new("echo long");
    f.write_config();
    let id = format!("{}-{}", f.id(), "a".repeat(100));
    let out = f.hutch(&["run", "--bundle", f.bundle.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "long\n");
    f.assert_clean(&id);
}

#[test]
fn a_create_that_dies_half_way_is_deleted_cleanly() {
    let mut f = Fixture::new("sleep 1000");
    f.write_config();
    let id = f.id();
    // Leave the state a killed `create` leaves: its directory with a `creating` state.json.
    let dir = f.root.join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let cg = common::procs_dir(&id);
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(
        dir.join("state.json"),
        json!({"id": id, "status": "creating", "pid": 0, "pid_start": 0, "bundle": f.bundle, "rootfs": f.rootfs(),
               "created": "", "owner": "root", "cgroup": format!("hutch/{id}")}).to_string(),
    )
    .unwrap();
    assert_eq!(f.state(&id)["status"], "stopped");
    let out = f.hutch(&["delete", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    f.assert_clean(&id);
}

#[test]
fn errors_go_to_the_json_log_and_stderr() {
    let mut f = Fixture::new("true");
    let log = f.dir.path().join("log.json");
    let id = f.id();
    let out = f.hutch(&["--log", log.to_str().unwrap(), "--log-format", "json", "state", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("does not exist"), "{line}");
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
}

#[test]
fn systemd_cgroup_is_a_clear_error() {
    let mut f = Fixture::new("true");
    f.write_config();
    let id = f.id();
    let out = f.hutch(&["--systemd-cgroup", "create", "--bundle", f.bundle.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--systemd-cgroup is not supported"), "{}", stderr(&out));
    f.assert_clean(&id);
}
