//! A private containerd for one test: Debian's containerd with its own config, root, state and
//! sockets under temporary directories, the busybox and pause images imported, and hutch's shim
//! (and runc's, for comparison) as runtimes. Dropping it removes everything the test made:
//! tasks, containers, images and snapshots, the daemon, its shims, mounts, cgroups and state.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const HUTCH: &str = "io.containerd.hutch.v2";
pub const RUNC: &str = "io.containerd.runc.v2";
pub const BUSYBOX: &str = "localhost/busybox:latest";
pub const PAUSE: &str = "localhost/pause:latest";

/// The directory holding both binaries: the shim looks for hutch beside itself, and containerd
/// finds the shim on PATH.
pub fn bin_dir() -> PathBuf {
    let shim = PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-hutch-v2"));
    let dir = shim.parent().expect("bin dir").to_path_buf();
    assert!(
        dir.join("hutch").exists(),
        "{}: no hutch binary beside the shim; build the workspace (cargo test --workspace)",
        dir.display()
    );
    dir
}

/// The image tars, built once per test binary by bundles/mkimage.sh.
pub fn images() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("images");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundles/mkimage.sh");
        let out = Command::new("bash").arg(&script).arg(&dir).output().expect("run mkimage.sh");
        assert!(out.status.success(), "mkimage.sh: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

pub struct Containerd {
    /// The test's name: containerd namespace, cgroup parent and directory names.
    pub ns: String,
    /// Config, root (images, snapshots), log.
    pub dir: tempfile::TempDir,
    /// Sockets and state: a short path (sun_path has 108 bytes).
    pub run: PathBuf,
    pub socket: PathBuf,
    daemon: Option<Child>,
}

impl Containerd {
    /// Starts containerd with the busybox image imported into namespace `ns` (and, for the
    /// CRI, both images into k8s.io).
    pub fn start(ns: &str) -> Containerd {
        let images = images();
        let dir = tempfile::Builder::new().prefix(&format!("hutch-ctd-{ns}-")).tempdir().expect("tempdir");
        let run = PathBuf::from(format!("/run/hc-{ns}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run).expect("run dir");
        std::fs::create_dir_all(dir.path().join("cni")).expect("cni dir");
        let socket = run.join("c.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{run}/state"
# opt creates /opt/containerd; the others cannot work here and only log noise.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{run}/t.sock"
[plugins."io.containerd.grpc.v1.cri"]
  # root here lacks CAP_SYS_RESOURCE: a lower oom_score_adj than containerd's fails.
  restrict_oom_score_adj = true
  stream_server_port = "0"
  sandbox_image = "{PAUSE}"
  # Pod network namespaces under the state dir, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    # Defining any runtime replaces the default map: runc must be named too.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "{RUNC}"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{run}/runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hutch]
      runtime_type = "{HUTCH}"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hutch.options]
        Root = "{run}/hutch"
"#,
            root = dir.path().join("root").display(),
            run = run.display(),
            socket = socket.display(),
            cni = dir.path().join("cni").display(),
        );
        std::fs::write(dir.path().join("config.toml"), config).expect("config");
        // A pod network for the CRI: ptp gives each pod a veth pair into its own namespace,
        // and takes it away at StopPodSandbox; no bridge to clean up.
        let cni = serde_json::json!({
            "cniVersion": "0.4.0", "name": format!("hutch-{ns}"),
            "plugins": [{"type": "ptp", "ipMasq": false, "ipam": {
                "type": "host-local", "subnet": format!("10.250.{}.0/24", std::process::id() % 250),
                "dataDir": dir.path().join("ipam")}}]
        });
        std::fs::write(dir.path().join("cni/10-hutch.conflist"), cni.to_string()).expect("cni conf");
        let mut c = Containerd { ns: ns.to_string(), dir, run, socket, daemon: None };
        c.start_daemon();
        c.ctr(&["images", "import", &images.join("busybox.tar").display().to_string()]).ok();
        c
    }

    /// Starts (or restarts) the daemon and waits until it answers.
    pub fn start_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("containerd.log"))
            .expect("log");
        let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("containerd (apt-get install containerd)");
        self.daemon = Some(child);
        let start = Instant::now();
        while !self.ctr_raw(&["version"]).status.success() {
            assert!(start.elapsed() < Duration::from_secs(10), "containerd did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon the hard way (SIGKILL), leaving its shims running.
    pub fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr -a SOCKET -n NS ARGS`, as it ran.
    pub fn ctr_raw(&self, args: &[&str]) -> Output {
        self.ctr_in(&self.ns, args)
    }

    pub fn ctr_in(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr")
    }

    /// `ctr ARGS`: stdout when it succeeded, else stderr.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let out = self.ctr_raw(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ctr {args:?}: {}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    /// The FIFO directory for ctr's I/O (default /run/containerd/fifo).
    pub fn fifo_dir(&self) -> String {
        self.run.join("fifo").display().to_string()
    }

    /// `ctr run --rm --runtime RUNTIME IMAGE ID ARGS`, as it ran.
    pub fn run(&self, runtime: &str, id: &str, args: &[&str]) -> Output {
        let fifo = self.fifo_dir();
        let mut a = vec!["run", "--rm", "--runtime", runtime, "--fifo-dir", &fifo];
        if runtime == RUNC {
            a.push("--runc-root");
        }
        let runc_root = self.run.join("runc").display().to_string();
        if runtime == RUNC {
            a.push(&runc_root);
        }
        a.extend([BUSYBOX, id]);
        a.extend(args);
        self.ctr_raw(&a)
    }

    /// `ctr run -d`: a task left running.
    pub fn run_detached(&self, runtime: &str, id: &str, args: &[&str]) {
        let fifo = self.fifo_dir();
        let mut a = vec!["run", "-d", "--runtime", runtime, "--fifo-dir", &fifo, BUSYBOX, id];
        a.extend(args);
        self.ctr(&a).unwrap();
    }

    /// The task's status column in `ctr task ls` (RUNNING, PAUSED, STOPPED...).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]).ok()?;
        out.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
        })
    }

    /// Where hutch keeps this test's container state (the runtime options' Root, per namespace).
    pub fn hutch_root(&self, ns: &str) -> PathBuf {
        PathBuf::from("/run/containerd/hutch").join(ns)
    }

    /// The pids of shims serving this containerd.
    pub fn shims(&self) -> Vec<i32> {
        let needle = format!("-address {}", self.socket.display());
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("containerd-shim") && cmdline.contains(&needle) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Mount points under this containerd's directories.
    pub fn mounts(&self) -> Vec<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let dirs = [self.dir.path().display().to_string(), self.run.display().to_string()];
        info.lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| dirs.iter().any(|d| m.starts_with(d.as_str())))
            .map(str::to_string)
            .collect()
    }

    /// Waits for `cond`, up to 10 s.
    pub fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cleanup(&mut self) {
        if self.daemon.is_none() {
            self.start_daemon();
        }
        let namespaces = self.ctr_raw(&["namespaces", "ls", "-q"]);
        for ns in String::from_utf8_lossy(&namespaces.stdout).lines() {
            let list = |what: &[&str]| {
                let out = self.ctr_in(ns, what);
                String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
            };
            for t in list(&["task", "ls", "-q"]) {
                self.ctr_in(ns, &["task", "rm", "-f", &t]);
            }
            for c in list(&["containers", "ls", "-q"]) {
                self.ctr_in(ns, &["containers", "rm", &c]);
            }
            for i in list(&["images", "ls", "-q"]) {
                self.ctr_in(ns, &["images", "rm", "--sync", &i]);
            }
            self.ctr_raw(&["namespaces", "rm", ns]);
            let _ = std::fs::remove_dir(self.hutch_root(ns));
            for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir(h.path().join(ns));
            }
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(d.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = d.wait();
        }
        // Shims go once their tasks are deleted; a test that failed half-way may leave one.
        let start = Instant::now();
        while !self.shims().is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in self.shims() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        for m in self.mounts().iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.run);
        // Made by shims and by hutch whatever the config; removed only when empty, as another
        // test's containerd may be using them.
        for d in ["/run/containerd/hutch", "/run/containerd/s", "/run/containerd"] {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.cleanup();
    }
}
