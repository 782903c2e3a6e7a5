use std::path::Path;
use std::str::FromStr;

use nix::sys::signal::Signal;

#[derive(clap::Args)]
pub struct Args {
    /// Signal every process of the container, not only its init
    #[arg(short, long)]
    pub all: bool,
    /// Container id
    pub id: String,
    /// Signal, by name (TERM, SIGTERM) or number (15)
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// Parses a signal the way runc accepts them: "9", "KILL", "SIGKILL", "kill".
pub fn parse_signal(s: &str) -> hutch::Result<Signal> {
    let bad = || hutch::Error::Usage(format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    Signal::from_str(&name).map_err(|_| bad())
}

pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    let sig = parse_signal(&args.signal)?;
    hutch::container::Container::load(root, &args.id)?.kill(sig, args.all)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_forms() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
