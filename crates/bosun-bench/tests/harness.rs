//! The benchmark command end to end at a small size, on its own local control planes: bosun
//! measured as the default engine and, through `--engine-command`, as any other engine; the
//! printed table, the appended record and the plot. Times are printed, never asserted; the
//! write counts are exact, so they are.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `bosun`, built (debug is enough here) next to this test's target directory.
fn bosun() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo).args(["build", "--quiet", "-p", "bosun"]).status().unwrap();
    assert!(status.success(), "cargo build -p bosun failed");
    let profile = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_owned();
    profile.join("bosun")
}

/// Runs `bosun-bench` with `args`, recording into a fresh docs directory; returns the table
/// it printed and the record it appended.
fn bench(docs: &Path, args: &[&str]) -> (String, String) {
    std::fs::create_dir_all(docs).unwrap();
    std::fs::write(docs.join("benchmarks.md"), "# Benchmarks\n\n## Runs\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bosun-bench")).arg("--docs").arg(docs).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bosun-bench {args:?} failed:\n{stderr}");
    let table = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("{table}");
    (table, std::fs::read_to_string(docs.join("benchmarks.md")).unwrap())
}

fn figure<'a>(table: &'a str, name: &str) -> &'a str {
    let line =
        table.lines().find(|line| line.starts_with(&format!("| {name}"))).unwrap_or_else(|| panic!("no figure {name:?} in\n{table}"));
    line.rsplit('|').nth(1).unwrap().trim()
}

#[test]
fn the_engine_benchmark_measures_bosun_and_any_engine_command() {
    let bosun = bosun();
    let docs = std::env::temp_dir().join(format!("bosun-bench-{}", bosun_testenv::unique_suffix()));

    let (table, record) =
        bench(&docs, &["engine", "--parents", "20", "--strategy", "dynamic-apply", "--workers", "2", "--bosun", bosun.to_str().unwrap()]);
    assert_eq!(figure(&table, "fan-out writes"), "20 PATCH benchparents/status, 60 POST");
    assert_eq!(figure(&table, "steady state: full resync → writes"), "0");
    assert_eq!(figure(&table, "steady state: hook calls per parent"), "1.00");
    for name in ["fan-out ÷ raw limit", "update wave ÷ raw limit", "bosun peak RSS (80 objects watched)", "bosun CPU over all phases"] {
        figure(&table, name);
    }
    assert!(record.contains("### Engine fan-out: 20 parents × 3 children, dynamic-apply, --workers 2 (bosun)"), "{record}");
    assert!(record.contains("`cargo run --release -p bosun-bench -- --docs"), "the command is recorded: {record}");
    assert!(record.contains(&table), "the table is recorded: {record}");
    assert!(record.contains("![convergence](benchmarks/fanout-20-dynamic-apply.png)"), "{record}");
    let png = std::fs::read(docs.join("benchmarks/fanout-20-dynamic-apply.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // The same engine, started the way another one would be.
    let command = format!(
        "{} run --kubeconfig {{kubeconfig}} --metrics-address {{metrics_address}} \
         --health-probe-bind-address {{health_address}} --apply-strategy {{apply_strategy}} --workers {{workers}}",
        bosun.display()
    );
    let (table, record) =
        bench(&docs, &["engine", "--parents", "20", "--strategy", "server-side-apply", "--workers", "2", "--engine-command", &command]);
    assert_eq!(figure(&table, "fan-out writes"), "60 APPLY, 20 PATCH benchparents/status");
    assert_eq!(figure(&table, "steady state: full resync → writes"), "0");
    figure(&table, "engine peak RSS (80 objects watched)");
    assert!(record.contains("--workers 2 (engine)"), "{record}");

    std::fs::remove_dir_all(&docs).unwrap();
}
