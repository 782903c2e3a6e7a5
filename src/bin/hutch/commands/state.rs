use std::path::Path;

#[derive(clap::Args)]
pub struct Args {
    /// Container id
    pub id: String,
}

pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    let c = hutch::container::Container::load(root, &args.id)?;
    println!("{}", serde_json::to_string_pretty(&c.oci_state()).expect("json"));
    Ok(0)
}
