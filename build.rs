//! Link flags for the `hutch` binary.

fn main() {
    // Pack the binary's ~15,000 relative relocations (DT_RELR): at every start the dynamic
    // loader otherwise reads ~370 KB of them and writes each one, faulting in pages; with
    // them packed the loader's share of a container start mostly goes. The linker only packs
    // when the C library can read packed relocations (glibc 2.36+), and ignores the flag
    // where it does not know it.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rerun-if-changed=build.rs");
}
