use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use hutch::sandbox::profile::{self, Network};
use hutch::sandbox::{self, Request};

#[derive(Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Run one command in a sandbox and report how it ended (see docs/sandbox.md)
    Run(RunArgs),
    /// Warm mode: build the sandbox once, then run requests (JSON lines on stdin and --socket)
    /// each in a fresh process tree, answering each with a result line (see docs/sandbox.md)
    Serve(ServeArgs),
    /// List the named profiles
    Profiles,
    /// Choose a profile for a need and say why
    Select(SelectArgs),
}

#[derive(clap::Args)]
pub struct SelectArgs {
    /// How little the code is trusted: low, medium, high or critical
    #[arg(long)]
    pub security: profile::Security,
    /// The code needs the network
    #[arg(long)]
    pub network: bool,
    /// The code needs a GPU
    #[arg(long)]
    pub gpu: bool,
    /// Print {"profile", "reason"} as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// A file for the program's stdin (default: empty)
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// Write the result JSON to FILE, or "-" for stdout (the output is then only in the JSON)
    #[arg(long, value_name = "FILE|-")]
    pub result: Option<String>,
    /// The command and its arguments
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Runs at once (default: the number of CPUs); further requests wait their turn
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Also accept requests on this unix socket (then serve until SIGINT or SIGTERM)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

// What the sandbox is, for `run` and `serve` alike.
#[derive(clap::Args)]
pub struct SandboxArgs {
    /// Profile: a name from the profiles directory ($HUTCH_PROFILES) or a JSON file
    /// [default: default]
    #[arg(long, conflicts_with = "security")]
    pub profile: Option<String>,
    /// Choose the profile by need instead (see `hutch sandbox select`)
    #[arg(long)]
    pub security: Option<profile::Security>,
    /// The root filesystem to run in [default: a read-only view of the host's /usr, /bin,
    /// /lib*, /etc and /opt]
    #[arg(long, value_name = "DIR", conflicts_with = "bundle")]
    pub rootfs: Option<PathBuf>,
    /// An OCI bundle: its rootfs, and its process (args when no command is given, env, cwd);
    /// the isolation still comes from the profile
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Bind a host path in: SRC:DST, or SRC:DST:ro; repeatable
    #[arg(long, value_name = "SRC:DST[:ro]")]
    pub bind: Vec<sandbox::view::Bind>,
    /// CPU time the whole run may use (1s); ends it as "timeout"
    #[arg(long, value_parser = humantime::parse_duration)]
    pub cpu_time: Option<Duration>,
    /// Wall-clock limit (2s, 500ms); ends the run as "timeout"
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Memory limit (256M)
    #[arg(long, value_parser = parse_bytes)]
    pub memory: Option<u64>,
    /// Process limit
    #[arg(long)]
    pub pids: Option<i64>,
    /// Bytes of stdout kept (1M); past it the profile's on_output_limit applies
    #[arg(long, value_parser = parse_bytes)]
    pub stdout_limit: Option<u64>,
    /// Bytes of stderr kept
    #[arg(long, value_parser = parse_bytes)]
    pub stderr_limit: Option<u64>,
    /// Network: none (own namespace, down loopback), loopback (own namespace, 127.0.0.1
    /// up) or host
    #[arg(long, value_enum)]
    pub net: Option<NetArg>,
    /// Environment variable KEY=VALUE; repeatable
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory
    #[arg(long)]
    pub cwd: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetArg {
    None,
    Loopback,
    Host,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    profile::parse_bytes(s)
}

pub fn run(cmd: Command, root: &Path) -> hutch::Result<u8> {
    match cmd {
        Command::Profiles => {
            let dir = profile::dir();
            for name in profile::names(&dir) {
                let desc = profile::load(&name)
                    .map(|(p, _)| p.description)
                    .unwrap_or_else(|e| format!("(invalid: {e})"));
                println!("{name:10} {desc}");
            }
            Ok(0)
        }
        Command::Run(a) => run_one(a, root),
        Command::Select(a) => {
            let (name, reason) = profile::select(a.security, a.network, a.gpu);
            if a.json {
                println!("{}", serde_json::json!({"profile": name, "reason": reason}));
            } else {
                println!("{name}\t{reason}");
            }
            Ok(0)
        }
        Command::Serve(a) => serve(a, root),
    }
}

/// The request the flags describe, with the profile's values where a flag is absent.
fn request(a: SandboxArgs, mut command: Vec<String>, root: &Path) -> hutch::Result<Request> {
    let name = match (&a.profile, a.security) {
        (Some(p), _) => p.clone(),
        (None, Some(level)) => {
            let (name, reason) = profile::select(level, a.net == Some(NetArg::Host), false);
            log::info!("--security: profile {name}: {reason}");
            name.to_string()
        }
        (None, None) => "default".to_string(),
    };
    let (p, file) = profile::load(&name)?;
    let limit = |v: &Option<String>| v.as_deref().and_then(|s| profile::parse_bytes(s).ok());
    let usage = |flag: &str, p: &Path, e: &dyn std::fmt::Display| {
        hutch::Error::Usage(format!("{flag} {}: {e}", p.display()))
    };
    let mut env = Vec::new();
    let mut cwd = None;
    let (rootfs, host_view) = match (&a.rootfs, &a.bundle) {
        (Some(r), _) => (r.canonicalize().map_err(|e| usage("--rootfs", r, &e))?, false),
        (None, Some(b)) => {
            let b = b.canonicalize().map_err(|e| usage("--bundle", b, &e))?;
            let config = hutch::config::Config::load(&b)?;
            let proc = config.process();
            if command.is_empty() {
                command = proc.args().clone().unwrap_or_default();
            }
            env = proc.env().clone().unwrap_or_default();
            cwd = Some(proc.cwd().to_string_lossy().into_owned());
            (config.rootfs.clone(), false)
        }
        (None, None) => (sandbox::view::host_root(&root.join("sandbox"))?, true),
    };
    env.extend(a.env);
    Ok(Request {
        rootfs,
        host_view,
        args: command,
        env,
        cwd: a.cwd.or(cwd),
        timeout: a
            .timeout
            .or_else(|| p.limits.timeout.as_deref().and_then(|t| humantime::parse_duration(t).ok())),
        cpu_time: a.cpu_time,
        memory: a.memory.or_else(|| limit(&p.limits.memory)),
        pids: a.pids.or(p.limits.pids),
        stdout_limit: a.stdout_limit.or_else(|| limit(&p.limits.stdout)).unwrap_or(1 << 20),
        stderr_limit: a.stderr_limit.or_else(|| limit(&p.limits.stderr)).unwrap_or(1 << 20),
        on_output_limit: p.limits.on_output_limit,
        stdin: None,
        network: match a.net {
            Some(NetArg::None) => Network::None,
            Some(NetArg::Loopback) => Network::Loopback,
            Some(NetArg::Host) => Network::Host,
            None => p.network,
        },
        binds: a.bind,
        root: root.join("sandbox"),
        passthrough: false,
        profile_file: file,
        profile: p,
    })
}

fn run_one(a: RunArgs, root: &Path) -> hutch::Result<u8> {
    let result_to_stdout = a.result.as_deref() == Some("-");
    let mut req = request(a.sandbox, a.command, root)?;
    if req.args.is_empty() {
        return Err(hutch::Error::Usage(
            "no command: give one after --, or a --bundle whose process has args".into(),
        ));
    }
    req.stdin = a.stdin;
    req.passthrough = !result_to_stdout;
    let outcome = sandbox::run(&req);
    let json = serde_json::to_string_pretty(&outcome).expect("outcome serializes");
    match a.result.as_deref() {
        Some("-") => println!("{json}"),
        Some(file) => std::fs::write(file, json + "\n")
            .map_err(|e| hutch::Error::Io { context: format!("--result {file}"), source: e })?,
        None => {
            if let Some(e) = &outcome.setup_error {
                eprintln!("hutch: sandbox setup failed in stage {}: {}", e.stage, e.cause);
            }
        }
    }
    Ok(outcome.exit_code().clamp(0, 255) as u8)
}

fn serve(a: ServeArgs, root: &Path) -> hutch::Result<u8> {
    let base = request(a.sandbox, vec!["true".into()], root)?;
    let concurrency =
        a.concurrency.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    sandbox::serve::serve(&sandbox::serve::Options { base, concurrency, socket: a.socket })?;
    Ok(0)
}
