//! Compiled profiles, cached on disk by a hash of the profile, so repeated runs skip
//! compilation.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;

use super::{compile, Compiled, ProfileError};

/// The cache key: the profile as JSON, with hutch's version (a new compiler, a new key).
/// Bumped whenever `compile` produces different filters for the same profile.
const COMPILER_FORMAT: u32 = 3;

fn key(profile: &LinuxSeccomp) -> String {
    let json = serde_json::to_string(profile).expect("profile serializes");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    COMPILER_FORMAT.hash(&mut h);
    json.hash(&mut h);
    // A second, differently seeded hash makes an accidental collision practically impossible.
    let mut h2 = std::collections::hash_map::DefaultHasher::new();
    json.len().hash(&mut h2);
    json.hash(&mut h2);
    format!("{:016x}{:016x}", h.finish(), h2.finish())
}

fn path(dir: &Path, profile: &LinuxSeccomp) -> PathBuf {
    dir.join(format!("{}.json", key(profile)))
}

/// Compiles `profile`, or reads the result of an earlier compilation from `dir`.
pub fn compile_cached(dir: Option<&Path>, profile: &LinuxSeccomp) -> Result<Compiled, ProfileError> {
    let Some(dir) = dir else { return compile(profile) };
    let file = path(dir, profile);
    if let Some(c) = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<Compiled>(&b).ok()) {
        return Ok(c);
    }
    let compiled = compile(profile)?;
    // A cache that cannot be written is only slower.
    let _ = std::fs::create_dir_all(dir);
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, serde_json::to_vec(&compiled).expect("compiled serializes")).is_ok() {
        let _ = std::fs::rename(&tmp, &file);
    }
    Ok(compiled)
}
