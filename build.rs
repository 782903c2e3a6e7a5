//! Links the `hutch` binary with its start-up functions side by side (src/bin/hutch/startup.order).
//!
//! Every container start runs hutch's binary from its first instruction, and what it runs is
//! spread over 6 MB of text: a sandbox run of /bin/true faulted in about 130 text pages, each
//! fault mapping up to 16 pages around it. Placed in the order they first run, the ~1,900
//! functions of the ways hutch starts containers fit in about 1.5 MB: about 100 fewer page
//! faults and 1.3 ms less per sandbox run (8.18 to 6.92 ms, 150 interleaved runs). The order
//! comes from perf samples of real starts (`benches/startup_order.py`).
//!
//! A Rust symbol's name carries hashes of its crates' build (`-C metadata`), which change with
//! the build command (`cargo build` and `cargo test --workspace` unify features differently),
//! the dependencies and the compiler. So the list names Rust functions with those hashes as
//! `*`: v0 mangling (.cargo/config.toml) spells out generic arguments, and what is left of a
//! name still tells one instantiation from another. Those names become input-section patterns
//! of a linker script (rustc gives every function a section `.text.<symbol>`), placed in the
//! list's order in an output section of their own before `.text`. The C functions the list
//! names (glibc's, linked statically; their objects hold several functions in one `.text`)
//! keep their names and go to lld's `--symbol-ordering-file`, which puts them first in `.text`.
//! A function the list does not name is only placed later: a stale list costs speed, never
//! correctness.
//!
//! lld (rustc's default linker on x86_64-unknown-linux-gnu since Rust 1.90) takes both; other
//! targets link as before.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/hutch/startup.order");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return;
    }
    let Ok(list) = std::fs::read_to_string(&order) else { return };
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let (script, symbols) = link_inputs(&list);
    let (script_path, symbols_path) = (out.join("startup.ld"), out.join("startup.symbols"));
    std::fs::write(&script_path, script).expect("write startup.ld");
    std::fs::write(&symbols_path, symbols).expect("write startup.symbols");
    println!("cargo:rustc-link-arg-bin=hutch=-Wl,-T,{}", script_path.display());
    println!("cargo:rustc-link-arg-bin=hutch=-Wl,--symbol-ordering-file={}", symbols_path.display());
    // Names missing from this build (renamed, inlined) are expected; see above.
    println!("cargo:rustc-link-arg-bin=hutch=-Wl,--no-warn-symbol-ordering");
}

/// The linker script for the list's patterns and the ordering file for its exact names.
fn link_inputs(list: &str) -> (String, String) {
    let mut script = String::from("SECTIONS {\n  .text.startup_order : {\n");
    let mut symbols = String::new();
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if name.contains('*') {
            // One input section description per pattern keeps the list's order; a cold
            // function (`.text.unlikely.`) the start still ran goes with it.
            writeln!(script, "    *(.text.{name} .text.unlikely.{name})").unwrap();
        } else {
            writeln!(symbols, "{name}").unwrap();
        }
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    (script, symbols)
}
