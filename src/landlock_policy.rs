//! Landlock policies. The OCI spec has no field for Landlock, so a container asks for one with
//! the annotation `io.github.hutch.landlock` (and profiles will carry the same JSON):
//!
//! ```json
//! {
//!   "mode": "best-effort",
//!   "fs": [{"path": "/", "access": ["read", "execute"]}, {"path": "/tmp", "access": ["read", "write"]}],
//!   "net": {"bind": [8080], "connect": [443]},
//!   "scopes": ["abstract-unix-socket", "signal"]
//! }
//! ```
//!
//! - `fs`: when present, every filesystem access is denied except what the rules grant beneath
//!   their paths (paths as the container sees them). Access names: `read` (read-file, read-dir),
//!   `write` (write-file, truncate, remove-file, remove-dir, make-reg, make-dir, make-sym,
//!   make-sock, make-fifo, refer), `execute`, and each of those fine-grained names, plus
//!   `make-char`, `make-block` and `ioctl-dev`.
//! - `net` (Landlock ABI 4): when present, TCP bind and connect are denied except to the listed
//!   ports.
//! - `scopes` (ABI 6): `abstract-unix-socket` and `signal` cut the container off from abstract
//!   unix sockets and from signalling processes outside its Landlock domain.
//! - `mode`: `best-effort` (the default) enforces what the kernel supports and records the level
//!   reached; `required` fails the container unless the kernel enforces all of it.
//!
//! Landlock is applied by init as the last step before execve, after every mount, and implies
//! no_new_privs.

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};

pub const ANNOTATION: &str = "io.github.hutch.landlock";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub mode: Mode,
    pub fs: Option<Vec<FsRule>>,
    pub net: Option<NetRules>,
    pub scopes: Option<Vec<ScopeName>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    BestEffort,
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsRule {
    pub path: String,
    pub access: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetRules {
    #[serde(default)]
    pub bind: Vec<u16>,
    #[serde(default)]
    pub connect: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScopeName {
    AbstractUnixSocket,
    Signal,
}

/// How much of a policy the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    FullyEnforced,
    PartiallyEnforced,
    NotEnforced,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::FullyEnforced => "fully-enforced",
            Level::PartiallyEnforced => "partially-enforced",
            Level::NotEnforced => "not-enforced",
        })
    }
}

/// Rights for an access name, and the ABI that introduced the newest of them.
fn access(name: &str) -> Option<(BitFlags<AccessFs>, i32)> {
    use AccessFs::*;
    let (rights, abi): (Vec<AccessFs>, i32) = match name {
        "read" => (vec![ReadFile, ReadDir], 1),
        "write" => (
            vec![
                WriteFile, Truncate, RemoveFile, RemoveDir, MakeReg, MakeDir, MakeSym, MakeSock, MakeFifo,
                Refer,
            ],
            3,
        ),
        "execute" => (vec![Execute], 1),
        "read-file" => (vec![ReadFile], 1),
        "read-dir" => (vec![ReadDir], 1),
        "write-file" => (vec![WriteFile], 1),
        "remove-file" => (vec![RemoveFile], 1),
        "remove-dir" => (vec![RemoveDir], 1),
        "make-reg" => (vec![MakeReg], 1),
        "make-dir" => (vec![MakeDir], 1),
        "make-sym" => (vec![MakeSym], 1),
        "make-sock" => (vec![MakeSock], 1),
        "make-fifo" => (vec![MakeFifo], 1),
        "make-char" => (vec![MakeChar], 1),
        "make-block" => (vec![MakeBlock], 1),
        "refer" => (vec![Refer], 2),
        "truncate" => (vec![Truncate], 3),
        "ioctl-dev" => (vec![IoctlDev], 5),
        _ => return None,
    };
    Some((rights.into_iter().fold(BitFlags::empty(), |acc, r| acc | r), abi))
}

/// Parses and checks a policy; errors are (field below the annotation, message).
pub fn parse(json: &str) -> Result<Policy, (String, String)> {
    let mut de = serde_json::Deserializer::from_str(json);
    let policy: Policy = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        (if path == "." { String::new() } else { format!(".{path}") }, e.into_inner().to_string())
    })?;
    for (i, rule) in policy.fs.iter().flatten().enumerate() {
        if !rule.path.starts_with('/') {
            return Err((format!(".fs[{i}].path"), format!("{:?} is not an absolute path", rule.path)));
        }
        for (j, a) in rule.access.iter().enumerate() {
            if access(a).is_none() {
                return Err((format!(".fs[{i}].access[{j}]"), format!("unknown access {a:?}")));
            }
        }
    }
    Ok(policy)
}

impl Policy {
    /// The Landlock ABI needed to enforce all of the policy.
    pub fn required_abi(&self) -> i32 {
        let mut abi = 0;
        for rule in self.fs.iter().flatten() {
            abi = abi.max(1);
            for a in &rule.access {
                abi = abi.max(access(a).map_or(1, |(_, v)| v));
            }
        }
        if self.fs.is_some() {
            abi = abi.max(1);
        }
        if self.net.is_some() {
            abi = abi.max(4);
        }
        if self.scopes.as_ref().is_some_and(|s| !s.is_empty()) {
            abi = abi.max(6);
        }
        abi
    }

    /// The level this kernel will reach, known before anything runs.
    pub fn level_here(&self) -> Level {
        let have = kernel_abi();
        if have <= 0 {
            Level::NotEnforced
        } else if have >= self.required_abi() {
            Level::FullyEnforced
        } else {
            Level::PartiallyEnforced
        }
    }
}

/// The running kernel's Landlock ABI (0 when it has none).
pub fn kernel_abi() -> i32 {
    // SAFETY: with LANDLOCK_CREATE_RULESET_VERSION the call only returns the ABI version.
    let v = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    v.max(0) as i32
}

/// Restricts this process (in init, inside the container, just before execve).
pub fn apply(policy: &Policy) -> Result<Level, String> {
    let compat = match policy.mode {
        Mode::BestEffort => CompatLevel::BestEffort,
        Mode::Required => CompatLevel::HardRequirement,
    };
    let abi = ABI::V7;
    let mut ruleset = Ruleset::default().set_compatibility(compat);
    if policy.fs.is_some() {
        ruleset = ruleset.handle_access(AccessFs::from_all(abi)).map_err(|e| format!("fs: {e}"))?;
    }
    if policy.net.is_some() {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(|e| format!("net: {e}"))?;
    }
    for s in policy.scopes.iter().flatten() {
        let scope = match s {
            ScopeName::AbstractUnixSocket => Scope::AbstractUnixSocket,
            ScopeName::Signal => Scope::Signal,
        };
        ruleset = ruleset.scope(scope).map_err(|e| format!("scopes: {e}"))?;
    }
    let mut created = ruleset.create().map_err(|e| format!("create ruleset: {e}"))?;
    for (i, rule) in policy.fs.iter().flatten().enumerate() {
        let bits =
            rule.access.iter().filter_map(|a| access(a)).fold(BitFlags::empty(), |acc, (r, _)| acc | r);
        let fd = match PathFd::new(&rule.path) {
            Ok(fd) => fd,
            Err(_) if policy.mode == Mode::BestEffort => continue,
            Err(e) => return Err(format!("fs[{i}].path {}: {e}", rule.path)),
        };
        created = created.add_rule(PathBeneath::new(fd, bits)).map_err(|e| format!("fs[{i}]: {e}"))?;
    }
    if let Some(net) = &policy.net {
        for port in &net.bind {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::BindTcp))
                .map_err(|e| format!("net.bind: {e}"))?;
        }
        for port in &net.connect {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(|e| format!("net.connect: {e}"))?;
        }
    }
    let status = created.restrict_self().map_err(|e| format!("restrict: {e}"))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Level::FullyEnforced,
        RulesetStatus::PartiallyEnforced => Level::PartiallyEnforced,
        RulesetStatus::NotEnforced => Level::NotEnforced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_bad_fields() {
        let p = parse(r#"{"fs": [{"path": "/tmp", "access": ["read", "write"]}], "net": {"bind": [80]}}"#)
            .unwrap();
        assert_eq!(p.mode, Mode::BestEffort);
        assert_eq!(p.required_abi(), 4);
        assert_eq!(parse(r#"{"fs": [{"path": "tmp", "access": []}]}"#).unwrap_err().0, ".fs[0].path");
        assert_eq!(parse(r#"{"fs": [{"path": "/", "access": ["fly"]}]}"#).unwrap_err().0, ".fs[0].access[0]");
        assert_eq!(parse(r#"{"mode": "sometimes"}"#).unwrap_err().0, ".mode");
        assert_eq!(parse(r#"{"filesystem": []}"#).unwrap_err().0, ".filesystem");
        assert_eq!(parse(r#"{"scopes": ["signal"]}"#).unwrap().required_abi(), 6);
    }
}
