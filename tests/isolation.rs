//! Every config field has its effect checked from inside a real container.

mod common;

use common::{drop_namespace, Fixture};
use serde_json::json;

#[test]
fn runs_as_pid_1_with_its_hostname() {
    let mut f = Fixture::new("echo pid=$$ host=$(hostname)");
    assert_eq!(f.run_ok().trim(), "pid=1 host=hutch-test");
}

#[test]
fn domainname_is_set() {
    let mut f = Fixture::new("cat /proc/sys/kernel/domainname");
    f.config["domainname"] = json!("example.test");
    assert_eq!(f.run_ok().trim(), "example.test");
}

#[test]
fn user_group_and_additional_gids() {
    let mut f = Fixture::new("id -u; id -g; id -G");
    f.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20]});
    let out = f.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1000");
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    assert!(groups.contains(&"10") && groups.contains(&"20"), "{groups:?}");
    assert!(!groups.contains(&"0"), "host root's group leaked: {groups:?}");
}

#[test]
fn capability_sets_are_exact() {
    let mut f = Fixture::new("grep -E '^Cap(Eff|Prm|Bnd|Inh)' /proc/self/status");
    f.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]
    });
    let out = f.run_ok();
    assert!(out.contains("CapEff:\t0000000000000020"), "{out}");
    assert!(out.contains("CapPrm:\t0000000000000020"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000021"), "{out}");
    assert!(out.contains("CapInh:\t0000000000000000"), "{out}");
}

#[test]
fn non_root_user_keeps_its_capabilities() {
    let mut f = Fixture::new("grep CapEff /proc/self/status");
    f.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    f.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_NET_BIND_SERVICE"], "effective": ["CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_NET_BIND_SERVICE"], "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"]
    });
    // CAP_NET_BIND_SERVICE is bit 10; ambient carries it across exec for uid 1000.
    assert!(f.run_ok().contains("CapEff:\t0000000000000400"));
}

#[test]
fn mounts_appear_in_mountinfo_with_their_options() {
    let mut f = Fixture::new("grep ' /mnt/scratch ' /proc/self/mountinfo");
    f.config["mounts"].as_array_mut().unwrap().push(json!(
        {"destination": "/mnt/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["noexec", "nosuid", "size=1m"]}
    ));
    let out = f.run_ok();
    assert!(out.contains("tmpfs"), "{out}");
    assert!(out.contains("noexec") && out.contains("nosuid"), "{out}");
}

#[test]
fn bind_mount_read_only() {
    let mut f = Fixture::new("cat /data/file; echo x > /data/new 2>&1 || true");
    let src = f.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("file"), "from host\n").unwrap();
    f.config["mounts"].as_array_mut().unwrap().push(json!(
        {"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro"]}
    ));
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("from host"), "{out}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!src.join("new").exists());
}

#[test]
fn masked_paths_read_empty() {
    let mut f = Fixture::new("wc -c < /etc/secret; ls /proc/scsi 2>/dev/null | wc -l");
    std::fs::write(f.rootfs().join("etc/secret"), "top secret\n").unwrap();
    f.config["linux"]["maskedPaths"].as_array_mut().unwrap().push(json!("/etc/secret"));
    let out = f.run_ok();
    let lines: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(lines, ["0", "0"], "{out}");
}

#[test]
fn readonly_paths_give_erofs() {
    let mut f = Fixture::new("echo 1 > /proc/sys/kernel/ns_last_pid");
    let (code, _, err) = f.run();
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
}

#[test]
fn readonly_root() {
    let mut f = Fixture::new("touch /newfile; touch /dev/shm/ok && echo shm-writable");
    f.config["root"]["readonly"] = json!(true);
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(out.contains("shm-writable"));
    assert!(!f.rootfs().join("newfile").exists());
}

#[test]
fn time_namespace_offsets_show_in_uptime() {
    let mut f = Fixture::new("cut -d. -f1 /proc/uptime");
    f.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
    f.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1000000, "nanosecs": 0}});
    let up: u64 = f.run_ok().trim().parse().unwrap();
    let host: f64 =
        std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(up >= 1_000_000 + host as u64 - 5, "uptime {up} vs host {host}");
}

#[test]
fn user_namespace_maps_ids() {
    let mut f = Fixture::new("cat /proc/self/uid_map /proc/self/gid_map; id -u");
    f.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    f.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    f.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    // A fresh cgroup mount is not allowed from a user namespace on v1.
    f.config["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "cgroup");
    let out = f.run_ok();
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["0", "200000", "65536"]);
    assert_eq!(rows[1], ["0", "200000", "65536"]);
    assert_eq!(rows[2], ["0"]);
}

#[test]
fn joins_an_existing_network_namespace() {
    let mut holder = std::process::Command::new("unshare").args(["--net", "sleep", "60"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let ns = format!("/proc/{}/ns/net", holder.id());
    let want = std::fs::read_link(&ns).unwrap();
    let mut f = Fixture::new("readlink /proc/self/ns/net");
    drop_namespace(&mut f.config, "network");
    f.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "network", "path": ns}));
    let out = f.run_ok();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.trim(), want.to_str().unwrap());
    assert_ne!(out.trim(), std::fs::read_link("/proc/self/ns/net").unwrap().to_str().unwrap());
}

/// As a Kubernetes pod with user namespaces runs its containers: each joins the pod's user,
/// network, ipc and uts namespaces by path and makes its own mounts there, as its root.
#[test]
fn joins_an_existing_user_namespace_as_its_root() {
    let holder = Holder(
        std::process::Command::new("unshare")
            .args(["--user", "--net", "--ipc", "--uts", "sleep", "60"])
            .spawn()
            .unwrap(),
    );
    let pid = holder.0.id();
    // The user namespace exists once unshare has made it; the maps are written from outside.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{pid}/ns/user")).ok()
        == std::fs::read_link("/proc/self/ns/user").ok()
    {
        assert!(std::time::Instant::now() < deadline, "unshare made no user namespace");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for file in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{file}"), "0 210000 65536\n").unwrap();
    }
    let mut f = Fixture::new(
        "id -u; id -g; cat /proc/self/uid_map; readlink /proc/self/ns/user; mkdir /dev/shm/made && echo made",
    );
    drop_namespace(&mut f.config, "network");
    drop_namespace(&mut f.config, "ipc");
    drop_namespace(&mut f.config, "uts");
    for (typ, file) in [("user", "user"), ("network", "net"), ("ipc", "ipc"), ("uts", "uts")] {
        let path = format!("/proc/{pid}/ns/{file}");
        f.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": typ, "path": path}));
    }
    // A fresh cgroup mount is not allowed from a user namespace on v1.
    f.config["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "cgroup");
    let want = std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    let out = f.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["0", "0"], "{out}");
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["0", "210000", "65536"]);
    assert_eq!(lines[3], want.to_str().unwrap());
    assert_eq!(lines[4], "made");
}

/// Kills and reaps a namespace holder, whatever the test did.
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn new_network_namespace_has_only_loopback() {
    let mut f = Fixture::new("ls /sys/class/net");
    assert_eq!(f.run_ok().split_whitespace().collect::<Vec<_>>(), ["lo"]);
}

#[test]
fn rlimits_are_applied() {
    let mut f = Fixture::new("ulimit -Sn; ulimit -Hn");
    f.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]);
    assert_eq!(f.run_ok().split_whitespace().collect::<Vec<_>>(), ["100", "200"]);
}

#[test]
fn umask_cwd_and_env() {
    let mut f = Fixture::new("umask; pwd; echo $GREETING; echo $HOME");
    f.config["process"]["user"]["umask"] = json!(0o027);
    f.config["process"]["cwd"] = json!("/work/dir");
    f.config["process"]["env"].as_array_mut().unwrap().push(json!("GREETING=hi there"));
    let out = f.run_ok();
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0027", "/work/dir", "hi there", "/root"]);
}

#[test]
fn sysctl_is_written_in_the_container_namespace() {
    let mut f = Fixture::new("cat /proc/sys/net/ipv4/ip_unprivileged_port_start");
    f.config["linux"]["sysctl"] = json!({"net.ipv4.ip_unprivileged_port_start": "123"});
    assert_eq!(f.run_ok().trim(), "123");
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    assert_ne!(host.trim(), "123");
}

#[test]
fn config_devices_are_created() {
    let mut f = Fixture::new("ls -l /dev/extra/mynull; echo hi > /dev/extra/mynull && echo wrote");
    f.config["linux"]["devices"] = json!([{"path": "/dev/extra/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 0, "gid": 0}]);
    let out = f.run_ok();
    assert!(out.starts_with("crw-------"), "{out}");
    assert!(out.contains("1,   3") || out.contains("1, 3"), "{out}");
    assert!(out.contains("wrote"));
}

#[test]
fn default_devices_and_symlinks() {
    let mut f = Fixture::new("ls /dev; readlink /dev/fd; readlink /dev/ptmx");
    let out = f.run_ok();
    for d in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "stdin"] {
        assert!(out.split_whitespace().any(|w| w == d), "/dev/{d} missing: {out}");
    }
    assert!(out.contains("/proc/self/fd") && out.contains("pts/ptmx"), "{out}");
}

#[test]
fn oom_score_adj_and_no_new_privs() {
    let mut f = Fixture::new("cat /proc/self/oom_score_adj; grep NoNewPrivs /proc/self/status");
    f.config["process"]["oomScoreAdj"] = json!(500);
    let out = f.run_ok();
    assert!(out.starts_with("500\n"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn host_paths_are_unreachable_after_pivot() {
    let mut f = Fixture::new("ls /; test -e /root/.cargo && echo HOST-VISIBLE; true");
    let out = f.run_ok();
    assert!(!out.contains("HOST-VISIBLE"));
    assert!(out.contains("bin") && out.contains("proc"), "{out}");
}

#[test]
fn cgroup_mount_shows_the_container_cgroup_only() {
    let mut f = Fixture::new("cat /proc/self/cgroup; ls /sys/fs/cgroup");
    let out = f.run_ok();
    // With a cgroup namespace every path is the namespace root.
    for line in out.lines().filter(|l| l.contains(":/")) {
        assert!(line.ends_with(":/"), "{line}");
    }
    assert!(out.contains("memory") && out.contains("pids"), "{out}");
}

#[test]
fn rootfs_propagation_private() {
    let mut f = Fixture::new("awk '$5 == \"/\"' /proc/self/mountinfo");
    f.config["linux"]["rootfsPropagation"] = json!("private");
    let out = f.run_ok();
    assert!(!out.contains("shared:") && !out.contains("master:"), "{out}");
}

#[test]
fn mount_propagation_option() {
    let mut f = Fixture::new("grep ' /mnt/shared ' /proc/self/mountinfo");
    f.config["mounts"].as_array_mut().unwrap().push(json!(
        {"destination": "/mnt/shared", "type": "tmpfs", "source": "tmpfs", "options": ["rshared"]}
    ));
    assert!(f.run_ok().contains("shared:"));
}

#[test]
fn no_pivot_runs_in_the_rootfs() {
    let mut f = Fixture::new("ls /; test -e /root/.cargo && echo HOST-VISIBLE; true");
    f.write_config();
    let id = f.id();
    let out = f.hutch(&["run", "--no-pivot", "--bundle", f.bundle.to_str().unwrap(), &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("bin") && !text.contains("HOST-VISIBLE"), "{text}");
}

#[test]
fn user_namespace_sharing_the_host_network() {
    // A fresh sysfs is refused here; the host's is bound read-only instead. Devices are binds.
    let mut f = Fixture::new(
        "ls /sys/class/net | grep -c lo; echo x > /sys/kernel/x 2>&1; cat /etc/passwd > /dev/full; true",
    );
    drop_namespace(&mut f.config, "network");
    f.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    f.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    f.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    f.config["linux"]["devices"] = json!([{"path": "/dev/full", "type": "c", "major": 1, "minor": 7}]);
    f.config["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "cgroup");
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.starts_with("1\n"), "{out}");
    assert!(err.contains("Read-only file system") || err.contains("Permission denied"), "{err}");
    assert!(err.contains("No space left on device"), "the host's /dev/full is bound: {err}");
}

#[test]
fn every_namespace_is_new() {
    let kinds = ["mnt", "pid", "net", "ipc", "uts", "cgroup", "user", "time"];
    let script: String = kinds.iter().map(|k| format!("readlink /proc/self/ns/{k}; ")).collect();
    let mut f = Fixture::new(&script);
    let ns = f.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.push(json!({"type": "user"}));
    ns.push(json!({"type": "time"}));
    f.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 400000, "size": 65536}]);
    f.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 400000, "size": 65536}]);
    f.config["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "cgroup");
    let out = f.run_ok();
    let inside: Vec<&str> = out.lines().collect();
    assert_eq!(inside.len(), kinds.len(), "{out}");
    for (k, got) in kinds.iter().zip(inside) {
        let host = std::fs::read_link(format!("/proc/self/ns/{k}")).unwrap();
        assert!(got.starts_with(&format!("{k}:[")), "{got}");
        assert_ne!(got, host.to_str().unwrap(), "{k} namespace is the host's");
    }
}

#[test]
fn foreground_terminal_is_relayed() {
    // `script` gives hutch a real terminal; the shell inside gets its own pty.
    let mut f = Fixture::new("");
    f.config["process"]["terminal"] = json!(true);
    f.config["process"]["args"] = json!(["/bin/sh"]);
    f.write_config();
    let id = f.id();
    let cmd = format!(
        "{} --root {} run --bundle {} {id}",
        common::hutch_bin(),
        f.root.display(),
        f.bundle.display()
    );
    let mut script = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(script.stdin.as_mut().unwrap(), b"tty; echo rows=$(stty size); exit 5\n")
        .unwrap();
    let out = script.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(text.contains("rows="), "{text}");
}
