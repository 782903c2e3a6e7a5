//! Loading and validating a bundle's config.json.
//!
//! Everything that can be checked before a process is forked is checked here, so that bad input
//! fails fast, names the field, and leaves nothing behind. What only the kernel can judge (a
//! mount that fails, an rlimit above what we may raise) is reported by the stage that tries it,
//! with the field in the message.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};
use crate::namespaces;
use crate::rootfs::mounts::MountKind;

pub const CONFIG_FILE: &str = "config.json";

/// A loaded, validated container configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub spec: Spec,
    /// The bundle directory, absolute.
    pub bundle: PathBuf,
    /// The root filesystem, absolute and canonical.
    pub rootfs: PathBuf,
    /// Where `spec` came from, for error messages.
    pub file: PathBuf,
    /// The Landlock policy its annotation asks for, parsed once here: init applies it with
    /// no parsing of its own.
    landlock: Option<crate::landlock_policy::Policy>,
}

impl Config {
    /// Loads `<bundle>/config.json` and validates it.
    pub fn load(bundle: &Path) -> Result<Config> {
        let bundle = std::path::absolute(bundle)
            .map_err(|e| Error::Io { context: format!("bundle {}", bundle.display()), source: e })?;
        let file = bundle.join(CONFIG_FILE);
        let reader = File::open(&file)
            .map(BufReader::new)
            .map_err(|e| Error::Io { context: format!("open {}", file.display()), source: e })?;
        let spec = parse(reader).map_err(|(field, message)| Error::config(&file, field, message))?;
        Config::from_spec(spec, bundle, file)
    }

    /// Validates an in-memory spec whose relative paths are relative to `bundle`.
    pub fn from_spec(spec: Spec, bundle: PathBuf, file: PathBuf) -> Result<Config> {
        let err = |field: &str, msg: String| Error::config(&file, field, msg);
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| err("root", "missing: the container needs a root filesystem".into()))?;
        let rootfs = bundle.join(root.path());
        let rootfs =
            rootfs.canonicalize().map_err(|e| err("root.path", format!("{}: {e}", rootfs.display())))?;
        if !rootfs.is_dir() {
            return Err(err("root.path", format!("{} is not a directory", rootfs.display())));
        }
        let landlock = landlock_of(&spec, &file)?;
        let config = Config { spec, bundle, rootfs, file, landlock };
        config.validate()?;
        Ok(config)
    }

    fn err(&self, field: impl Into<String>, message: impl ToString) -> Error {
        Error::config(&self.file, field, message)
    }

    fn validate(&self) -> Result<()> {
        let process =
            self.spec.process().as_ref().ok_or_else(|| self.err("process", "missing: nothing to run"))?;
        check_process(process, &self.file, "process")?;
        if let Some(policy) = self.landlock() {
            let level = policy.level_here();
            if policy.mode == crate::landlock_policy::Mode::Required
                && level != crate::landlock_policy::Level::FullyEnforced
            {
                return Err(self.err(
                    format!("annotations.{}", crate::landlock_policy::ANNOTATION),
                    format!(
                        "mode \"required\" needs Landlock ABI {}; this kernel has {}",
                        policy.required_abi(),
                        crate::landlock_policy::kernel_abi()
                    ),
                ));
            }
        }
        for point in crate::hooks::Point::ALL {
            for (i, hook) in point.hooks(self.spec.hooks().as_ref()).iter().enumerate() {
                let field = format!("hooks.{}[{i}]", point.name());
                if !hook.path().is_absolute() {
                    return Err(self
                        .err(format!("{field}.path"), format!("{:?} is not an absolute path", hook.path())));
                }
                if hook.timeout().is_some_and(|t| t <= 0) {
                    return Err(self.err(format!("{field}.timeout"), "must be a positive number of seconds"));
                }
            }
        }
        self.validate_mounts()?;
        self.validate_linux()
    }

    fn validate_mounts(&self) -> Result<()> {
        for (i, m) in self.spec.mounts().iter().flatten().enumerate() {
            let field = format!("mounts[{i}]");
            if !m.destination().is_absolute() {
                return Err(self.err(
                    format!("{field}.destination"),
                    format!("{:?} is not an absolute path", m.destination()),
                ));
            }
            MountKind::of(m).map_err(|why| self.err(&field, why))?;
        }
        Ok(())
    }

    fn validate_linux(&self) -> Result<()> {
        let Some(linux) = self.spec.linux() else {
            return Err(
                self.err("linux", "missing: hutch needs linux.namespaces (at least a mount namespace)")
            );
        };
        let mut kinds = HashSet::new();
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            let field = format!("linux.namespaces[{i}]");
            if !kinds.insert(ns.typ()) {
                return Err(self.err(field, format!("namespace {} given twice", ns.typ())));
            }
            if let Some(path) = ns.path() {
                namespaces::open(path, ns.typ())
                    .map_err(|why| self.err(format!("{field}.path"), format!("{}: {why}", path.display())))?;
            }
        }
        let joins_mount = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|ns| ns.typ() == LinuxNamespaceType::Mount && ns.path().is_some());
        if joins_mount {
            return Err(self.err(
                "linux.namespaces",
                "joining an existing mount namespace is not supported: hutch builds the rootfs in a new one",
            ));
        }
        if !kinds.contains(&LinuxNamespaceType::Mount) {
            return Err(self.err(
                "linux.namespaces",
                "a mount namespace is required (hutch never mounts in the host's)",
            ));
        }
        let new_userns = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|ns| ns.typ() == LinuxNamespaceType::User && ns.path().is_none());
        let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if new_userns && !has_maps {
            return Err(
                self.err("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings")
            );
        }
        if has_maps && !new_userns {
            return Err(
                self.err("linux.uidMappings", "id mappings need a new user namespace in linux.namespaces")
            );
        }
        if linux.time_offsets().is_some() && !kinds.contains(&LinuxNamespaceType::Time) {
            return Err(
                self.err("linux.timeOffsets", "time offsets need a time namespace in linux.namespaces")
            );
        }
        for clock in linux.time_offsets().iter().flat_map(|m| m.keys()) {
            if clock != "monotonic" && clock != "boottime" {
                return Err(self.err(
                    format!("linux.timeOffsets.{clock}"),
                    "only the monotonic and boottime clocks can be offset",
                ));
            }
        }
        if let Some(p) = linux.rootfs_propagation() {
            crate::rootfs::propagation_flags(p)
                .ok_or_else(|| self.err("linux.rootfsPropagation", format!("unknown propagation {p:?}")))?;
        }
        if (self.spec.hostname().is_some() || self.spec.domainname().is_some())
            && !kinds.contains(&LinuxNamespaceType::Uts)
        {
            let field = if self.spec.hostname().is_some() { "hostname" } else { "domainname" };
            return Err(self.err(field, "setting it needs a UTS namespace in linux.namespaces"));
        }
        for (key, _) in linux.sysctl().iter().flatten() {
            if key.contains('/') || key.contains("..") {
                return Err(self.err(format!("linux.sysctl.{key}"), "not a sysctl name"));
            }
        }
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            if !d.path().is_absolute() {
                return Err(
                    self.err(format!("linux.devices[{i}].path"), format!("{:?} is not absolute", d.path()))
                );
            }
        }
        Ok(())
    }

    /// The Landlock policy the annotation asks for, if any.
    pub fn landlock(&self) -> Option<&crate::landlock_policy::Policy> {
        self.landlock.as_ref()
    }

    pub fn process(&self) -> &oci_spec::runtime::Process {
        self.spec.process().as_ref().expect("validated")
    }

    /// Namespaces the container asks for: (type, Some(path) to join | None to create).
    pub fn namespaces(&self) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        self.spec
            .linux()
            .iter()
            .flat_map(|l| l.namespaces().iter().flatten())
            .map(|ns| (ns.typ(), ns.path().clone()))
            .collect()
    }

    pub fn new_namespace(&self, typ: LinuxNamespaceType) -> bool {
        self.namespaces().iter().any(|(t, p)| *t == typ && p.is_none())
    }

    pub fn has_namespace(&self, typ: LinuxNamespaceType) -> bool {
        self.namespaces().iter().any(|(t, _)| *t == typ)
    }
}

/// Checks a process (the config's, or one given to `exec`); `prefix` names it in errors.
pub fn check_process(process: &oci_spec::runtime::Process, file: &Path, prefix: &str) -> Result<()> {
    let err = |field: String, msg: String| Error::config(file, format!("{prefix}{field}"), msg);
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err(err(".args".into(), "must name the program to run".into())),
    }
    if !process.cwd().is_absolute() {
        return Err(err(".cwd".into(), format!("{:?} is not an absolute path", process.cwd())));
    }
    for (i, kv) in process.env().iter().flatten().enumerate() {
        if !kv.contains('=') {
            return Err(err(format!(".env[{i}]"), format!("{kv:?} is not KEY=VALUE")));
        }
    }
    let mut seen = HashSet::new();
    for (i, rl) in process.rlimits().iter().flatten().enumerate() {
        if !seen.insert(format!("{:?}", rl.typ())) {
            return Err(err(format!(".rlimits[{i}]"), format!("{:?} given twice", rl.typ())));
        }
        if rl.soft() > rl.hard() {
            return Err(err(
                format!(".rlimits[{i}]"),
                format!("soft limit {} is above hard limit {}", rl.soft(), rl.hard()),
            ));
        }
    }
    Ok(())
}

/// Parses a spec, naming the JSON path of the first field that is wrong.
pub fn parse(reader: impl std::io::Read) -> std::result::Result<Spec, (String, String)> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "(document)".to_string() } else { path };
        (field, e.into_inner().to_string())
    })
}

fn landlock_of(spec: &Spec, file: &Path) -> Result<Option<crate::landlock_policy::Policy>> {
    use crate::landlock_policy::{parse, ANNOTATION};
    let Some(json) = spec.annotations().as_ref().and_then(|a| a.get(ANNOTATION)) else {
        return Ok(None);
    };
    parse(json)
        .map(Some)
        .map_err(|(field, msg)| Error::config(file, format!("annotations.{ANNOTATION}{field}"), msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_bad_field() {
        let json = r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},
            "capabilities":{"bounding":["CAP_CHOWN","CAP_NOPE"]}}}"#;
        let (field, msg) = parse(json.as_bytes()).unwrap_err();
        assert_eq!(field, "process.capabilities.bounding[1]");
        assert!(msg.contains("CAP_NOPE"), "{msg}");
    }

    #[test]
    fn parse_reports_syntax_errors() {
        let (_, msg) = parse(&b"{\"ociVersion\": "[..]).unwrap_err();
        assert!(msg.contains("EOF"), "{msg}");
    }
}
