//! The `bosun` command: wiring only. Each subcommand lives in its own module and calls into
//! the library crates.

#[cfg(feature = "dev")]
mod demo;
#[cfg(feature = "dev")]
mod dev;
mod hook_test;
mod invocation;
mod logging;
mod manifests;
mod migrate;
mod new;
#[cfg(feature = "dev")]
mod project;
mod rbac;
mod run;
mod sdks;
mod tree;

use clap::{Parser, Subcommand};

/// Kubernetes custom controllers: a Metacontroller-compatible engine, a controller runtime,
/// and native operators.
#[derive(Debug, Parser)]
#[command(name = "bosun", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    logging: logging::LoggingArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local Kubernetes control plane with the engine, the native operators and the
    /// examples running on it, and keep it up until Ctrl-C.
    ///
    /// Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the official Go
    /// modules on first use (minutes, once; cached under $XDG_CACHE_HOME/bosun), starts them
    /// on random loopback ports, installs the CRDs, starts the engine and the ConfigMapSync and
    /// FooBar operators, starts the example hooks as local processes (PodService in python3,
    /// the Ingress annotator in node; skipped when the interpreter is missing), applies the
    /// sample PodService and FooBar, and prints their trees and the `export KUBECONFIG=…` line
    /// for kubectl.
    /// Ctrl-C (or SIGTERM) stops everything it started.
    #[cfg(feature = "dev")]
    Dev(dev::DevArgs),
    /// Run the Metacontroller-compatible engine and the native operators against a cluster
    /// until SIGINT or SIGTERM.
    ///
    /// Runs a hosted controller for every CompositeController and DecoratorController in the
    /// cluster, and the ConfigMapSync operator, serving Prometheus metrics and health probes.
    /// Started as Metacontroller is started, it runs too: called `metacontroller` (the image
    /// has /usr/bin/metacontroller), or with flags and no subcommand, in Go's flag syntax
    /// (`-workers=5`, `-workers 5`, `--leader-election`, `--leader-election=false`). Its
    /// `--zap-log-level` (debug, info, error, or a verbosity: 1–4 debug, 5 and above trace),
    /// `--zap-encoder` (json, console), `--zap-devel` and `--zap-time-encoding` become
    /// --log-level, --log-format and --log-time; `--zap-stacktrace-level` and
    /// `--pprof-address` are accepted and ignored with a warning. The CRDs must be installed
    /// first (`bosun crds | kubectl apply --server-side -f -`).
    Run(Box<run::RunArgs>),
    /// Print CRDs as YAML: the engine's (CompositeController, DecoratorController,
    /// ControllerRevision), the native operators' (ConfigMapSync), admission's
    /// (AdmissionController), or all of them.
    ///
    /// The same CRDs as `deploy/crds/`; apply them with
    /// `bosun crds | kubectl apply --server-side -f -`.
    Crds {
        /// Which CRDs.
        #[arg(value_enum, default_value = "all")]
        which: CrdSet,
    },
    /// Print an object and everything it owns as a tree, with a status column.
    ///
    /// Follows owner references through every namespace and listable type, and the
    /// ConfigMapSync owner annotation to copies in other namespaces; reads Secrets' metadata
    /// only. E.g. `bosun tree podservices/hello`, `bosun tree cms/shared-config -n team-a`.
    Tree(tree::TreeArgs),
    /// Print the RBAC the engine needs for the cluster's CompositeControllers and
    /// DecoratorControllers (or those in manifest files), ready for `kubectl apply -f -`.
    ///
    /// Metacontroller runs with every right on everything; bosun with least privilege, so a
    /// controller moved over needs its types granted. For each controller: a ClusterRole
    /// labelled for aggregation into the engine's role (see deploy/rbac.yaml) with its parent
    /// (or target) types — get, list, watch, patch; patch of /status; update of /finalizers,
    /// for owner references that block deletion — its child (or
    /// attachment) types — get, list, watch, create, update, patch, delete — and, with a
    /// customize hook, read access to the --related types. For each namespace holding Secrets
    /// or ConfigMaps its hooks' credentials come from: a Role for exactly those objects, bound
    /// to the engine's ServiceAccount. With --namespace (an engine run with `bosun run
    /// --namespace`): Roles in those namespaces instead of ClusterRoles. E.g. `bosun rbac |
    /// kubectl apply -f -`, `bosun rbac -f controller.yaml --related v1/secrets`.
    Rbac(rbac::RbacArgs),
    /// Report, without changing anything, what moving this cluster from Metacontroller to
    /// bosun takes.
    ///
    /// Finds the Deployments and StatefulSets running a Metacontroller image and the flags of
    /// theirs bosun would ignore or refuse; lists each CompositeController and
    /// DecoratorController with its types (their scope and how many objects), its hooks, the
    /// RBAC `bosun rbac` would grant it, what bosun does differently with it (credentials sent
    /// over plain http, cluster-scoped children of namespaced parents, types not served,
    /// customize hooks whose related types RBAC must name) and a `bosun tree` command to
    /// verify it with; then the steps, with their commands: CRDs, the image swap or bosun's
    /// least-privilege deployment, verification.
    Migrate(migrate::MigrateArgs),
    /// Make a project in a directory: the CRD of a new kind, a sample, and a CompositeController
    /// or DecoratorController for it with its RBAC and a sync hook in Python or TypeScript on
    /// bosun's SDK — or a native controller in Rust on bosun-runtime — ready for
    /// `bosun dev --project DIR` and `bosun hook test` (or `cargo test`).
    ///
    /// E.g. `bosun new greeting --kind Greeting --group example.com`,
    /// `bosun new labeller --kind Labelled --group example.com --controller decorator --language typescript`,
    /// `bosun new notes --kind Note --group example.com --language rust`.
    New(new::NewArgs),
    /// Work on hooks: `bosun hook test` runs one sync as the engine would, writing nothing.
    Hook {
        #[command(subcommand)]
        command: hook_test::HookCommand,
    },
    /// Print bosun's version and the Kubernetes and etcd versions of the local control plane.
    Version,
}

/// A set of CRDs `bosun crds` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CrdSet {
    /// Every CRD.
    All,
    /// The engine's, in group metacontroller.k8s.io (deploy/crds/metacontroller.k8s.io.yaml).
    Engine,
    /// ConfigMapSync, in group bosun.dev (deploy/crds/bosun.dev.yaml).
    Configmapsync,
    /// AdmissionController, in group bosun.dev (deploy/crds/admissioncontrollers.bosun.dev.yaml).
    Admission,
}

// A controller allocates and frees small JSON trees all day: with glibc's allocator a quarter of
// the engine's CPU went to malloc and free (perf), jemalloc takes a fraction of that, with a
// resident size no larger (bosun-bench engine at 1,000 parents: docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Errors are printed with their causes, one per line, and without a backtrace even when
/// `RUST_BACKTRACE` is set: they are the user's to read, not a crash report.
fn main() -> std::process::ExitCode {
    match run_command() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command() -> anyhow::Result<()> {
    let (args, notes) = invocation::translate(std::env::args().collect())?;
    let cli = Cli::parse_from(args);
    let log_file: Option<std::path::PathBuf> = match &cli.command {
        #[cfg(feature = "dev")]
        Command::Dev(args) => args.log_file(),
        _ => None,
    };
    logging::init(&cli.logging, log_file.as_deref())?;
    if !notes.ignored.is_empty() {
        tracing::warn!(ignored = ?notes.ignored, "ignoring Metacontroller flags bosun does not use (for logs: --log-level and --log-format)");
    }
    for (flag, became) in &notes.mapped {
        tracing::info!(%flag, %became, "Metacontroller's logging flag mapped");
    }
    match cli.command {
        #[cfg(feature = "dev")]
        Command::Dev(args) => dev::run(args),
        Command::Run(args) => run::run(*args),
        Command::Tree(args) => tree::run(args),
        Command::Rbac(args) => rbac::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Hook { command } => hook_test::run(command),
        Command::New(args) => new::run(args),
        Command::Crds { which } => {
            let engine = matches!(which, CrdSet::All | CrdSet::Engine).then(bosun_engine::api::crds_yaml);
            let operators = matches!(which, CrdSet::All | CrdSet::Configmapsync).then(bosun_operators::configmapsync::crd_yaml);
            let admission = matches!(which, CrdSet::All | CrdSet::Admission).then(bosun_engine::admission::crd_yaml);
            print!("{}", engine.into_iter().chain(operators).chain(admission).collect::<Vec<_>>().join("---\n"));
            Ok(())
        }
        Command::Version => {
            println!("bosun {}", env!("CARGO_PKG_VERSION"));
            #[cfg(feature = "dev")]
            {
                println!("kubernetes {} (API types and local control plane)", bosun_testenv::KUBERNETES_VERSION);
                println!("etcd {} (local control plane)", bosun_testenv::ETCD_VERSION);
            }
            #[cfg(not(feature = "dev"))]
            println!("built without `bosun dev` (the local control plane and the examples)");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap's own checks of every subcommand's definition (unique names, valid defaults),
    /// which otherwise fail only when that subcommand is first run.
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
