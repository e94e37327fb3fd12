//! `ingress-annotator`: runs the controller against the cluster of the current kubeconfig
//! context (or in-cluster config) until SIGINT or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use bosun_runtime::{Manager, ManagerConfig, shutdown_signal};
use clap::Parser;

/// Annotates every Ingress with `foo: bar` (the tutorial's controller, on bosun-runtime).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Ingresses annotated at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where to serve Prometheus metrics.
    #[arg(long, default_value = "127.0.0.1:9090")]
    metrics_address: SocketAddr,
    /// Where to serve /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8082")]
    health_probe_bind_address: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env().add_directive("info".parse()?)).init();
    let args = Args::parse();
    let client = kube::Client::try_default().await.context("connecting to the cluster (KUBECONFIG or in-cluster)")?;
    let mut manager = Manager::new(ManagerConfig {
        metrics_address: Some(args.metrics_address),
        health_address: Some(args.health_probe_bind_address),
        ..ManagerConfig::default()
    })
    .with_client(client);
    let (context, controller) = (manager.context(), manager.controller("ingress-annotator").workers(args.workers));
    manager.add("ingress-annotator", move |shutdown| async move {
        ingress_annotator::run(context.client, &context.caches, controller, shutdown.requested()).await;
    });
    manager.run(shutdown_signal()).await?;
    Ok(())
}
