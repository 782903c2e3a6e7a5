//! OCI `linux.seccomp` on top of seccompiler.
//!
//! seccompiler builds a filter with one match action and one mismatch action for one
//! architecture. OCI profiles give every rule its own action, so hutch compiles a profile into a
//! small stack of filters and lets the kernel combine them (it keeps the most severe result of
//! all filters, in the order KILL_PROCESS, KILL_THREAD, TRAP, ERRNO, USER_NOTIF, TRACE, LOG,
//! ALLOW):
//!
//! - the ABI filter (hand-built, four instructions): any architecture but x86_64, and the x32
//!   ABI (syscall numbers with bit 30 set), are killed, so a denied syscall cannot be reached
//!   through `int 0x80` or x32;
//! - the base filter, unless the default action is ALLOW: every syscall some rule names, under
//!   that rule's conditions, is allowed; everything else gets the default action;
//! - one filter per other action (ERRNO with each errno, KILL, TRAP, LOG, TRACE, NOTIFY): its
//!   rules match to that action, everything else is allowed.
//!
//! A syscall a rule names thus gets that rule's action when its conditions hold, and the default
//! action otherwise, as the runtime spec says. seccompiler has no NOTIFY action: NOTIFY rules are
//! compiled as TRACE with a marker value that is then rewritten to SECCOMP_RET_USER_NOTIF, and
//! that filter is loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER. Filters are loaded with seccomp(2)
//! directly (for the flags, and so that a filter can be loaded without no_new_privs while
//! CAP_SYS_ADMIN is held). Unknown syscall names are skipped and logged, as runc does.

pub mod agent;
pub mod cache;
pub mod eval;
pub mod reference;

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::str::FromStr;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as A, LinuxSeccompFilterFlag as F, LinuxSeccompOperator as Op,
};
use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// TRACE data that marks a NOTIFY rule until it is rewritten.
const NOTIFY_MARK: u32 = 0xfeed;

const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;
const FLAG_NEW_LISTENER: u32 = 8;
const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// One classic BPF instruction (struct sock_filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    pub insns: Vec<Insn>,
    /// Loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER: it holds the NOTIFY rules.
    pub listener: bool,
}

/// A compiled profile: filters in load order and the seccomp(2) flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compiled {
    pub filters: Vec<Filter>,
    pub flags: u32,
    /// Syscall names the kernel tables do not know (skipped).
    pub unknown: Vec<String>,
}

impl Compiled {
    pub fn has_listener(&self) -> bool {
        self.filters.iter().any(|f| f.listener)
    }
}

/// An error in the profile: (field under linux.seccomp, message).
pub type ProfileError = (String, String);

/// The action a profile asks for, as a seccomp return value.
pub fn ret_value(action: A, errno: Option<u32>) -> u32 {
    match action {
        A::ScmpActKill | A::ScmpActKillThread => RET_KILL_THREAD,
        A::ScmpActKillProcess => RET_KILL_PROCESS,
        A::ScmpActTrap => RET_TRAP,
        A::ScmpActErrno => RET_ERRNO | (errno.unwrap_or(libc::EPERM as u32) & 0xffff),
        A::ScmpActNotify => RET_USER_NOTIF,
        A::ScmpActTrace => RET_TRACE | (errno.unwrap_or(0) & 0xffff),
        A::ScmpActLog => RET_LOG,
        A::ScmpActAllow => RET_ALLOW,
    }
}

fn to_seccompiler(ret: u32) -> SeccompAction {
    match ret & 0xffff_0000 {
        RET_KILL_PROCESS => SeccompAction::KillProcess,
        RET_TRAP => SeccompAction::Trap,
        RET_ERRNO => SeccompAction::Errno(ret & 0xffff),
        RET_USER_NOTIF => SeccompAction::Trace(NOTIFY_MARK),
        RET_TRACE => SeccompAction::Trace(ret & 0xffff),
        RET_LOG => SeccompAction::Log,
        RET_ALLOW => SeccompAction::Allow,
        _ => SeccompAction::KillThread,
    }
}

/// Syscall number on x86_64 for a name.
pub fn syscall_nr(name: &str) -> Option<i64> {
    syscalls::x86_64::Sysno::from_str(name).ok().map(|s| s.id() as i64)
}

fn condition(arg: &oci_spec::runtime::LinuxSeccompArg) -> Result<SeccompCondition, String> {
    let (op, value) = match arg.op() {
        Op::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        Op::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        Op::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        Op::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        Op::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        Op::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        // (arg & value) == valueTwo
        Op::ScmpCmpMaskedEq => (SeccompCmpOp::MaskedEq(arg.value()), arg.value_two().unwrap_or(0)),
    };
    let index =
        u8::try_from(arg.index()).map_err(|_| format!("index {} is not an argument (0-5)", arg.index()))?;
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(|e| e.to_string())
}

/// Adds a rule for `nr` to a rule map; an unconditional rule makes the syscall match whatever
/// its other rules say (seccompiler: an empty chain).
fn add_rule(
    map: &mut BTreeMap<i64, Vec<SeccompRule>>,
    unconditional: &mut Vec<i64>,
    nr: i64,
    rule: Option<SeccompRule>,
) {
    if unconditional.contains(&nr) {
        return;
    }
    match rule {
        None => {
            unconditional.push(nr);
            map.insert(nr, Vec::new());
        }
        Some(r) => map.entry(nr).or_default().push(r),
    }
}

struct RuleSet {
    map: BTreeMap<i64, Vec<SeccompRule>>,
    unconditional: Vec<i64>,
}

impl RuleSet {
    fn new() -> Self {
        RuleSet { map: BTreeMap::new(), unconditional: Vec::new() }
    }
    fn add(&mut self, nr: i64, rule: Option<SeccompRule>) {
        add_rule(&mut self.map, &mut self.unconditional, nr, rule);
    }
}

/// Compiles a profile. Errors name the field under `linux.seccomp`.
pub fn compile(profile: &LinuxSeccomp) -> Result<Compiled, ProfileError> {
    let default = ret_value(profile.default_action(), profile.default_errno_ret());
    for (i, arch) in profile.architectures().iter().flatten().enumerate() {
        match arch {
            Arch::ScmpArchX86_64 | Arch::ScmpArchNative | Arch::ScmpArchX86 | Arch::ScmpArchX32 => {}
            other => log::debug!("linux.seccomp.architectures[{i}]: {other:?} does not run here; ignored"),
        }
    }
    let mut flags = 0;
    for f in profile.flags().iter().flatten() {
        flags |= match f {
            F::SeccompFilterFlagTsync => FLAG_TSYNC,
            F::SeccompFilterFlagLog => FLAG_LOG,
            F::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            F::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        };
    }

    let mut base = RuleSet::new();
    let mut by_action: BTreeMap<u32, RuleSet> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (i, sc) in profile.syscalls().iter().flatten().enumerate() {
        let ret = ret_value(sc.action(), sc.errno_ret());
        // (arg & value) == valueTwo cannot hold when valueTwo has bits outside value; seccompiler
        // would compare against valueTwo & value instead, so such a rule is dropped here.
        let impossible = sc
            .args()
            .iter()
            .flatten()
            .any(|a| a.op() == Op::ScmpCmpMaskedEq && a.value_two().unwrap_or(0) & !a.value() != 0);
        if impossible {
            log::debug!(
                "linux.seccomp.syscalls[{i}]: a SCMP_CMP_MASKED_EQ condition can never hold; rule skipped"
            );
            continue;
        }
        let conditions: Vec<SeccompCondition> = sc
            .args()
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, a)| condition(a).map_err(|e| (format!("syscalls[{i}].args[{j}]"), e)))
            .collect::<Result<_, _>>()?;
        let rule = if conditions.is_empty() {
            None
        } else {
            Some(SeccompRule::new(conditions).map_err(|e| (format!("syscalls[{i}].args"), e.to_string()))?)
        };
        for name in sc.names() {
            let Some(nr) = syscall_nr(name) else {
                if !unknown.contains(name) {
                    unknown.push(name.clone());
                }
                continue;
            };
            base.add(nr, rule.clone());
            if ret != RET_ALLOW {
                by_action.entry(ret).or_insert_with(RuleSet::new).add(nr, rule.clone());
            }
        }
    }
    if !unknown.is_empty() {
        log::info!(
            "linux.seccomp: skipped syscalls this kernel's tables do not know: {}",
            unknown.join(", ")
        );
    }

    let build = |rules: BTreeMap<i64, Vec<SeccompRule>>,
                 mismatch: u32,
                 matched: u32|
     -> Result<Vec<Insn>, ProfileError> {
        let filter =
            SeccompFilter::new(rules, to_seccompiler(mismatch), to_seccompiler(matched), TargetArch::x86_64)
                .map_err(|e| ("syscalls".to_string(), e.to_string()))?;
        let prog: seccompiler::BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| ("syscalls".to_string(), e.to_string()))?;
        Ok(prog
            .into_iter()
            .map(|f| {
                let mut k = f.k;
                if f.code == 0x06 && k == (RET_TRACE | NOTIFY_MARK) {
                    k = RET_USER_NOTIF;
                }
                Insn { code: f.code, jt: f.jt, jf: f.jf, k }
            })
            .collect())
    };

    let mut filters = vec![Filter { insns: abi_filter(), listener: false }];
    if default != RET_ALLOW {
        // Syscalls allowed whatever their arguments are answered by range checks up front; only
        // the rest go through seccompiler's per-syscall chain. An allowlist of ~300 calls thus
        // becomes ~200 instructions instead of ~1500: the kernel converts, JIT-compiles and
        // emulates (for its per-syscall cache) the filter at every container start.
        let mut rest = base.map;
        let allowed: Vec<i64> =
            rest.iter().filter(|(_, rules)| rules.is_empty()).map(|(&nr, _)| nr).collect();
        let ranges = ranges_of(&allowed);
        let insns = if ranges.len() <= MAX_RANGES {
            rest.retain(|_, rules| !rules.is_empty());
            let tail = if rest.is_empty() {
                vec![Insn { code: BPF_RET_K, jt: 0, jf: 0, k: default }]
            } else {
                build(rest, default, RET_ALLOW)?
            };
            allow_ranges(&ranges, tail)
        } else {
            build(rest, default, RET_ALLOW)?
        };
        filters.push(Filter { insns, listener: false });
    }
    for (ret, set) in by_action {
        filters.push(Filter { insns: build(set.map, RET_ALLOW, ret)?, listener: ret == RET_USER_NOTIF });
    }
    if default == RET_USER_NOTIF {
        return Err(("defaultAction".into(), "SCMP_ACT_NOTIFY cannot be the default action".into()));
    }
    if filters.iter().any(|f| f.listener) && profile.listener_path().is_none() {
        return Err(("listenerPath".into(), "SCMP_ACT_NOTIFY rules need a listenerPath".into()));
    }
    Ok(Compiled { filters, flags, unknown })
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JGE_K: u16 = 0x35;
const BPF_JGT_K: u16 = 0x25;
const BPF_JA: u16 = 0x05;
const BPF_RET_K: u16 = 0x06;
/// Two instructions a range; conditional jumps reach 255 instructions ahead.
const MAX_RANGES: usize = 120;

/// Sorted syscall numbers as inclusive ranges.
fn ranges_of(nrs: &[i64]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &nr in nrs {
        let nr = nr as u32;
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == nr => *hi = nr,
            _ => out.push((nr, nr)),
        }
    }
    out
}

/// `A = nr; if nr in any range: ALLOW; else run `tail``. The architecture is not checked here:
/// the ABI filter, always loaded beside this one, kills every other architecture, and the
/// kernel takes the strictest answer of all filters.
fn allow_ranges(ranges: &[(u32, u32)], tail: Vec<Insn>) -> Vec<Insn> {
    let n = ranges.len();
    let mut v = vec![Insn { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 }];
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        // Instructions after this range's second one, up to the ALLOW (which follows the JA).
        let to_allow = (2 * (n - i - 1) + 1) as u8;
        // Below this range, and so below every later one: straight to the tail (past JA, ALLOW).
        let to_tail = (2 * (n - i - 1) + 1 + 2) as u8;
        v.push(Insn { code: BPF_JGE_K, jt: 0, jf: to_tail, k: lo });
        v.push(Insn { code: BPF_JGT_K, jt: 0, jf: to_allow, k: hi });
    }
    v.push(Insn { code: BPF_JA, jt: 0, jf: 0, k: 1 });
    v.push(Insn { code: BPF_RET_K, jt: 0, jf: 0, k: RET_ALLOW });
    v.extend(tail);
    v
}

/// Kills any architecture but x86_64 and the x32 ABI.
fn abi_filter() -> Vec<Insn> {
    vec![
        Insn { code: 0x20, jt: 0, jf: 0, k: 4 }, // A = seccomp_data.arch
        Insn { code: 0x15, jt: 1, jf: 0, k: AUDIT_ARCH_X86_64 }, // if A == x86_64 skip
        Insn { code: 0x06, jt: 0, jf: 0, k: RET_KILL_PROCESS }, // other arch: kill
        Insn { code: 0x20, jt: 0, jf: 0, k: 0 }, // A = seccomp_data.nr
        Insn { code: 0x45, jt: 0, jf: 1, k: X32_SYSCALL_BIT }, // if A & x32 bit
        Insn { code: 0x06, jt: 0, jf: 0, k: RET_KILL_PROCESS }, //   kill
        Insn { code: 0x06, jt: 0, jf: 0, k: RET_ALLOW },
    ]
}

/// Loads the filters into this thread (and, with TSYNC, its process). Returns the listener
/// descriptor when the profile has NOTIFY rules. Without no_new_privs, CAP_SYS_ADMIN is needed.
pub fn load(compiled: &Compiled) -> std::io::Result<Option<OwnedFd>> {
    let mut listener = None;
    for f in &compiled.filters {
        let insns: Vec<libc::sock_filter> =
            f.insns.iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect();
        let prog = libc::sock_fprog { len: insns.len() as u16, filter: insns.as_ptr() as *mut _ };
        let mut flags = compiled.flags;
        if f.listener {
            // TSYNC and NEW_LISTENER exclude each other; init is single-threaded anyway.
            flags = (flags & !FLAG_TSYNC) | FLAG_NEW_LISTENER;
        }
        // SAFETY: prog points at insns, which outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if f.listener {
            // SAFETY: with NEW_LISTENER the kernel returned a new descriptor.
            listener = Some(unsafe { OwnedFd::from_raw_fd(rc as i32) });
        }
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::eval::{decide, Data};
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    fn decision(c: &Compiled, name: &str, args: [u64; 6]) -> u32 {
        let nr = syscall_nr(name).unwrap() as u32;
        decide(c.filters.iter().map(|f| &f.insns[..]), &Data { nr, arch: AUDIT_ARCH_X86_64, ip: 0, args })
            .unwrap()
    }

    #[test]
    fn allowlist_with_errno_default() {
        let c = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "syscalls": [{"names": ["read", "write", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert_eq!(decision(&c, "read", [0; 6]), RET_ALLOW);
        assert_eq!(decision(&c, "mount", [0; 6]), RET_ERRNO | 38);
        assert_eq!(c.unknown, ["no_such_syscall"]);
    }

    #[test]
    fn each_rule_has_its_own_action() {
        let c = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["umount2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["kexec_load"], "action": "SCMP_ACT_TRAP"},
                {"names": ["getpid"], "action": "SCMP_ACT_LOG"}
            ]
        })))
        .unwrap();
        assert_eq!(decision(&c, "mount", [0; 6]), RET_ERRNO | 1);
        assert_eq!(decision(&c, "umount2", [0; 6]), RET_ERRNO | 13);
        assert_eq!(decision(&c, "ptrace", [0; 6]), RET_KILL_PROCESS);
        assert_eq!(decision(&c, "kexec_load", [0; 6]), RET_TRAP);
        assert_eq!(decision(&c, "getpid", [0; 6]), RET_LOG);
        assert_eq!(decision(&c, "read", [0; 6]), RET_ALLOW);
    }

    #[test]
    fn argument_conditions_and_masked_eq() {
        let c = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0x7E020000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]}
            ]
        })))
        .unwrap();
        assert_eq!(decision(&c, "personality", [8, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(decision(&c, "personality", [9, 0, 0, 0, 0, 0]), RET_ERRNO | 1);
        assert_eq!(decision(&c, "clone", [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(decision(&c, "clone", [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]), RET_ERRNO | 1);
        assert_eq!(decision(&c, "socket", [2, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(decision(&c, "socket", [40, 0, 0, 0, 0, 0]), RET_ERRNO | 1, "AF_VSOCK");
    }

    #[test]
    fn other_abis_are_killed() {
        let c = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]
        })))
        .unwrap();
        let progs = || c.filters.iter().map(|f| &f.insns[..]);
        let nr = syscall_nr("mount").unwrap() as u32;
        let x32 = Data { nr: nr | X32_SYSCALL_BIT, arch: AUDIT_ARCH_X86_64, ip: 0, args: [0; 6] };
        assert_eq!(decide(progs(), &x32), Some(RET_KILL_PROCESS));
        let i386 = Data { nr: 21, arch: 0x4000_0003, ip: 0, args: [0; 6] };
        assert_eq!(decide(progs(), &i386), Some(RET_KILL_PROCESS));
    }

    #[test]
    fn notify_needs_a_listener_path_and_gets_a_listener() {
        let p = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]});
        assert_eq!(compile(&profile(p.clone())).unwrap_err().0, "listenerPath");
        let mut p = p;
        p["listenerPath"] = "/run/agent.sock".into();
        let c = compile(&profile(p)).unwrap();
        assert!(c.has_listener());
        assert_eq!(decision(&c, "mkdir", [0; 6]), RET_USER_NOTIF);
    }
}

#[cfg(test)]
mod property {
    //! Random profiles: the compiled filters decide exactly what the profile means.
    use super::eval::{decide, Data};
    use super::*;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        /// Mostly small numbers, sometimes any 64-bit value (high words matter to the BPF).
        fn value(&mut self) -> u64 {
            match self.below(4) {
                0 => self.next(),
                1 => self.below(8) << 32 | self.below(8),
                _ => self.below(8),
            }
        }
    }

    const NAMES: [&str; 8] = ["read", "write", "mkdir", "getpid", "socket", "personality", "kill", "openat"];
    const ACTIONS: [&str; 7] = [
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_LOG",
        "SCMP_ACT_TRACE",
    ];
    const OPS: [&str; 7] = [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];

    fn random_profile(r: &mut Rng) -> LinuxSeccomp {
        let rules: Vec<serde_json::Value> = (0..r.below(6) + 1)
            .map(|_| {
                let names: Vec<&str> = (0..r.below(3) + 1).map(|_| NAMES[r.below(8) as usize]).collect();
                let args: Vec<serde_json::Value> = (0..r.below(3))
                    .map(|_| {
                        serde_json::json!({"index": r.below(3), "value": r.value(), "valueTwo": r.value(),
                                           "op": OPS[r.below(7) as usize]})
                    })
                    .collect();
                serde_json::json!({"names": names, "action": ACTIONS[r.below(7) as usize], "errnoRet": r.below(3) + 1, "args": args})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "defaultAction": ACTIONS[r.below(7) as usize], "defaultErrnoRet": 38, "syscalls": rules
        }))
        .unwrap()
    }

    #[test]
    fn compiled_filters_match_the_profile() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..1000 {
            let profile = random_profile(&mut r);
            let Ok(compiled) = compile(&profile) else { continue };
            for _ in 0..60 {
                let nr = syscall_nr(NAMES[r.below(8) as usize]).unwrap() as u32;
                let d = Data {
                    nr,
                    arch: AUDIT_ARCH_X86_64,
                    ip: 0,
                    args: [r.value(), r.value(), r.value(), 0, 0, 0],
                };
                let got = decide(compiled.filters.iter().map(|f| &f.insns[..]), &d).unwrap();
                let want = reference::decide(&profile, &d);
                assert_eq!(
                    eval::precedence(got),
                    eval::precedence(want),
                    "case {case}: {d:?} got {got:#x} want {want:#x}\n{}",
                    serde_json::to_string(&profile).unwrap()
                );
                // Among equally severe actions only ERRNO and TRACE carry data that must agree.
                if got & 0xffff_0000 == want & 0xffff_0000
                    && [RET_ERRNO, RET_TRACE].contains(&(want & 0xffff_0000))
                {
                    let same_rule_data = got == want;
                    let several = profile
                        .syscalls()
                        .iter()
                        .flatten()
                        .filter(|s| s.names().iter().any(|n| syscall_nr(n) == Some(nr as i64)))
                        .count()
                        > 1;
                    assert!(same_rule_data || several, "case {case}: {d:?} got {got:#x} want {want:#x}");
                }
            }
        }
    }
}
