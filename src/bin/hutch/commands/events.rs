use std::path::Path;
use std::time::{Duration, Instant};

use hutch::container::Container;
use hutch::oom::OomWatcher;
use hutch::state::Status;

#[derive(clap::Args)]
pub struct Args {
    /// Print the statistics once and exit
    #[arg(long)]
    pub stats: bool,
    /// Interval between statistics (5s, 500ms, ...)
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Container id
    pub id: String,
}

/// Prints JSON lines as runc does: `{"type":"stats",...}` every interval and `{"type":"oom",...}`
/// as OOM kills happen, until the container stops. The container's lock is only held briefly,
/// so other commands are never kept waiting.
pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    let c = Container::load(root, &args.id)?;
    if args.stats {
        println!("{}", c.stats_event()?);
        return Ok(0);
    }
    let cg = c.cgroup();
    drop(c);
    let mut oom = cg.memory_dir().and_then(|d| OomWatcher::new(d, cg.is_v2()).ok());
    let mut next = Instant::now();
    loop {
        let running = match Container::load(root, &args.id) {
            Ok(c) if c.status() != Status::Stopped => Some(c.stats_event()?),
            Ok(_) | Err(hutch::Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let Some(stats) = running else { break };
        if Instant::now() >= next {
            println!("{stats}");
            next += args.interval;
        }
        let wait = next.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
        let kills = match &mut oom {
            Some(w) => w.wait(wait),
            None => {
                std::thread::sleep(wait);
                0
            }
        };
        for _ in 0..kills {
            println!("{}", hutch::stats::oom_event(&args.id));
        }
    }
    // A last look: an OOM kill that ended the container is still reported.
    for _ in 0..oom.as_mut().map_or(0, |w| w.take()) {
        println!("{}", hutch::stats::oom_event(&args.id));
    }
    Ok(0)
}
