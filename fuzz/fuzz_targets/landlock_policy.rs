//! The Landlock policy parser never panics, and what it accepts has a consistent required ABI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(policy) = hutch::landlock_policy::parse(text) {
        let abi = policy.required_abi();
        assert!((0..=6).contains(&abi));
        assert_eq!(policy.fs.is_some() || policy.net.is_some() || policy.scopes.as_ref().is_some_and(|s| !s.is_empty()), abi > 0);
    }
});
