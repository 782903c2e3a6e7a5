//! Bad input: a clear error naming the field, exit code 1, and nothing left behind (each
//! `create_fails` checks the state directory, cgroups and mounts).

mod common;

use common::Fixture;
use serde_json::json;

#[test]
fn malformed_json() {
    let mut f = Fixture::new("true");
    f.write_config();
    std::fs::write(f.bundle.join("config.json"), "{\"ociVersion\": \"1.0.2\", \"process\": ").unwrap();
    let id = f.id();
    let out = f.hutch(&["create", "--bundle", f.bundle.to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("config.json") && err.contains("EOF"), "{err}");
    f.assert_clean(&id);
}

#[test]
fn missing_rootfs() {
    let mut f = Fixture::new("true");
    f.config["root"]["path"] = json!("no-such-rootfs");
    let err = f.create_fails();
    assert!(err.contains("root.path") && err.contains("no-such-rootfs"), "{err}");
}

#[test]
fn unknown_mount_type() {
    let mut f = Fixture::new("true");
    f.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/x", "type": "nosuchfs", "source": "none"}));
    let err = f.create_fails();
    assert!(err.contains("mounts[7]") && err.contains("nosuchfs"), "{err}");
}

#[test]
fn bad_namespace_path() {
    let mut f = Fixture::new("true");
    common::drop_namespace(&mut f.config, "network");
    f.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "network", "path": "/etc/hostname"}));
    let err = f.create_fails();
    assert!(err.contains("linux.namespaces[5].path") && err.contains("not a namespace"), "{err}");
}

#[test]
fn namespace_path_of_the_wrong_kind() {
    let mut f = Fixture::new("true");
    common::drop_namespace(&mut f.config, "network");
    f.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "network", "path": "/proc/self/ns/uts"}));
    let err = f.create_fails();
    assert!(err.contains("is not a net namespace"), "{err}");
}

#[test]
fn unknown_capability() {
    let mut f = Fixture::new("true");
    f.config["process"]["capabilities"]["bounding"] = json!(["CAP_KILL", "CAP_TELEPORT"]);
    let err = f.create_fails();
    assert!(err.contains("process.capabilities.bounding[1]") && err.contains("TELEPORT"), "{err}");
}

#[test]
fn mount_target_symlink_out_of_rootfs() {
    let mut f = Fixture::new("true");
    // A malicious bundle: /mnt/evil climbs out to the host's /tmp.
    let victim = f.dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::create_dir_all(f.rootfs().join("mnt")).unwrap();
    let up = "../".repeat(f.rootfs().components().count() + 2);
    std::os::unix::fs::symlink(format!("{up}{}", victim.display()), f.rootfs().join("mnt/evil")).unwrap();
    f.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/mnt/evil/sub", "type": "tmpfs", "source": "tmpfs"}));
    let err = f.create_fails();
    assert!(
        err.contains("mounts[7]") && err.contains("/mnt/evil") && err.contains("out of the root filesystem"),
        "{err}"
    );
    assert!(!victim.join("sub").exists(), "the host directory was touched");
}

#[test]
fn absolute_symlink_target_stays_inside() {
    let mut f = Fixture::new("cat /proc/self/mountinfo");
    // /mnt/abs -> /etc must land on the rootfs' /etc, never the host's.
    std::fs::create_dir_all(f.rootfs().join("mnt")).unwrap();
    std::os::unix::fs::symlink("/etc", f.rootfs().join("mnt/abs")).unwrap();
    f.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/mnt/abs/inner", "type": "tmpfs", "source": "tmpfs"}));
    let out = f.run_ok();
    assert!(out.contains(" /etc/inner "), "{out}");
    assert!(!std::path::Path::new("/etc/inner").exists());
}

#[test]
fn negative_oom_score_adj_needs_a_capability_we_lack() {
    let mut f = Fixture::new("true");
    f.config["process"]["oomScoreAdj"] = json!(-500);
    let err = f.create_fails();
    assert!(err.contains("process.oomScoreAdj"), "{err}");
}

#[test]
fn rlimit_above_the_hard_limit() {
    let mut f = Fixture::new("true");
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    f.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]);
    let err = f.create_fails();
    assert!(err.contains("process.rlimits[0]"), "{err}");
}

#[test]
fn rlimit_soft_above_hard() {
    let mut f = Fixture::new("true");
    f.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 20, "hard": 10}]);
    let err = f.create_fails();
    assert!(err.contains("process.rlimits[0]") && err.contains("above hard"), "{err}");
}

#[test]
fn missing_binary_fails_create() {
    let mut f = Fixture::new("true");
    f.config["process"]["args"] = json!(["no-such-program"]);
    let err = f.create_fails();
    assert!(err.contains("process.args[0]") && err.contains("not found in $PATH"), "{err}");
}

#[test]
fn mount_source_missing() {
    let mut f = Fixture::new("true");
    f.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/data", "type": "bind", "source": "/no/such/dir", "options": ["rbind"]}),
    );
    let err = f.create_fails();
    assert!(err.contains("mounts[7]") && err.contains("/no/such/dir"), "{err}");
}

#[test]
fn user_namespace_without_mappings() {
    let mut f = Fixture::new("true");
    f.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    let err = f.create_fails();
    assert!(err.contains("linux.uidMappings"), "{err}");
}

#[test]
fn no_mount_namespace() {
    let mut f = Fixture::new("true");
    common::drop_namespace(&mut f.config, "mount");
    let err = f.create_fails();
    assert!(err.contains("mount namespace is required"), "{err}");
}

#[test]
fn preserve_fds_that_are_not_open() {
    let mut f = Fixture::new("true");
    f.write_config();
    let id = f.id();
    let out = f.hutch(&["create", "--preserve-fds", "40", "--bundle", f.bundle.to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("--preserve-fds 40") && err.contains("not open"), "{err}");
    f.assert_clean(&id);
}

#[test]
fn cgroup_in_use_by_others_is_refused() {
    let mut f = Fixture::new("true");
    // A stranger process in the cgroup the config names must not be taken over (or killed).
    let name = format!("hutch-stranger-{}", std::process::id());
    let dir = common::top_cgroup(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut stranger = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(dir.join("cgroup.procs"), stranger.id().to_string()).unwrap();
    f.config["linux"]["cgroupsPath"] = json!(format!("/{name}"));
    let err = f.create_fails();
    let alive = stranger.try_wait().unwrap().is_none();
    let _ = stranger.kill();
    let _ = stranger.wait();
    let _ = std::fs::remove_dir(&dir);
    assert!(err.contains("linux.cgroupsPath") && err.contains("in use"), "{err}");
    assert!(alive, "the stranger was killed");
}

#[test]
fn joining_a_mount_namespace_is_refused() {
    let mut f = Fixture::new("true");
    common::drop_namespace(&mut f.config, "mount");
    f.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "mount", "path": "/proc/self/ns/mnt"}));
    let err = f.create_fails();
    assert!(err.contains("joining an existing mount namespace"), "{err}");
}
