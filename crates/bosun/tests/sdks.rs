//! The hook SDKs' own test suites, and the example hooks replaying their recorded exchanges,
//! run from the workspace's tests so that `cargo test --workspace` (and CI) covers them.

use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Runs `program args` in the repository's root with `env`; fails the test with its output
/// unless it succeeds.
fn passes(program: &str, args: &[&str], env: &[(&str, &str)]) {
    let output = Command::new(program)
        .current_dir(ROOT)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|error| panic!("{program} runs: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_python_sdk_passes_its_tests() {
    passes("python3", &["-m", "unittest", "discover", "-s", "sdk/python/tests", "-t", "sdk/python"], &[("PYTHONPATH", "sdk/python/src")]);
}

#[test]
fn the_podservice_hook_answers_its_recorded_exchanges() {
    passes("python3", &["-m", "unittest", "discover", "-s", "examples/podservice", "-p", "test_*.py"], &[]);
}
