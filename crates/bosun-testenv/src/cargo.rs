//! Building one of the workspace's binaries from a process that cargo started (`cargo run`,
//! `cargo test`), as a plain `cargo build` in a shell would.

use std::process::{Command, ExitStatus};

/// The variables cargo sets for the package it runs, besides every `CARGO_PKG_*`.
const PACKAGE_VARIABLES: [&str; 5] =
    ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE"];

/// Runs `cargo build` with `args` (the cargo that started this process, if one did), without
/// the variables cargo set for this process's package. Passed on, they change the fingerprint
/// of build scripts that read them (ring's reads `CARGO_MANIFEST_DIR`), so the build, and
/// every plain `cargo build` after it, would rebuild those crates and all that depends on them.
pub fn cargo_build(args: &[&str]) -> std::io::Result<ExitStatus> {
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|name| name.starts_with("CARGO_PKG_") || PACKAGE_VARIABLES.contains(&name)) {
            build.env_remove(name);
        }
    }
    build.arg("build").args(args).status()
}
