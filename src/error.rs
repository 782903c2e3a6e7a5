//! One error type for the library. Every variant says what failed and where: the config field,
//! the process stage, or the file involved, so the CLI can print it as is.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle's config.json (or an option standing for a field of it) is wrong.
    #[error("{file}: {field}: {message}")]
    Config { file: PathBuf, field: String, message: String },

    /// A process stage failed while building the container.
    #[error("container setup failed in stage {stage}: {message}")]
    Stage { stage: String, message: String },

    #[error("container \"{0}\" does not exist")]
    NotFound(String),

    #[error("container \"{0}\" already exists")]
    Exists(String),

    #[error("invalid container id \"{id}\": {why}")]
    InvalidId { id: String, why: &'static str },

    /// The container is in a state that does not allow the operation.
    #[error("container \"{id}\" is {status}: {message}")]
    BadState { id: String, status: String, message: String },

    #[error("{0}")]
    Usage(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },

    #[error("cgroup {path}: {message}")]
    Cgroup { path: String, message: String },
}

impl Error {
    pub fn config(file: impl Into<PathBuf>, field: impl Into<String>, message: impl ToString) -> Self {
        Error::Config { file: file.into(), field: field.into(), message: message.to_string() }
    }
}

/// Adds a "what were we doing" context to io and nix errors.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { context: what(), source })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys { context: what(), source })
    }
}
