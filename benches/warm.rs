//! Warm-mode throughput: isolated executions of `/bin/true` per second through
//! `hutch sandbox serve` (the default profile), one request at a time (sequential), and with
//! requests pipelined at concurrency 1 and 2. Every run gets its own pid, mount, UTS, IPC and
//! cgroup namespaces, a fresh /proc and /tmp, the seccomp filter and Landlock.
//!
//! `cargo bench --bench warm` (as root). HUTCH_BENCH_EXECS sets the runs per case (2000).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("warm bench: needs root");
        return;
    }
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"warm".contains(a.as_str())) {
        return;
    }
    let execs: usize = std::env::var("HUTCH_BENCH_EXECS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let dir = tempfile::Builder::new().prefix("hutch-bench-").tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    let mk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/mkrootfs.sh");
    assert!(Command::new("bash").arg(mk).arg(&rootfs).status().unwrap().success());

    println!("warm: /bin/true through `hutch sandbox serve`, {execs} runs per case");
    for (name, concurrency, in_flight) in
        [("sequential", 1, 1), ("pipelined c=1", 1, 4), ("pipelined c=2", 2, 8)]
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hutch"))
            .arg("--root")
            .arg(dir.path().join("state"))
            .args(["sandbox", "serve", "--concurrency", &concurrency.to_string(), "--rootfs"])
            .arg(&rootfs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let mut output = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut exchange = |n: usize, input: &mut std::process::ChildStdin| {
            let (mut sent, mut got) = (0, 0);
            while got < n {
                while sent < n && sent - got < in_flight {
                    writeln!(input, r#"{{"id":{sent},"args":["/bin/true"]}}"#).unwrap();
                    sent += 1;
                }
                input.flush().unwrap();
                line.clear();
                assert!(output.read_line(&mut line).unwrap() > 0, "server ended");
                assert!(line.contains(r#""status":"exited""#), "{line}");
                got += 1;
            }
        };
        // Warm-up: every slot makes its network namespace on first use.
        exchange(20, &mut input);
        let t = Instant::now();
        exchange(execs, &mut input);
        let took = t.elapsed().as_secs_f64();
        println!(
            "  {name:15} {:7.0} executions/s  ({:.2} ms each)",
            execs as f64 / took,
            took * 1e3 / execs as f64
        );
        drop(input);
        assert!(child.wait().unwrap().success());
    }
}
