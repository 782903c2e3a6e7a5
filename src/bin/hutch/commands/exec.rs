use std::path::{Path, PathBuf};

use hutch::container::{Container, ExecOptions};
use hutch::foreground::{self, SignalGuard};
use oci_spec::runtime::{Capability, Process};

#[derive(clap::Args)]
pub struct Args {
    /// A process.json (the OCI `process` object) to run instead of COMMAND and the flags
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Allocate a terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Unix socket to send the terminal's master to
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs, instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid to this file
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Add an environment variable (KEY=VALUE); repeatable
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory in the container
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// User as UID[:GID]
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Additional group ids; repeatable
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Add a capability to every set; repeatable
    #[arg(short, long = "cap", value_name = "CAP")]
    pub caps: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass N extra descriptors (3 .. 3+N-1) to the process
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: i32,
    /// Container id
    pub id: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn usage(msg: impl Into<String>) -> hutch::Error {
    hutch::Error::Usage(msg.into())
}

/// The process to run: --process, or the container's own process with the flags applied.
fn process(args: &Args, c: &Container) -> hutch::Result<Process> {
    if let Some(path) = &args.process {
        let text = std::fs::read(path).map_err(|e| usage(format!("--process {}: {e}", path.display())))?;
        let mut de = serde_json::Deserializer::from_slice(&text);
        return serde_path_to_error::deserialize(&mut de)
            .map_err(|e| usage(format!("--process {}: {}: {}", path.display(), e.path(), e.inner())));
    }
    if args.command.is_empty() {
        return Err(usage("exec needs a COMMAND (or --process FILE)"));
    }
    let mut p = c.process_template()?;
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &args.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &args.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let parse =
            |v: &str| v.parse::<u32>().map_err(|_| usage(format!("--user {u:?}: expected UID[:GID]")));
        p.user_mut().set_uid(parse(uid)?);
        p.user_mut().set_gid(parse(gid)?);
    }
    if !args.additional_gids.is_empty() {
        p.user_mut().set_additional_gids(Some(args.additional_gids.clone()));
    }
    if !args.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &args.caps {
            let cap: Capability = serde_json::from_value(serde_json::Value::String(name.clone()))
                .map_err(|_| usage(format!("--cap {name:?}: unknown capability")))?;
            let with = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut set = set.clone().unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            caps.set_bounding(with(caps.bounding()));
            caps.set_effective(with(caps.effective()));
            caps.set_permitted(with(caps.permitted()));
            caps.set_inheritable(with(caps.inheritable()));
            caps.set_ambient(with(caps.ambient()));
        }
        p.set_capabilities(Some(caps));
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    let c = Container::load(root, &args.id)?;
    let process = process(&args, &c)?;
    let opts = ExecOptions {
        process,
        console_socket: args.console_socket.clone(),
        pid_file: args.pid_file.clone(),
        detach: args.detach,
        preserve_fds: args.preserve_fds,
    };
    // Blocked before the process exists, so its exit cannot be missed.
    let signals = if args.detach { None } else { Some(SignalGuard::new()?) };
    let execd = c.exec(&opts)?;
    drop(c);
    match signals {
        None => Ok(0),
        Some(signals) => Ok(foreground::supervise(execd.pid, execd.console, signals)?.clamp(0, 255) as u8),
    }
}
