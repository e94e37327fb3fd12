//! `bosun-bench`: benchmarks of bosun on a fresh local control plane, with bosun running as a
//! separate release-built process so that its memory and CPU are its own. Every scenario
//! prints a table of figures and appends it, with the command, commit and machine, to
//! `docs/benchmarks.md`.

mod admission;
mod configmapsync;
mod engine;
mod fanout;
mod flood;
mod observe;
mod orphans;
mod plot;
mod report;
mod requests;
mod sharding;
mod soak;

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
    /// Print the figures without appending them to docs/benchmarks.md; the plots go to a
    /// temporary directory (printed), not docs/benchmarks/, unless --docs is given.
    #[arg(long, global = true)]
    no_record: bool,
    /// The directory of the record (`benchmarks.md`, appended to) and the plots
    /// (`benchmarks/*.svg`). Default: the repository's docs/.
    #[arg(long, global = true, value_name = "DIR")]
    docs: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// The engine's fan-out, steady state and update wave: N parents of a test CRD, each with
    /// three children (ConfigMap, Service, Secret) from a loopback hook, against a plain client
    /// making the same writes (the raw limit). One fresh control plane per engine, apply
    /// strategy and N. With several N, also how the figures grow with N (a table and charts).
    Engine {
        /// Parents; several, comma-separated, for a growth sweep (e.g. 1000,3000,10000,30000).
        #[arg(long, default_value = "1000", value_delimiter = ',', value_name = "N,…")]
        parents: Vec<usize>,
        /// `dynamic-apply`, `server-side-apply`, or `both`.
        #[arg(long, default_value = "both", value_parser = ["both", "dynamic-apply", "server-side-apply"])]
        strategy: String,
        /// The engine's --workers, and the raw client's concurrency.
        #[arg(long, default_value_t = 5, value_name = "N")]
        workers: usize,
        /// Measure this Metacontroller-compatible engine instead of bosun, e.g.
        /// 'metacontroller --kubeconfig {kubeconfig} --metrics-address {metrics_address}
        /// --health-probe-bind-address {health_address} --apply-strategy {apply_strategy}
        /// --workers {workers}' (run with sh; the placeholders are replaced).
        #[arg(long, value_name = "COMMAND", conflicts_with = "compare")]
        engine_command: Option<String>,
        /// Measure bosun and then this other engine (a command as for --engine-command), each
        /// on its own fresh control plane, and print one table with both and the ratios
        /// (bosun ÷ other).
        #[arg(long, value_name = "COMMAND")]
        compare: Option<String>,
        /// What the other engine is called in the tables and charts.
        #[arg(long, default_value = "other", value_name = "NAME")]
        other_name: String,
    },
    /// The soak: N parents converged, then a resync of every parent every --resync-seconds for
    /// --minutes, bosun's resident memory sampled every 10 s and charted: in steady state it
    /// must stay flat, and nothing may be written.
    Soak {
        /// Parents.
        #[arg(long, default_value_t = 10000, value_name = "N")]
        parents: usize,
        /// How long to soak.
        #[arg(long, default_value_t = 30, value_name = "MINUTES")]
        minutes: u64,
        /// The CompositeController's resyncPeriodSeconds during the soak.
        #[arg(long, default_value_t = 60, value_name = "SECONDS")]
        resync_seconds: u32,
        /// bosun's --workers.
        #[arg(long, default_value_t = 5, value_name = "N")]
        workers: usize,
    },
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
    /// A tenant's flood: ConfigMapSync in sync with N namespaces, then M MiB of ConfigMaps no
    /// ConfigMapSync names created in one namespace (half as content, half as annotations):
    /// bosun's memory before and after, its peak, and a source change still reaching every copy.
    Flood {
        /// MiB of ConfigMaps to create.
        #[arg(long, default_value_t = 300, value_name = "MIB")]
        mebibytes: usize,
        /// Destination namespaces of the ConfigMapSync that runs meanwhile.
        #[arg(long, default_value_t = 20, value_name = "N")]
        namespaces: usize,
    },
    /// Orphan children under load: N parents of a CompositeController with ConfigMap
    /// children, then M ConfigMaps no parent owns or selects, created as fast as the API server
    /// takes them, while a ConfigMapSync source in the same process changes again and again:
    /// how long each change takes to reach its copy, before and during the flood.
    Orphans {
        /// Parents.
        #[arg(long, default_value_t = 2000, value_name = "N")]
        parents: usize,
        /// Orphan ConfigMaps.
        #[arg(long, default_value_t = 2000, value_name = "M")]
        orphans: usize,
    },
    /// Admission latency: validate requests at a fixed rate to a loopback hook, directly and
    /// through bosun's admission endpoint (`bosun run --admission-url`) as the API server sends
    /// them; p50, p99 and max of each, and what bosun adds.
    Admission {
        /// Requests per second.
        #[arg(long, default_value_t = 200, value_name = "N")]
        rate: u32,
        /// Requests measured on each path.
        #[arg(long, default_value_t = 4000, value_name = "N")]
        requests: usize,
    },
    /// Sharding: the engine's fan-out (N parents × 3 children) by 1, 2, 3 … `bosun run
    /// --sharding` replicas, one fresh control plane per replica count: fan-out time, per
    /// replica its parents, hook calls, peak RSS and CPU, and the failover time after one
    /// replica is killed with SIGKILL.
    Sharding {
        /// Parents.
        #[arg(long, default_value_t = 30000, value_name = "N")]
        parents: usize,
        /// Replica counts to run, comma-separated.
        #[arg(long, default_value = "1,2,3", value_delimiter = ',', value_name = "N,…")]
        replicas: Vec<usize>,
        /// Each replica's --workers.
        #[arg(long, default_value_t = 5, value_name = "N")]
        workers: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Arguments with spaces (an engine command) are quoted, so the record can be pasted.
    let quoted = |argument: String| if argument.contains(' ') { format!("'{argument}'") } else { argument };
    let command = format!("cargo run --release -p bosun-bench -- {}", std::env::args().skip(1).map(quoted).collect::<Vec<_>>().join(" "));
    let external = matches!(&cli.scenario, Scenario::Engine { engine_command: Some(_), compare: None, .. });
    let bosun = match &cli.bosun {
        Some(path) => path.clone(),
        None if external => PathBuf::new(),
        None => engine::release_binary()?,
    };
    let docs = match &cli.docs {
        Some(docs) => docs.clone(),
        // A trial run must not overwrite the recorded runs' plots.
        None if cli.no_record => std::env::temp_dir().join("bosun-bench"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs"),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let reports = runtime.block_on(async {
        match cli.scenario {
            Scenario::Configmapsync { namespaces, concurrency } => {
                let plane = start_plane().await?;
                let report = configmapsync::run(&plane.client()?, plane.kubeconfig_path(), &bosun, namespaces, concurrency.max(1)).await;
                plane.stop();
                Ok::<_, anyhow::Error>(vec![report?])
            }
            Scenario::Flood { mebibytes, namespaces } => {
                let plane = start_plane().await?;
                let report = flood::run(&plane.client()?, plane.kubeconfig_path(), &bosun, mebibytes, namespaces.max(1)).await;
                plane.stop();
                Ok(vec![report?])
            }
            Scenario::Admission { rate, requests } => {
                let plane = start_plane().await?;
                let report = admission::run(&plane.client()?, plane.kubeconfig_path(), &bosun, rate.max(1), requests.max(1)).await;
                plane.stop();
                Ok(vec![report?])
            }
            Scenario::Orphans { parents, orphans } => {
                let plane = start_plane().await?;
                let report = orphans::run(&plane.client()?, plane.kubeconfig_path(), &bosun, parents, orphans).await;
                plane.stop();
                Ok(vec![report?])
            }
            Scenario::Soak { parents, minutes, resync_seconds, workers } => {
                let plane = start_plane().await?;
                let options = soak::Options { parents, minutes, resync_seconds: resync_seconds.max(1), workers: workers.max(1) };
                let report = soak::run(&plane.client()?, plane.kubeconfig_path(), &bosun, &docs, &options).await;
                plane.stop();
                Ok(vec![report?])
            }
            Scenario::Sharding { parents, replicas, workers } => {
                let (mut reports, mut curves) = (Vec::new(), Vec::new());
                for count in replicas {
                    let plane = start_plane().await?;
                    let run = sharding::run(&plane.client()?, plane.kubeconfig_path(), &bosun, parents, count.max(1), workers.max(1)).await;
                    plane.stop();
                    let run = run?;
                    curves.push(run.curve);
                    reports.push(run.report);
                }
                if let Some(last) = reports.last_mut() {
                    let title = format!("Sharding: {parents} parents converged on 1, 2, 3 … replicas");
                    last.plot(&docs, &format!("sharding-{parents}"), &plot::Chart::convergence(title, &curves));
                }
                Ok(reports)
            }
            Scenario::Engine { parents, strategy, workers, engine_command, compare, other_name } => {
                let strategies: Vec<&str> =
                    if strategy == "both" { vec!["dynamic-apply", "server-side-apply"] } else { vec![strategy.as_str()] };
                // (name, command: none for bosun), in the order they run.
                let engines: Vec<(String, Option<String>)> = match (engine_command, compare) {
                    (Some(command), _) => vec![(other_name, Some(command))],
                    (None, Some(command)) => vec![("bosun".into(), None), (other_name, Some(command))],
                    (None, None) => vec![("bosun".into(), None)],
                };
                let mut reports = Vec::new();
                for strategy in strategies {
                    let mut sweep = Vec::new();
                    for &n in &parents {
                        let mut runs = Vec::new();
                        for (name, command) in &engines {
                            let plane = start_plane().await?;
                            let options = fanout::Options {
                                parents: n,
                                strategy: strategy.to_owned(),
                                workers: workers.max(1),
                                engine_command: command.clone(),
                                engine_name: name.clone(),
                            };
                            let run = fanout::run(&plane.client()?, plane.kubeconfig_path(), &bosun, &options).await;
                            plane.stop();
                            runs.push(run?);
                        }
                        let mut report = match runs.as_slice() {
                            [one, other] => one.compared(other),
                            [one] => one.report(),
                            _ => unreachable!("one or two engines"),
                        };
                        report.plot(&docs, &format!("fanout-{n}-{strategy}"), &fanout::Figures::chart(&runs));
                        reports.push(report);
                        sweep.extend(runs);
                    }
                    if parents.len() > 1 {
                        reports.push(fanout::growth(&sweep, &docs));
                    }
                }
                Ok(reports)
            }
        }
    })?;
    for report in &reports {
        println!("{}", report.table());
        if !cli.no_record {
            let path = report.record(&docs, &command)?;
            eprintln!("recorded in {}", path.display());
        }
    }
    Ok(())
}

async fn start_plane() -> anyhow::Result<bosun_testenv::ControlPlane> {
    eprintln!("starting a local control plane …");
    Ok(bosun_testenv::ControlPlane::start().await?)
}
