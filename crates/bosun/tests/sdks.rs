//! The hook SDKs' own test suites — run as their ecosystems run them, `pytest` and `npm test`
//! in each SDK's folder — TypeScript's compiler on the types, and the example hooks replaying
//! their recorded exchanges, run from the workspace's tests so that `cargo test --workspace`
//! (and CI) covers them.

use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Runs `program args` in the repository's root with `env`; fails the test with its output
/// unless it succeeds.
fn passes(program: &str, args: &[&str], env: &[(&str, &str)]) {
    passes_in(".", program, args, env);
}

/// Runs `program args` in `dir` of the repository, as [`passes`].
fn passes_in(dir: &str, program: &str, args: &[&str], env: &[(&str, &str)]) {
    let output = Command::new(program)
        .current_dir(format!("{ROOT}/{dir}"))
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

/// As a Python developer runs them: `pytest` in the SDK's folder, nothing installed first.
#[test]
fn the_python_sdk_passes_its_tests() {
    passes_in("sdk/python", "python3", &["-m", "pytest", "-q", "-p", "no:cacheprovider"], &[]);
}

#[test]
fn the_podservice_hook_answers_its_recorded_exchanges() {
    passes("python3", &["-m", "unittest", "discover", "-s", "examples/podservice", "-p", "test_*.py"], &[]);
}

/// `node --test` with the test files of `dir` (Node 18 takes no directory).
fn node_tests(dir: &str) {
    let mut files: Vec<String> = std::fs::read_dir(format!("{ROOT}/{dir}"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".test.js"))
        .map(|name| format!("{dir}/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "tests in {dir}");
    let args: Vec<&str> = ["--test"].into_iter().chain(files.iter().map(String::as_str)).collect();
    passes("node", &args, &[]);
}

/// As a Node.js developer runs them: `npm test` in the SDK's folder.
#[test]
fn the_node_sdk_passes_its_tests() {
    passes_in("sdk/typescript", "npm", &["test", "--silent"], &[]);
}

/// Its types compile, in use as a hook author writes them, with the TypeScript its
/// package.json pins (installed through npm on first use).
#[test]
fn the_node_sdks_types_compile() {
    passes("npm", &["install", "--prefix", "sdk/typescript", "--no-audit", "--no-fund", "--loglevel=error"], &[]);
    passes("node", &["sdk/typescript/node_modules/typescript/bin/tsc", "-p", "sdk/typescript"], &[]);
}

#[test]
fn the_ingress_annotator_hook_answers_its_recorded_exchanges() {
    node_tests("examples/ingress-annotator/test");
}
