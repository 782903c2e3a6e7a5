//! What an OCI seccomp profile means, read straight from the profile (no BPF): the oracle the
//! compiled filters are checked against in tests and fuzzing.
//!
//! For a native (x86_64) syscall: among the rules that name it and whose conditions all hold,
//! the most severe action wins; with none, the default action. Other ABIs are killed.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompOperator as Op};

use super::eval::{precedence, Data};
use super::{ret_value, syscall_nr, AUDIT_ARCH_X86_64, RET_KILL_PROCESS};

pub fn decide(profile: &LinuxSeccomp, d: &Data) -> u32 {
    if d.arch != AUDIT_ARCH_X86_64 || d.nr & 0x4000_0000 != 0 {
        return RET_KILL_PROCESS;
    }
    let mut best: Option<u32> = None;
    for rule in profile.syscalls().iter().flatten() {
        if !rule.names().iter().any(|n| syscall_nr(n) == Some(d.nr as i64)) {
            continue;
        }
        let holds = rule.args().iter().flatten().all(|a| {
            let arg = d.args.get(a.index()).copied().unwrap_or(0);
            match a.op() {
                Op::ScmpCmpNe => arg != a.value(),
                Op::ScmpCmpLt => arg < a.value(),
                Op::ScmpCmpLe => arg <= a.value(),
                Op::ScmpCmpEq => arg == a.value(),
                Op::ScmpCmpGe => arg >= a.value(),
                Op::ScmpCmpGt => arg > a.value(),
                Op::ScmpCmpMaskedEq => arg & a.value() == a.value_two().unwrap_or(0),
            }
        });
        if holds {
            let r = ret_value(rule.action(), rule.errno_ret());
            if best.is_none_or(|b| precedence(r) < precedence(b)) {
                best = Some(r);
            }
        }
    }
    best.unwrap_or_else(|| ret_value(profile.default_action(), profile.default_errno_ret()))
}
