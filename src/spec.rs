//! The default config (`hutch spec`) and the features document (`hutch features`).

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

/// A starting config, as `runc spec` writes it: a terminal `sh`, the usual namespaces, mounts,
/// masked and read-only paths, and a small capability set.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.trim_end_matches("-dev").to_string());
    spec.set_hostname(Some("hutch".into()));
    if let Some(p) = spec.process_mut().as_mut() {
        p.set_terminal(Some(true));
    }
    if let Some(linux) = spec.linux_mut().as_mut() {
        let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .expect("complete rule");
        let mut res = linux.resources().clone().unwrap_or_default();
        res.set_devices(Some(vec![deny_all]));
        linux.set_resources(Some(res));
    }
    spec
}

/// Every mount option `rootfs::mounts` understands.
const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

/// The runtime-spec features document: only what hutch really does.
pub fn features() -> Value {
    let caps: Vec<String> = caps::runtime::thread_all_supported().iter().map(|c| c.to_string()).collect();
    let mut caps = caps;
    caps.sort();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": { "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false },
            "seccomp": { "enabled": false },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.hutch.version": env!("CARGO_PKG_VERSION")
        }
    })
}
