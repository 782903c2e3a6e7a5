//! `hutch`: a runc-compatible command line over the hutch library.

mod commands;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "hutch",
    version,
    about = "A low-level sandbox runtime for untrusted code (OCI runtime, runc-compatible)",
    long_about = "hutch runs OCI bundles (a directory with config.json and a root filesystem) in \
        isolated containers built from Linux namespaces, pivot_root, cgroups, capabilities and \
        rlimits. Its commands, flags and exit codes follow runc's.\n\nLogging: RUST_LOG (e.g. RUST_LOG=debug) sets \
        the level; --debug is RUST_LOG=debug.",
    after_help = "Typical lifecycle:\n  hutch create --bundle DIR ID   # set up, init waits\n  \
        hutch start ID                 # run the program\n  hutch state ID                 # OCI state JSON\n  \
        hutch kill ID TERM             # signal it\n  hutch delete ID                # remove it\n\
        Or all at once in the foreground: hutch run --bundle DIR ID"
)]
pub struct Cli {
    /// Directory for container state (tmpfs recommended)
    #[arg(long, default_value = hutch::state::DEFAULT_ROOT, value_name = "DIR")]
    root: PathBuf,
    /// Write logs to this file instead of stderr (containerd passes one)
    #[arg(long, value_name = "PATH")]
    log: Option<PathBuf>,
    /// Log format
    #[arg(long, value_enum, default_value_t = logging::Format::Text)]
    log_format: logging::Format,
    /// Log at debug level
    #[arg(long)]
    debug: bool,
    /// Use systemd to manage cgroups (not supported: hutch writes cgroupfs directly)
    #[arg(long)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Checked before hutch opens anything: when 3..3+N are all open, every descriptor hutch
    // opens later gets a higher number, so none of its own can slip into the container.
    if let Err(e) = commands::check_preserved_fds(&cli.command) {
        return fail(e);
    }
    logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    if cli.systemd_cgroup {
        return fail(hutch::Error::Usage(
            "--systemd-cgroup is not supported: hutch manages cgroups through cgroupfs; drop the flag \
             (containerd: SystemdCgroup = false)"
                .into(),
        ));
    }
    match commands::run(cli.command, &cli.root) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(e),
    }
}

/// Reports an error as runc does: to the log (where containerd reads it) and to stderr.
fn fail(e: hutch::Error) -> ExitCode {
    if logging::logs_to_file() {
        log::error!("{e}");
    }
    eprintln!("hutch: error: {e}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Subcommands are built only when used (`defer`), so a flattened struct's doc comment
    /// could become a subcommand's about: each must keep its own.
    #[test]
    fn the_command_line_is_consistent_and_each_subcommand_says_what_it_does() {
        let mut cli = super::Cli::command();
        cli.build();
        cli.clone().debug_assert();
        fn walk(cmd: &clap::Command, seen: &mut std::collections::HashMap<String, String>) {
            // `help` mirrors the others.
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
                assert!(!about.is_empty(), "{} has no about", sub.get_name());
                if let Some(other) = seen.insert(about.clone(), sub.get_name().into()) {
                    panic!("{} and {other} share their about: {about:?}", sub.get_name());
                }
                walk(sub, seen);
            }
        }
        walk(&cli, &mut Default::default());
    }
}
