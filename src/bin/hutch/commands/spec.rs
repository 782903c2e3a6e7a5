use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write config.json into
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    pub bundle: PathBuf,
}

pub fn run(args: Args) -> hutch::Result<u8> {
    let path = args.bundle.join(hutch::config::CONFIG_FILE);
    if path.exists() {
        return Err(hutch::Error::Usage(format!("{} exists; remove it first", path.display())));
    }
    let json = serde_json::to_string_pretty(&hutch::spec::default_spec()).expect("spec serializes");
    std::fs::write(&path, json + "\n")
        .map_err(|e| hutch::Error::Io { context: format!("write {}", path.display()), source: e })?;
    Ok(0)
}
