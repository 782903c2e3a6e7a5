//! Compiled profiles, cached on disk, so repeated runs skip compilation: keyed by a hash of the
//! profile and kept in postcard's compact binary form, which reads in microseconds.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;

use super::{compile, Compiled, ProfileError};

/// Part of every key, with hutch's version (a new compiler, a new key). Bumped whenever
/// `compile` produces different filters for the same profile, or `Compiled` changes shape.
const COMPILER_FORMAT: u32 = 4;

/// The key of a profile's text: a profile as JSON (linux.seccomp), or a profile file's bytes.
fn key(text: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    COMPILER_FORMAT.hash(&mut h);
    text.hash(&mut h);
    // A second, differently seeded hash makes an accidental collision practically impossible.
    let mut h2 = std::collections::hash_map::DefaultHasher::new();
    text.len().hash(&mut h2);
    text.hash(&mut h2);
    format!("{:016x}{:016x}", h.finish(), h2.finish())
}

fn path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.bin"))
}

fn read(file: &Path) -> Option<Compiled> {
    postcard::from_bytes(&std::fs::read(file).ok()?).ok()
}

/// Keeps `compiled` at `file`; a cache that cannot be written is only slower.
fn store(dir: &Path, file: &Path, compiled: &Compiled) {
    let _ = std::fs::create_dir_all(dir);
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let bytes = postcard::to_allocvec(compiled).expect("compiled serializes");
    if std::fs::write(&tmp, bytes).is_ok() {
        let _ = std::fs::rename(&tmp, file);
    }
}

/// Compiles `profile`, or reads the result of an earlier compilation from `dir`.
pub fn compile_cached(dir: Option<&Path>, profile: &LinuxSeccomp) -> Result<Compiled, ProfileError> {
    let Some(dir) = dir else { return compile(profile) };
    let file = path(dir, &key(serde_json::to_string(profile).expect("profile serializes").as_bytes()));
    if let Some(c) = read(&file) {
        return Ok(c);
    }
    let compiled = compile(profile)?;
    store(dir, &file, &compiled);
    Ok(compiled)
}

/// Why a profile file gave no filter.
#[derive(Debug)]
pub enum FileError {
    Read(std::io::Error),
    Parse(serde_json::Error),
    /// It parsed, and this field under linux.seccomp is wrong.
    Profile(ProfileError),
}

/// The profile in `file` (a linux.seccomp object as JSON), compiled, or read from `dir` when
/// a file with the same bytes was compiled before: then the profile is not even parsed.
pub fn compile_file_cached(dir: &Path, file: &Path) -> Result<Compiled, FileError> {
    let text = std::fs::read(file).map_err(FileError::Read)?;
    let cached = path(dir, &key(&text));
    if let Some(c) = read(&cached) {
        return Ok(c);
    }
    let profile: LinuxSeccomp = serde_json::from_slice(&text).map_err(FileError::Parse)?;
    let compiled = compile(&profile).map_err(FileError::Profile)?;
    store(dir, &cached, &compiled);
    Ok(compiled)
}
