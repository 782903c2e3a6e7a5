//! hutch: a low-level sandbox runtime.
//!
//! The library holds everything; the `hutch` binary is a thin command line over it. See
//! docs/ARCHITECTURE.md for the process model and the module map.

pub mod capabilities;
pub mod cgroups;
pub mod channel;
pub mod config;
pub mod container;
pub mod error;
pub mod exec;
pub mod foreground;
pub mod hooks;
pub mod landlock_policy;
pub mod namespaces;
pub mod network;
pub mod oom;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod sandbox;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod stats;
pub mod terminal;

pub use error::{Error, Result};
