use std::path::Path;

#[derive(clap::Args)]
pub struct Args {
    /// Container id
    pub id: String,
}

pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    hutch::container::Container::load(root, &args.id)?.start()?;
    Ok(0)
}
