//! Device rules on cgroup v2: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE, built from
//! the OCI rules and attached to the container's cgroup (v2 has no devices controller).
//!
//! The kernel calls the program with `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
//! u32 minor; }`, where access_type is `(access << 16) | type`. The program tries the rules from
//! last to first (a later rule overrides an earlier one, as with the v1 controller) and returns
//! 1 (allow) or 0 (deny) for the first that matches; nothing matching means deny.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

// The few opcodes the program needs.
const fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x61, dst, src, off, 0) // BPF_LDX | BPF_MEM | BPF_W
}
const fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0) // BPF_ALU64 | BPF_MOV | BPF_X
}
const fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm) // BPF_ALU64 | BPF_MOV | BPF_K
}
const fn and_imm(dst: u8, imm: i32) -> Insn {
    insn(0x57, dst, 0, 0, imm) // BPF_ALU64 | BPF_AND | BPF_K
}
const fn rsh_imm(dst: u8, imm: i32) -> Insn {
    insn(0x77, dst, 0, 0, imm) // BPF_ALU64 | BPF_RSH | BPF_K
}
const fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x55, dst, 0, off, imm) // BPF_JMP | BPF_JNE | BPF_K
}
const fn jne_reg(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x5d, dst, src, off, 0) // BPF_JMP | BPF_JNE | BPF_X
}
const fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0) // BPF_JMP | BPF_EXIT
}

/// Compiles the rules into a program. Registers: r2 type, r3 access, r4 major, r5 minor.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, String> {
    let mut prog = vec![
        ldx_w(2, 1, 0),
        and_imm(2, 0xffff),
        ldx_w(3, 1, 0),
        rsh_imm(3, 16),
        ldx_w(4, 1, 4),
        ldx_w(5, 1, 8),
    ];
    for (i, rule) in rules.iter().enumerate().rev() {
        let mut block = Vec::new();
        let typ = rule.typ().unwrap_or(LinuxDeviceType::A);
        match typ {
            LinuxDeviceType::A => {}
            LinuxDeviceType::B => block.push(jne_imm(2, DEV_BLOCK, 0)),
            LinuxDeviceType::C | LinuxDeviceType::U => block.push(jne_imm(2, DEV_CHAR, 0)),
            LinuxDeviceType::P => continue, // FIFOs are never checked by the device cgroup
        }
        let access = parse_access(rule.access().as_deref().unwrap_or("rwm"))
            .map_err(|e| format!("linux.resources.devices[{i}].access: {e}"))?;
        if access != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Every bit asked for must be in the rule: (r3 & access) == r3.
            block.push(mov_reg(1, 3));
            block.push(and_imm(1, access));
            block.push(jne_reg(1, 3, 0));
        }
        if let Some(major) = rule.major().filter(|m| *m >= 0) {
            block.push(jne_imm(4, major as i32, 0));
        }
        if let Some(minor) = rule.minor().filter(|m| *m >= 0) {
            block.push(jne_imm(5, minor as i32, 0));
        }
        let unconditional = block.is_empty();
        block.push(mov_imm(0, rule.allow() as i32));
        block.push(exit());
        // Each conditional jump skips to the end of this block: the next rule.
        let len = block.len();
        for (at, ins) in block.iter_mut().enumerate() {
            if ins.code == 0x55 || ins.code == 0x5d {
                ins.off = (len - at - 1) as i16;
            }
        }
        prog.extend(block);
        // A rule that matches everything ends the program: the verifier refuses unreachable
        // instructions, and no earlier rule could ever be reached.
        if unconditional {
            return Ok(prog);
        }
    }
    prog.push(mov_imm(0, 0));
    prog.push(exit());
    Ok(prog)
}

fn parse_access(s: &str) -> Result<i32, String> {
    let mut a = 0;
    for c in s.chars() {
        a |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(format!("{s:?}: only r, w and m")),
        };
    }
    Ok(a)
}

fn bpf(cmd: libc::c_int, attr: &mut [u64; 16]) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a zeroed, large-enough bpf_attr image for this command.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(attr)) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`. The kernel
/// keeps it attached for as long as the cgroup exists.
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), String> {
    let prog = program(rules)?;
    let license = c"Apache-2.0";
    // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
    // log_size, log_buf. Loaded without a verifier log first: a log too small for the program
    // fails the load (ENOSPC); the log is only asked for to explain a refusal.
    let load = |log: Option<&mut Vec<u8>>| {
        let mut attr = [0u64; 16];
        attr[0] = BPF_PROG_TYPE_CGROUP_DEVICE as u64 | ((prog.len() as u64) << 32);
        attr[1] = prog.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        if let Some(log) = log {
            attr[3] = 1 | ((log.len() as u64) << 32);
            attr[4] = log.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    let fd = load(None).map_err(|e| {
        let mut log = vec![0u8; 1 << 20];
        let _ = load(Some(&mut log));
        let text = String::from_utf8_lossy(&log);
        let tail: String =
            text.trim_end_matches('\0').trim().lines().rev().take(5).collect::<Vec<_>>().join(" / ");
        format!("load device program: {e}: {tail}")
    })?;
    // SAFETY: BPF_PROG_LOAD returned a new descriptor.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(dir).map_err(|e| format!("open {}: {e}", dir.display()))?;
    // BPF_PROG_ATTACH: target_fd, attach_bpf_fd, attach_type, attach_flags.
    let mut attr = [0u64; 16];
    attr[0] = cg.as_raw_fd() as u64 | ((prog_fd.as_raw_fd() as u64) << 32);
    attr[1] = BPF_CGROUP_DEVICE as u64 | ((BPF_F_ALLOW_MULTI as u64) << 32);
    bpf(BPF_PROG_ATTACH, &mut attr)
        .map_err(|e| format!("attach device program to {}: {e}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).typ(typ).access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    /// Runs the program the way the kernel would, on one request.
    fn eval(prog: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let ctx = [((access << 16) | typ) as u32, major as u32, minor as u32];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                0x61 => r[dst] = ctx[i.off as usize / 4] as i64,
                0xbf => r[dst] = r[src],
                0xb7 => r[dst] = i.imm as i64,
                0x57 => r[dst] &= i.imm as i64,
                0x77 => r[dst] >>= i.imm,
                0x55 if r[dst] != i.imm as i64 => pc += i.off as usize,
                0x5d if r[dst] != r[src] => pc += i.off as usize,
                0x55 | 0x5d => {}
                0x95 => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn later_rules_win_and_the_default_is_deny() {
        let rules = [
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::C, Some(136), None, "rw"),
            rule(true, LinuxDeviceType::C, None, None, "m"),
        ];
        let p = program(&rules).unwrap();
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 3), 1, "null");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 1), 0, "mem");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 7), 1, "pts");
        assert_eq!(eval(&p, DEV_CHAR, ACC_MKNOD, 136, 7), 1, "mknod of any char device");
        assert_eq!(eval(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 0, "no block mknod");
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 10, 200), 0, "tun not listed");
        assert_eq!(eval(&program(&[]).unwrap(), DEV_CHAR, ACC_READ, 1, 3), 0, "no rules: deny");
    }

    #[test]
    fn a_deny_after_an_allow_wins() {
        let rules = [
            rule(true, LinuxDeviceType::A, None, None, "rwm"),
            rule(false, LinuxDeviceType::C, Some(1), Some(9), "w"),
        ];
        let p = program(&rules).unwrap();
        assert_eq!(eval(&p, DEV_CHAR, ACC_READ, 1, 9), 1);
        assert_eq!(eval(&p, DEV_CHAR, ACC_WRITE, 1, 9), 0);
    }

    /// The real kernel: a process in a cgroup2 cgroup with the program cannot open a device the
    /// rules leave out. Runs wherever a cgroup2 hierarchy is mounted (hybrid hosts too).
    #[test]
    fn the_kernel_enforces_the_program() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let Some(mount) = super::super::unified::mount_point() else { return };
        let dir = mount.join(format!("hutch-devtest-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let rules = [
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(5), "r"),
        ];
        let attached = attach(&dir, &rules);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && head -c1 /dev/zero >/dev/null && echo zero-ok; head -c1 /dev/urandom >/dev/null && echo urandom-ok; exit 0",
                dir.display()
            ))
            .output()
            .unwrap();
        let _ = std::fs::remove_dir(&dir);
        attached.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("zero-ok"), "{text} {err}");
        assert!(!text.contains("urandom-ok"), "{text}");
        assert!(err.contains("Operation not permitted"), "{err}");
    }
}
