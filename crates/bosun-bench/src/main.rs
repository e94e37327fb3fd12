//! `bosun-bench`: benchmarks of bosun on a fresh local control plane, with bosun running as a
//! separate release-built process so that its memory and CPU are its own. Every scenario
//! prints a table of figures and appends it, with the command, commit and machine, to
//! `docs/benchmarks.md`.

mod configmapsync;
mod engine;
mod observe;
mod report;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Benchmarks of bosun against a local control plane: convergence time, API requests and
/// memory, each compared with a plain client making the same writes (the physical limit).
#[derive(Debug, Parser)]
#[command(name = "bosun-bench")]
struct Cli {
    /// The bosun binary to measure. Default: build it with `cargo build --release -p bosun`
    /// and use the one next to this benchmark.
    #[arg(long, global = true, value_name = "PATH")]
    bosun: Option<PathBuf>,
    /// Print the figures without appending them to docs/benchmarks.md.
    #[arg(long, global = true)]
    no_record: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// ConfigMapSync fan-out: one source copied to N namespaces chosen by a label selector;
    /// the time until every copy exists and until every copy carries a source change, the
    /// writes each took, bosun's memory and CPU, and the same writes by a plain client.
    Configmapsync {
        /// Destination namespaces.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        namespaces: usize,
        /// Copies written at once (bosun's --configmapsync-write-concurrency, and the plain
        /// client's concurrency).
        #[arg(long, default_value_t = 16, value_name = "N")]
        concurrency: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = format!("cargo run --release -p bosun-bench -- {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let bosun = match &cli.bosun {
        Some(path) => path.clone(),
        None => engine::release_binary()?,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        eprintln!("starting a local control plane …");
        let plane = bosun_testenv::ControlPlane::start().await?;
        let client = plane.client()?;
        let report = match cli.scenario {
            Scenario::Configmapsync { namespaces, concurrency } => {
                configmapsync::run(&client, plane.kubeconfig_path(), &bosun, namespaces, concurrency.max(1)).await
            }
        };
        plane.stop();
        report
    })?;
    println!("{}", report.table());
    if !cli.no_record {
        let path = report.record(&command)?;
        eprintln!("recorded in {}", path.display());
    }
    Ok(())
}
