//! The default config (`hutch spec`) and the features document (`hutch features`).

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

/// A starting config, as `runc spec` writes it: a terminal `sh`, the usual namespaces, mounts,
/// masked and read-only paths, and a small capability set.
pub fn default_spec() -> Spec {
    let mut spec = base_spec();
    if let Some(linux) = spec.linux_mut().as_mut() {
        linux.set_seccomp(Some(default_seccomp()));
    }
    spec
}

/// The default config without its seccomp profile, for a caller that brings its own (a sandbox
/// profile), which need not parse the embedded default one only to replace it.
pub fn base_spec() -> Spec {
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

/// hutch's default seccomp profile (profiles/seccomp/default.json).
pub fn default_seccomp() -> oci_spec::runtime::LinuxSeccomp {
    serde_json::from_str(include_str!("../profiles/seccomp/default.json"))
        .expect("the default profile parses")
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
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"]
            },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.hutch.version": env!("CARGO_PKG_VERSION"),
            "io.github.hutch.landlock.abi": crate::landlock_policy::kernel_abi().to_string()
        }
    })
}
