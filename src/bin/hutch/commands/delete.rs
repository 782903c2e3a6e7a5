use std::path::Path;

use hutch::container::Container;

#[derive(clap::Args)]
pub struct Args {
    /// Kill a running container first
    #[arg(short, long)]
    pub force: bool,
    /// Container id
    pub id: String,
}

pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    match Container::load(root, &args.id) {
        Ok(c) => c.delete(args.force)?,
        Err(hutch::Error::NotFound(_)) if args.force => {}
        Err(e) => return Err(e),
    }
    Ok(0)
}
