//! The `bosun` command as users run it: `bosun dev` brings up a working cluster with the
//! engine, the examples and their hooks on it, prints the sample's tree, and stops everything
//! on Ctrl-C; `bosun run` runs the engine against the cluster of a kubeconfig until SIGTERM;
//! `bosun tree` prints what an object owns.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::json;

#[tokio::test]
async fn run_serves_the_kubeconfig_cluster_until_terminated() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let shard = bosun_testenv::unique_suffix();
    let run = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["run", "--workers", "2", "--apply-strategy", "server-side-apply", "--discovery-interval", "1s"])
        .args(["--metrics-address=127.0.0.1:0", "--health-probe-bind-address=127.0.0.1:0"])
        .args(["--client-go-qps=50", "--client-go-burst=5"])
        .arg("--kubeconfig")
        .arg(env.control_plane().kubeconfig_path())
        .arg(format!("--target-label-selector=shard={shard}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    support::reporters_of_a_new_controller(&client, &shard).await;
    #[allow(unsafe_code)]
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(run.id() as libc::pid_t, libc::SIGTERM)
    };
    let output = run.wait_with_output().unwrap();
    assert!(output.status.success(), "SIGTERM is a clean exit");
    let logs = String::from_utf8_lossy(&output.stderr);
    assert!(logs.contains("engine starting"), "{logs}");
    assert!(!logs.contains('\x1b'), "no colour codes in logs that go to a pipe: {logs:?}");
}

#[test]
fn run_refuses_bad_flags_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_bosun")).args(["run", "--apply-strategy", "kubectl-apply"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("dynamic-apply") && stderr.contains("server-side-apply"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_bosun")).args(["run", "--discovery-interval", "soon"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a duration"));
}

/// The ConfigMapSync operator runs when its CRD is installed; asked for explicitly on a
/// cluster without the CRD, `bosun run` refuses to start and says how to install it.
#[tokio::test]
async fn run_names_the_missing_configmapsync_crd_when_asked_for_it() {
    let env = bosun_testenv::TestEnv::shared();
    bosun_engine::install_crds(&env.client()).await.unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["run", "--configmapsync=true", "--metrics-address=0", "--health-probe-bind-address=0", "--kubeconfig"])
        .arg(env.control_plane().kubeconfig_path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bosun crds configmapsync | kubectl apply --server-side -f -"), "{stderr}");
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        // `pid (comm) state ppid …`
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            children.push(child);
        }
    }
    children
}

#[tokio::test]
async fn dev_serves_a_cluster_until_interrupted() {
    // Build first where the progress shows (the child's output is not shown).
    tokio::task::spawn_blocking(bosun_testenv::Binaries::ensure).await.unwrap().unwrap();
    let mut dev = support::dev::Dev::start(&["--metrics-address=127.0.0.1:0", "--health-probe-bind-address=127.0.0.1:0"], &[]);
    let (kubeconfig, printed) = (dev.kubeconfig(), dev.printed.clone());
    assert!(printed.iter().any(|line| line.starts_with("kubeconfig: ")), "{printed:?}");
    // The samples' trees, synced, before the export line: the PodService with its three
    // children, its Pod running on a simulated node and Ready, the Service with the Pod as its
    // endpoint; the FooBar with its Job, whose Pod has completed.
    let trees: Vec<Vec<&String>> = printed
        .split(|line| line.is_empty())
        .filter(|block| block.get(1).is_some_and(|line| line.starts_with("NAME ")))
        .map(|block| block.iter().collect())
        .collect();
    assert_eq!(trees.len(), 2, "{printed:#?}");
    let (podservice, foobar) = (&trees[0], &trees[1]);
    assert!(podservice[0] == "podservices/hello:" && podservice.len() == 7, "{printed:#?}");
    assert!(podservice[2].starts_with("PodService/hello") && podservice[2].contains("synced (generation 1)"), "{printed:#?}");
    for (line, (child, status)) in podservice[3..].iter().zip([
        ("├─Ingress/hello", "hosts podservice.local"),
        ("├─Pod/hello", "Running, Ready"),
        ("└─Service/hello", "ClusterIP 10.0.0."),
        ("  └─EndpointSlice/hello-", "1 endpoint, 1 ready"),
    ]) {
        assert!(line.starts_with(child) && line.contains(status), "{line:?} in {printed:#?}");
    }
    assert!(foobar[0] == "foobars/foobar-sample:" && foobar.len() == 5, "{printed:#?}");
    assert!(foobar[2].starts_with("FooBar/foobar-sample") && foobar[2].contains("Succeeded, synced (generation 1)"), "{printed:#?}");
    assert!(foobar[3].starts_with("└─Job/foobar-sample-") && foobar[3].contains("Complete"), "{printed:#?}");
    assert!(foobar[4].starts_with("  └─Pod/foobar-sample-") && foobar[4].contains("Succeeded"), "{printed:#?}");
    assert!(dev.read_until(|line| line == "Press Ctrl-C to stop.", Duration::from_secs(10)).is_some());

    let config =
        kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(), &Default::default()).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt("default").await.unwrap().is_some());
    support::reporters_of_a_new_controller(&client, "any").await;
    assert!(printed.iter().any(|line| line.starts_with("podservice admission: python3 hooks on 127.0.0.1:")), "{printed:#?}");
    // The PodService's AdmissionController is wired: an image without a tag is refused.
    let podservices = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("examples.bosun.dev", "v1", "PodService"),
            "podservices",
        ),
    );
    let untagged = serde_json::from_value(serde_json::json!({
        "apiVersion": "examples.bosun.dev/v1", "kind": "PodService", "metadata": {"name": "untagged"}, "spec": {"image": "nginx", "port": 80},
    }))
    .unwrap();
    // A dry run, tried again while the API server may not yet see the webhook configuration.
    let deadline = Instant::now() + Duration::from_secs(20);
    let dry_run = kube::api::PostParams { dry_run: true, ..Default::default() };
    let refused = loop {
        if let Err(refused) = podservices.create(&dry_run, &untagged).await {
            break refused;
        }
        assert!(Instant::now() < deadline, "an untagged image is still admitted after 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(refused.to_string().contains(r#"spec.image "nginx" is not pinned"#), "{refused}");

    let started = children_of(dev.id());
    assert_eq!(
        started.len(),
        8,
        "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, the python3 sync and admission hooks and the node hook"
    );
    assert!(dev.interrupt().success(), "Ctrl-C is a clean exit");
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.iter().any(|pid| bosun_testenv::is_running(*pid)) {
        assert!(Instant::now() < deadline, "a process outlived bosun dev");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!kubeconfig.exists(), "the control plane's files are removed");
}

#[test]
fn building_without_go_says_what_to_install() {
    let empty = std::env::temp_dir().join(format!("bosun-no-go-{}", bosun_testenv::unique_suffix()));
    std::fs::create_dir_all(&empty).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["dev", "--build-only"])
        .env("PATH", &empty)
        .env("XDG_CACHE_HOME", &empty)
        .env_remove(bosun_testenv::BIN_DIR_ENV)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the Go toolchain is needed") && stderr.contains("apt-get install golang-go"), "{stderr}");
}

/// The args of Metacontroller's production and dev manifests start `bosun run`: the run gets
/// as far as reading the kubeconfig, so every flag was accepted.
#[test]
fn metacontroller_deployment_args_are_accepted() {
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args([
            "run",
            "--zap-log-level=4",
            "--zap-devel",
            "--pprof-address=0",
            "--discovery-interval=20s",
            "--cache-flush-interval=30m",
            "--workers=5",
            "--apply-strategy=server-side-apply",
            "--apply-strategy-ssa-field-manager=metacontroller",
            "--metrics-address=:9999",
            "--health-probe-bind-address=:8081",
            "--target-label-selector=team=a",
            "--client-go-qps=5",
            "--client-go-burst=10",
            "--events-qps=0.0033",
            "--events-burst=25",
            "--kubeconfig=/nonexistent/kubeconfig",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("reading kubeconfig /nonexistent/kubeconfig"), "{stderr}");
    assert!(stderr.contains("ignoring Metacontroller flags bosun does not use"), "{stderr}");
}

#[tokio::test]
async fn tree_prints_owned_objects_across_namespaces_with_status() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_operators::install_crds(&client).await.unwrap();
    let (home, away) = (env.namespace("tree").await, env.namespace("tree-away").await);
    let consent = json!({ "metadata": { "annotations": { bosun_operators::configmapsync::ACCEPT_FROM_ANNOTATION: home } } });
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(&away, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&consent))
        .await
        .unwrap();
    let create = async |namespace: &str, object: serde_json::Value| -> DynamicObject {
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        let types = object.types.clone().unwrap();
        let (group, version) = types.api_version.rsplit_once('/').unwrap_or(("", &types.api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &types.kind);
        let plural = if types.kind == "ConfigMapSync" { "configmapsyncs".to_owned() } else { format!("{}s", types.kind.to_lowercase()) };
        let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, &plural);
        Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource).create(&PostParams::default(), &object).await.unwrap()
    };
    let owner = |object: &DynamicObject| {
        json!([{ "apiVersion": object.types.as_ref().unwrap().api_version, "kind": object.types.as_ref().unwrap().kind,
        "name": object.metadata.name, "uid": object.metadata.uid, "controller": true }])
    };
    let root =
        create(&home, json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "root" }, "data": { "a": "1" } })).await;
    let secret =
        create(&home, json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "child", "ownerReferences": owner(&root) } }))
            .await;
    create(
        &home,
        json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "grandchild", "ownerReferences": owner(&secret) } }),
    )
    .await;
    create(&home, json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "unrelated" } })).await;
    create(
        &home,
        json!({ "apiVersion": "bosun.dev/v1alpha1", "kind": "ConfigMapSync", "metadata": { "name": "share" },
        "spec": { "configMapName": "root", "destinationNamespace": away } }),
    )
    .await;
    // The operator makes the copy in the other namespace.
    let operator = bosun_operators::configmapsync::ConfigMapSyncController::new(
        &bosun_runtime::Context::standalone(client.clone()),
        Default::default(),
    );
    let operator = tokio::spawn(operator.run(std::future::pending()));
    let copies: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &away);
    bosun_testenv::eventually("the copy", async || copies.get_opt("root").await.unwrap()).await;

    let tree = |target: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(["tree", target, "-n", &home, "--kubeconfig"])
            .arg(env.control_plane().kubeconfig_path())
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
    };
    let (ok, out, err) = tree("configmaps/root");
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("NAME") && lines[0].ends_with("STATUS"), "{out}");
    assert!(lines[1].starts_with("ConfigMap/root ") && lines[1].ends_with("1 key"), "{out}");
    assert!(lines[2].starts_with("└─Secret/child ") && lines[2].contains(&home) && lines[2].ends_with(" -"), "Secrets are not read: {out}");
    assert!(lines[3].starts_with("  └─ConfigMap/grandchild ") && lines[3].ends_with("0 keys"), "{out}");

    let (ok, out, err) = tree("cms/share");
    assert!(ok, "{err}");
    assert!(
        out.lines().nth(2).is_some_and(|line| line.starts_with("└─ConfigMap/root ") && line.contains(&away) && line.ends_with("1 key")),
        "the copy in another namespace: {out}"
    );

    let (ok, _, err) = tree("configmaps/missing");
    assert!(!ok && err.contains(&format!("ConfigMap missing not found in namespace {home}")), "{err}");
    let (ok, _, err) = tree("widgets/x");
    assert!(!ok && err.contains("no resource type \"widgets\""), "{err}");
    let (ok, _, err) = tree("root");
    assert!(!ok && err.contains("is not <resource>/<name>"), "{err}");
    operator.abort();
}

/// Metacontroller's invocations start the engine as `bosun run` does: its StatefulSet's args
/// with no subcommand, its Helm chart's `/usr/bin/metacontroller` command, Go's flag syntax,
/// and the zap logging flags. Each, run as a process, syncs a parent.
#[tokio::test]
async fn metacontrollers_invocations_run_the_engine() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("invocations").await;
    let shard = bosun_testenv::unique_suffix();
    let resource = support::install_parent_crd(&format!("{shard}.invocations.bosun.dev")).await;
    let hook = support::start_hook(Default::default(), shard.clone()).await;
    let controller: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
        "metadata": { "name": format!("invocations-{shard}"), "labels": { "shard": shard } },
        "spec": {
            "generateSelector": true,
            "parentResource": { "apiVersion": format!("{}/v1", resource.group), "resource": "faultparents" },
            "childResources": [{ "apiVersion": "v1", "resource": "configmaps", "updateStrategy": { "method": "InPlace" } }],
            "hooks": { "sync": { "webhook": { "url": hook } } },
        },
    }))
    .unwrap();
    Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()))
        .create(&PostParams::default(), &controller)
        .await
        .unwrap();
    // The image's /usr/bin/metacontroller: the same binary under that name.
    let dir = std::env::temp_dir().join(format!("bosun-invocations-{shard}"));
    std::fs::create_dir_all(&dir).unwrap();
    let metacontroller = dir.join("metacontroller");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_bosun"), &metacontroller).unwrap();
    let kubeconfig = env.control_plane().kubeconfig_path().display().to_string();
    let selector = format!("shard={shard}");
    let invocations: Vec<(std::path::PathBuf, Vec<String>)> = vec![
        // Metacontroller's StatefulSet: args only.
        (env!("CARGO_BIN_EXE_bosun").into(), vec!["--zap-log-level=4".into(), "--discovery-interval=20s".into()]),
        // Its Helm chart: the command and its args.
        (
            metacontroller.clone(),
            ["--zap-log-level=4", "--discovery-interval=20s", "--cache-flush-interval=30m", "--health-probe-bind-address=127.0.0.1:0"]
                .map(String::from)
                .to_vec(),
        ),
        // Go's flag syntax, leader election on.
        (
            env!("CARGO_BIN_EXE_bosun").into(),
            ["-workers=5", "-discovery-interval", "1s", "--leader-election", "-leader-election-namespace", &namespace]
                .map(String::from)
                .to_vec(),
        ),
        // Explicitly off, and the other zap flags.
        (
            env!("CARGO_BIN_EXE_bosun").into(),
            ["--leader-election=false", "--zap-devel", "--zap-encoder=json", "--zap-time-encoding=epoch"].map(String::from).to_vec(),
        ),
        // Metacontroller's verbosity for hook bodies.
        (env!("CARGO_BIN_EXE_bosun").into(), vec!["--zap-log-level=5".into()]),
    ];
    let parents: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
    for (index, (program, args)) in invocations.into_iter().enumerate() {
        let (name, version) = (format!("p-{index}"), index.to_string());
        let parent = DynamicObject::new(&name, &resource).data(json!({ "spec": { "version": version } }));
        parents.create(&PostParams::default(), &parent).await.unwrap();
        let mut full_args = args.clone();
        full_args
            .extend(["-kubeconfig", &kubeconfig, "-target-label-selector", &selector, "--metrics-address=127.0.0.1:0"].map(String::from));
        if !args.iter().any(|arg| arg.starts_with("--health-probe-bind-address")) {
            full_args.push("--health-probe-bind-address=127.0.0.1:0".to_owned());
        }
        // A file rather than a pipe: at trace level the logs would fill a pipe nobody reads yet.
        let log = dir.join(format!("{index}.log"));
        let mut run = bosun_testenv::ManagedProcess::spawn("engine", &program, &full_args, log.clone()).unwrap();
        bosun_testenv::eventually(&format!("{} {args:?} to sync {name}", program.display()), async || {
            let status = parents.get(&name).await.unwrap().data["status"].clone();
            (status["version"].as_str() == Some(version.as_str())).then_some(())
        })
        .await;
        let status = run.stop(Duration::from_secs(30));
        let logs = std::fs::read_to_string(&log).unwrap();
        assert!(status.is_some_and(|status| status.success()), "{args:?}: {logs}");
        assert!(!logs.contains('\x1b'), "no colour codes when stderr is not a terminal: {logs}");
        // Metacontroller's verbosity raises bosun's own lines, not its dependencies' internals.
        let verbose = logs.lines().filter(|line| line.contains(" DEBUG ") || line.contains(" TRACE "));
        let foreign: Vec<&str> =
            verbose.filter(|line| !line.split_whitespace().nth(2).is_some_and(|target| target.starts_with("bosun"))).take(3).collect();
        assert!(foreign.is_empty(), "{args:?} logs dependencies at debug or trace: {foreign:?}");
        if args.contains(&"--zap-log-level=5".to_owned()) {
            let body = format!("\"name\":\"{name}\"");
            let requests: Vec<&str> = logs.lines().filter(|line| line.contains("hook request")).collect();
            assert!(requests.iter().any(|line| line.contains(&body)), "the bodies are logged at 5: {requests:?}");
            assert!(logs.lines().any(|line| line.contains("hook response")), "hook responses are logged at 5");
        }
        if args.contains(&"--zap-encoder=json".to_owned()) {
            let line = logs.lines().find(|line| line.contains("engine starting")).expect("the engine's start is logged");
            let line: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
            let time = line["timestamp"].as_str().unwrap_or_default();
            assert!(time.parse::<f64>().is_ok_and(|seconds| seconds > 1.7e9), "epoch time: {line}");
            assert!(logs.contains("\"level\":\"DEBUG\""), "--zap-devel logs at debug: {logs}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs the test control plane's kubectl with `args` and `input`; fails on failure.
fn kubectl(env: &bosun_testenv::TestEnv, args: &[&str], input: &str) {
    let kubeconfig = env.control_plane().kubeconfig_path().display().to_string();
    let mut child = Command::new(env.control_plane().binaries().path(bosun_testenv::Component::Kubectl))
        .args(["--kubeconfig", &kubeconfig])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Applies deploy/rbac.yaml in namespace `system`, its cluster-scoped names made the test's own.
fn apply_deployed_rbac(env: &bosun_testenv::TestEnv, system: &str) {
    let deployed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/rbac.yaml"))
        .unwrap()
        .replace("bosun-system", system)
        .replace("name: bosun-engine", &format!("name: {system}-engine"))
        .replace("name: bosun-configmapsync", &format!("name: {system}-configmapsync"));
    kubectl(env, &["apply", "-n", system, "-f", "-"], &deployed);
}

/// Runs an engine from `config` for the controllers labelled `shard=<shard>` until parent `p`
/// of `resource`, created in `namespace`, has the status the test hook writes (`what` it is).
async fn sync_a_parent_as(config: kube::Config, shard: &str, admin: &kube::Client, namespace: &str, resource: &ApiResource, what: &str) {
    let engine = bosun_engine::Engine::new(
        &bosun_runtime::Context::standalone(kube::Client::try_from(config).unwrap()),
        bosun_engine::EngineConfig {
            target_label_selector: Some(bosun_engine::selector::parse(&format!("shard={shard}")).unwrap()),
            allow_insecure_hook_credentials: true,
            discovery_interval: Duration::from_millis(500),
            ..Default::default()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(engine.run(async {
        let _ = stopped.await;
    }));
    let parents: Api<DynamicObject> = Api::namespaced_with(admin.clone(), namespace, resource);
    let parent = DynamicObject::new("p", resource).data(json!({ "spec": { "version": "1" } }));
    parents.create(&PostParams::default(), &parent).await.unwrap();
    bosun_testenv::eventually(what, async || {
        let status = parents.get("p").await.unwrap().data["status"].clone();
        (status["version"] == "1").then_some(())
    })
    .await;
    let _ = stop.send(());
    running.await.unwrap();
}

/// `bosun rbac --per-controller` prints, for a controller, the ServiceAccount it writes as and
/// that account's rights, and the engine's part (reading, impersonating): applied beside
/// deploy/rbac.yaml and nothing else, an engine running as its ServiceAccount syncs the
/// controller's parents, every write made as the controller's account.
#[tokio::test]
async fn rbac_per_controller_prints_the_identity_a_controller_writes_as() {
    let env = bosun_testenv::TestEnv::shared();
    let admin = env.client();
    bosun_engine::install_crds(&admin).await.unwrap();
    let system = env.namespace("rbac-identity").await;
    let namespace = env.namespace("rbac-identity-parents").await;
    let shard = bosun_testenv::unique_suffix();
    apply_deployed_rbac(env, &system);
    let resource = support::install_parent_crd(&format!("{shard}.identity.bosun.dev")).await;
    let hook = support::start_hook(Default::default(), shard.clone()).await;
    let controller: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
        "metadata": {
            "name": format!("identity-{shard}"), "labels": { "shard": shard },
            "annotations": { bosun_engine::SERVICE_ACCOUNT_ANNOTATION: format!("{system}/writer") },
        },
        "spec": {
            "generateSelector": true,
            "parentResource": { "apiVersion": format!("{}/v1", resource.group), "resource": "faultparents" },
            "childResources": [{ "apiVersion": "v1", "resource": "configmaps" }],
            "hooks": { "sync": { "webhook": { "url": hook } } },
        },
    }))
    .unwrap();
    Api::<DynamicObject>::all_with(admin.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()))
        .create(&PostParams::default(), &controller)
        .await
        .unwrap();

    let kubeconfig = env.control_plane().kubeconfig_path().display().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["rbac", "--per-controller", "--kubeconfig", &kubeconfig, "--target-label-selector", &format!("shard={shard}")])
        .args(["--service-account", &format!("{system}/bosun")])
        .output()
        .unwrap();
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for expected in ["kind: ServiceAccount", "name: writer", "- impersonate", &format!("name: bosun:composite:identity-{shard}:writes")] {
        assert!(printed.contains(expected), "{expected}: {printed}");
    }
    kubectl(env, &["apply", "-f", "-"], &printed);

    // The engine, as its ServiceAccount: it may read ConfigMaps, but write them only as
    // `writer`.
    let config = env.service_account_config(&system, "bosun").await;
    sync_a_parent_as(config, &shard, &admin, &namespace, &resource, "the parent synced as the controller's ServiceAccount").await;
}

/// `bosun rbac` reads the controllers from the cluster and prints RBAC that, applied with
/// kubectl beside deploy/rbac.yaml and nothing else, is all an engine running as that
/// ServiceAccount needs: its controller syncs, with the hook's credentials read from a Secret.
#[tokio::test]
async fn rbac_prints_what_the_engine_needs_for_the_clusters_controllers() {
    let env = bosun_testenv::TestEnv::shared();
    let admin = env.client();
    bosun_engine::install_crds(&admin).await.unwrap();
    let system = env.namespace("rbac-system").await;
    let namespace = env.namespace("rbac-parents").await;
    let shard = bosun_testenv::unique_suffix();
    let kubeconfig = env.control_plane().kubeconfig_path().display().to_string();
    let kubectl = |args: &[&str], input: &str| kubectl(env, args, input);
    apply_deployed_rbac(env, &system);

    let resource = support::install_parent_crd(&format!("{shard}.rbac.bosun.dev")).await;
    let hook = support::start_hook(Default::default(), shard.clone()).await;
    let token: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({ "metadata": { "name": "hook-token" }, "stringData": { "token": "s3cret" } })).unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), &system).create(&PostParams::default(), &token).await.unwrap();
    let controller: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
        "metadata": { "name": format!("rbac-{shard}"), "labels": { "shard": shard } },
        "spec": {
            "generateSelector": true,
            "parentResource": { "apiVersion": format!("{}/v1", resource.group), "resource": "faultparents" },
            "childResources": [{ "apiVersion": "v1", "resource": "configmaps" }],
            "hooks": { "sync": { "webhook": {
                "url": hook,
                "authorization": { "secretRef": { "name": "hook-token", "namespace": system, "key": "token" } },
            }}},
        },
    }))
    .unwrap();
    Api::<DynamicObject>::all_with(admin.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()))
        .create(&PostParams::default(), &controller)
        .await
        .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["rbac", "--kubeconfig", &kubeconfig, "--target-label-selector", &format!("shard={shard}")])
        .args(["--service-account", &format!("{system}/bosun")])
        .output()
        .unwrap();
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains(&format!("name: bosun:composite:rbac-{shard}")) && printed.contains("- hook-token"), "{printed}");
    kubectl(&["apply", "-f", "-"], &printed);

    // The engine, as that ServiceAccount.
    let config = env.service_account_config(&system, "bosun").await;
    sync_a_parent_as(config, &shard, &admin, &namespace, &resource, "the parent synced by an engine with only the generated RBAC").await;

    // Another controller's RBAC, generated and applied alone, leaves the first one's credential
    // readable: each controller's credentials have a Role of their own.
    let mut other = controller.clone();
    other.metadata.name = Some(format!("rbac-{shard}-b"));
    other.metadata.labels = Some([("shard".to_owned(), format!("{shard}-b"))].into());
    other.metadata.resource_version = None;
    other.data["spec"]["hooks"]["sync"]["webhook"]["authorization"]["secretRef"]["name"] = json!("other-token");
    Api::<DynamicObject>::all_with(admin.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()))
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["rbac", "--kubeconfig", &kubeconfig, "--target-label-selector", &format!("shard={shard}-b")])
        .args(["--service-account", &format!("{system}/bosun")])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    kubectl(&["apply", "-f", "-"], &String::from_utf8(output.stdout).unwrap());
    for secret in ["hook-token", "other-token"] {
        let review: k8s_openapi::api::authorization::v1::SubjectAccessReview = serde_json::from_value(json!({
            "spec": {
                "user": format!("system:serviceaccount:{system}:bosun"),
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{system}")],
                "resourceAttributes": { "namespace": system, "verb": "watch", "resource": "secrets", "name": secret },
            },
        }))
        .unwrap();
        let decided = Api::<k8s_openapi::api::authorization::v1::SubjectAccessReview>::all(admin.clone())
            .create(&PostParams::default(), &review)
            .await
            .unwrap();
        assert!(decided.status.is_some_and(|status| status.allowed), "the engine may no longer watch {secret}");
    }
}

/// The `bosun rbac` transcript in docs/operations.md is what the command prints.
#[test]
fn rbac_in_the_docs_is_what_the_command_prints() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .current_dir(root)
        .args(["rbac", "-f", "examples/greeting/controller.yaml"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let transcript = format!("$ bosun rbac -f examples/greeting/controller.yaml\n{}```", String::from_utf8(output.stdout).unwrap());
    let docs = std::fs::read_to_string(format!("{root}/docs/operations.md")).unwrap();
    assert!(docs.contains(&transcript), "docs/operations.md should show:\n{transcript}");
}

/// `bosun migrate` on a cluster running Metacontroller: it finds Metacontroller's StatefulSet
/// and the flag bosun would ignore; each controller with the RBAC it needs, a hook sent
/// credentials over plain http and a cluster-scoped child type of a namespaced parent; the
/// steps; and a `bosun tree` command to verify with, which works.
#[tokio::test]
async fn migrate_reports_what_moving_from_metacontroller_takes() {
    let env = bosun_testenv::TestEnv::shared();
    let admin = env.client();
    bosun_engine::install_crds(&admin).await.unwrap();
    let system = env.namespace("metacontroller").await;
    let namespace = env.namespace("migrate").await;
    let shard = bosun_testenv::unique_suffix();
    // Metacontroller as its Helm chart deploys it (nothing runs it here: the report reads specs).
    let metacontroller: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "metacontroller" },
        "spec": {
            "serviceName": "", "replicas": 1, "selector": { "matchLabels": { "app": "metacontroller" } },
            "template": {
                "metadata": { "labels": { "app": "metacontroller" } },
                "spec": { "containers": [{
                    "name": "metacontroller", "image": "ghcr.io/metacontroller/metacontroller:v4.11.22",
                    "command": ["/usr/bin/metacontroller"],
                    "args": ["--zap-log-level=4", "--discovery-interval=20s", "--pprof-address=:6060"],
                }]},
            },
        },
    }))
    .unwrap();
    Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(admin.clone(), &system)
        .create(&PostParams::default(), &metacontroller)
        .await
        .unwrap();
    let resource = support::install_parent_crd(&format!("{shard}.migrate.bosun.dev")).await;
    let controllers = |kind: &str| {
        let resource = if kind == "CompositeController" {
            ApiResource::erase::<bosun_engine::api::CompositeController>(&())
        } else {
            ApiResource::erase::<bosun_engine::api::DecoratorController>(&())
        };
        Api::<DynamicObject>::all_with(admin.clone(), &resource)
    };
    let composite: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
        "metadata": { "name": format!("migrate-{shard}"), "labels": { "shard": shard } },
        "spec": {
            "parentResource": { "apiVersion": format!("{}/v1", resource.group), "resource": "faultparents" },
            "childResources": [{ "apiVersion": "v1", "resource": "configmaps" }, { "apiVersion": "v1", "resource": "namespaces" }],
            "hooks": { "sync": { "webhook": {
                "url": "http://hooks.example:8080/sync",
                "authorization": { "secretRef": { "name": "hook-token", "namespace": system, "key": "token" } },
            }}},
        },
    }))
    .unwrap();
    controllers("CompositeController").create(&PostParams::default(), &composite).await.unwrap();
    let decorator: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "DecoratorController",
        "metadata": { "name": format!("migrate-{shard}"), "labels": { "shard": shard } },
        "spec": {
            "resources": [{ "apiVersion": format!("{}/v1", resource.group), "resource": "faultparents" }],
            "attachments": [{ "apiVersion": "v1", "resource": "secrets" }],
            "hooks": { "sync": { "webhook": { "url": "https://hooks.example/decorate" } } },
        },
    }))
    .unwrap();
    controllers("DecoratorController").create(&PostParams::default(), &decorator).await.unwrap();
    let parents: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &namespace, &resource);
    parents.create(&PostParams::default(), &DynamicObject::new("p", &resource).data(json!({ "spec": {} }))).await.unwrap();

    let kubeconfig = env.control_plane().kubeconfig_path().display().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["migrate", "--kubeconfig", &kubeconfig, "--target-label-selector", &format!("shard={shard}")])
        .output()
        .unwrap();
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for expected in [
        format!("StatefulSet {system}/metacontroller: ghcr.io/metacontroller/metacontroller:v4.11.22, 1 replica(s)"),
        "! --pprof-address=:6060: no counterpart in bosun; ignored with a warning".to_owned(),
        "Controllers: 1 CompositeController(s), 1 DecoratorController(s)".to_owned(),
        format!("CompositeController migrate-{shard}"),
        format!("DecoratorController migrate-{shard}"),
        "the sync hook is sent credentials over plain http (http://hooks.example:8080/sync)".to_owned(),
        "namespaces (v1) is cluster-scoped while the parent is namespaced".to_owned(),
        format!("ClusterRole bosun:composite:migrate-{shard}"),
        format!("Role bosun:composite:migrate-{shard}:credentials in {system}: secrets hook-token"),
        format!("kubectl -n {system} set image statefulset/metacontroller metacontroller=ghcr.io/bosun-dev/bosun:"),
        "bosun rbac | kubectl apply -f -".to_owned(),
    ] {
        assert!(report.contains(&expected), "{expected:?} missing from:\n{report}");
    }
    assert!(!report.lines().any(|line| line.contains("plain http") && line.contains("decorate")), "https is fine:\n{report}");
    // Metacontroller stops before bosun's deployment starts: two engines would sync the same parents.
    let at = |text: &str| report.find(text).unwrap_or_else(|| panic!("{text:?} missing from:\n{report}"));
    assert!(at("--replicas=0") < at("kubectl apply --server-side -k deploy/"), "{report}");
    // The verify command works as printed.
    let verify = report.lines().find_map(|line| line.trim().strip_prefix("verify")).expect("a verify command");
    let words: Vec<&str> = verify.split_whitespace().collect();
    assert_eq!(&words[..2], ["bosun", "tree"], "{verify}");
    let tree = Command::new(env!("CARGO_BIN_EXE_bosun")).args(&words[1..]).args(["--kubeconfig", &kubeconfig]).output().unwrap();
    assert!(tree.status.success() && String::from_utf8_lossy(&tree.stdout).contains("FaultParent/p"), "{verify}: {tree:?}");
}

/// Every subcommand `bosun --help` lists is in the README's layout, as `name`.
#[test]
fn every_subcommand_is_in_the_readme() {
    let output = Command::new(env!("CARGO_BIN_EXE_bosun")).arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|command| *command != "help")
        .collect();
    assert!(commands.len() >= 9, "{help}");
    for command in commands {
        assert!(readme.contains(&format!("`{command}")), "the README does not name `bosun {command}`");
    }
}

/// Two `bosun dev` at once each pick free ports for metrics and probes and print them; one
/// asked for a port in use refuses before starting anything. What bosun dev prints is the
/// transcript: the engine's INFO lines go to the log file it names.
#[tokio::test]
async fn two_dev_clusters_run_side_by_side_and_the_transcript_has_no_log_lines() {
    tokio::task::spawn_blocking(bosun_testenv::Binaries::ensure).await.unwrap().unwrap();
    let dev = |args: &[&str]| support::dev::Dev::start(&[&["--no-examples", "--nodes=0"], args].concat(), &[]);
    let (mut first, mut second) = (dev(&[]), dev(&[]));
    let address = |dev: &support::dev::Dev| {
        let printed = &dev.printed;
        printed.iter().find_map(|line| line.strip_prefix("metrics: ").map(str::to_owned)).unwrap_or_else(|| panic!("{printed:#?}"))
    };
    assert_ne!(address(&first), address(&second), "each picks its own ports");
    for dev in [&first, &second] {
        // Both streams reach the terminal.
        let printed: Vec<&String> = dev.printed.iter().chain(&dev.errors).collect();
        assert!(printed.iter().any(|line| line.starts_with("export KUBECONFIG=")), "{printed:#?}");
        assert!(!printed.iter().any(|line| line.contains(" INFO ")), "log lines in the transcript: {printed:#?}");
        let log = printed.iter().find_map(|line| line.strip_prefix("log: ")).and_then(|rest| rest.split(' ').next()).unwrap();
        bosun_testenv::eventually("the engine's lines in the log file", async || {
            std::fs::read_to_string(log).unwrap().contains("engine starting").then_some(())
        })
        .await;
    }

    // A port in use, asked for explicitly: refused before a control plane starts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut refused = dev(&[&format!("--metrics-address=127.0.0.1:{port}")]);
    let status = refused.wait();
    let printed: Vec<&String> = refused.printed.iter().chain(&refused.errors).collect();
    assert!(!status.success(), "{printed:#?}");
    assert!(printed.iter().any(|line| line.contains(&format!("127.0.0.1:{port}")) && line.contains("another bosun dev")), "{printed:#?}");
    assert!(!printed.iter().any(|line| line.contains("control plane ready")), "nothing started: {printed:#?}");

    for dev in [&mut first, &mut second] {
        assert!(dev.interrupt().success());
    }
}

/// An example's controller from `examples/<example>/controller.yaml`, named and labelled for
/// this test's engine (`shard`), calling its hook on `port`.
async fn create_example_controller(admin: &kube::Client, example: &str, shard: &str, port: u16) {
    let path = format!("{}/../../examples/{example}/controller.yaml", env!("CARGO_MANIFEST_DIR"));
    let mut controller: DynamicObject = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    controller.metadata.name = Some(format!("{example}-{shard}"));
    controller.metadata.labels = Some([("shard".to_owned(), shard.to_owned())].into());
    controller.data["spec"]["hooks"]["sync"]["webhook"]["url"] = json!(format!("http://127.0.0.1:{port}/sync"));
    let resource = match controller.types.as_ref().map(|types| types.kind.as_str()) {
        Some("DecoratorController") => ApiResource::erase::<bosun_engine::api::DecoratorController>(&()),
        _ => ApiResource::erase::<bosun_engine::api::CompositeController>(&()),
    };
    Api::<DynamicObject>::all_with(admin.clone(), &resource).create(&PostParams::default(), &controller).await.unwrap();
}

/// `bosun run --namespace`: an engine whose ServiceAccount has Roles in the namespace it
/// watches (deploy/namespaced/rbac.yaml, and what `bosun rbac --namespace` prints for its
/// controllers) and no ClusterRole but the one that reads controllers runs the Greeting and
/// PodService examples there, ignores a Greeting in another namespace, and refuses the
/// team-namespaces decorator (its targets are cluster-scoped Namespaces) with an event that
/// says why.
#[tokio::test]
async fn run_within_a_namespace_needs_only_roles_there() {
    use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    let env = bosun_testenv::TestEnv::shared();
    let admin = env.client();
    bosun_engine::install_crds(&admin).await.unwrap();
    let (system, apps, other) =
        (env.namespace("scoped-system").await, env.namespace("scoped-apps").await, env.namespace("scoped-other").await);
    let shard = bosun_testenv::unique_suffix();
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/namespaced/rbac.yaml"))
        .unwrap()
        .replace("bosun-system", &system)
        .replace("bosun-apps", &apps)
        .replace("name: bosun-engine-controllers", &format!("name: {system}-controllers"))
        .replace("name: bosun-engine-events", &format!("name: {system}-events"))
        .replace("name: bosun-metrics-reader", &format!("name: {system}-metrics-reader"));
    kubectl(env, &["apply", "-f", "-"], &base);

    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut hooks = Vec::new();
    for example in ["greeting", "podservice"] {
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(format!("{examples}/{example}/crd.yaml")).unwrap()).unwrap();
        env.install_crd(&crd).await;
        let port = bosun_testenv::free_port();
        let log = std::env::temp_dir().join(format!("bosun-scoped-{example}-{port}.log"));
        let mut hook = bosun_testenv::ManagedProcess::spawn(
            "example hook",
            std::path::Path::new("python3"),
            &[format!("{examples}/{example}/hook.py"), port.to_string()],
            log,
        )
        .unwrap();
        hook.wait_listening(port, Duration::from_secs(15)).unwrap();
        hooks.push(hook);
        create_example_controller(&admin, example, &shard, port).await;
    }

    // The controllers' types, as Roles in the watched namespace: no ClusterRole.
    let kubeconfig = env.control_plane().kubeconfig_path().display().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["rbac", "--kubeconfig", &kubeconfig, "--target-label-selector", &format!("shard={shard}")])
        .args(["--namespace", &apps, "--service-account", &format!("{system}/bosun")])
        .output()
        .unwrap();
    let printed = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!printed.contains("kind: ClusterRole") && printed.contains(&format!("namespace: {apps}")), "{printed}");
    kubectl(env, &["apply", "-f", "-"], &printed);

    let token = env.control_plane().service_account_token(&system, "bosun").await.unwrap();
    let engine_kubeconfig = std::env::temp_dir().join(format!("bosun-scoped-{shard}.kubeconfig"));
    std::fs::write(&engine_kubeconfig, env.control_plane().kubeconfig_for_token(&token)).unwrap();
    let mut engine = bosun_testenv::ManagedProcess::spawn(
        "bosun run --namespace",
        std::path::Path::new(env!("CARGO_BIN_EXE_bosun")),
        &[
            "run".into(),
            format!("--kubeconfig={}", engine_kubeconfig.display()),
            format!("--namespace={apps}"),
            format!("--target-label-selector=shard={shard}"),
            "--discovery-interval=1s".into(),
            "--metrics-address=0".into(),
            "--health-probe-bind-address=0".into(),
        ],
        std::env::temp_dir().join(format!("bosun-scoped-{shard}.log")),
    )
    .unwrap();

    let greetings_resource =
        ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("examples.bosun.dev", "v1", "Greeting"), "greetings");
    let greeting: DynamicObject =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{examples}/greeting/greeting.yaml")).unwrap()).unwrap();
    let elsewhere: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &other, &greetings_resource);
    elsewhere.create(&PostParams::default(), &greeting).await.unwrap();
    let greetings: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &apps, &greetings_resource);
    greetings.create(&PostParams::default(), &greeting).await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &apps);
    bosun_testenv::eventually("the Greeting's ConfigMap and status", async || {
        let status = greetings.get("hello").await.unwrap().data["status"].clone();
        (status["observedGeneration"] == 1 && config_maps.get_opt("hello-greeting").await.unwrap().is_some()).then_some(())
    })
    .await;

    let podservices_resource =
        ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("examples.bosun.dev", "v1", "PodService"), "podservices");
    let podservices: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &apps, &podservices_resource);
    let podservice: DynamicObject =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{examples}/podservice/podservice.yaml")).unwrap()).unwrap();
    podservices.create(&PostParams::default(), &podservice).await.unwrap();
    let (pods, services): (Api<Pod>, Api<Service>) = (Api::namespaced(admin.clone(), &apps), Api::namespaced(admin.clone(), &apps));
    bosun_testenv::eventually("the PodService's Pod, Service and status", async || {
        let status = podservices.get("hello").await.unwrap().data["status"].clone();
        let children = pods.get_opt("hello").await.unwrap().is_some() && services.get_opt("hello").await.unwrap().is_some();
        (children && status["observedGeneration"] == 1).then_some(())
    })
    .await;

    // A change is followed in the watched namespace; the other namespace's Greeting, there all
    // along, is never touched.
    let change = json!({ "spec": { "message": "Hello again" } });
    greetings.patch("hello", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&change)).await.unwrap();
    bosun_testenv::eventually("the change followed", async || {
        let data = config_maps.get("hello-greeting").await.unwrap().data?;
        (data.get("message")? == "Hello again").then_some(())
    })
    .await;
    // A controller of cluster-scoped objects does not start, and says why where `kubectl
    // describe decoratorcontroller` shows it (events about cluster-scoped objects are in default).
    create_example_controller(&admin, "team-namespaces", &shard, 1).await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(admin.clone(), "default");
    let refusal = bosun_testenv::eventually("the decorator's CreateError event", async || {
        let list = events.list(&Default::default()).await.unwrap().items;
        list.into_iter()
            .find(|event| {
                event.reason.as_deref() == Some("CreateError")
                    && event.involved_object.name.as_deref() == Some(format!("team-namespaces-{shard}").as_str())
            })
            .and_then(|event| event.message)
    })
    .await;
    assert!(refusal.contains("cluster-scoped") && refusal.contains(&apps), "{refusal}");
    let ignored = elsewhere.get("hello").await.unwrap();
    assert!(ignored.data["status"].is_null() && ignored.metadata.finalizers.is_none(), "{ignored:?}");
    let other_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &other);
    assert!(other_maps.get_opt("hello-greeting").await.unwrap().is_none());
    assert!(engine.is_running(), "{}", engine.log_tail(40));
    let log = engine.log_tail(400);
    assert!(!log.contains("forbidden"), "the engine was refused something:\n{log}");
    engine.stop(Duration::from_secs(10));
}
