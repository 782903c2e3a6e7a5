//! Arbitrary seccomp profiles never panic the compiler, and what compiles decides as the profile
//! means (checked against seccomp::reference) on syscalls sampled from the input.
#![no_main]

use hutch::seccomp::eval::{decide, precedence, Data};
use hutch::seccomp::{compile, reference, AUDIT_ARCH_X86_64};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The tail of the input picks the syscalls to sample; the rest is the profile.
    let split = data.len().saturating_sub(32);
    let (json, tail) = data.split_at(split);
    let Ok(profile) = serde_json::from_slice::<oci_spec::runtime::LinuxSeccomp>(json) else { return };
    let Ok(compiled) = compile(&profile) else { return };
    for chunk in tail.chunks(8) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        let v = u64::from_le_bytes(b);
        let d = Data { nr: (v % 460) as u32, arch: AUDIT_ARCH_X86_64, ip: 0, args: [v >> 8 & 7, v >> 16 & 7, v >> 24, 0, 0, 0] };
        let got = decide(compiled.filters.iter().map(|f| &f.insns[..]), &d).expect("filters run to a return");
        assert_eq!(precedence(got), precedence(reference::decide(&profile, &d)), "{d:?}");
    }
});
