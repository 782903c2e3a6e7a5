//! Links the `hutch` binary with its start-up functions side by side (src/bin/hutch/startup.order).
//!
//! Every container start runs hutch's binary from its first instruction, and what it runs is
//! spread over 6 MB of text: a sandbox run of /bin/true faulted in about 130 text pages, each
//! fault mapping up to 16 pages around it. Placed in the order they first run, the ~1,900
//! functions of the ways hutch starts containers fit in about 1.5 MB: about 100 fewer page
//! faults and 1.3 ms less per sandbox run (8.18 to 6.92 ms, 150 interleaved runs). The order
//! comes from perf samples of real starts (`benches/startup_order.py`); a function it does not
//! name, new since, is only placed later, so a stale list costs speed, never correctness.
//!
//! lld (rustc's default linker on x86_64-unknown-linux-gnu since Rust 1.90) takes the list;
//! other targets link as before.

fn main() {
    let order = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/hutch/startup.order");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") || !order.exists() {
        return;
    }
    println!("cargo:rustc-link-arg-bin=hutch=-Wl,--symbol-ordering-file={}", order.display());
    // Names missing from this build (renamed, inlined) are expected; see above.
    println!("cargo:rustc-link-arg-bin=hutch=-Wl,--no-warn-symbol-ordering");
}
