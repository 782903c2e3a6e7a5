//! Messages between the process stages.

use serde::{Deserialize, Serialize};

/// main → intermediate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MainMsg {
    /// The intermediate is in its cgroup: go on.
    Go,
    IdMapsWritten,
    TimeOffsetsWritten,
    /// To init cloned directly: its cgroup is made. The message's descriptors are files to
    /// join it through, these paths (none when init was born in it or joined it already).
    CgroupReady {
        join_files: Vec<String>,
    },
    /// To init: the prestart and createRuntime hooks ran; this is the state to give its own.
    HooksDone {
        state: String,
    },
}

/// intermediate → main.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntermediateMsg {
    /// It unshared a user namespace: main writes the id maps from outside.
    NeedIdMaps,
    /// It unshared a time namespace: main writes the clock offsets before init is born.
    NeedTimeOffsets,
    /// Init exists, with this pid in main's pid namespace.
    InitPid(i32),
    Failed(StageFailure),
}

/// init → main.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InitMsg {
    /// The terminal's master side rides along with this message.
    Console,
    /// The mounts are done (pivot_root is next): main runs prestart and createRuntime hooks.
    HooksPoint,
    /// The seccomp filter is loaded; its NOTIFY listener rides along with this message.
    SeccompListener,
    /// Setup is complete; init waits for start.
    Ready,
    Failed(StageFailure),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageFailure {
    pub stage: String,
    pub message: String,
}

impl StageFailure {
    pub fn new(stage: &str, message: impl ToString) -> Self {
        StageFailure { stage: stage.to_string(), message: message.to_string() }
    }
}

impl From<StageFailure> for crate::Error {
    fn from(f: StageFailure) -> Self {
        crate::Error::Stage { stage: f.stage, message: f.message }
    }
}
