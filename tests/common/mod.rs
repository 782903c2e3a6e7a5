//! Shared fixture for the integration tests: each test gets its own state root, bundle,
//! rootfs and container ids, and a Drop guard that force-deletes its containers and then checks
//! that nothing is left (state directory, cgroup, mounts).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub config: Value,
    ids: Vec<String>,
}

pub fn hutch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hutch")
}

impl Fixture {
    /// A bundle with a fresh busybox rootfs and a runc-like config running `sh -c script`.
    pub fn new(script: &str) -> Fixture {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the integration tests start real containers: run them as root"
        );
        let dir = tempfile::Builder::new().prefix("hutch-test-").tempdir().unwrap();
        let root = dir.path().join("state");
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/mkrootfs.sh");
        let st = Command::new("bash").arg(mk).arg(bundle.join("rootfs")).status().unwrap();
        assert!(st.success(), "mkrootfs.sh failed");
        Fixture { dir, root, bundle, config: base_config(script), ids: Vec::new() }
    }

    /// Like `new`, but with the config `hutch spec` writes (the default profile and all).
    pub fn default_spec(script: &str) -> Fixture {
        let mut f = Fixture::new(script);
        let out = Command::new(hutch_bin()).args(["spec", "--bundle"]).arg(&f.bundle).output().unwrap();
        assert!(out.status.success(), "hutch spec: {}", String::from_utf8_lossy(&out.stderr));
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(f.bundle.join("config.json")).unwrap()).unwrap();
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["/bin/sh", "-c", script]);
        f.config = config;
        f
    }

    /// Puts /bin/crash in the rootfs: a static program that dies of SIGSEGV (the one way a
    /// namespace's pid 1 dies of a signal it raises itself).
    pub fn add_crash_program(&self) {
        let src = self.dir.path().join("crash.c");
        std::fs::write(&src, "int main(void) { volatile int *p = 0; return *p; }\n").unwrap();
        let out = Command::new("gcc")
            .args(["-static", "-O0", "-o"])
            .arg(self.rootfs().join("bin/crash"))
            .arg(&src)
            .output()
            .unwrap();
        assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    /// A new container id, unique across tests and test runs on this machine.
    pub fn id(&mut self) -> String {
        let id = format!("t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        self.ids.push(id.clone());
        id
    }

    pub fn write_config(&self) {
        std::fs::write(self.bundle.join("config.json"), serde_json::to_vec_pretty(&self.config).unwrap())
            .unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(hutch_bin());
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs hutch to completion. Output goes through files, not pipes: after `create` the
    /// container's init holds hutch's stdio, so a pipe would not reach EOF until it exits.
    pub fn hutch(&self, args: &[&str]) -> Output {
        capture(self.cmd(args))
    }

    /// Writes the config and runs it in the foreground; returns (exit code, stdout, stderr).
    pub fn run(&mut self) -> (i32, String, String) {
        self.write_config();
        let id = self.id();
        let out = self.hutch(&["run", "--bundle", self.bundle.to_str().unwrap(), &id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs and expects success; returns stdout.
    pub fn run_ok(&mut self) -> String {
        let (code, out, err) = self.run();
        assert_eq!(code, 0, "container failed: stdout {out:?} stderr {err:?}");
        out
    }

    /// Runs `create` and expects it to fail; returns stderr and checks nothing is left.
    pub fn create_fails(&mut self) -> String {
        self.write_config();
        let id = self.id();
        let out = self.hutch(&["create", "--bundle", self.bundle.to_str().unwrap(), &id]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "create should fail; stderr {err:?}");
        assert_eq!(out.status.code(), Some(1), "runc exits 1 on errors");
        self.assert_clean(&id);
        err
    }

    pub fn state(&self, id: &str) -> Value {
        let out = self.hutch(&["state", id]);
        assert!(out.status.success(), "state {id}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Nothing of container `id` remains: state, cgroups, mounts of this fixture, processes.
    pub fn assert_clean(&self, id: &str) {
        assert!(!self.root.join(id).exists(), "state directory of {id} left behind");
        for dir in cgroup_dirs(id) {
            assert!(!dir.exists(), "cgroup {} left behind", dir.display());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let here = self.dir.path().to_str().unwrap();
        assert!(!mounts.contains(here), "mount under {here} left behind");
        // A container process has this fixture's rootfs as its root (or still the host's root
        // with its cwd here, before pivot_root).
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            if stat.contains(") Z ") {
                continue;
            }
            for link in ["root", "cwd"] {
                if let Ok(p) = std::fs::read_link(entry.path().join(link)) {
                    assert!(
                        !p.starts_with(self.dir.path()),
                        "process {pid} left behind ({link} {})",
                        p.display()
                    );
                }
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            let _ = self.hutch(&["delete", "--force", &id]);
            if !std::thread::panicking() {
                self.assert_clean(&id);
            }
        }
    }
}

/// Whether the host runs pure cgroup v2 (as in the VM lane).
pub fn cgroup_v2() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup") && l.contains(" - cgroup2 "))
}

/// The cgroup directories a container with default cgroupsPath would have: one per v1
/// hierarchy and the cgroup2 mount of a hybrid host, or the one v2 directory.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    if cgroup_v2() {
        return vec![Path::new("/sys/fs/cgroup/hutch").join(id)];
    }
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("hutch").join(id)).collect())
        .unwrap_or_default()
}

/// The directory whose cgroup.procs lists every process of the container.
pub fn procs_dir(id: &str) -> PathBuf {
    if cgroup_v2() {
        Path::new("/sys/fs/cgroup/hutch").join(id)
    } else {
        Path::new("/sys/fs/cgroup/pids/hutch").join(id)
    }
}

/// A directory for a cgroup named `name` at the top of the pids hierarchy (or of v2).
pub fn top_cgroup(name: &str) -> PathBuf {
    if cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(name)
    } else {
        Path::new("/sys/fs/cgroup/pids").join(name)
    }
}

/// Receives one message and the descriptor that came with it on a unix socket.
pub fn recv_with_fd(conn: &std::os::unix::net::UnixStream) -> (Vec<u8>, std::os::fd::OwnedFd) {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut buf = vec![0u8; 65536];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("a descriptor with the message");
    let n = msg.bytes;
    buf.truncate(n);
    // SAFETY: the kernel just installed this descriptor for us.
    (buf, unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Like `Command::output`, through temporary files.
pub fn capture(mut cmd: Command) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    cmd.stdout(out.try_clone().unwrap()).stderr(err.try_clone().unwrap());
    let status = cmd.status().unwrap();
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output { status, stdout: read(out), stderr: read(err) }
}

pub fn base_config(script: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sh", "-c", script],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "hutch-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Removes namespace `typ` from the config.
pub fn drop_namespace(config: &mut Value, typ: &str) {
    config["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != typ);
}
