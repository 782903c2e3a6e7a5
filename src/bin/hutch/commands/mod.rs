//! One file per command, each a thin layer over the library.

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod run;
mod sandbox;
mod spec;
mod start;
mod state;
mod update;

use std::path::Path;

use clap::Subcommand;

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Create a container: set it up and leave its init waiting for `start`
    Create(create::Args),
    /// Start a created container: its init execs the configured program
    Start(start::Args),
    /// Print the state of a container as OCI state JSON
    State(state::Args),
    /// Send a signal to a container's init, or with --all to all of its processes
    Kill(kill::Args),
    /// Delete a container and everything it holds (cgroup, state)
    Delete(delete::Args),
    /// Create and start a container; in the foreground, wait and exit with its status
    Run(run::Args),
    /// List containers
    #[command(alias = "ls")]
    List(list::Args),
    /// Write a default config.json (a starting point for a bundle)
    Spec(spec::Args),
    /// Print the runtime features JSON (what this hutch really supports)
    Features,
    /// Run a new process inside a running container
    Exec(exec::Args),
    /// Sandboxed runs for harnesses: a profile, a timeout, capped output, a JSON result
    #[command(subcommand)]
    Sandbox(sandbox::Command),
    /// List the processes of a container
    Ps(ps::Args),
    /// Freeze every process of a container
    Pause(pause::Args),
    /// Thaw a paused container
    Resume(pause::Args),
    /// Change the resource limits of a running container
    Update(update::Args),
    /// Print statistics and OOM events as JSON lines (runc's format)
    Events(events::Args),
}

/// `--preserve-fds N` needs descriptors 3..3+N to be open in hutch itself.
pub fn check_preserved_fds(cmd: &Command) -> hutch::Result<()> {
    let n = match cmd {
        Command::Create(a) => a.preserve_fds,
        Command::Run(a) => a.create.preserve_fds,
        Command::Exec(a) => a.preserve_fds,
        _ => 0,
    };
    if n < 0 {
        return Err(hutch::Error::Usage(format!("--preserve-fds {n}: must not be negative")));
    }
    for fd in 3..3 + n {
        // SAFETY: F_GETFD only asks whether the descriptor exists.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(hutch::Error::Usage(format!("--preserve-fds {n}: descriptor {fd} is not open")));
        }
    }
    Ok(())
}

/// Runs a command; returns the process exit code.
pub fn run(cmd: Command, root: &Path) -> hutch::Result<u8> {
    match cmd {
        Command::Create(a) => create::run(a, root),
        Command::Start(a) => start::run(a, root),
        Command::State(a) => state::run(a, root),
        Command::Kill(a) => kill::run(a, root),
        Command::Delete(a) => delete::run(a, root),
        Command::Run(a) => run::run(a, root),
        Command::List(a) => list::run(a, root),
        Command::Spec(a) => spec::run(a),
        Command::Features => features::run(),
        Command::Exec(a) => exec::run(a, root),
        Command::Sandbox(c) => sandbox::run(c, root),
        Command::Ps(a) => ps::run(a, root),
        Command::Pause(a) => pause::pause(a, root),
        Command::Resume(a) => pause::resume(a, root),
        Command::Update(a) => update::run(a, root),
        Command::Events(a) => events::run(a, root),
    }
}
