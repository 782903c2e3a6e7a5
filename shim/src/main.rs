//! containerd-shim-hutch-v2: the containerd shim (task API v2) for hutch, so that containerd
//! and Kubernetes (a RuntimeClass whose handler maps to `io.containerd.hutch.v2`) run
//! containers with hutch. See docs/ARCHITECTURE.md, "The containerd shim".

mod events;
mod metrics;
mod oom;
mod process;
mod runtime;
mod service;
mod stdio;
mod task;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().skip(1).any(|a| a == "-v" || a == "--version" || a == "-version") {
        println!("containerd-shim-hutch-v2 {} (containerd task API v2)", env!("CARGO_PKG_VERSION"));
        return;
    }
    containerd_shim::run::<service::Service>("io.containerd.hutch.v2", None);
}
