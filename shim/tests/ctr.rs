//! containerd-shim-hutch-v2 driven by a real containerd through `ctr`, as root: every test
//! starts its own containerd (tests/common) and leaves nothing behind.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Containerd, BUSYBOX, HUTCH, RUNC};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Nothing of the test's containers is left once containerd has deleted them: no hutch state,
/// no shim, no mount, no cgroup.
fn assert_clean(c: &Containerd) {
    c.wait_for("the shims to exit", || c.shims().is_empty());
    let root = c.hutch_root(&c.ns);
    let left: Vec<_> = std::fs::read_dir(&root).into_iter().flatten().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "hutch state left: {left:?}");
    let mounts: Vec<_> =
        c.mounts().into_iter().filter(|m| m.contains("io.containerd.runtime.v2.task")).collect();
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let ns_dir = h.path().join(&c.ns);
        let children: Vec<_> = std::fs::read_dir(&ns_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        assert!(children.is_empty(), "cgroups left: {children:?}");
    }
}

#[test]
fn run_passes_output_and_exit_codes_as_runc_shim_does() {
    let c = Containerd::start("shimrun");
    let out = c.run(HUTCH, "hello", &["echo", "hello"]);
    assert_eq!(text(&out.stdout), "hello\n", "stderr: {}", text(&out.stderr));
    assert!(out.status.success());

    let out = c.run(HUTCH, "streams", &["sh", "-c", "echo to-out; echo to-err >&2; exit 3"]);
    assert_eq!(text(&out.stdout), "to-out\n");
    assert!(text(&out.stderr).contains("to-err"), "{}", text(&out.stderr));
    let hutch_code = out.status.code();
    let runc_code = c.run(RUNC, "streams-runc", &["sh", "-c", "exit 3"]).status.code();
    assert_eq!(hutch_code, Some(3));
    assert_eq!(hutch_code, runc_code);

    // Output still in flight when the process exits (more than a pipe and a fifo hold) all
    // reaches the client: the exit is reported after it.
    let big = "head -c 400000 /dev/zero | tr '\\0' x; head -c 300000 /dev/zero | tr '\\0' y >&2; exit 5";
    let out = c.run(HUTCH, "big", &["sh", "-c", big]);
    assert_eq!(out.status.code(), Some(5), "stderr: {}", text(&out.stderr));
    assert_eq!((out.stdout.len(), out.stderr.len()), (400000, 300000));
    assert!(out.stdout.iter().all(|&b| b == b'x') && out.stderr.iter().all(|&b| b == b'y'));

    // A death by signal: 128 + signal, from both shims.
    let mut codes = Vec::new();
    for (runtime, id) in [(HUTCH, "killed"), (RUNC, "killed-runc")] {
        let fifo = c.fifo_dir();
        let runc_root = c.run.join("runc").display().to_string();
        let mut args = vec!["run", "--rm", "--runtime", runtime, "--fifo-dir", fifo.as_str()];
        if runtime == RUNC {
            args.extend(["--runc-root", runc_root.as_str()]);
        }
        args.extend([BUSYBOX, id, "sleep", "100"]);
        let mut run = Command::new("ctr")
            .arg("-a")
            .arg(&c.socket)
            .args(["-n", &c.ns])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        c.wait_for("the task to run", || c.task_status(id).as_deref() == Some("RUNNING"));
        c.ctr(&["task", "kill", "-s", "SIGKILL", id]).unwrap();
        codes.push(run.wait().unwrap().code());
    }
    assert_eq!(codes, [Some(137), Some(137)]);
    assert_clean(&c);
}

#[test]
fn exec_ps_pause_resume_metrics_kill() {
    let c = Containerd::start("shimops");
    c.run_detached(HUTCH, "bg", &["sleep", "1000"]);
    assert_eq!(c.task_status("bg").as_deref(), Some("RUNNING"));
    let fifo = c.fifo_dir();

    // exec: output and exit code come back; the process sees the container's pid namespace.
    let out = c.ctr_raw(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "x1",
        "bg",
        "sh",
        "-c",
        "echo pid1=$(cat /proc/1/comm); exit 5",
    ]);
    assert_eq!(text(&out.stdout), "pid1=sleep\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(5));

    // ps: the init, as a host pid.
    let ps = c.ctr(&["task", "ps", "bg"]).unwrap();
    let pids: Vec<i32> =
        ps.lines().skip(1).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    assert_eq!(pids.len(), 1, "{ps}");
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", pids[0])).unwrap();
    assert_eq!(comm.trim(), "sleep");

    // pause freezes the cgroup; resume thaws it.
    c.ctr(&["task", "pause", "bg"]).unwrap();
    assert_eq!(c.task_status("bg").as_deref(), Some("PAUSED"));
    let freezer = std::fs::read_to_string(format!("/sys/fs/cgroup/freezer/{}/bg/freezer.state", c.ns))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/{}/bg/cgroup.freeze", c.ns)))
        .unwrap();
    assert!(matches!(freezer.trim(), "FROZEN" | "1"), "{freezer}");
    c.ctr(&["task", "resume", "bg"]).unwrap();
    assert_eq!(c.task_status("bg").as_deref(), Some("RUNNING"));

    // metrics: the cgroup's figures (ctr prints memory, cpu and pids rows).
    let m = c.ctr(&["task", "metrics", "bg"]).unwrap();
    let value = |key: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or_else(|| panic!("no {key} in {m}"))
    };
    assert_eq!(value("pids.current"), 1, "{m}");
    assert!(value("memory.usage_in_bytes") > 0, "{m}");
    assert!(value("cpuacct.usage") > 0, "{m}");

    // kill: SIGKILL stops the task (busybox sleep as pid 1 ignores SIGTERM).
    c.ctr(&["task", "kill", "-s", "SIGKILL", "bg"]).unwrap();
    c.wait_for("the task to stop", || c.task_status("bg").as_deref() == Some("STOPPED"));
    c.ctr(&["task", "rm", "bg"]).unwrap();
    c.ctr(&["containers", "rm", "bg"]).unwrap();
    assert_clean(&c);
}

/// Opens a pty pair sized `rows` x `cols`: (master, slave).
fn pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let ws = nix::pty::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    let p = nix::pty::openpty(Some(&ws), None).unwrap();
    // Not inherited by what the other tests spawn meanwhile (openpty has no O_CLOEXEC).
    for fd in [&p.master, &p.slave] {
        nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).unwrap();
    }
    (p.master, p.slave)
}

#[test]
fn terminal_task_gets_a_pty_input_and_the_clients_size() {
    let c = Containerd::start("shimtty");
    let (master, slave) = pty(33, 91);
    let fifo = c.fifo_dir();
    // ctr resizes the task's pty to its own terminal's size after start: wait for it (busybox's
    // `stty size` exits 0 even when it cannot tell).
    let script = "until stty size 2>/dev/null | grep -q '^[1-9]'; do sleep 0.05; done; stty size; tty; \
                  read x; echo got $x; exit 4";
    let mut run = Command::new("ctr")
        .arg("-a")
        .arg(&c.socket)
        .args(["-n", &c.ns, "run", "--rm", "-t", "--runtime", HUTCH, "--fifo-dir", &fifo, BUSYBOX, "tty1"])
        .args(["sh", "-c", script])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut m = std::fs::File::from(master);
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut sent = false;
    while !text(&seen).contains("got") {
        assert!(start.elapsed() < Duration::from_secs(20), "no answer; so far: {:?}", text(&seen));
        let mut fds = [nix::poll::PollFd::new(m.as_fd(), nix::poll::PollFlags::POLLIN)];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap() > 0 {
            let mut buf = [0u8; 1024];
            match m.read(&mut buf) {
                Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        if !sent && text(&seen).contains("/dev/pts/") {
            m.write_all(b"typed\r").unwrap();
            sent = true;
        }
    }
    let status = run.wait().unwrap();
    let seen = text(&seen);
    assert!(seen.contains("33 91"), "the pty did not get the client's size: {seen:?}");
    // The exit follows the output: ctr 1.6 stops reading when it learns of the exit.
    assert!(seen.contains("got typed"), "{seen:?}, ctr {status}");
    assert_eq!(status.code(), Some(4));
    assert_clean(&c);
}

#[test]
fn oom_kill_is_published_as_a_task_oom_event() {
    let c = Containerd::start("shimoom");
    let mut events =
        Command::new("ctr").arg("-a").arg(&c.socket).arg("events").stdout(Stdio::piped()).spawn().unwrap();
    let stdout = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let fifo = c.fifo_dir();
    let out = c.ctr_raw(&[
        "run",
        "--rm",
        "--memory-limit",
        "33554432",
        "--runtime",
        HUTCH,
        "--fifo-dir",
        &fifo,
        BUSYBOX,
        "hog",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    // The run's last event is the container's delete.
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("/containers/delete") && l.contains("\"hog\"")) {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => log.push(l),
            Err(_) => panic!("events ended early:\n{}", log.join("\n")),
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    let log = log.join("\n");
    let line = |topic: &str| log.lines().position(|l| l.contains(topic) && l.contains("\"hog\""));
    let oom = line("/tasks/oom").unwrap_or_else(|| panic!("no /tasks/oom for hog in:\n{log}"));
    let exit = line("/tasks/exit").unwrap_or_else(|| panic!("no /tasks/exit in:\n{log}"));
    let start = line("/tasks/start").unwrap_or_else(|| panic!("no /tasks/start in:\n{log}"));
    assert!(start < oom && oom < exit, "events out of order (start, oom, exit):\n{log}");
    assert_clean(&c);
}

#[test]
fn bad_input_fails_clearly_and_leaves_nothing() {
    let c = Containerd::start("shimbad");
    let out = c.run(HUTCH, "nobin", &["/no/such/program"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("/no/such/program"), "the error should name the program: {err}");
    c.ctr(&["containers", "rm", "nobin"]).ok();
    assert_clean(&c);
}

#[test]
fn tasks_survive_a_containerd_restart() {
    let mut c = Containerd::start("shimrestart");
    c.run_detached(HUTCH, "keep", &["sleep", "1000"]);
    let shims = c.shims();
    assert_eq!(shims.len(), 1);
    c.kill_daemon();
    c.start_daemon();
    // containerd reconnects to the shim it finds in the bundle's address file.
    assert_eq!(c.task_status("keep").as_deref(), Some("RUNNING"));
    assert_eq!(c.shims(), shims);
    let fifo = c.fifo_dir();
    let out =
        c.ctr_raw(&["task", "exec", "--fifo-dir", &fifo, "--exec-id", "after", "keep", "echo", "still here"]);
    assert_eq!(text(&out.stdout), "still here\n", "{}", text(&out.stderr));
    c.ctr(&["task", "kill", "-s", "SIGKILL", "keep"]).unwrap();
    c.wait_for("the task to stop", || c.task_status("keep").as_deref() == Some("STOPPED"));
    c.ctr(&["task", "rm", "keep"]).unwrap();
    c.ctr(&["containers", "rm", "keep"]).unwrap();
    assert_clean(&c);
}
