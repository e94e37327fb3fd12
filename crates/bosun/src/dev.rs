//! `bosun dev`: a local control plane with the engine running on it, up until Ctrl-C.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bosun_testenv::ControlPlane;
use clap::Args;

use crate::run::{EngineArgs, OperatorArgs, ServeArgs};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Also run this kube-controller-manager controller (repeatable), e.g. `job` or
    /// `deployment`. Always running: garbagecollector, namespace, serviceaccount,
    /// serviceaccount-token, clusterrole-aggregation.
    #[arg(long = "controller", value_name = "NAME")]
    controllers: Vec<String>,
    /// Also write the admin kubeconfig to this file (it is removed again on exit).
    #[arg(long, value_name = "PATH")]
    kubeconfig_out: Option<PathBuf>,
    /// Only build and cache the control-plane binaries (if they are not cached yet), then
    /// exit: for CI images and machines that should not build on first use.
    #[arg(long, conflicts_with_all = ["controllers", "kubeconfig_out"])]
    build_only: bool,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    operators: OperatorArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.build_only {
        let binaries = bosun_testenv::Binaries::ensure()?;
        println!("control-plane binaries ready in {}", binaries.dir().display());
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let started = Instant::now();
        let mut builder = ControlPlane::builder();
        for controller in args.controllers {
            builder = builder.controller(controller);
        }
        let plane = builder.start().await.context("starting the local control plane")?;
        let mut kubeconfig = plane.kubeconfig_path().to_owned();
        if let Some(out) = &args.kubeconfig_out {
            std::fs::copy(&kubeconfig, out).with_context(|| format!("writing {}", out.display()))?;
            kubeconfig = out.clone();
        }
        println!(
            "local control plane ready in {:.1}s: Kubernetes {} at {}",
            started.elapsed().as_secs_f64(),
            bosun_testenv::KUBERNETES_VERSION,
            plane.server()
        );
        println!("kubeconfig: {}", kubeconfig.display());
        println!("kubectl:    {}", plane.binaries().path(bosun_testenv::Component::Kubectl).display());
        println!();
        println!("export KUBECONFIG={}", kubeconfig.display());
        println!();
        let manager = bosun_runtime::Manager::new(args.serve.config(std::net::IpAddr::from([127, 0, 0, 1])));
        let client = crate::run::instrumented_client(plane.config(), &manager.metrics(), None)?;
        bosun_engine::install_crds(&client).await.context("installing the engine's CRDs")?;
        bosun_operators::install_crds(&client).await.context("installing the native operators' CRDs")?;
        println!("The engine and the ConfigMapSync operator are running: apply a CompositeController and its");
        println!("parents, or a ConfigMapSync, with kubectl (see docs/engine.md and docs/configmapsync.md).");
        println!("Press Ctrl-C to stop.");
        crate::run::serve(manager, client, &args.engine, &args.operators).await?;
        println!("stopping the local control plane");
        plane.stop();
        if let Some(out) = &args.kubeconfig_out {
            let _ = std::fs::remove_file(out);
        }
        Ok(())
    })
}
