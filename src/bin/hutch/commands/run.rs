use std::path::Path;

use hutch::container::{self, Container};
use hutch::foreground::{self, SignalGuard};

#[derive(clap::Args)]
#[group(id = "run_args")]
pub struct Args {
    #[command(flatten)]
    pub create: super::create::Args,
    /// Return once the container runs, instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (foreground only)
    #[arg(long)]
    pub keep: bool,
}

pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    let opts = args.create.options(root);
    let config = hutch::config::Config::load(&opts.bundle)?;
    if args.detach && config.process().terminal() == Some(true) && opts.console_socket.is_none() {
        return Err(hutch::Error::Usage(
            "process.terminal is set: a detached run needs --console-socket to hand over the terminal".into(),
        ));
    }
    // Blocked before the program can run, so that no signal or SIGCHLD is missed.
    let signals = if args.detach { None } else { Some(SignalGuard::new()?) };
    // create and start in one: no start handshake.
    let created = container::create_running(&opts, &config, None)?;
    let c = created.container;
    let Some(signals) = signals else { return Ok(0) };
    let init = nix::unistd::Pid::from_raw(c.state.pid);
    let id = c.id().to_string();
    // Release the lock while the container runs, so that state, kill and friends work.
    drop(c);
    let code = foreground::supervise(init, created.console, signals)?;
    if !args.keep {
        Container::load(root, &id)?.delete(true)?;
    }
    Ok(code.clamp(0, 255) as u8)
}
