//! Differential test: hutch's compiled seccomp filters against libseccomp's for the same
//! profiles, over every x86_64 syscall number, many argument values, and the other ABIs. Both
//! programs run in hutch's classic BPF evaluator; libseccomp is a dev-dependency only.

use std::io::{Read, Seek};

use hutch::seccomp::eval::{decide, precedence, Data};
use hutch::seccomp::{compile, Insn, AUDIT_ARCH_X86_64};
use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction as A, LinuxSeccompOperator as Op};

fn action(a: A, errno: Option<u32>) -> ScmpAction {
    match a {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        A::ScmpActNotify => ScmpAction::Notify,
        A::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(0) as u16),
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
    }
}

/// The same profile through libseccomp, exported as BPF.
fn libseccomp_bpf(p: &LinuxSeccomp) -> Vec<Insn> {
    let default = action(p.default_action(), p.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).unwrap();
    // hutch refuses other ABIs by killing the process; ask libseccomp for the same.
    ctx.set_act_badarch(ScmpAction::KillProcess).unwrap();
    for rule in p.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            continue; // libseccomp refuses rules that repeat the default; they change nothing
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let (op, datum) = match a.op() {
                    Op::ScmpCmpNe => (ScmpCompareOp::NotEqual, a.value()),
                    Op::ScmpCmpLt => (ScmpCompareOp::Less, a.value()),
                    Op::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, a.value()),
                    Op::ScmpCmpEq => (ScmpCompareOp::Equal, a.value()),
                    Op::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, a.value()),
                    Op::ScmpCmpGt => (ScmpCompareOp::Greater, a.value()),
                    Op::ScmpCmpMaskedEq => {
                        (ScmpCompareOp::MaskedEqual(a.value()), a.value_two().unwrap_or(0))
                    }
                };
                ScmpArgCompare::new(a.index() as u32, op, datum)
            })
            .collect();
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else { continue };
            ctx.add_rule_conditional(act, sc, &conds).unwrap();
        }
    }
    let mut file = tempfile::tempfile().unwrap();
    ctx.export_bpf(&file).unwrap();
    file.rewind().unwrap();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    bytes
        .chunks(8)
        .map(|c| Insn {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

fn compare(name: &str, profile: &LinuxSeccomp) {
    let ours = compile(profile).unwrap();
    let theirs = libseccomp_bpf(profile);
    let values = [0u64, 1, 8, 40, 0x20000, 0x20008, 0x7e02_0000, 0xffff_ffff, 1 << 32, u64::MAX];
    let mut checked = 0;
    let mut cases: Vec<Data> = Vec::new();
    for nr in 0..460u32 {
        for (i, v) in values.iter().enumerate() {
            let w = values[(i * 7 + nr as usize) % values.len()];
            cases.push(Data { nr, arch: AUDIT_ARCH_X86_64, ip: 0, args: [*v, w, *v, 0, 0, 0] });
        }
    }
    for nr in [0u32, 2, 39, 83, 165] {
        cases.push(Data { nr: nr | 0x4000_0000, arch: AUDIT_ARCH_X86_64, ip: 0, args: [0; 6] }); // x32
        cases.push(Data { nr, arch: 0x4000_0003, ip: 0, args: [0; 6] }); // i386
    }
    for d in &cases {
        let got = decide(ours.filters.iter().map(|f| &f.insns[..]), d).unwrap();
        let want = decide([&theirs[..]], d).unwrap();
        assert_eq!(
            (precedence(got), got & 0xffff),
            (precedence(want), want & 0xffff),
            "{name}: {d:?}: hutch {got:#x}, libseccomp {want:#x}"
        );
        checked += 1;
    }
    assert!(checked > 4000);
}

#[test]
fn the_default_profile_matches_libseccomp() {
    compare("default", &hutch::spec::default_seccomp());
}

#[test]
fn a_denylist_with_every_action_matches_libseccomp() {
    let p: LinuxSeccomp = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["mount", "umount2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["kexec_load"], "action": "SCMP_ACT_KILL"},
            {"names": ["reboot"], "action": "SCMP_ACT_TRAP"},
            {"names": ["getppid"], "action": "SCMP_ACT_LOG"},
            {"names": ["getpgrp"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
            {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]
    }))
    .unwrap();
    compare("denylist", &p);
}

#[test]
fn every_operator_matches_libseccomp() {
    let ops = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT"];
    let names = ["read", "write", "close", "lseek", "mmap", "munmap"];
    let mut rules: Vec<serde_json::Value> = ops
        .iter()
        .zip(names)
        .map(|(op, name)| {
            serde_json::json!({"names": [name], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 8, "op": op}, {"index": 1, "value": 0x7e02_0000u64, "op": op}]})
        })
        .collect();
    rules.push(serde_json::json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 0x7e02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
    rules.push(serde_json::json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]}));
    let p: LinuxSeccomp = serde_json::from_value(
        serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "syscalls": rules}),
    )
    .unwrap();
    compare("operators", &p);
}
