//! Logging: RUST_LOG-style filters, to stderr or to --log, as text or as the JSON lines
//! containerd reads from runc ({"level","msg","time"}).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

static TO_FILE: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn logs_to_file() -> bool {
    TO_FILE.load(Ordering::Relaxed)
}

pub fn init(file: Option<&Path>, format: Format, debug: bool) {
    let mut b = env_logger::Builder::new();
    b.filter_level(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Warn });
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    if let Some(path) = file {
        match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => {
                b.target(env_logger::Target::Pipe(Box::new(f)));
                TO_FILE.store(true, Ordering::Relaxed);
            }
            Err(e) => eprintln!("hutch: --log {}: {e}; logging to stderr", path.display()),
        }
    }
    match format {
        Format::Json => b.format(|buf, rec| {
            let line = serde_json::json!({
                "level": rec.level().as_str().to_lowercase(),
                "msg": rec.args().to_string(),
                "time": humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            });
            writeln!(buf, "{line}")
        }),
        Format::Text => b.format(|buf, rec| {
            writeln!(buf, "hutch: {}: {}", rec.level().as_str().to_lowercase(), rec.args())
        }),
    };
    let _ = b.try_init();
}
