//! `bosun dev`: a local control plane with the engine, the native operators and the examples
//! running on it (see [`crate::demo`]), up until Ctrl-C.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use bosun_testenv::ControlPlane;
use clap::Args;

use crate::run::{EngineArgs, OperatorArgs, ServeArgs};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Run this many simulated nodes (KWOK), so that Pods are scheduled, run and become
    /// Ready, Deployments become Available, Jobs complete and Services get endpoints — without
    /// containers. 0 runs none: Pods stay Pending. A Pod annotated
    /// `testenv.bosun.dev/ready=false` runs but stays unready; a Pod that runs to completion
    /// (a Job's, or `restartPolicy: Never`) annotated `testenv.bosun.dev/exit-code=N` (N ≠ 0)
    /// fails. Claims bind to volumes of the default StorageClass `standard`.
    #[arg(long, value_name = "N", default_value_t = 3)]
    nodes: usize,
    /// Also run this kube-controller-manager controller (repeatable), e.g.
    /// `horizontal-pod-autoscaler-controller`. Always running: garbagecollector, namespace,
    /// serviceaccount, serviceaccount-token, clusterrole-aggregation; with nodes also the
    /// workload controllers (deployment, replicaset, statefulset, daemonset, job, cronjob,
    /// endpoints, endpointslice, disruption, node-lifecycle, …).
    #[arg(long = "controller", value_name = "NAME")]
    controllers: Vec<String>,
    /// Also write the admin kubeconfig to this file (it is removed again on exit).
    #[arg(long, value_name = "PATH")]
    kubeconfig_out: Option<PathBuf>,
    /// Only build and cache the control-plane binaries (if they are not cached yet), then
    /// exit: for CI images and machines that should not build on first use.
    #[arg(long, conflicts_with_all = ["controllers", "kubeconfig_out"])]
    build_only: bool,
    /// Start only the control plane, the engine and the ConfigMapSync operator: no example
    /// hooks, controllers, FooBar operator or samples.
    #[arg(long)]
    no_examples: bool,
    /// Also run the project in DIR (as `bosun new` makes it: a bosun.yaml naming the CRD,
    /// sample, and controller and hook, or native controller): its hook is built and started
    /// on the port the controller's URL names and the controller applied — or its native
    /// controller built and run with KUBECONFIG set — the CRD and sample applied, and the
    /// sample's tree printed once synced. Then its files are watched: editing the program
    /// (or bosun.yaml) rebuilds and restarts it and the sample syncs again; editing the CRD,
    /// controller or sample applies that file. Each reload prints what changed, what was
    /// restarted or applied, and the sample's tree. With --no-examples, only it.
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
    /// Log to the terminal. By default the log goes to a file whose path is printed, so that
    /// what bosun dev prints reads as a transcript; warnings and errors reach the terminal too.
    #[arg(long)]
    log_to_terminal: bool,
    #[command(flatten)]
    engine: EngineArgs,
    #[command(flatten)]
    operators: OperatorArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

impl DevArgs {
    /// Where the log goes instead of the terminal, unless `--log-to-terminal` (or `--build-only`,
    /// whose progress is the output).
    pub fn log_file(&self) -> Option<PathBuf> {
        (!self.log_to_terminal && !self.build_only).then(|| std::env::temp_dir().join(format!("bosun-dev-{}.log", std::process::id())))
    }
}

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.build_only {
        let binaries = bosun_testenv::Binaries::ensure()?;
        println!("control-plane binaries ready in {}", binaries.dir().display());
        return Ok(());
    }
    // Before anything starts: another bosun dev may hold the ports asked for.
    let serving = args.serve.local_config()?;
    let log_file = args.log_file();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let started = Instant::now();
        let mut builder = ControlPlane::builder().nodes(args.nodes);
        for controller in args.controllers {
            builder = builder.controller(controller);
        }
        let plane = builder.start().await.context("starting the local control plane")?;
        let mut kubeconfig = plane.kubeconfig_path().to_owned();
        if let Some(out) = &args.kubeconfig_out {
            std::fs::copy(&kubeconfig, out).with_context(|| format!("writing {}", out.display()))?;
            kubeconfig = out.clone();
        }
        let nodes = match args.nodes {
            0 => "no nodes".to_owned(),
            1 => "1 simulated node".to_owned(),
            count => format!("{count} simulated nodes"),
        };
        println!(
            "local control plane ready in {:.1}s: Kubernetes {} at {}, {nodes}",
            started.elapsed().as_secs_f64(),
            bosun_testenv::KUBERNETES_VERSION,
            plane.server()
        );
        let endpoints = |address: Option<std::net::SocketAddr>, path: &str| address.map(|address| format!("http://{address}{path}"));
        let served = [endpoints(serving.metrics_address, "/metrics"), endpoints(serving.health_address, "/readyz")];
        if let [Some(metrics), Some(probes)] = &served {
            println!("metrics: {metrics}, probes: {probes}");
        }
        if let Some(log) = &log_file {
            println!("log: {} (warnings and errors are printed here too; --log-to-terminal for all of it)", log.display());
        }
        let mut manager = bosun_runtime::Manager::new(serving);
        let client = bosun_runtime::client::connect(plane.config(), &manager.metrics(), None)?;
        manager = args.serve.secure_metrics(manager, &client, false).with_client(client.clone());
        bosun_engine::install_crds(&client).await.context("installing the engine's CRDs")?;
        bosun_operators::install_crds(&client).await.context("installing the native operators' CRDs")?;
        if !args.no_examples {
            crate::demo::add_operators(&mut manager).await?;
        }
        let (engine, operators) = (args.engine, args.operators);
        let admission = crate::run::loopback_admission(&engine)?;
        if let bosun_engine::admission::Endpoint::Url(url) = &admission.endpoint {
            println!("admission: {url} (AdmissionControllers' hooks are called through it)");
        }
        let mut serve = tokio::spawn(async move { crate::run::serve(manager, &engine, &operators, Some(admission), None).await });
        let native = if args.no_examples { "the ConfigMapSync operator" } else { "the ConfigMapSync and FooBar operators" };
        println!("The engine and {native} are running.");

        // The examples and the project run until shutdown; Ctrl-C while they start drops them
        // (stopping their hooks) and skips to it.
        let (mut examples, mut project) = (None, None);
        if !args.no_examples || args.project.is_some() {
            let tour = async {
                let (mut examples, mut project, mut trees) = (None, None, Vec::new());
                if !args.no_examples {
                    examples = Some(crate::demo::start(&client, plane.dir()).await.context("the examples did not start")?);
                    trees.push(crate::demo::sample_trees(&client, args.nodes > 0).await.context("a sample did not sync"));
                }
                if let Some(dir) = &args.project {
                    let running = crate::project::start(&client, dir, &kubeconfig).await.context("the project did not start")?;
                    trees.push(
                        crate::project::sample_tree(&client, &running.target, &running.namespace)
                            .await
                            .context("the project's sample did not sync"),
                    );
                    project = Some(running);
                }
                anyhow::Ok((examples, project, trees))
            };
            tokio::select! {
                started = tour => match started {
                    Ok((started_examples, started_project, trees)) => {
                        (examples, project) = (started_examples, started_project);
                        for tree in trees {
                            match tree {
                                Ok(tree) => println!("{tree}"),
                                Err(error) => println!("{error:#}"),
                            }
                        }
                    }
                    Err(error) => println!("{error:#}"),
                },
                result = &mut serve => return finish(result, &plane, args.kubeconfig_out.as_deref(), None, None),
            }
        }
        println!("kubeconfig: {}", kubeconfig.display());
        println!("kubectl:    {}", plane.binaries().path(bosun_testenv::Component::Kubectl).display());
        println!();
        println!("export KUBECONFIG={}", kubeconfig.display());
        println!();
        println!("Apply CompositeControllers, DecoratorControllers and their parents, ConfigMapSyncs or FooBars with");
        println!("kubectl (docs/guide.md); `bosun tree <resource>/<name>` shows what a controller made.");
        if let Some(project) = &project {
            println!("Editing the project's files reloads it ({}).", project.dir().display());
        }
        println!("Press Ctrl-C to stop.");
        let result = match &mut project {
            Some(running) => {
                tokio::select! {
                    result = &mut serve => result,
                    () = running.watch(&client) => unreachable!("watching a project runs until stopped"),
                }
            }
            None => (&mut serve).await,
        };
        finish(result, &plane, args.kubeconfig_out.as_deref(), examples, project)
    })
}

/// Stops the example and project hooks and the control plane once the engine has stopped.
fn finish(
    served: Result<anyhow::Result<()>, tokio::task::JoinError>,
    plane: &ControlPlane,
    kubeconfig_out: Option<&std::path::Path>,
    examples: Option<crate::demo::Demo>,
    project: Option<crate::project::Running>,
) -> anyhow::Result<()> {
    drop((examples, project));
    println!("stopping the local control plane");
    plane.stop();
    if let Some(out) = kubeconfig_out {
        let _ = std::fs::remove_file(out);
    }
    served.context("the engine task failed")?
}
