//! Switching to the container's user and capability sets.
//!
//! The order matters: the bounding set is dropped first (that needs CAP_SETPCAP), then the ids
//! change with PR_SET_KEEPCAPS so that a non-root user keeps its permitted set, then the
//! inheritable, effective and permitted sets are set in the order the kernel accepts (each
//! step must stay a subset of what the previous one allowed), and ambient last (it needs the
//! capability to be both permitted and inheritable).

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{Capabilities, Process};

/// Converts an OCI capability to the `caps` crate's, through its canonical name.
pub fn convert(cap: &oci_spec::runtime::Capability) -> Option<Capability> {
    let name = serde_json::to_string(cap).ok()?;
    Capability::from_str(name.trim_matches('"')).ok()
}

fn set_of(caps: &Option<Capabilities>, supported: &CapsHashSet) -> CapsHashSet {
    caps.iter().flatten().filter_map(convert).filter(|c| supported.contains(c)).collect()
}

pub fn switch_user(process: &Process) -> Result<(), String> {
    let user = process.user();
    let spec_caps = process.capabilities().as_ref();
    let supported = caps::runtime::thread_all_supported();
    if let Some(c) = spec_caps {
        let bounding = set_of(c.bounding(), &supported);
        for cap in supported.iter().filter(|cap| !bounding.contains(cap)) {
            // PR_CAPBSET_DROP itself: caps::drop reads the set first, a second prctl for each
            // of some forty capabilities on every start. Dropping one not held is no error.
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap.index() as libc::c_ulong, 0, 0, 0) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(format!("process.capabilities.bounding: drop {cap}: {e}"));
            }
        }
    }

    nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("keep capabilities: {e}"))?;
    let gids: Vec<Gid> = user.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&gids).map_err(|e| format!("process.user.additionalGids: setgroups: {e}"))?;
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(|e| format!("process.user.gid: {} : {e}", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(|e| format!("process.user.uid: {}: {e}", user.uid()))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| format!("clear keep capabilities: {e}"))?;

    let Some(c) = spec_caps else {
        return Ok(());
    };
    let inheritable = set_of(c.inheritable(), &supported);
    let effective = set_of(c.effective(), &supported);
    let permitted = set_of(c.permitted(), &supported);
    let ambient = set_of(c.ambient(), &supported);
    // While still holding the current permitted set, inheritable can take anything in it.
    caps::set(None, CapSet::Inheritable, &inheritable)
        .map_err(|e| format!("process.capabilities.inheritable: {e}"))?;
    let eff_now: CapsHashSet = effective.intersection(&permitted).copied().collect();
    if eff_now.len() != effective.len() {
        let extra: HashSet<_> = effective.difference(&permitted).collect();
        return Err(format!("process.capabilities.effective: {extra:?} not in the permitted set"));
    }
    caps::set(None, CapSet::Effective, &effective)
        .map_err(|e| format!("process.capabilities.effective: {e}"))?;
    caps::set(None, CapSet::Permitted, &permitted)
        .map_err(|e| format!("process.capabilities.permitted: {e}"))?;
    // The kernel only takes ambient capabilities that are permitted and inheritable; like runc,
    // the others are left out rather than failing (runc's own `spec` lists ambient without
    // inheritable).
    let ambient: CapsHashSet =
        ambient.iter().filter(|c| inheritable.contains(c) && permitted.contains(c)).copied().collect();
    // Cleared in one call and raised one by one: setting the set lowers every other capability
    // with its own prctl, some forty calls for the usual empty set.
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("process.capabilities.ambient: {e}"))?;
    for cap in &ambient {
        caps::raise(None, CapSet::Ambient, *cap)
            .map_err(|e| format!("process.capabilities.ambient: raise {cap}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn converts_every_oci_capability_name() {
        let c: oci_spec::runtime::Capability = serde_json::from_str("\"CAP_NET_BIND_SERVICE\"").unwrap();
        assert_eq!(super::convert(&c), Some(caps::Capability::CAP_NET_BIND_SERVICE));
    }
}
