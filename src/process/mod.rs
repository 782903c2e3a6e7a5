//! The three process stages that build a container, as runc and youki have them.
//!
//! ```text
//! main (hutch create)                intermediate                       init (pid 1)
//!   clone3 (into a v2 cgroup) ────▶  joins v1 cgroups itself
//!   Go ───────────────────────────▶  setns(joined namespaces)
//!   ◀────────────── NeedIdMaps ─────  unshare(user)
//!   writes uid_map/gid_map            (from outside the new namespace)
//!   IdMapsWritten ────────────────▶  unshare(mnt, uts, ipc, net, cgroup, pid, time)
//!   writes timens_offsets ◀───────   NeedTimeOffsets (if a time namespace is new)
//!                                    clone(CLONE_PARENT) ─────────────▶ runs the init order
//!   ◀──────────────────────────────  InitPid, exits                    (see init.rs)
//!   ◀──────────────────────────────────────────────────────────────────  Console fd, Ready
//!   writes state.json, exits
//!                              hutch start ── connects to notify.sock ──▶ execve
//! ```
//!
//! Each arrow is a typed message on a one-way channel (`crate::channel`). The intermediate
//! exists because a process cannot move itself into a new pid namespace: its child is pid 1.
//! CLONE_PARENT makes init main's child, so a foreground `run` can wait for it. A failure in
//! any stage comes back as `Failed { stage, message }`, and main kills whatever it started.
//!
//! When no namespace is joined by path and no time offsets are set, main clones init directly
//! into the new namespaces and init does the intermediate's few steps itself
//! (`intermediate::direct_flags`, `intermediate::run_direct`).

pub mod clone;
pub mod init;
pub mod intermediate;
pub mod message;
pub mod spawn;

pub use spawn::{spawn, CgroupSetup, Job, SpawnRequest, Spawned, Stdio};
