//! config.json parsing and validation never panic, and every error names a field.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A bundle directory with an empty rootfs, so validation runs its checks past `root.path`.
fn bundle() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hutch-fuzz-bundle-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = hutch::config::parse(data) else { return };
    let bundle = bundle().clone();
    let file = bundle.join("config.json");
    if let Err(e) = hutch::config::Config::from_spec(spec, bundle, file) {
        match e {
            hutch::Error::Config { field, .. } => assert!(!field.is_empty()),
            other => panic!("validation must report a config error, got {other}"),
        }
    }
});
