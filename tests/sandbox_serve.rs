//! `hutch sandbox serve`: warm runs over the line protocol, each as isolated as a one-shot run,
//! and a thousand of them leave nothing behind.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{hutch_bin, Fixture};
use serde_json::{json, Value};

/// A running `hutch sandbox serve` speaking over its stdin and stdout.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    root: PathBuf,
}

impl Server {
    fn start(f: &Fixture, extra: &[&str]) -> Server {
        let mut cmd = Command::new(hutch_bin());
        cmd.arg("--root").arg(&f.root).args(["sandbox", "serve", "--rootfs"]).arg(f.rootfs()).args(extra);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Server { child, stdin, stdout, root: f.root.clone() }
    }

    fn send(&mut self, req: &Value) {
        let w = self.stdin.as_mut().expect("stdin open");
        writeln!(w, "{req}").unwrap();
        w.flush().unwrap();
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "the server closed its output");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn call(&mut self, req: Value) -> Value {
        self.send(&req);
        self.recv()
    }

    fn id(&self) -> String {
        format!("serve-{}", self.child.id())
    }

    /// Closes stdin and waits for the server to finish and clean up.
    fn finish(mut self) -> (String, i32) {
        let id = self.id();
        drop(self.stdin.take());
        let code = wait_timeout(&mut self.child, Duration::from_secs(20)).expect("server did not exit");
        (id, code)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            // The server could not clean up: do it for it.
            let _ = Command::new(hutch_bin())
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", &format!("serve-{}", self.child.id())])
                .status();
        }
    }
}

fn wait_timeout(child: &mut Child, t: Duration) -> Option<i32> {
    let end = Instant::now() + t;
    while Instant::now() < end {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Everything a server made is gone: its state, its cgroups, its processes.
fn nothing_left(f: &Fixture, id: &str) {
    let state = f.root.join("sandbox").join(id);
    assert!(!state.exists(), "state {} left", state.display());
    for hier in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let parent = hier.path().join("hutch");
        for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(id), "cgroup {} left", e.path().display());
        }
    }
    if common::cgroup_v2() {
        for e in std::fs::read_dir("/sys/fs/cgroup/hutch").into_iter().flatten().flatten() {
            assert!(!e.file_name().to_string_lossy().starts_with(id), "cgroup {} left", e.path().display());
        }
    }
    let left = members(id);
    assert!(left.is_empty(), "processes left: {left:?}");
}

#[test]
fn runs_pass_exit_codes_output_and_stdin_through() {
    let f = Fixture::new("");
    let mut s = Server::start(&f, &["--concurrency", "1"]);
    let r = s.call(json!({"id": "a", "args": ["sh", "-c", "echo out; echo err >&2; exit 3"]}));
    assert_eq!(r["id"], "a");
    assert_eq!(r["status"], "exited", "{r}");
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["stdout"]["data"], "out\n");
    assert_eq!(r["stderr"]["data"], "err\n");
    let r = s.call(json!({"id": 2, "args": ["cat"], "stdin": "fed in"}));
    assert_eq!(r["stdout"]["data"], "fed in");
    // The program is its namespace's pid 1, which only signals from the kernel or from
    // outside can kill: a crash.
    f.add_crash_program();
    let r = s.call(json!({"id": 3, "args": ["/bin/crash"]}));
    assert_eq!(r["status"], "signaled", "{r}");
    assert_eq!(r["signal"], 11);
    let r = s.call(json!({"args": ["sh", "-c", "echo $FOO; pwd"], "env": ["FOO=bar"], "cwd": "/tmp"}));
    assert_eq!(r["stdout"]["data"], "bar\n/tmp\n");
    let (id, code) = s.finish();
    assert_eq!(code, 0);
    nothing_left(&f, &id);
}

#[test]
fn bad_requests_and_missing_programs_are_setup_errors() {
    let f = Fixture::new("");
    let mut s = Server::start(&f, &[]);
    let r = s.call(json!({"id": 1, "args": ["/no/such/program"]}));
    assert_eq!(r["status"], "setup_error", "{r}");
    assert_eq!(r["setup_error"]["stage"], "init");
    assert!(r["setup_error"]["cause"].as_str().unwrap().contains("/no/such/program"), "{r}");
    let r = s.call(json!({"id": 2, "argz": ["true"]}));
    assert_eq!(r["status"], "setup_error");
    assert!(r["setup_error"]["cause"].as_str().unwrap().contains("argz"), "{r}");
    let r = s.call(json!({"id": 3, "args": ["true"], "timeout": "soon"}));
    assert!(r["setup_error"]["cause"].as_str().unwrap().contains("timeout"), "{r}");
    let r = s.call(json!({"id": 4, "args": ["true"], "cwd": "relative"}));
    assert!(r["setup_error"]["cause"].as_str().unwrap().contains("cwd"), "{r}");
    // The server goes on after all of them.
    let r = s.call(json!({"id": 5, "args": ["true"]}));
    assert_eq!(r["status"], "exited");
    let (id, _) = s.finish();
    nothing_left(&f, &id);
}

#[test]
fn each_run_has_its_own_pid_1_and_a_clean_tmp() {
    let f = Fixture::new("");
    let mut s = Server::start(&f, &["--concurrency", "2"]);
    for i in 0..5 {
        let r = s.call(json!({"id": i, "args": ["sh", "-c",
            "echo $$; ls -A /tmp; touch /tmp/left; echo /proc/[0-9]*; hostname"]}));
        assert_eq!(r["status"], "exited", "{r}");
        // pid 1, nothing in /tmp from the run before, no process but its own.
        assert_eq!(r["stdout"]["data"], "1\n/proc/1\nsandbox\n", "run {i}: {r}");
    }
    // /dev is shared between runs, so it is read-only.
    let r = s.call(json!({"args": ["sh", "-c", "touch /dev/x"]}));
    assert_ne!(r["exit_code"], 0, "{r}");
    let (id, _) = s.finish();
    nothing_left(&f, &id);
}

#[test]
fn a_timeout_kills_the_run_and_its_daemons() {
    let f = Fixture::new("");
    let mut s = Server::start(&f, &[]);
    let r = s.call(json!({"id": 1, "args": ["sh", "-c", "setsid sleep 1000 & echo started; sleep 100"],
        "timeout": "200ms"}));
    assert_eq!(r["status"], "timeout", "{r}");
    let wall = r["wall_ms"].as_f64().unwrap();
    assert!((200.0..300.0).contains(&wall), "wall_ms {wall}");
    assert_eq!(r["stdout"]["data"], "started\n");
    // The slot is clean for the next run: only the server's own zygote is left.
    let r = s.call(json!({"id": 2, "args": ["true"]}));
    assert_eq!(r["status"], "exited");
    let (id, _) = s.finish();
    nothing_left(&f, &id);
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
    let mut parts = release.split(['.', '-']).filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

/// Processes (pid, comm) in the cgroups of server `id`: its zygote's and its slots'.
fn members(id: &str) -> Vec<(String, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cgroup"))
                .is_ok_and(|c| c.lines().any(|l| l.contains(&format!("/hutch/{id}"))))
        })
        .map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), comm.trim().to_string())
        })
        .collect()
}

#[test]
fn runs_overlap_up_to_the_concurrency() {
    let f = Fixture::new("");
    let mut s = Server::start(&f, &["--concurrency", "2"]);
    for i in 0..4 {
        s.send(&json!({"id": i, "args": ["sleep", "2"]}));
    }
    // Two run at once, never more, while four are asked for: watched until the first two
    // have started and for a while after.
    let mut most = 0;
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        most = most.max(members(&s.id()).iter().filter(|(_, comm)| comm == "sleep").count());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(most, 2, "runs at once");
    let mut ids: Vec<i64> = (0..4).map(|_| s.recv()["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, [0, 1, 2, 3]);
    let (id, _) = s.finish();
    nothing_left(&f, &id);
}

#[test]
fn limits_hold_in_warm_runs() {
    let f = Fixture::new("");
    let mut s = Server::start(&f, &["--memory", "32M", "--pids", "16", "--stdout-limit", "1K"]);
    let r = s.call(json!({"args": ["sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo done"]}));
    assert_eq!(r["status"], "oom", "{r}");
    let r = s.call(json!({"args": ["sh", "-c", "for i in $(seq 40); do sleep 0.2 & done; wait"]}));
    assert!(r["stderr"]["data"].as_str().unwrap().contains("can't fork"), "{r}");
    let r = s.call(json!({"args": ["yes"], "timeout": "300ms"}));
    let bytes = r["stdout"]["bytes"].as_u64().unwrap();
    assert!(bytes > 1024, "stdout bytes {bytes}");
    assert_eq!(r["stdout"]["data"].as_str().unwrap().len(), 1024);
    assert_eq!(r["stdout"]["truncated"], true);
    // Per-run measurements start from zero in a reused slot (on cgroup v2, memory.peak can be
    // reset from kernel 6.12 on).
    let r = s.call(json!({"args": ["true"]}));
    assert_eq!(r["status"], "exited");
    if !common::cgroup_v2() || kernel_at_least(6, 12) {
        assert!(r["peak_memory_bytes"].as_u64().unwrap() < 16 << 20, "{r}");
    }
    let (id, _) = s.finish();
    nothing_left(&f, &id);
}

#[test]
fn the_socket_serves_clients_and_sigterm_cleans_up() {
    let f = Fixture::new("");
    let sock = f.dir.path().join("serve.sock");
    let mut s = Server::start(&f, &["--socket", sock.to_str().unwrap()]);
    let end = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut clients: Vec<UnixStream> = (0..2).map(|_| UnixStream::connect(&sock).unwrap()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        writeln!(c, "{}", json!({"id": i, "args": ["sh", "-c", format!("echo client {i}")]})).unwrap();
    }
    for (i, c) in clients.iter().enumerate() {
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).unwrap();
        let r: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(r["id"], i);
        assert_eq!(r["stdout"]["data"], format!("client {i}\n"));
    }
    // stdin's end does not stop a server with a socket; SIGTERM does, and it cleans up.
    drop(s.stdin.take());
    std::thread::sleep(Duration::from_millis(100));
    assert!(s.child.try_wait().unwrap().is_none(), "the server stopped at stdin's end");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.child.id() as i32), nix::sys::signal::SIGTERM)
        .unwrap();
    let id = s.id();
    let code = wait_timeout(&mut s.child, Duration::from_secs(20)).expect("server did not stop");
    assert_ne!(code, 0);
    assert!(!sock.exists(), "socket left");
    nothing_left(&f, &id);
}

/// A census taken once the server is idle: a run's last descriptors close just after its
/// result is sent, so two equal readings in a row are waited for.
fn settled_census(server: u32) -> Vec<usize> {
    let mut last = census(server);
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(20));
        let now = census(server);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// Counts what a leak would grow: the server's and the zygote's descriptors, the zygote's
/// mounts, the processes under the server, and the host's mounts.
fn census(server: u32) -> Vec<usize> {
    let count = |p: &Path| std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
    let children: Vec<u32> = std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let zygote = children.first().copied().expect("the zygote");
    let mut descendants = 0;
    let mut stack = children.clone();
    while let Some(p) = stack.pop() {
        descendants += 1;
        for t in std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            stack.extend(kids.split_whitespace().filter_map(|k| k.parse::<u32>().ok()));
        }
    }
    let lines = |p: String| std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0);
    vec![
        count(Path::new(&format!("/proc/{server}/fd"))),
        count(Path::new(&format!("/proc/{zygote}/fd"))),
        lines(format!("/proc/{zygote}/mountinfo")),
        descendants,
        lines("/proc/self/mountinfo".into()),
    ]
}

#[test]
fn a_thousand_runs_leak_nothing() {
    let f = Fixture::new("");
    let mut s = Server::start(&f, &["--concurrency", "2"]);
    // Both slots once (each makes its network namespace on first use).
    for i in 0..10 {
        s.send(&json!({"id": i, "args": ["true"]}));
    }
    for _ in 0..10 {
        assert_eq!(s.recv()["status"], "exited");
    }
    let before = settled_census(s.child.id());
    // Pipelined, as a harness would: the server queues what it cannot start yet.
    let mut sent = 0;
    let mut got = 0;
    while got < 1000 {
        while sent < 1000 && sent - got < 8 {
            let args = if sent % 2 == 0 {
                json!(["true"])
            } else {
                json!(["sh", "-c", "echo x > /tmp/f; sleep 0 & cat /tmp/f"])
            };
            s.send(&json!({"id": sent, "args": args}));
            sent += 1;
        }
        let r = s.recv();
        assert_eq!(r["status"], "exited", "{r}");
        got += 1;
    }
    let after = settled_census(s.child.id());
    assert_eq!(before, after, "[server fds, zygote fds, zygote mounts, processes, host mounts]");
    let (id, code) = s.finish();
    assert_eq!(code, 0);
    nothing_left(&f, &id);
}

#[test]
fn warm_runs_take_loopback_networking_and_cpu_time_limits() {
    let f = Fixture::new("");
    // Generous CPU time: the loopback run retries its connection (slowly, in the emulated VM lane).
    let mut s = Server::start(&f, &["--net", "loopback", "--cpu-time", "2s"]);
    let r = s.call(json!({"args": ["sh", "-c",
        "(echo hello | nc -l -p 8080 &); for i in $(seq 50); do nc 127.0.0.1 8080 </dev/null 2>/dev/null && break; sleep 0.1; done"]}));
    assert_eq!(r["stdout"]["data"], "hello\n", "{r}");
    let r = s.call(json!({"args": ["sh", "-c", "while :; do :; done"], "timeout": "10s"}));
    assert_eq!(r["status"], "timeout", "{r}");
    assert_eq!(r["limit"], "cpu_time");
    let (id, _) = s.finish();
    nothing_left(&f, &id);
}
