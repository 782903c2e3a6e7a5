use std::path::Path;

use hutch::container::Container;

#[derive(clap::Args)]
pub struct Args {
    /// Container id
    pub id: String,
}

pub fn pause(args: Args, root: &Path) -> hutch::Result<u8> {
    Container::load(root, &args.id)?.pause()?;
    Ok(0)
}

pub fn resume(args: Args, root: &Path) -> hutch::Result<u8> {
    Container::load(root, &args.id)?.resume()?;
    Ok(0)
}
