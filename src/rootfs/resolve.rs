//! Resolving a container path inside the root filesystem without ever leaving it.
//!
//! Most paths take one `openat2(RESOLVE_BENEATH)`, in which the kernel refuses every step out
//! of the root (`beneath`); the rest take the walk, which also makes missing components.
//! The walk goes one component at a time from a directory descriptor with O_NOFOLLOW, so a
//! symlink is only ever followed by us, under our rules: an absolute target restarts at the
//! container's root (as the container would see it), and a `..` that would climb above the root
//! is refused. The result is an O_PATH descriptor; callers mount onto `/proc/self/fd/N`, so a
//! path swapped for a symlink after the walk (CVE-2021-30465) cannot redirect the mount.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, mknodat, Mode, SFlag};

const MAX_SYMLINKS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// The path must exist.
    No,
    /// Create missing components as directories.
    Dir,
    /// Create missing parents as directories and the last component as an empty file.
    File,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("symlink {link:?} leads out of the root filesystem")]
    Escape { link: PathBuf },
    #[error("too many symlinks")]
    Loop,
    #[error("{at:?}: {errno}")]
    Sys { at: PathBuf, errno: Errno },
}

/// Resolves `path` under `root` and returns an O_PATH descriptor for it.
pub fn resolve(root: BorrowedFd<'_>, path: &Path, create: Create) -> Result<OwnedFd, ResolveError> {
    match beneath(root, path) {
        Ok(fd) => return Ok(fd),
        // Most often only the last component is missing (a mount point, a node in a new /dev).
        Err(Errno::ENOENT) if create != Create::No => {
            if let Some(fd) = make_last(root, path, create) {
                return Ok(fd);
            }
        }
        // Final: the walk would stop at the same missing component (it differs only where
        // openat2 refuses with EXDEV). Masked paths the kernel lacks take this way.
        Err(Errno::ENOENT) => return Err(ResolveError::Sys { at: path.to_path_buf(), errno: Errno::ENOENT }),
        Err(_) => {}
    }
    walk(root, path, create)
}

/// A file `name` directly in `dir`, a directory already resolved: made empty if missing, and
/// opened without following a symlink there (a mount onto the descriptor then covers the
/// symlink itself, inside the root). Two system calls where `resolve` from the root takes
/// four for each default device node.
pub fn file_in(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    match mknodat(dir, name, SFlag::S_IFREG, Mode::from_bits_truncate(0o644), 0) {
        Ok(()) | Err(Errno::EEXIST) => open_nofollow(dir, name),
        Err(e) => Err(e),
    }
}

/// The common case in one system call: openat2 with RESOLVE_BENEATH, where the kernel itself
/// refuses every step out of `root` (a `..` above it, an absolute or a /proc magic link). What
/// it cannot do (make missing components, follow an absolute link from the root, name what
/// went wrong) is left to `walk`, whose answer is then the same. A start resolves some forty
/// paths; walking each costs two system calls per component.
fn beneath(root: BorrowedFd<'_>, path: &Path) -> nix::Result<OwnedFd> {
    use nix::fcntl::{openat2, OpenHow, ResolveFlag};
    let relative = path.strip_prefix("/").unwrap_or(path);
    if relative.as_os_str().is_empty() {
        return dup_path(root);
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, relative, how)
}

/// Makes the missing last component of `path` in its parent, found `beneath` the root, and
/// opens it the same way; `None` leaves it to the walk.
fn make_last(root: BorrowedFd<'_>, path: &Path, create: Create) -> Option<OwnedFd> {
    let name = match path.components().next_back() {
        Some(Component::Normal(name)) => name,
        _ => return None,
    };
    let parent = beneath(root, path.parent()?).ok()?;
    let made = match create {
        Create::File => mknodat(parent.as_fd(), name, SFlag::S_IFREG, Mode::from_bits_truncate(0o644), 0),
        _ => mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755)),
    };
    match made {
        Ok(()) | Err(Errno::EEXIST) => beneath(root, path).ok(),
        Err(_) => None,
    }
}

/// The walk, one component at a time (see the module's comment).
fn walk(root: BorrowedFd<'_>, path: &Path, create: Create) -> Result<OwnedFd, ResolveError> {
    let mut queue: VecDeque<OsString> = components(path);
    // Directories walked so far, below root; `..` pops one.
    let mut stack: Vec<OwnedFd> = Vec::new();
    // The path walked so far, as the container sees it, for messages.
    let mut seen = PathBuf::from("/");
    let mut links = 0;
    let sys = |at: &Path, errno| ResolveError::Sys { at: at.to_path_buf(), errno };

    if queue.is_empty() {
        return dup_path(root).map_err(|e| sys(&seen, e));
    }
    while let Some(name) = queue.pop_front() {
        if name == ".." {
            if stack.pop().is_none() {
                return Err(ResolveError::Escape { link: seen });
            }
            seen.pop();
            continue;
        }
        let last = queue.is_empty();
        let dir = stack.last().map(|fd| fd.as_fd()).unwrap_or(root);
        let here = seen.join(&name);
        let fd = match open_nofollow(dir, &name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create != Create::No => {
                let made = if last && create == Create::File {
                    mknodat(dir, name.as_os_str(), SFlag::S_IFREG, Mode::from_bits_truncate(0o644), 0)
                } else {
                    mkdirat(dir, name.as_os_str(), Mode::from_bits_truncate(0o755))
                };
                match made {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys(&here, e)),
                }
                open_nofollow(dir, &name).map_err(|e| sys(&here, e))?
            }
            Err(e) => return Err(sys(&here, e)),
        };
        let st = fstat(fd.as_fd()).map_err(|e| sys(&here, e))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(ResolveError::Loop);
            }
            let target = readlinkat(fd.as_fd(), "").map_err(|e| sys(&here, e))?;
            let target = PathBuf::from(target);
            if target.is_absolute() {
                stack.clear();
                seen = PathBuf::from("/");
            }
            let mut rest = components(&target);
            // A relative `..` walk that climbs above the root is an escape, named by the link.
            if !target.is_absolute() && climbs_above(&rest, stack.len()) {
                return Err(ResolveError::Escape { link: here });
            }
            rest.extend(queue.drain(..));
            queue = rest;
            continue;
        }
        seen = here;
        if last {
            return Ok(fd);
        }
        if kind != SFlag::S_IFDIR {
            return Err(sys(&seen, Errno::ENOTDIR));
        }
        stack.push(fd);
    }
    // The path ended in `..` or a symlink to a directory already on the stack.
    match stack.pop() {
        Some(fd) => Ok(fd),
        None => dup_path(root).map_err(|e| sys(&seen, e)),
    }
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Whether following `rest` from `depth` levels below the root goes above it at any point.
fn climbs_above(rest: &VecDeque<OsString>, depth: usize) -> bool {
    let mut d = depth as isize;
    for c in rest {
        if c == ".." {
            d -= 1;
            if d < 0 {
                return true;
            }
        } else {
            d += 1;
        }
    }
    false
}

fn open_nofollow(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

fn dup_path(fd: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    openat(fd, ".", OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_DIRECTORY, Mode::empty())
}

/// The magic path through which the kernel reaches the object behind `fd`.
pub fn proc_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The path of a resolved object as the host sees it (for messages only).
pub fn display(fd: &impl AsRawFd) -> String {
    std::fs::read_link(proc_path(fd))
        .map(|p| String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned())
        .unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let fd = openat(
            nix::fcntl::AT_FDCWD,
            dir.path(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (dir, fd)
    }

    fn target(fd: &OwnedFd) -> PathBuf {
        fs::read_link(proc_path(fd)).unwrap()
    }

    #[test]
    fn creates_missing_dirs_and_files() {
        let (dir, fd) = root();
        let r = resolve(fd.as_fd(), Path::new("/a/b/c"), Create::Dir).unwrap();
        assert_eq!(target(&r), dir.path().join("a/b/c"));
        let r = resolve(fd.as_fd(), Path::new("/a/f"), Create::File).unwrap();
        assert!(dir.path().join("a/f").is_file());
        assert_eq!(target(&r), dir.path().join("a/f"));
    }

    #[test]
    fn absolute_symlink_stays_inside() {
        let (dir, fd) = root();
        fs::create_dir(dir.path().join("etc")).unwrap();
        symlink("/etc", dir.path().join("link")).unwrap();
        let r = resolve(fd.as_fd(), Path::new("/link"), Create::No).unwrap();
        assert_eq!(target(&r), dir.path().join("etc"));
    }

    #[test]
    fn dotdot_symlink_out_is_refused() {
        let (dir, fd) = root();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        symlink("../../../../etc", dir.path().join("mnt/evil")).unwrap();
        let err = resolve(fd.as_fd(), Path::new("/mnt/evil"), Create::Dir).unwrap_err();
        assert!(matches!(err, ResolveError::Escape { .. }), "{err}");
        assert!(err.to_string().contains("/mnt/evil"), "{err}");
    }

    #[test]
    fn relative_symlink_within_is_followed() {
        let (dir, fd) = root();
        fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        symlink("usr/lib", dir.path().join("lib")).unwrap();
        let r = resolve(fd.as_fd(), Path::new("/lib/x"), Create::Dir).unwrap();
        assert_eq!(target(&r), dir.path().join("usr/lib/x"));
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let (dir, fd) = root();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        assert!(matches!(resolve(fd.as_fd(), Path::new("/a"), Create::No), Err(ResolveError::Loop)));
    }

    #[test]
    fn one_call_finds_what_the_walk_finds_or_leaves_it_to_the_walk() {
        let (dir, fd) = root();
        fs::create_dir_all(dir.path().join("usr/lib/x")).unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        symlink("usr/lib", dir.path().join("lib")).unwrap();
        symlink("../etc", dir.path().join("usr/up")).unwrap();
        symlink("/etc", dir.path().join("abs")).unwrap();
        for path in ["/lib/x", "/usr/lib/../lib/x", "/usr/up", "lib"] {
            let fast = beneath(fd.as_fd(), Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
            let walked = walk(fd.as_fd(), Path::new(path), Create::No).unwrap();
            assert_eq!(target(&fast), target(&walked), "{path}");
        }
        // An absolute link (the walk restarts it at the root), a climb above the root and a
        // missing component are the walk's.
        for path in ["/abs", "/../etc", "/usr/../../etc", "/missing"] {
            assert!(beneath(fd.as_fd(), Path::new(path)).is_err(), "{path}");
        }
    }

    #[test]
    fn missing_is_missing_both_ways() {
        let (dir, fd) = root();
        fs::create_dir(dir.path().join("etc")).unwrap();
        symlink("/etc", dir.path().join("abs")).unwrap();
        symlink("etc/none", dir.path().join("dangling")).unwrap();
        // The first two end in openat2's ENOENT, the last goes through an absolute link, which
        // only the walk follows, to the same answer.
        for path in ["/etc/none", "/dangling", "/abs/none"] {
            let walked = walk(fd.as_fd(), Path::new(path), Create::No);
            assert!(matches!(walked, Err(ResolveError::Sys { errno: Errno::ENOENT, .. })), "{path}");
            let resolved = resolve(fd.as_fd(), Path::new(path), Create::No);
            assert!(matches!(resolved, Err(ResolveError::Sys { errno: Errno::ENOENT, .. })), "{path}");
        }
    }

    #[test]
    fn dotdot_in_the_path_itself_cannot_escape() {
        let (_dir, fd) = root();
        let err = resolve(fd.as_fd(), Path::new("/../../etc"), Create::No).unwrap_err();
        assert!(matches!(err, ResolveError::Escape { .. }));
    }
}
