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
//! action otherwise, as the runtime spec says. The filters are then joined into one program
//! (`chain`) that answers as the stack would; only a NOTIFY filter is loaded on its own.
//!
//! seccompiler has no NOTIFY action: NOTIFY rules are compiled as TRACE with a marker value that
//! is then rewritten to SECCOMP_RET_USER_NOTIF, and that filter is loaded with
//! SECCOMP_FILTER_FLAG_NEW_LISTENER. Filters are loaded with seccomp(2) directly (for the flags,
//! and so that a filter can be loaded without no_new_privs while CAP_SYS_ADMIN is held). Unknown
//! syscall names are skipped and logged, as runc does.

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

    let mut base_rules = RuleSet::new();
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
            base_rules.add(nr, rule.clone());
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

    let mut base = None;
    if default != RET_ALLOW {
        // Syscall numbers are routed by a binary search up front: allowed whatever the
        // arguments, refused, or on to seccompiler's chain of the syscalls whose rules look at
        // arguments. The kernel emulates the filter for every syscall number to fill its
        // per-syscall cache, and runs it on each call the cache does not answer: ~7 steps
        // instead of a walk along every rule (an allowlist of ~300 calls made ~1500
        // instructions, and loading it cost ~150 µs).
        let rules = base_rules.map;
        let allowed: Vec<i64> = rules.iter().filter(|(_, r)| r.is_empty()).map(|(&nr, _)| nr).collect();
        let ruled: BTreeMap<i64, Vec<SeccompRule>> =
            rules.iter().filter(|(_, r)| !r.is_empty()).map(|(&nr, r)| (nr, r.clone())).collect();
        let segments = segments(&allowed, &ruled.keys().copied().collect::<Vec<_>>());
        base = Some(if segments.len() <= MAX_SEGMENTS {
            let tail = if ruled.is_empty() { Vec::new() } else { build(ruled, default, RET_ALLOW)? };
            route(&segments, default, tail)
        } else {
            build(rules, default, RET_ALLOW)?
        });
    }
    if default == RET_USER_NOTIF {
        return Err(("defaultAction".into(), "SCMP_ACT_NOTIFY cannot be the default action".into()));
    }
    // One filter per action, each matching its rules, and a stack's answer is its most severe
    // one: in a chain, the action filters go most severe first (among equal actions, the
    // larger return value, as the kernel runs the newest of a stack first and keeps the first
    // of equals), the base filter last. A rule that makes an action filter answer is also in
    // the base filter, which then allows: the chain's first answer is the stack's.
    let mut notify = None;
    let mut actions = Vec::new();
    for (ret, set) in by_action {
        let insns = build(set.map, RET_ALLOW, ret)?;
        match ret {
            // Its own filter: the listener comes from loading it.
            RET_USER_NOTIF => notify = Some(Filter { insns, listener: true }),
            _ => actions.push((ret, insns)),
        }
    }
    actions.sort_by_key(|&(ret, _)| ((ret & 0xffff_0000) as i32, std::cmp::Reverse(ret)));
    let parts = std::iter::once(abi_filter()).chain(actions.into_iter().map(|(_, p)| p)).chain(base);
    let mut filters = chain(parts.collect());
    filters.extend(notify);
    if filters.iter().any(|f| f.listener) && profile.listener_path().is_none() {
        return Err(("listenerPath".into(), "SCMP_ACT_NOTIFY rules need a listenerPath".into()));
    }
    Ok(Compiled { filters, flags, unknown })
}

/// Joins filters into one program that answers with the first of them that does not allow:
/// each one's ALLOW becomes a jump to the start of the next. Loading a filter costs the kernel
/// ~20 µs whatever its size (allocation, JIT, text patching) and more with each instruction on
/// the way to an answer (docs/seccomp.md); the default profile had three.
/// `parts` come in the order the kernel would run them as a stack (newest first); past
/// BPF_MAXINSNS they stay separate filters, loaded so that the kernel runs them in that order.
fn chain(parts: Vec<Vec<Insn>>) -> Vec<Filter> {
    let total: usize = parts.iter().map(Vec::len).sum();
    let n = parts.len();
    // ret A (0x16) answers what the accumulator holds: it could not become a jump.
    let ret_a = parts.iter().take(n.saturating_sub(1)).flatten().any(|i| i.code == 0x16);
    if n < 2 || total > BPF_MAXINSNS || ret_a {
        return parts.into_iter().rev().map(|insns| Filter { insns, listener: false }).collect();
    }
    let mut insns = Vec::with_capacity(total);
    for (p, part) in parts.iter().enumerate() {
        for (at, ins) in part.iter().enumerate() {
            if p + 1 < n && ins.code == BPF_RET_K && ins.k == RET_ALLOW {
                insns.push(Insn { code: BPF_JA, jt: 0, jf: 0, k: (part.len() - at - 1) as u32 });
            } else {
                insns.push(*ins);
            }
        }
    }
    vec![Filter { insns, listener: false }]
}

const BPF_MAXINSNS: usize = 4096;
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JGE_K: u16 = 0x35;
const BPF_JA: u16 = 0x05;
const BPF_RET_K: u16 = 0x06;
/// One comparison per segment boundary, all ahead of the three targets; conditional jumps
/// reach 255 instructions ahead.
const MAX_SEGMENTS: usize = 250;

/// Where the base filter sends a syscall number before looking at its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Allow,
    Default,
    /// To seccompiler's chain, which checks the arguments.
    Rules,
}

/// The number line as segments (first number, route), from 0: `allowed` and `ruled` numbers,
/// the rest Default.
fn segments(allowed: &[i64], ruled: &[i64]) -> Vec<(u32, Route)> {
    let marks: BTreeMap<u32, Route> = allowed
        .iter()
        .map(|&nr| (nr as u32, Route::Allow))
        .chain(ruled.iter().map(|&nr| (nr as u32, Route::Rules)))
        .collect();
    let mut out: Vec<(u32, Route)> = vec![(0, Route::Default)];
    let mut push = |at: u32, route: Route| match out.last_mut() {
        Some(last) if last.1 == route => {}
        // Only number 0 can start where the previous segment does.
        Some(last) if last.0 == at => last.1 = route,
        _ => out.push((at, route)),
    };
    let mut next = 0;
    for (nr, route) in marks {
        if nr > next {
            push(next, Route::Default);
        }
        push(nr, route);
        next = nr + 1;
    }
    push(next, Route::Default);
    out
}

/// `A = nr`, then a binary search over the segments' bounds that ends in ALLOW, the default
/// action, or `tail` (which loads what it needs itself). The architecture is not checked here:
/// the ABI filter, always ahead of this one in the chain (or beside it in a stack), kills every
/// other architecture.
fn route(segments: &[(u32, Route)], default: u32, tail: Vec<Insn>) -> Vec<Insn> {
    let ret = |k| vec![Insn { code: BPF_RET_K, jt: 0, jf: 0, k }];
    match segments {
        [(_, Route::Allow)] => return ret(RET_ALLOW),
        [(_, Route::Default)] => return ret(default),
        [(_, Route::Rules)] => return tail,
        _ => {}
    }
    let bounds: Vec<u32> = segments.iter().skip(1).map(|&(at, _)| at).collect();
    let routes: Vec<Route> = segments.iter().map(|&(_, r)| r).collect();
    // After the comparisons: ALLOW, the default action, then the tail.
    let allow_at = 1 + bounds.len();
    let mut v = vec![Insn { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 }];
    search(&bounds, &routes, 0, routes.len() - 1, allow_at, &mut v);
    v.push(Insn { code: BPF_RET_K, jt: 0, jf: 0, k: RET_ALLOW });
    v.push(Insn { code: BPF_RET_K, jt: 0, jf: 0, k: default });
    v.extend(tail);
    v
}

/// Emits, in preorder, the comparisons that find which of the segments `first..=last` holds A.
/// Returns where that code starts, or for a single segment, where its route goes.
fn search(
    bounds: &[u32],
    routes: &[Route],
    first: usize,
    last: usize,
    allow_at: usize,
    v: &mut Vec<Insn>,
) -> usize {
    if first == last {
        return allow_at
            + match routes[first] {
                Route::Allow => 0,
                Route::Default => 1,
                Route::Rules => 2,
            };
    }
    let mid = (first + last).div_ceil(2);
    let at = v.len();
    v.push(Insn { code: BPF_JGE_K, jt: 0, jf: 0, k: bounds[mid - 1] });
    let below = search(bounds, routes, first, mid - 1, allow_at, v);
    let above = search(bounds, routes, mid, last, allow_at, v);
    v[at].jf = jump(at, below);
    v[at].jt = jump(at, above);
    at
}

/// The offset of a conditional jump at `from` to `to` (MAX_SEGMENTS keeps it within reach).
fn jump(from: usize, to: usize) -> u8 {
    u8::try_from(to - from - 1).expect("MAX_SEGMENTS keeps jumps within 255 instructions")
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
    fn the_search_routes_every_number_where_it_belongs() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let tail = vec![Insn { code: BPF_RET_K, jt: 0, jf: 0, k: RET_TRAP }];
        for round in 0..300u64 {
            let (mut allowed, mut ruled) = (Vec::new(), Vec::new());
            // From sparse to dense, runs and gaps of varied lengths; number 0 in some rounds.
            for nr in 0..400i64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match seed % 100 {
                    x if x < (round % 10) * 8 => allowed.push(nr),
                    x if x < (round % 10) * 8 + round % 4 * 3 => ruled.push(nr),
                    _ => {}
                }
            }
            let segs = segments(&allowed, &ruled);
            if segs.len() > MAX_SEGMENTS {
                continue;
            }
            let prog = route(&segs, RET_KILL_PROCESS, tail.clone());
            for nr in 0..500u32 {
                let d = Data { nr, arch: AUDIT_ARCH_X86_64, ip: 0, args: [0; 6] };
                let want = match nr as i64 {
                    n if allowed.contains(&n) => RET_ALLOW,
                    n if ruled.contains(&n) => RET_TRAP,
                    _ => RET_KILL_PROCESS,
                };
                assert_eq!(
                    decide([&prog[..]], &d),
                    Some(want),
                    "round {round}, nr {nr}, {} segments",
                    segs.len()
                );
            }
        }
    }

    #[test]
    fn a_profile_loads_as_one_filter_and_a_notify_rule_as_one_more() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/seccomp/default.json");
        let default: LinuxSeccomp = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(compile(&default).unwrap().filters.len(), 1);
        let mut p = serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/a.sock",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"},
                         {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7},
                         {"names": ["getpid"], "action": "SCMP_ACT_TRAP"}]});
        let c = compile(&profile(p.clone())).unwrap();
        assert_eq!(c.filters.len(), 1);
        assert_eq!(decision(&c, "mkdir", [0; 6]), RET_KILL_PROCESS);
        assert_eq!(decision(&c, "getpid", [0; 6]), RET_TRAP);
        assert_eq!(decision(&c, "read", [0; 6]), RET_ALLOW);
        assert_eq!(decision(&c, "openat", [0; 6]), RET_ERRNO | 1);
        p["syscalls"][3]["action"] = "SCMP_ACT_NOTIFY".into();
        let c = compile(&profile(p)).unwrap();
        assert_eq!(c.filters.iter().map(|f| f.listener).collect::<Vec<_>>(), [false, true]);
        assert_eq!(decision(&c, "getpid", [0; 6]), RET_USER_NOTIF);
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
