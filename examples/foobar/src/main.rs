//! `foobar`: runs the FooBar controller against the cluster of the current kubeconfig context
//! (or in-cluster config) until SIGINT or SIGTERM, or prints its CRD.

use std::net::SocketAddr;

use anyhow::Context;
use bosun_runtime::{Manager, ManagerConfig, shutdown_signal};
use clap::{Parser, Subcommand};
use kube::CustomResourceExt;

/// Runs each FooBar's command as a Job (the tutorial's controller, on bosun-runtime).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// FooBars reconciled at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where to serve Prometheus metrics.
    #[arg(long, default_value = "127.0.0.1:9091")]
    metrics_address: SocketAddr,
    /// Where to serve /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8083")]
    health_probe_bind_address: SocketAddr,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run,
    /// Print the FooBar CRD as YAML (`foobar crd | kubectl apply -f -`); crd.yaml is its output.
    Crd,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Crd) = args.command {
        print!("{}", serde_yaml::to_string(&foobar::FooBar::crd())?);
        return Ok(());
    }
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env().add_directive("info".parse()?)).init();
    let client = kube::Client::try_default().await.context("connecting to the cluster (KUBECONFIG or in-cluster)")?;
    let mut manager = Manager::new(ManagerConfig {
        metrics_address: Some(args.metrics_address),
        health_address: Some(args.health_probe_bind_address),
        ..ManagerConfig::default()
    })
    .with_client(client);
    let (context, controller) = (manager.context(), manager.controller(foobar::NAME).workers(args.workers));
    manager.add("foobar", move |shutdown| async move {
        foobar::run(context.client, &context.caches, controller, shutdown.requested()).await;
    });
    manager.run(shutdown_signal()).await?;
    Ok(())
}
