//! Security claims, proven by trying the abuse from inside a container: seccomp (every action,
//! argument filters, the x32 and int 0x80 ABIs, NOTIFY with a real agent, loading without
//! no_new_privs).

mod common;

use std::os::unix::net::UnixListener;
use std::path::Path;

use common::Fixture;
use serde_json::{json, Value};

/// Compiles `src` statically into the rootfs as /bin/NAME (gcc is on these machines).
fn c_program(f: &Fixture, name: &str, src: &str) {
    let c = f.dir.path().join(format!("{name}.c"));
    std::fs::write(&c, src).unwrap();
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(f.rootfs().join("bin").join(name))
        .arg(&c)
        .output()
        .unwrap();
    assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
}

/// Calls mkdir("/tmp/x") through the ABI named in argv[1] and prints the result.
const ABI_PROBE: &str = r#"
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    long r;
    static const char path[] = "/tmp/x";
    if (!strcmp(argv[1], "x32")) {
        r = syscall(0x40000000 | 83, path, 0755);            /* x32 mkdir */
    } else if (!strcmp(argv[1], "int80")) {
        /* i386 mkdir (39) through int 0x80; the path must be addressable in 32 bits */
        static char low[16];
        strcpy(low, path);
        asm volatile ("int $0x80" : "=a"(r) : "a"(39), "b"(low), "c"(0755) : "memory");
        if (r < 0) { errno = -r; r = -1; }
    } else {
        r = syscall(SYS_mkdir, path, 0755);
    }
    printf("%s: %ld %s\n", argv[1], r, r < 0 ? strerror(errno) : "ok");
    return 0;
}
"#;

fn deny_mkdir(f: &mut Fixture) {
    f.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]
    });
}

#[test]
fn a_denied_syscall_fails_with_the_profiles_errno() {
    let mut f = Fixture::new("mkdir /tmp/x; grep Seccomp: /proc/self/status");
    deny_mkdir(&mut f);
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(!f.rootfs().join("tmp/x").exists());
}

#[test]
fn the_x32_and_int80_abis_cannot_bypass_a_denial() {
    let mut f = Fixture::new("/bin/abi native; /bin/abi x32; echo x32=$?; /bin/abi int80; echo int80=$?");
    c_program(&f, "abi", ABI_PROBE);
    deny_mkdir(&mut f);
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("native: -1 Permission denied"), "{out}");
    // The other ABIs are refused outright: SIGSYS, 128 + 31.
    assert!(out.contains("x32=159"), "{out}");
    assert!(out.contains("int80=159"), "{out}");
    assert!(!f.rootfs().join("tmp/x").exists(), "a bypass created the directory");
}

#[test]
fn kill_trap_and_argument_filters() {
    // busybox runs some applets inside the shell itself: `sh -c` keeps the kill in a child.
    let mut f = Fixture::new("sh -c sync; echo sync=$?; nice -n 5 true; echo nice=$?; true");
    f.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["sync"], "action": "SCMP_ACT_KILL_PROCESS"},
            // setpriority(PRIO_PROCESS, 0, prio) is refused unless prio is 0.
            {"names": ["setpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 2, "value": 0, "op": "SCMP_CMP_NE"}]}
        ]
    });
    let out = f.run_ok();
    assert!(out.contains("sync=159"), "{out}");
    assert!(out.contains("nice=1") || out.contains("nice=2"), "{out}");
}

#[test]
fn an_allowlist_with_an_errno_default() {
    // Enough for busybox sh and echo; anything else gets ENOSYS.
    let allowed = [
        "read",
        "write",
        "close",
        "fstat",
        "newfstatat",
        "lseek",
        "mmap",
        "mprotect",
        "munmap",
        "brk",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "ioctl",
        "access",
        "execve",
        "exit",
        "exit_group",
        "arch_prctl",
        "set_tid_address",
        "getpid",
        "getppid",
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "uname",
        "fcntl",
        "openat",
        "getcwd",
        "prlimit64",
        "set_robust_list",
        "rseq",
        "wait4",
        "dup2",
        "stat",
        "open",
        "getrandom",
        "sigaltstack",
        "futex",
        "mkdir",
        "clone",
        "clone3",
        "vfork",
    ];
    let mut f = Fixture::new("echo inside; mkdir /tmp/y && echo made; chmod 700 /tmp/y; echo chmod=$?");
    f.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "syscalls": [{"names": allowed.to_vec(), "action": "SCMP_ACT_ALLOW"}]
    });
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("inside") && out.contains("made"), "{out}");
    assert!(out.contains("chmod=1") && err.contains("Function not implemented"), "{out} {err}");
}

#[test]
fn loaded_without_no_new_privs_while_privileged() {
    let mut f = Fixture::new("grep -E 'NoNewPrivs|Seccomp:' /proc/self/status; mkdir /tmp/z");
    f.config["process"]["noNewPrivileges"] = json!(false);
    deny_mkdir(&mut f);
    let (_, out, err) = f.run();
    assert!(out.contains("NoNewPrivs:\t0") && out.contains("Seccomp:\t2"), "{out}");
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let mut f = Fixture::new("echo fine");
    f.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_ERRNO"}]
    });
    assert_eq!(f.run_ok(), "fine\n");
}

#[test]
fn a_bad_profile_names_its_field() {
    let mut f = Fixture::new("true");
    f.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    });
    let err = f.create_fails();
    assert!(err.contains("linux.seccomp.syscalls[0].args[0]"), "{err}");
    f.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_SOMETIMES"});
    let err = f.create_fails();
    assert!(err.contains("linux.seccomp.defaultAction"), "{err}");
}

#[test]
fn compiled_profiles_are_cached() {
    let mut f = Fixture::new("true");
    deny_mkdir(&mut f);
    f.run_ok();
    let cache = f.root.join(".seccomp-cache");
    let entries = || std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries(), 1);
    f.run_ok();
    assert_eq!(entries(), 1, "the same profile reuses its entry");
    f.config["linux"]["seccomp"]["syscalls"][0]["errnoRet"] = json!(1);
    f.run_ok();
    assert_eq!(entries(), 2);
}

/// A seccomp agent: takes the listener from hutch, answers one notification with EACCES.
fn agent(sock: &Path) -> std::thread::JoinHandle<(Value, i32)> {
    let listener = UnixListener::bind(sock).unwrap();
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let (conn, _) = listener.accept().unwrap();
        let (bytes, listener) = common::recv_with_fd(&conn);
        let fd = listener.as_raw_fd();
        let state: Value = serde_json::from_slice(&bytes).unwrap();
        // SECCOMP_IOCTL_NOTIF_RECV / SEND
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) };
        assert_eq!(rc, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
        let resp = libc::seccomp_notif_resp { id: req.id, val: 0, error: -libc::EACCES, flags: 0 };
        let rc = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
        assert_eq!(rc, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
        (state, req.data.nr)
    })
}

fn notify_test(no_new_privs: bool) {
    let mut f = Fixture::new("mkdir /tmp/n; echo mkdir=$?");
    let sock = f.dir.path().join("agent.sock");
    let handle = agent(&sock);
    f.config["process"]["noNewPrivileges"] = json!(no_new_privs);
    f.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock, "listenerMetadata": "from-the-test",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{out} {err}");
    let (state, nr) = handle.join().unwrap();
    assert!(err.contains("Permission denied"), "the agent's answer reaches the container: {err}");
    assert!(out.contains("mkdir=1"), "{out}");
    assert!(nr == libc::SYS_mkdir as i32 || nr == libc::SYS_mkdirat as i32, "nr {nr}");
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "from-the-test");
    assert!(state["state"]["id"].as_str().unwrap().starts_with('t'), "{state}");
    assert!(state["pid"].as_i64().unwrap() > 0);
}

#[test]
fn notify_hands_the_listener_to_the_agent() {
    notify_test(true);
}

#[test]
fn notify_without_no_new_privs() {
    notify_test(false);
}

const LANDLOCK: &str = "io.github.hutch.landlock";

fn kernel_landlock_abi() -> i64 {
    unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) }.max(0)
}

#[test]
fn landlock_confines_writes_to_the_policy() {
    if kernel_landlock_abi() < 1 {
        eprintln!("skipped: no Landlock on this kernel");
        return;
    }
    let mut f = Fixture::new(
        "echo x > /tmp/allowed && echo tmp-ok; echo x > /root/denied; mkdir /etc/denied; cat /etc/passwd > /dev/null && echo read-ok; true",
    );
    f.config["annotations"] = json!({ LANDLOCK: json!({
        "mode": "best-effort",
        "fs": [{"path": "/", "access": ["read", "execute"]}, {"path": "/tmp", "access": ["read", "write"]},
               {"path": "/dev", "access": ["read", "write-file"]}]
    }).to_string() });
    f.write_config();
    let id = f.id();
    let out = f.hutch(&["create", "--bundle", f.bundle.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let state = f.state(&id);
    // "write" includes truncate (ABI 3): an older kernel (the VM lane's 6.1 has ABI 2) enforces
    // the rest, and state says so.
    let want = if kernel_landlock_abi() >= 3 { "fully-enforced" } else { "partially-enforced" };
    assert_eq!(state["annotations"][format!("{LANDLOCK}.status")], want, "{state}");
    assert!(f.hutch(&["delete", &id]).status.success());
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tmp-ok") && out.contains("read-ok"), "{out}");
    assert_eq!(err.matches("Permission denied").count(), 2, "{err}");
    assert!(f.rootfs().join("tmp/allowed").exists() && !f.rootfs().join("root/denied").exists());
}

#[test]
fn landlock_limits_tcp_ports() {
    if kernel_landlock_abi() < 4 {
        eprintln!("skipped: Landlock ABI < 4 here");
        return;
    }
    let mut f = Fixture::new(
        "ip link set lo up 2>/dev/null; nc -l -p 8080 -w 1 & sleep 0.2; nc -l -p 9090 -w 1; echo bind9090=$?; true",
    );
    f.config["process"]["capabilities"] = json!({"bounding": ["CAP_NET_ADMIN"], "effective": ["CAP_NET_ADMIN"], "permitted": ["CAP_NET_ADMIN"]});
    f.config["annotations"] =
        json!({ LANDLOCK: json!({"net": {"bind": [8080], "connect": []}}).to_string() });
    let (_, out, err) = f.run();
    assert!(err.contains("Permission denied"), "{err}");
    assert!(out.contains("bind9090=1"), "{out}");
    assert_eq!(err.matches("Permission denied").count(), 1, "only 9090 is refused: {err}");
}

#[test]
fn landlock_required_mode_needs_the_kernel_to_enforce_everything() {
    let mut f = Fixture::new("echo enforced");
    f.config["annotations"] = json!({ LANDLOCK: json!({"mode": "required", "fs": [{"path": "/", "access": ["read", "execute", "write"]}],
                                "net": {"bind": []}}).to_string() });
    if kernel_landlock_abi() >= 4 {
        assert_eq!(f.run_ok(), "enforced\n");
    } else {
        // e.g. Debian's 6.1 kernel in the VM lane: ABI 2.
        let err = f.create_fails();
        assert!(
            err.contains(&format!("annotations.{LANDLOCK}")) && err.contains("needs Landlock ABI 4"),
            "{err}"
        );
    }
}

#[test]
fn a_bad_landlock_policy_names_its_field() {
    let mut f = Fixture::new("true");
    f.config["annotations"] = json!({ LANDLOCK: r#"{"fs": [{"path": "/", "access": ["teleport"]}]}"# });
    let err = f.create_fails();
    assert!(
        err.contains(&format!("annotations.{LANDLOCK}.fs[0].access[0]")) && err.contains("teleport"),
        "{err}"
    );
}
