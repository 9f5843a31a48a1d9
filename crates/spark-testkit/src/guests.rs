//! Locating (and if needed building) the guest components.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root (two levels above this crate).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// The directory holding the built guest components.
pub fn guests_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SPARK_GUESTS_DIR") {
            return PathBuf::from(dir);
        }
        let guests = repo_root().join("guests");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&guests)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
            .arg(guests.join("target"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .status()
            .expect("running cargo to build the guests");
        assert!(status.success(), "building the guests failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)");
        guests.join("target/wasm32-wasip2/release")
    })
}

/// The path of guest component `name` (`hello`, `echo`, `busy`, `big`, `faults`,
/// `inventory-sync`).
pub fn guest(name: &str) -> PathBuf {
    let file = name.replace('-', "_");
    let dir = guests_dir();
    for candidate in [
        dir.join(format!("{name}.wasm")),
        dir.join(format!("{file}.wasm")),
    ] {
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("guest component {name}.wasm not found in {}", dir.display());
}
