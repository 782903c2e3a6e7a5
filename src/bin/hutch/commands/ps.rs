use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use hutch::container::Container;

#[derive(clap::Args)]
pub struct Args {
    /// Output format: a `ps` table, or a JSON array of pids
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Container id
    pub id: String,
    /// Options for ps(1) with --format table (default: -ef)
    #[arg(last = true)]
    pub ps_args: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    let c = Container::load(root, &args.id)?;
    let pids: Vec<i32> = c.pids().iter().map(|p| p.as_raw()).collect();
    drop(c);
    if let Format::Json = args.format {
        println!("{}", serde_json::to_string(&pids).expect("json"));
        return Ok(0);
    }
    // As runc does: run the host's ps and keep the header and the container's rows.
    let ps_args = if args.ps_args.is_empty() { vec!["-ef".to_string()] } else { args.ps_args };
    let out = Command::new("ps")
        .args(&ps_args)
        .output()
        .map_err(|e| hutch::Error::Io { context: "run ps".into(), source: e })?;
    if !out.status.success() {
        return Err(hutch::Error::Usage(format!(
            "ps {}: {}",
            ps_args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| hutch::Error::Usage("ps output has no PID column".into()))?;
    let wanted: HashSet<i32> = pids.into_iter().collect();
    println!("{header}");
    for line in lines {
        if line.split_whitespace().nth(col).and_then(|p| p.parse().ok()).is_some_and(|p| wanted.contains(&p))
        {
            println!("{line}");
        }
    }
    Ok(0)
}
