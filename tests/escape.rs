//! The escape and abuse suite: from inside a container made from the config `hutch spec` writes,
//! try what an attacker would, and assert the exact failure (errno or signal).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::Fixture;
use serde_json::json;

/// A static probe that makes one raw attempt and prints "NAME: ok" or "NAME: <errno text>".
const PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <signal.h>
#include <unistd.h>
static int report(const char *what, long r) {
    if (r < 0) printf("%s: %s\n", what, strerror(errno)); else printf("%s: ok\n", what);
    return 0;
}
int main(int argc, char **argv) {
    const char *w = argv[1];
    if (!strcmp(w, "mount")) return report(w, mount("none", "/mnt", "tmpfs", 0, NULL));
    if (!strcmp(w, "umount")) return report(w, umount2(argv[2], MNT_DETACH));
    if (!strcmp(w, "mknod")) return report(w, mknod("/dev/shm/sda", S_IFBLK | 0600, makedev(8, 0)));
    if (!strcmp(w, "keyctl")) return report(w, syscall(SYS_keyctl, 1 /* JOIN_SESSION_KEYRING */, "hutch"));
    if (!strcmp(w, "finit_module")) {
        int fd = open("/bin/busybox", O_RDONLY);
        return report(w, syscall(SYS_finit_module, fd, "", 0));
    }
    if (!strcmp(w, "unshare")) return report(w, unshare(CLONE_NEWUSER));
    if (!strcmp(w, "bpf")) return report(w, syscall(SYS_bpf, 5 /* PROG_LOAD */, NULL, 0));
    if (!strcmp(w, "kill")) return report(w, kill(atoi(argv[2]), 0));
    if (!strcmp(w, "ptrace")) return report(w, ptrace(PTRACE_ATTACH, atoi(argv[2]), 0, 0));
    if (!strcmp(w, "x32")) return report(w, syscall(0x40000000 | SYS_getpid));
    if (!strcmp(w, "int80")) {
        long r;
        asm volatile ("int $0x80" : "=a"(r) : "a"(20 /* i386 getpid */) : "memory");
        return report(w, r);
    }
    printf("unknown probe %s\n", w);
    return 2;
}
"#;

/// The probe, compiled once per test run, into cargo's scratch directory for tests (a build
/// product under target/, not a file left in the host's /tmp).
fn probe() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("escape-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("probe.c"), PROBE).unwrap();
        let out = std::process::Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(dir.join("probe"))
            .arg(dir.join("probe.c"))
            .output()
            .unwrap();
        assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
        dir.join("probe")
    })
}

/// A default-config container with the probe at /bin/probe.
fn attacker(script: &str) -> Fixture {
    let f = Fixture::default_spec(script);
    std::fs::copy(probe(), f.rootfs().join("bin/probe")).unwrap();
    f
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn mounting_and_unmounting_are_refused() {
    let mut f = attacker("probe mount; probe umount /proc/kcore; probe umount /proc/sys");
    let out = f.run_ok();
    assert_eq!(
        lines(&out),
        [
            "mount: Operation not permitted",
            "umount: Operation not permitted",
            "umount: Operation not permitted"
        ]
    );
}

#[test]
fn host_processes_cannot_be_signalled_or_traced() {
    let mut victim = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let pid = victim.id();
    let mut f = attacker(&format!("probe kill {pid}; probe ptrace {pid}"));
    let out = f.run_ok();
    let alive = victim.try_wait().unwrap().is_none();
    let _ = victim.kill();
    let _ = victim.wait();
    assert_eq!(lines(&out), ["kill: No such process", "ptrace: Operation not permitted"]);
    assert!(alive);
}

#[test]
fn host_files_are_out_of_reach_through_proc() {
    let marker = std::env::temp_dir().join(format!("hutch-escape-marker-{}", std::process::id()));
    std::fs::write(&marker, "host secret").unwrap();
    let m = marker.display();
    let mut f = attacker(&format!(
        "cat /proc/1/root{m}; cat /proc/self/root{m}; readlink /proc/1/root; ls /proc/1/root | grep -c work"
    ));
    let (_, out, err) = f.run();
    let _ = std::fs::remove_file(&marker);
    assert!(!out.contains("host secret"), "{out}");
    assert_eq!(err.matches("No such file or directory").count(), 2, "{err}");
    assert!(out.starts_with("/\n0\n"), "{out}");
}

#[test]
fn no_host_descriptor_reaches_the_container() {
    use std::os::fd::AsRawFd;
    let secret = std::env::temp_dir().join(format!("hutch-escape-fd-{}", std::process::id()));
    std::fs::write(&secret, "host secret").unwrap();
    let file = std::fs::File::open(&secret).unwrap();
    // Inherited by hutch on purpose (not close-on-exec), as a careless caller might.
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
    let mut f = attacker("ls /proc/self/fd; for fd in /proc/self/fd/*; do readlink $fd; done; true");
    let (code, out, err) = f.run();
    let _ = std::fs::remove_file(&secret);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("hutch-escape-fd"), "a host descriptor leaked: {out}");
    let fds: Vec<&str> = out.lines().take_while(|l| !l.starts_with('/') && !l.contains(':')).collect();
    assert!(
        fds.iter().all(|fd| ["0", "1", "2", "3"].contains(fd)),
        "fds {fds:?} (fd {} was open)",
        file.as_raw_fd()
    );
}

#[test]
fn device_nodes_cannot_be_made() {
    let mut f = attacker("probe mknod");
    assert_eq!(f.run_ok(), "mknod: Operation not permitted\n");
}

#[test]
fn proc_sys_and_sys_are_read_only() {
    let mut f = attacker("echo x > /proc/sys/kernel/hostname; echo 1 > /sys/kernel/profiling; echo done");
    let (code, out, err) = f.run();
    assert_eq!(code, 0);
    assert_eq!(out, "done\n");
    assert_eq!(err.matches("Read-only file system").count(), 2, "{err}");
}

#[test]
fn kernel_modules_keyrings_bpf_and_namespaces_are_refused() {
    let mut f = attacker("probe finit_module; probe keyctl; probe bpf; probe unshare");
    let out = f.run_ok();
    assert_eq!(
        lines(&out),
        [
            "finit_module: Operation not permitted",
            "keyctl: Operation not permitted",
            "bpf: Operation not permitted",
            "unshare: Operation not permitted"
        ]
    );
}

#[test]
fn other_syscall_abis_are_refused() {
    // Even getpid, which the profile allows: the ABI filter kills x32 and int 0x80 callers.
    let mut f = attacker("probe x32; echo x32=$?; probe int80; echo int80=$?");
    let out = f.run_ok();
    assert_eq!(lines(&out), ["x32=159", "int80=159"]);
}

#[test]
fn the_runtime_binary_is_unreachable_through_proc_exe() {
    // A startContainer hook runs in the container while init is still hutch's binary (it has
    // not exec'd yet): it must not be able to reach init's /proc/<pid>/exe.
    let mut f = attacker("echo started");
    f.config["root"]["readonly"] = json!(false); // for the hook's report file
    f.config["hooks"] = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c",
        "readlink /proc/1/exe > /tmp/hook.out 2>&1; echo rc=$? >> /tmp/hook.out; cat /proc/1/exe > /dev/null 2>> /tmp/hook.out; true"]}]});
    let before = std::fs::metadata(common::hutch_bin()).unwrap();
    assert_eq!(f.run_ok(), "started\n");
    let hook = std::fs::read_to_string(f.rootfs().join("tmp/hook.out")).unwrap();
    assert!(hook.contains("Permission denied") && hook.contains("rc=1"), "{hook}");
    assert!(!hook.contains("hutch"), "{hook}");
    let after = std::fs::metadata(common::hutch_bin()).unwrap();
    assert_eq!((before.ino(), before.size(), before.mtime()), (after.ino(), after.size(), after.mtime()));
}

#[test]
fn default_capabilities_and_no_new_privs() {
    let mut f =
        attacker("grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status");
    let out = f.run_ok();
    // CAP_KILL, CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE and nothing else; no way to gain more.
    for want in [
        "CapPrm:\t0000000020000420",
        "CapEff:\t0000000020000420",
        "CapBnd:\t0000000020000420",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(out.contains(want), "{want} missing: {out}");
    }
}

#[test]
fn a_bundle_changed_during_setup_cannot_redirect_a_mount() {
    // CVE-2021-30465's class: while containers are being made, a host thread keeps swapping
    // /mnt/race between a directory and a symlink that climbs out to a victim directory.
    let mut f = attacker("true");
    let victim = f.dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let race = f.rootfs().join("mnt/race");
    std::fs::create_dir_all(&race).unwrap();
    let up = "../".repeat(f.rootfs().components().count() + 3);
    let target = format!("{up}{}", victim.display());
    f.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/mnt/race/sub", "type": "tmpfs", "source": "tmpfs"}));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, race) = (stop.clone(), race.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_dir_all(&race);
                let _ = std::os::unix::fs::symlink(&target, &race);
                std::thread::yield_now();
                let _ = std::fs::remove_file(&race);
                let _ = std::fs::create_dir(&race);
            }
        })
    };
    let mut outcomes = (0, 0);
    for _ in 0..40 {
        let (code, _, _) = f.run();
        if code == 0 {
            outcomes.0 += 1
        } else {
            outcomes.1 += 1
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(victim.to_str().unwrap()), "a mount escaped to the victim");
    assert!(std::fs::read_dir(&victim).unwrap().next().is_none(), "something was created in the victim");
    eprintln!("race outcomes: {} made, {} refused", outcomes.0, outcomes.1);
}

#[test]
fn writes_outside_the_landlock_policy_are_refused() {
    if unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) } < 1 {
        eprintln!("skipped: no Landlock on this kernel");
        return;
    }
    // The default config with a writable root, so that only Landlock stands in the way.
    let mut f = attacker("echo x > /tmp/ok && echo tmp-ok; echo x > /etc/evil; ln -s /tmp/ok /bin/evil; mkdir /root/evil; true");
    f.config["root"]["readonly"] = json!(false);
    f.config["annotations"] = json!({"io.github.hutch.landlock": json!({
        "mode": "required",
        "fs": [{"path": "/", "access": ["read", "execute"]}, {"path": "/tmp", "access": ["read", "write"]},
               {"path": "/dev", "access": ["read", "write-file"]}]}).to_string()});
    let (code, out, err) = f.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "tmp-ok\n");
    assert_eq!(err.matches("Permission denied").count(), 3, "{err}");
    for p in ["etc/evil", "bin/evil", "root/evil"] {
        assert!(!f.rootfs().join(p).exists(), "{p} was written");
    }
}

#[test]
fn a_rootfs_dev_symlink_cannot_redirect_a_default_device() {
    // The rootfs brings its own /dev (no tmpfs over it) where null is a symlink to one of its
    // files; in a user namespace the host's node is bound in. The bind covers the symlink
    // itself: the container's /dev/null is the null device and the file is untouched.
    let mut f =
        attacker("stat -c '%F %t,%T' /dev/null; echo ok > /dev/null && echo wrote; cat /etc/victim; true");
    f.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev") && m["type"] != "cgroup");
    f.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    f.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 400000, "size": 65536}]);
    f.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 400000, "size": 65536}]);
    let dev = f.rootfs().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    // The container's root owns its /dev, where the other nodes' mount points are made.
    std::os::unix::fs::chown(&dev, Some(400000), Some(400000)).unwrap();
    let _ = std::fs::remove_file(dev.join("null"));
    std::os::unix::fs::symlink("/etc/victim", dev.join("null")).unwrap();
    std::fs::write(f.rootfs().join("etc/victim"), "victim untouched\n").unwrap();
    let out = f.run_ok();
    assert_eq!(lines(&out), ["character special file 1,3", "wrote", "victim untouched"], "{out}");
}
