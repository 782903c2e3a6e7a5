//! Finding the program to run and executing it.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};
use oci_spec::runtime::Process;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Program {
    pub path: PathBuf,
    args: Vec<CString>,
    env: Vec<CString>,
}

impl Program {
    /// Resolves `args[0]` as the container sees it: a path if it has a slash, else the first
    /// executable match in the PATH of `process.env` (as runc does).
    pub fn find(process: &Process) -> Result<Program, String> {
        let args = process.args().as_deref().unwrap_or_default();
        let arg0 = args.first().ok_or("no program")?;
        let mut env: Vec<String> = process.env().clone().unwrap_or_default();
        if !env.iter().any(|kv| kv.starts_with("HOME=")) {
            env.push(format!("HOME={}", home_of(process.user().uid())));
        }
        let path = if arg0.contains('/') {
            let p = PathBuf::from(arg0);
            check_executable(&p)?;
            p
        } else {
            let search = env.iter().find_map(|kv| kv.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
            search
                .split(':')
                .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(arg0))
                .find(|p| check_executable(p).is_ok())
                .ok_or_else(|| format!("{arg0:?}: executable file not found in $PATH"))?
        };
        Ok(Program {
            path,
            args: args.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?,
            env: env.iter().map(|a| cstring(a)).collect::<Result<_, _>>()?,
        })
    }
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

fn check_executable(p: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", p.display()));
    }
    access(p, AccessFlags::X_OK).map_err(|e| format!("{}: {e}", p.display()))
}

/// HOME for a uid from the container's /etc/passwd, "/" when it has none.
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let f: Vec<&str> = line.split(':').collect();
                (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// Replaces this process with the program; returns only on failure.
pub fn execve(prog: &Program) -> nix::Error {
    let path = match CString::new(OsStr::as_bytes(prog.path.as_os_str())) {
        Ok(p) => p,
        Err(_) => return nix::Error::EINVAL,
    };
    match nix::unistd::execve(&path, &prog.args, &prog.env) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}
