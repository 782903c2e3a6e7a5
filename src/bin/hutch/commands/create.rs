use std::path::{Path, PathBuf};

use hutch::container::{self, CreateOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Path to the bundle directory (config.json and rootfs)
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    pub bundle: PathBuf,
    /// Write the container's init pid to this file
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the terminal's master to (needed with process.terminal)
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot_root (for a rootfs on ramfs): move the rootfs and chroot instead
    #[arg(long)]
    pub no_pivot: bool,
    /// Pass N extra descriptors (3 .. 3+N-1) to the container
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: i32,
    /// Container id
    pub id: String,
}

impl Args {
    pub fn options(&self, root: &Path) -> CreateOptions {
        CreateOptions {
            root: root.to_path_buf(),
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
            ephemeral: false,
            seccomp: None,
        }
    }
}

pub fn run(args: Args, root: &Path) -> hutch::Result<u8> {
    let opts = args.options(root);
    let config = hutch::config::Config::load(&opts.bundle)?;
    if config.process().terminal() == Some(true) && opts.console_socket.is_none() {
        return Err(hutch::Error::Usage(
            "process.terminal is set: create needs --console-socket to hand over the terminal".into(),
        ));
    }
    container::create_from_config(&opts, &config)?;
    Ok(0)
}
