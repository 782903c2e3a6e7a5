use std::io::Read;
use std::path::{Path, PathBuf};

use hutch::container::Container;
use oci_spec::runtime::LinuxResources;

#[derive(clap::Args)]
pub struct Args {
    /// A linux.resources JSON document to apply ("-" reads stdin)
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with a unit: 256M)
    #[arg(long, value_parser = parse_bytes)]
    pub memory: Option<i64>,
    /// Memory plus swap limit (-1 for unlimited)
    #[arg(long, value_parser = parse_bytes, allow_negative_numbers = true)]
    pub memory_swap: Option<i64>,
    /// Memory soft limit
    #[arg(long, value_parser = parse_bytes)]
    pub memory_reservation: Option<i64>,
    /// CPU CFS quota in microseconds per period (-1 for none)
    #[arg(long, allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU shares (relative weight)
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPUs to run on (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to allocate from
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 for none)
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000)
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Container id
    pub id: String,
}

fn parse_bytes(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{s:?}: {e}"))
        .and_then(|v| i64::try_from(v).map_err(|_| format!("{s:?} is too large")))
}

fn bad(what: &str, e: impl std::fmt::Display) -> hutch::Error {
    hutch::Error::Usage(format!("--resources {what}: {e}"))
}

pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    let mut res: LinuxResources = match &args.resources {
        None => LinuxResources::default(),
        Some(p) => {
            let mut text = String::new();
            if p.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text).map_err(|e| bad("-", e))?;
            } else {
                text = std::fs::read_to_string(p).map_err(|e| bad(&p.display().to_string(), e))?;
            }
            let mut de = serde_json::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(&mut de)
                .map_err(|e| bad(&format!("{}: {}", p.display(), e.path()), e.inner()))?
        }
    };
    let mut mem = (*res.memory()).unwrap_or_default();
    let mut mem_set = res.memory().is_some();
    if let Some(v) = args.memory {
        mem.set_limit(Some(v));
        mem_set = true;
    }
    if let Some(v) = args.memory_swap {
        mem.set_swap(Some(v));
        mem_set = true;
    }
    if let Some(v) = args.memory_reservation {
        mem.set_reservation(Some(v));
        mem_set = true;
    }
    if mem_set {
        res.set_memory(Some(mem));
    }
    let mut cpu = res.cpu().clone().unwrap_or_default();
    let cpu_set = res.cpu().is_some()
        || args.cpu_quota.is_some()
        || args.cpu_period.is_some()
        || args.cpu_shares.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some();
    if let Some(v) = args.cpu_quota {
        cpu.set_quota(Some(v));
    }
    if let Some(v) = args.cpu_period {
        cpu.set_period(Some(v));
    }
    if let Some(v) = args.cpu_shares {
        cpu.set_shares(Some(v));
    }
    if let Some(v) = &args.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
    }
    if let Some(v) = &args.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
    }
    if cpu_set {
        res.set_cpu(Some(cpu));
    }
    if let Some(v) = args.pids_limit {
        let mut p = (*res.pids()).unwrap_or_default();
        p.set_limit(v);
        res.set_pids(Some(p));
    }
    if let Some(v) = args.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(v));
        res.set_block_io(Some(b));
    }
    Container::load(root, &args.id)?.update(&res)?;
    Ok(0)
}
