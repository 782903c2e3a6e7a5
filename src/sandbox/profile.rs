//! Sandbox profiles: declarative JSON files under `profiles/` (format in profiles/README.md),
//! turned into an OCI spec in memory. Errors name the file, the field and what was expected.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub description: String,
    /// `none`, `loopback` or `host`.
    #[serde(default)]
    pub network: Network,
    /// A seccomp profile file, relative to the profile's directory.
    pub seccomp: Option<PathBuf>,
    /// Capabilities the program keeps (all five sets); none by default.
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default = "yes")]
    pub no_new_privileges: bool,
    #[serde(default = "yes")]
    pub readonly_root: bool,
    /// Writable tmpfs mounts.
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
    /// A Landlock policy (docs/landlock.md).
    pub landlock: Option<serde_json::Value>,
    /// Run as root of an own user namespace mapped to these host ids.
    pub user_namespace: Option<IdRange>,
    #[serde(default)]
    pub limits: Limits,
    /// Host paths bound into the sandbox, when present (e.g. a GPU's driver libraries).
    #[serde(default)]
    pub binds: Vec<ProfileBind>,
    /// Host device nodes passed through, when present (e.g. /dev/nvidia*).
    #[serde(default)]
    pub devices: Vec<ProfileDevice>,
    /// A heavier tier another runtime provides (`gvisor`, `vm`): see `Delegate`.
    pub delegate: Option<Delegate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileBind {
    /// A host path or glob pattern; every match is bound.
    pub source: String,
    /// Where inside (default: the same path); with a pattern, a directory to bind the matches into.
    pub destination: Option<String>,
    #[serde(default = "yes")]
    pub readonly: bool,
    /// Fail when nothing matches (default: skip quietly; "when present").
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileDevice {
    /// A host device node or glob pattern (e.g. "/dev/nvidia*").
    pub path: String,
    /// The directory the nodes appear in inside (default: the host's directory).
    pub into: Option<String>,
}

/// A tier hutch hands to another runtime, behind the same interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delegate {
    /// gVisor (runsc), through Docker or Kubernetes.
    Gvisor,
    /// A VM-based runtime (Kata, Firecracker), through Kubernetes.
    Vm,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// An own network namespace with nothing but a down loopback.
    #[default]
    None,
    /// An own network namespace with loopback up: 127.0.0.1 inside, nothing of the host's.
    Loopback,
    /// The host's network.
    Host,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tmpfs {
    pub path: String,
    #[serde(default = "default_tmpfs_size")]
    pub size: String,
}

fn default_tmpfs_size() -> String {
    "64M".into()
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdRange {
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory: Option<String>,
    pub pids: Option<i64>,
    pub timeout: Option<String>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    #[serde(default)]
    pub on_output_limit: OnOutputLimit,
}

/// What happens when the program writes more than a stream's cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnOutputLimit {
    /// Keep running; what is past the cap is read and dropped.
    #[default]
    Truncate,
    /// Stop the program (status `output_limit`).
    Kill,
}

/// The directory of named profiles: $HUTCH_PROFILES, else `profiles/` beside the hutch binary's
/// source tree, else /usr/share/hutch/profiles.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HUTCH_PROFILES") {
        return PathBuf::from(d);
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    if built.is_dir() {
        return built;
    }
    PathBuf::from("/usr/share/hutch/profiles")
}

/// Names of the profiles in `dir`.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Loads a profile by name (from `dir`) or by path (anything with a slash or `.json`).
pub fn load(name_or_file: &str) -> Result<(Profile, PathBuf)> {
    let file = if name_or_file.contains('/') || name_or_file.ends_with(".json") {
        PathBuf::from(name_or_file)
    } else {
        let d = dir();
        let f = d.join(format!("{name_or_file}.json"));
        if !f.is_file() {
            return Err(Error::Usage(format!(
                "unknown profile {name_or_file:?}; known profiles: {}",
                names(&d).join(", ")
            )));
        }
        f
    };
    let text = std::fs::read(&file)
        .map_err(|e| Error::Io { context: format!("read {}", file.display()), source: e })?;
    // The path to a bad field costs a slower deserializer: taken only when the fast one fails.
    let profile: Profile = match serde_json::from_slice(&text) {
        Ok(p) => p,
        Err(fast) => {
            let mut de = serde_json::Deserializer::from_slice(&text);
            let (path, e) = match serde_path_to_error::deserialize::<_, Profile>(&mut de) {
                Err(e) => (e.path().to_string(), e.into_inner()),
                Ok(_) => (".".to_string(), fast),
            };
            return Err(Error::config(&file, if path == "." { "(document)".into() } else { path }, e));
        }
    };
    profile.check(&file)?;
    Ok((profile, file))
}

impl Profile {
    fn check(&self, file: &Path) -> Result<()> {
        let err = |field: &str, msg: String| Error::config(file, field, msg);
        for (field, v) in [
            ("limits.memory", &self.limits.memory),
            ("limits.stdout", &self.limits.stdout),
            ("limits.stderr", &self.limits.stderr),
        ] {
            if let Some(v) = v {
                parse_bytes(v).map_err(|e| err(field, e))?;
            }
        }
        if let Some(t) = &self.limits.timeout {
            humantime::parse_duration(t).map_err(|e| {
                err("limits.timeout", format!("{t:?}: {e} (expected e.g. \"2s\", \"500ms\")"))
            })?;
        }
        for (i, t) in self.tmpfs.iter().enumerate() {
            if !t.path.starts_with('/') {
                return Err(err(&format!("tmpfs[{i}].path"), format!("{:?} is not absolute", t.path)));
            }
            parse_bytes(&t.size).map_err(|e| err(&format!("tmpfs[{i}].size"), e))?;
        }
        for (i, c) in self.capabilities.iter().enumerate() {
            serde_json::from_value::<oci_spec::runtime::Capability>(serde_json::Value::String(c.clone()))
                .map_err(|_| err(&format!("capabilities[{i}]"), format!("unknown capability {c:?}")))?;
        }
        for (i, b) in self.binds.iter().enumerate() {
            if !b.source.starts_with('/') {
                return Err(err(&format!("binds[{i}].source"), format!("{:?} is not absolute", b.source)));
            }
            glob::Pattern::new(&b.source).map_err(|e| err(&format!("binds[{i}].source"), e.to_string()))?;
            if b.destination.as_ref().is_some_and(|d| !d.starts_with('/')) {
                return Err(err(&format!("binds[{i}].destination"), "must be absolute".into()));
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            if !d.path.starts_with('/') {
                return Err(err(&format!("devices[{i}].path"), format!("{:?} is not absolute", d.path)));
            }
            glob::Pattern::new(&d.path).map_err(|e| err(&format!("devices[{i}].path"), e.to_string()))?;
            if d.into.as_ref().is_some_and(|d| !d.starts_with('/')) {
                return Err(err(&format!("devices[{i}].into"), "must be absolute".into()));
            }
        }
        if let Some(l) = &self.landlock {
            crate::landlock_policy::parse(&l.to_string())
                .map_err(|(f, m)| err(&format!("landlock{f}"), m))?;
        }
        Ok(())
    }
}

/// "256M", "1G", "4096": bytes.
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{s:?}: {e} (expected e.g. \"256M\")"))
}

/// How much the code to run is trusted less than the host (`hutch sandbox select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Security {
    /// Code you wrote or reviewed: the default profile.
    Low,
    /// Code from a known source you did not review: the strict profile.
    Medium,
    /// Untrusted code: a user-space kernel (gVisor) between it and the host's.
    High,
    /// Hostile code: a virtual machine; it shares no kernel with the host.
    Critical,
}

impl std::str::FromStr for Security {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Security, String> {
        Ok(match s {
            "low" => Security::Low,
            "medium" => Security::Medium,
            "high" => Security::High,
            "critical" => Security::Critical,
            _ => return Err(format!("{s:?}: expected low, medium, high or critical")),
        })
    }
}

/// The profile for a need, and why. Network and GPU access are granted only where a profile
/// of the level offers them; the delegated tiers (gvisor, vm) carry both.
pub fn select(level: Security, network: bool, gpu: bool) -> (&'static str, String) {
    let with = match (network, gpu) {
        (false, false) => String::new(),
        (true, false) => " with network access".into(),
        (false, true) => " with a GPU".into(),
        (true, true) => " with network access and a GPU".into(),
    };
    match level {
        Security::Low | Security::Medium if gpu => (
            "gpu",
            format!("{level:?} security{with}: namespaces, seccomp and Landlock, the GPU's device nodes and driver libraries passed through{}",
                if network { "; the gpu profile also has the host's network" } else { "" }),
        ),
        Security::Low | Security::Medium if network => (
            "network",
            format!("{level:?} security{with}: every namespace but the network one, seccomp, Landlock, no capabilities"),
        ),
        Security::Low => ("default", "low security: every namespace, no network, seccomp allowlist, Landlock, no capabilities, memory/pids/time limits".into()),
        Security::Medium => ("strict", "medium security: the default isolation with tighter limits (64 processes, 256M, 10 s) and output stopped past its cap".into()),
        Security::High => (
            "gvisor",
            format!("high security{with}: gVisor's user-space kernel answers the code's syscalls, so a kernel bug is not enough to escape{}",
                if gpu { " (GPU through its nvproxy)" } else { "" }),
        ),
        Security::Critical => (
            "vm",
            format!("critical security{with}: a virtual machine, which shares no kernel with the host{}",
                if gpu { " (the GPU needs VFIO passthrough to the guest)" } else { "" }),
        ),
    }
}
