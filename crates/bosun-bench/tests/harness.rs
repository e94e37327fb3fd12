//! The benchmark command end to end at small sizes, on its own local control planes: bosun
//! measured at two N (a growth sweep), then side by side with another engine started by a
//! command (`--compare`); the printed tables, the appended record and the charts. Times are
//! printed, never asserted; the write counts are exact, so they are.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `bosun`, built (debug is enough here) next to this test's target directory.
fn bosun() -> PathBuf {
    let status = bosun_testenv::cargo_build(&["--quiet", "-p", "bosun"]).unwrap();
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

/// The cells after the first of the row that starts with `name`.
fn cells<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    let line =
        table.lines().find(|line| line.starts_with(&format!("| {name}"))).unwrap_or_else(|| panic!("no figure {name:?} in\n{table}"));
    line.trim_matches('|').split(" | ").skip(1).map(str::trim).collect()
}

fn figure<'a>(table: &'a str, name: &str) -> &'a str {
    cells(table, name)[0]
}

#[test]
fn the_engine_benchmark_measures_bosun_grows_with_n_and_compares_with_any_engine_command() {
    let bosun = bosun();
    let docs = std::env::temp_dir().join(format!("bosun-bench-{}", bosun_testenv::unique_suffix()));

    let (table, record) = bench(
        &docs,
        &["engine", "--parents", "20,40", "--strategy", "dynamic-apply", "--workers", "2", "--bosun", bosun.to_str().unwrap()],
    );
    assert_eq!(figure(&table, "fan-out writes"), "20 PATCH benchparents/status, 60 POST");
    assert_eq!(figure(&table, "steady state: full resync → writes"), "0");
    assert_eq!(figure(&table, "steady state: hook calls per parent"), "1.00");
    for name in [
        "fan-out ÷ raw limit",
        "update wave ÷ raw limit",
        "peak RSS (80 objects watched)",
        "peak RSS (160 objects watched)",
        "CPU over all phases",
    ] {
        figure(&table, name);
    }
    for size in [20, 40] {
        assert!(
            record.contains(&format!("### Engine fan-out: {size} parents × 3 children, dynamic-apply, --workers 2 (bosun)")),
            "{record}"
        );
        let svg = linked_chart(&docs, &record, &format!("fanout-{size}-dynamic-apply"));
        for text in ["Engine fan-out", "time since start (s)", "parents converged", ">bosun fan-out<", ">raw limit"] {
            assert!(svg.contains(text), "{text} missing from the chart:\n{svg}");
        }
    }
    assert!(record.contains("`cargo run --release -p bosun-bench -- --docs"), "the command is recorded: {record}");
    for printed in table.split("\n\n").filter(|printed| !printed.trim().is_empty()) {
        assert!(record.contains(printed.trim()), "the table is recorded: {printed}\n{record}");
    }
    // The growth sweep: a row per N, and a chart of each figure against N.
    assert!(record.contains("### Engine growth: 20, 40 parents, dynamic-apply"), "{record}");
    assert_eq!(cells(&table, "40")[0], "bosun");
    for chart in ["fan-out-ratio", "rss", "cpu"] {
        let svg = linked_chart(&docs, &record, &format!("growth-dynamic-apply-{chart}"));
        assert!(svg.contains(">parents<") && svg.contains(">bosun<"), "{svg}");
    }

    // Side by side with another engine (bosun itself, started the way another one would be).
    let command = format!(
        "{} run --kubeconfig {{kubeconfig}} --metrics-address {{metrics_address}} --metrics-secure=false \
         --health-probe-bind-address {{health_address}} --apply-strategy {{apply_strategy}} --workers {{workers}}",
        bosun.display()
    );
    let (table, record) = bench(
        &docs,
        &[
            "engine",
            "--parents",
            "20",
            "--strategy",
            "server-side-apply",
            "--workers",
            "2",
            "--bosun",
            bosun.to_str().unwrap(),
            "--compare",
            &command,
            "--other-name",
            "copy",
        ],
    );
    assert!(table.starts_with("| figure | bosun | copy | bosun ÷ copy |"), "{table}");
    let writes = cells(&table, "fan-out writes");
    assert_eq!(writes[..3], ["60 APPLY, 20 PATCH benchparents/status", "60 APPLY, 20 PATCH benchparents/status", "—"]);
    assert_eq!(cells(&table, "steady state: full resync → writes")[..2], ["0", "0"]);
    let cpu = cells(&table, "CPU over all phases");
    assert!(cpu[2].parse::<f64>().is_ok(), "a ratio: {cpu:?}");
    assert!(record.contains("--workers 2 (bosun and copy)"), "{record}");
    let svg = linked_chart(&docs, &record, "fanout-20-server-side-apply");
    assert!(svg.contains(">bosun fan-out<") && svg.contains(">copy fan-out<") && svg.contains(">raw limit"), "{svg}");

    std::fs::remove_dir_all(&docs).unwrap();
}

/// The text of the chart `record` links whose name is `name` and a suffix (the commit).
fn linked_chart(docs: &Path, record: &str, name: &str) -> String {
    let link = format!("](benchmarks/{name}-");
    let start = record.find(&link).unwrap_or_else(|| panic!("no link to a {name} chart:\n{record}")) + "](benchmarks/".len();
    let file = &record[start..start + record[start..].find(')').unwrap()];
    std::fs::read_to_string(docs.join("benchmarks").join(file)).unwrap()
}
