//! The deploy manifests: the kustomize and Helm renderings apply to a real API server (with
//! server-side dry-run), the chart's CRDs are the committed ones, and the RBAC they grant —
//! the engine's own ClusterRole, the aggregated one, the leader election Role — is enough for
//! the engine to run a controller as that ServiceAccount.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bosun_engine::{Engine, EngineConfig};
use bosun_runtime::sharding::{Ring, ShardingConfig, coordinator::DEFAULT_REPAIR_PERIOD};
use bosun_runtime::{LeaderElectionConfig, Manager, ManagerConfig};
use bosun_testenv::{Component, TestEnv};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{HookServer, config_map_per_parent, create_thing_controller, eventually, install_thing_crd};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn run(program: &Path, args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.unwrap_or_default().as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{} {args:?} failed:\n{}\n{text}", program.display(), String::from_utf8_lossy(&output.stderr));
    text
}

/// Applies `manifests` with server-side dry-run into `bosun-system`, which exists for real.
async fn dry_run(env: &TestEnv, manifests: &str) -> String {
    // bosun's namespace, and the one the namespace-scoped variants watch.
    for name in ["bosun-system", "bosun-apps"] {
        let namespace: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
        let _ = Api::<Namespace>::all(env.client()).create(&PostParams::default(), &namespace).await;
    }
    let kubectl = env.control_plane().binaries().path(Component::Kubectl);
    let kubeconfig = env.control_plane().kubeconfig_path().display().to_string();
    run(&kubectl, &["apply", "--kubeconfig", &kubeconfig, "--server-side", "--dry-run=server", "-f", "-"], Some(manifests))
}

#[tokio::test]
async fn the_kustomization_applies() {
    let env = TestEnv::shared();
    let kubectl = env.control_plane().binaries().path(Component::Kubectl);
    let rendered = run(&kubectl, &["kustomize", &deploy_dir().display().to_string()], None);
    let applied = dry_run(env, &rendered).await;
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/compositecontrollers.metacontroller.k8s.io serverside-applied (server dry run)",
        "clusterrole.rbac.authorization.k8s.io/bosun-engine-managed serverside-applied (server dry run)",
        "customresourcedefinition.apiextensions.k8s.io/configmapsyncs.bosun.dev serverside-applied (server dry run)",
        "clusterrole.rbac.authorization.k8s.io/bosun-configmapsync serverside-applied (server dry run)",
        "role.rbac.authorization.k8s.io/bosun-leader-election serverside-applied (server dry run)",
        "deployment.apps/bosun serverside-applied (server dry run)",
        "serviceaccount/bosun-configmapsync serverside-applied (server dry run)",
        "deployment.apps/bosun-configmapsync serverside-applied (server dry run)",
    ] {
        assert!(applied.contains(object), "{object} missing from:\n{applied}");
    }

    // With the sharding component enabled as the kustomization's comment says.
    let copy = std::env::temp_dir().join(format!("bosun-deploy-{}", bosun_testenv::unique_suffix()));
    copy_dir(&deploy_dir(), &copy);
    let kustomization = std::fs::read_to_string(copy.join("kustomization.yaml")).unwrap();
    let enabled = kustomization.replace("# components:\n# - sharding", "components:\n- sharding");
    assert_ne!(enabled, kustomization, "deploy/kustomization.yaml has the sharding lines to uncomment");
    std::fs::write(copy.join("kustomization.yaml"), enabled).unwrap();
    let sharded = run(&kubectl, &["kustomize", &copy.display().to_string()], None);
    std::fs::remove_dir_all(&copy).unwrap();
    assert!(sharded.contains("- --sharding\n") && sharded.contains("replicas: 3"), "{sharded}");
    let applied = dry_run(env, &sharded).await;
    assert!(applied.contains("role.rbac.authorization.k8s.io/bosun-sharding serverside-applied (server dry run)"), "{applied}");

    // Namespace-scoped, as the comment says: Roles where they name their namespace, one
    // ClusterRole to read the controllers, the engine told which namespace it watches.
    copy_dir(&deploy_dir(), &copy);
    let enabled = kustomization
        .replace("- rbac.yaml\n", "")
        .replace("- configmapsync.yaml\n", "")
        .replace("# components:\n", "components:\n")
        .replace("# - namespaced\n", "- namespaced\n");
    std::fs::write(copy.join("kustomization.yaml"), enabled).unwrap();
    let scoped = run(&kubectl, &["kustomize", &copy.display().to_string()], None);
    std::fs::remove_dir_all(&copy).unwrap();
    assert!(scoped.contains("- --namespace=bosun-apps\n") && !scoped.contains("bosun-configmapsync"), "{scoped}");
    // Top-level kinds only: a binding's roleRef names its role's kind too, indented.
    let cluster_roles: Vec<&str> = scoped.split("---").filter(|document| document.contains("\nkind: ClusterRole\n")).collect();
    assert_eq!(cluster_roles.len(), 2, "bosun-engine-controllers and bosun-metrics-reader: {cluster_roles:?}");
    for (role, namespace) in [("bosun-engine", "bosun-apps"), ("bosun-engine-events", "default"), ("bosun-leader-election", "bosun-system")]
    {
        let document =
            scoped.split("---").find(|document| document.contains("\nkind: Role\n") && document.contains(&format!("name: {role}\n")));
        assert!(
            document.is_some_and(|document| document.contains(&format!("namespace: {namespace}\n"))),
            "Role {role} in {namespace}: {scoped}"
        );
    }
    let applied = dry_run(env, &scoped).await;
    assert!(applied.contains("role.rbac.authorization.k8s.io/bosun-engine serverside-applied (server dry run)"), "{applied}");

    // With admission: its Service, its rights, and the engine told how it is reached.
    copy_dir(&deploy_dir(), &copy);
    let enabled = kustomization.replace("# components:\n", "components:\n").replace("# - admission\n", "- admission\n");
    std::fs::write(copy.join("kustomization.yaml"), enabled).unwrap();
    let admitting = run(&kubectl, &["kustomize", &copy.display().to_string()], None);
    std::fs::remove_dir_all(&copy).unwrap();
    assert!(admitting.contains("- --admission-service=bosun-system/bosun-admission\n"), "{admitting}");
    let applied = dry_run(env, &admitting).await;
    for object in [
        "service/bosun-admission",
        "clusterrole.rbac.authorization.k8s.io/bosun-admission",
        "role.rbac.authorization.k8s.io/bosun-admission-ca",
    ] {
        assert!(applied.contains(&format!("{object} serverside-applied (server dry run)")), "{object}: {applied}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn the_helm_chart_renders_and_applies() {
    let env = TestEnv::shared();
    let chart = deploy_dir().join("helm/bosun");
    for crds in ["crds/metacontroller.k8s.io.yaml", "crds/bosun.dev.yaml", "crds/admissioncontrollers.bosun.dev.yaml"] {
        assert_eq!(
            std::fs::read_to_string(chart.join(crds)).unwrap(),
            std::fs::read_to_string(deploy_dir().join(crds)).unwrap(),
            "the chart's {crds} differs from deploy/{crds}: copy it over"
        );
    }
    let helm = env.control_plane().binaries().path(Component::Helm);
    let chart = chart.display().to_string();
    let extra = "extraArgs={--apply-strategy=server-side-apply}";
    let rendered = run(&helm, &["template", "bosun", &chart, "--namespace", "bosun-system", "--include-crds", "--set", extra], None);
    assert!(rendered.contains("- \"--apply-strategy=server-side-apply\""), "{rendered}");
    let applied = dry_run(env, &rendered).await;
    assert!(applied.contains("deployment.apps/bosun serverside-applied (server dry run)"), "{applied}");
    assert!(applied.contains("deployment.apps/bosun-configmapsync serverside-applied (server dry run)"), "{applied}");
    // ConfigMapSync runs as its own Deployment and ServiceAccount; the engine's runs without it.
    assert!(rendered.contains("--engine=false") && rendered.contains("serviceAccountName: bosun-configmapsync"), "{rendered}");
    assert!(rendered.contains("--configmapsync=false") && rendered.contains("--configmapsync-require-consent=true"), "{rendered}");
    let allowed = run(&helm, &["template", "bosun", &chart, "--set", "configMapSync.allowSystemNamespaces={kube-public}"], None);
    assert!(allowed.contains("- --configmapsync-allow-system-namespace=kube-public"), "{allowed}");
    let without_election = run(&helm, &["template", "bosun", &chart, "--set", "leaderElection.enabled=false"], None);
    assert!(!without_election.contains("--leader-election") && !without_election.contains("kind: Role\n"));
    let without_configmapsync = run(&helm, &["template", "bosun", &chart, "--set", "configMapSync.enabled=false"], None);
    assert!(without_configmapsync.contains("--configmapsync=false") && !without_configmapsync.contains("bosun-configmapsync"));
    // /metrics asks who is scraping unless told otherwise; the NetworkPolicy is one switch away.
    assert!(rendered.contains("- --metrics-secure=true") && rendered.contains("resources: [tokenreviews]"), "{rendered}");
    assert!(rendered.contains("name: bosun-metrics-reader"), "{rendered}");
    let plain = run(&helm, &["template", "bosun", &chart, "--set", "metrics.secure=false"], None);
    assert!(plain.contains("- --metrics-secure=false") && !plain.contains("tokenreviews") && !plain.contains("metrics-reader"), "{plain}");
    let certified = run(&helm, &["template", "bosun", &chart, "--set", "metrics.certSecret=bosun-metrics-tls"], None);
    assert!(certified.contains("- --metrics-cert-dir=/etc/bosun/metrics-certs") && certified.contains("secretName: bosun-metrics-tls"));
    assert!(!rendered.contains("kind: NetworkPolicy"), "off by default");
    let fenced = run(&helm, &["template", "bosun", &chart, "--namespace", "bosun-system", "--set", "networkPolicy.enabled=true"], None);
    let applied = dry_run(env, &fenced).await;
    assert!(applied.contains("networkpolicy.networking.k8s.io/bosun serverside-applied (server dry run)"), "{applied}");
    let identities = run(&helm, &["template", "bosun", &chart, "--set", "requireServiceAccount=true"], None);
    assert!(identities.contains("- --require-service-account\n") && !rendered.contains("--require-service-account"), "{identities}");
    // Namespace-scoped: Roles in each namespace (events about the controllers in default), one
    // ClusterRole to read the controllers, no ConfigMapSync.
    let scoped = run(&helm, &["template", "bosun", &chart, "--namespace", "bosun-system", "--set", "watchNamespaces={bosun-apps}"], None);
    assert!(scoped.contains("- --namespace=bosun-apps\n") && !scoped.contains("bosun-configmapsync"), "{scoped}");
    assert!(!scoped.contains("engine-managed") && scoped.contains("name: bosun-engine-controllers"), "{scoped}");
    // Top-level kinds only: a binding's roleRef names its role's kind too, indented.
    assert_eq!(scoped.matches("\nkind: ClusterRole\n").count(), 2, "the controllers' reader and the metrics reader: {scoped}");
    assert_eq!(scoped.matches("\nkind: Role\n").count(), 3, "bosun-apps, default, leader election: {scoped}");
    let applied = dry_run(env, &scoped).await;
    assert!(applied.contains("role.rbac.authorization.k8s.io/bosun-engine serverside-applied (server dry run)"), "{applied}");
    // Admission: the Service, the rights, the flags.
    let admitting = run(&helm, &["template", "bosun", &chart, "--namespace", "bosun-system", "--set", "admission.enabled=true"], None);
    assert!(admitting.contains("- --admission-service=bosun-system/bosun-admission\n"), "{admitting}");
    let applied = dry_run(env, &admitting).await;
    assert!(applied.contains("service/bosun-admission serverside-applied (server dry run)"), "{applied}");
    assert!(!rendered.contains("admission-service"), "off by default");
    let sharded = run(&helm, &["template", "bosun", &chart, "--set", "sharding.enabled=true,leaderElection.enabled=false"], None);
    assert!(sharded.contains("- --sharding\n") && sharded.contains("- --sharding-ring=bosun"), "{sharded}");
    assert!(sharded.contains("verbs: [get, list, create, update, delete]"), "the coordinator's Lease rights: {sharded}");
}

#[tokio::test]
async fn the_engine_runs_with_only_the_deployed_rbac() {
    engine_runs_with_only_the_deployed_rbac(false).await;
}

#[tokio::test]
async fn the_sharded_engine_runs_with_only_the_deployed_rbac() {
    engine_runs_with_only_the_deployed_rbac(true).await;
}

/// Applies the RBAC manifests `rbac` in namespace `system` (for `bosun-system`), their
/// cluster-scoped names made the test's own, so the other tests' dry runs do not meet them.
async fn apply_rbac(admin: &kube::Client, system: &str, rbac: &str) {
    let rbac = rbac
        .replace("bosun-system", system)
        .replace("name: bosun-engine", &format!("name: {system}-engine"))
        .replace("name: bosun-admission", &format!("name: {system}-admission"))
        .replace("name: bosun-configmapsync", &format!("name: {system}-configmapsync"));
    for document in serde_yaml::Deserializer::from_str(&rbac) {
        let object: DynamicObject = serde::Deserialize::deserialize(document).unwrap();
        let kind = object.types.clone().unwrap().kind;
        let resource = match kind.as_str() {
            "ServiceAccount" => kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ServiceAccount>(&()),
            "ClusterRole" => kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&()),
            "ClusterRoleBinding" => kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(&()),
            "Role" => kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::Role>(&()),
            "RoleBinding" => kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()),
            other => panic!("unexpected {other} in the RBAC manifests"),
        };
        let api: Api<DynamicObject> = if kind.starts_with("Cluster") {
            Api::all_with(admin.clone(), &resource)
        } else {
            Api::namespaced_with(admin.clone(), system, &resource)
        };
        let name = object.metadata.name.clone().unwrap();
        api.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&object)).await.unwrap();
    }
}

/// Admission as bosun's ServiceAccount with only `deploy/rbac.yaml` and the admission
/// component's `rbac.yaml`: the CA made in its namespace, the webhook configuration written,
/// a request refused by the hook, and everything removed when the declaration goes.
#[tokio::test]
async fn admission_runs_with_only_the_deployed_rbac() {
    use bosun_engine::admission::{Admission, AdmissionConfig};
    let env = TestEnv::shared();
    let admin = env.client();
    bosun_engine::install_crds(&admin).await.unwrap();
    let system = env.namespace("bosun-admission-rbac").await;
    let rbac = format!(
        "{}\n---\n{}",
        std::fs::read_to_string(deploy_dir().join("rbac.yaml")).unwrap(),
        std::fs::read_to_string(deploy_dir().join("admission/rbac.yaml")).unwrap()
    );
    apply_rbac(&admin, &system, &rbac).await;
    let client = env.service_account_client(&system, "bosun").await;
    let config = AdmissionConfig::loopback((system.clone(), "bosun-admission-ca".into())).unwrap();
    let admission = Admission::new(&bosun_runtime::Context::standalone(client), config);
    let serving = tokio::spawn(admission.clone().serve(std::future::pending()));
    let wiring = tokio::spawn(admission.wire(std::future::pending()));
    let namespace = env.namespace("admission-rbac-objects").await;
    let hooks = HookServer::start(|_, _| support::Reply::Json(json!({ "allowed": false, "message": "no ConfigMaps here" }))).await;
    let name = format!("rbac-{}", bosun_testenv::unique_suffix());
    let declared: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "AdmissionController", "metadata": { "name": name },
        "spec": {
            "rules": [{ "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "operations": ["CREATE"] }],
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": namespace } },
            "hooks": { "validate": hooks.hook("validate", json!({})) },
        },
    }))
    .unwrap();
    let declarations: Api<DynamicObject> =
        Api::all_with(admin.clone(), &kube::api::ApiResource::erase::<bosun_engine::admission::api::AdmissionController>(&()));
    declarations.create(&PostParams::default(), &declared).await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &namespace);
    // A name of its own each time: one admitted before the webhook is in place must not make
    // the next attempt's answer "already exists".
    let config_map = || serde_json::from_value::<ConfigMap>(json!({ "metadata": { "generateName": "attempt-" } })).unwrap();
    let refused = eventually("refused by the hook", async || config_maps.create(&PostParams::default(), &config_map()).await.err()).await;
    assert!(refused.to_string().contains("no ConfigMaps here"), "{refused}");
    declarations.delete(&name, &Default::default()).await.unwrap();
    eventually("admitted once the declaration is gone", async || {
        let refused = config_maps.create(&PostParams::default(), &config_map()).await.is_err();
        (!refused).then_some(())
    })
    .await;
    eventually("the declaration gone (its finalizer removed as bosun)", async || {
        declarations.get_opt(&name).await.unwrap().is_none().then_some(())
    })
    .await;
    serving.abort();
    wiring.abort();
}

/// Runs the engine as bosun's ServiceAccount with only the RBAC of `deploy/rbac.yaml` (and,
/// `sharded`, of `deploy/sharding/rbac.yaml`, as a one-replica ring that coordinates itself).
async fn engine_runs_with_only_the_deployed_rbac(sharded: bool) {
    let env = TestEnv::shared();
    let admin = env.client();
    bosun_engine::install_crds(&admin).await.unwrap();
    let system = env.namespace("bosun-rbac").await;
    let mut rbac = std::fs::read_to_string(deploy_dir().join("rbac.yaml")).unwrap();
    if sharded {
        rbac = format!("{rbac}\n---\n{}", std::fs::read_to_string(deploy_dir().join("sharding/rbac.yaml")).unwrap());
    }
    apply_rbac(&admin, &system, &rbac).await;

    // A user's controller over Things and ConfigMaps, granted by aggregation, as the Greeting
    // example's rbac.yaml does.
    let namespace = env.namespace("rbac-parents").await;
    let suffix = bosun_testenv::unique_suffix();
    let things = install_thing_crd(env, &suffix, true).await;
    let grant: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": { "name": format!("bosun-things-{suffix}"), "labels": { "bosun.dev/aggregate-to-engine": "true" } },
        "rules": [
            { "apiGroups": [things.group], "resources": ["things"], "verbs": ["get", "list", "watch", "patch"] },
            { "apiGroups": [things.group], "resources": ["things/status"], "verbs": ["patch"] },
            { "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] },
        ],
    }))
    .unwrap();
    let cluster_roles =
        Api::<DynamicObject>::all_with(admin.clone(), &kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRole>(&()));
    cluster_roles.patch(&format!("bosun-things-{suffix}"), &PatchParams::apply("test").force(), &Patch::Apply(&grant)).await.unwrap();

    // The engine as the ServiceAccount, with leader election (and sharding) in its namespace.
    let engine_client = env.service_account_client(&system, "bosun").await;
    let loopback = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut manager =
        Manager::new(ManagerConfig { metrics_address: loopback, health_address: None, shutdown_timeout: Duration::from_secs(10) })
            .with_secure_metrics(engine_client.clone(), bosun_runtime::ServingCertificate::SelfSigned)
            .with_client(engine_client.clone());
    let election = LeaderElectionConfig::new("bosun", &system);
    let config = EngineConfig {
        discovery_interval: Duration::from_millis(500),
        target_label_selector: Some(bosun_engine::selector::parse(&format!("rbac-test={suffix}")).unwrap()),
        ..Default::default()
    };
    let ring = Ring { name: format!("rbac-{}", bosun_testenv::unique_suffix()), namespace: system.clone() };
    manager = if sharded {
        let sharding = ShardingConfig { ring: ring.clone(), name: "only".into(), election, repair_period: DEFAULT_REPAIR_PERIOD };
        manager.with_sharding(sharding)
    } else {
        manager.with_leader_election(engine_client, election)
    };
    let engine = Engine::new(&manager.context(), config);
    manager.add("engine", move |shutdown| engine.run(shutdown.requested()));
    let running = manager.start().await.unwrap();

    let hooks = HookServer::start(config_map_per_parent).await;
    let spec = json!({
        "childResources": [{ "apiVersion": "v1", "resource": "configmaps", "updateStrategy": { "method": "InPlace" } }],
        "hooks": { "sync": hooks.hook("sync", json!({})) },
    });
    // Each engine of the two tests runs only its own controller.
    create_thing_controller(&admin, &format!("rbac-{suffix}"), json!({ "rbac-test": suffix }), &things, spec).await;
    let parents: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &namespace, &things);
    let parent =
        DynamicObject::new("p", &things).data(json!({ "spec": { "selector": { "matchLabels": { "thing": "p" } }, "data": { "a": "1" } } }));
    parents.create(&PostParams::default(), &parent).await.unwrap();

    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &namespace);
    eventually("the child, written by the engine's ServiceAccount", async || config_maps.get_opt("p-config").await.unwrap()).await;
    eventually("the status, written by the engine's ServiceAccount", async || {
        let parent = parents.get("p").await.unwrap();
        (parent.data["status"]["observedGeneration"] == 1).then_some(())
    })
    .await;
    let change = json!({ "spec": { "data": { "a": "2" } } });
    parents.patch("p", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    eventually("an in-place update", async || {
        let data = config_maps.get("p-config").await.unwrap().data?;
        (data.get("a").map(String::as_str) == Some("2")).then_some(())
    })
    .await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(admin.clone(), &namespace);
    let warnings: Vec<_> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|event| event.type_.as_deref() == Some("Warning"))
        .filter_map(|event| event.message)
        .collect();
    assert!(warnings.is_empty(), "the engine was refused something: {warnings:?}");
    check_metrics_security(env, &system, running.metrics_address.unwrap()).await;
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(admin, &system);
    let lease = leases.get("bosun").await.unwrap();
    assert!(lease.spec.and_then(|spec| spec.holder_identity).is_some(), "the leader election Role works");
    if sharded {
        let shard_of = |object: &DynamicObject| object.metadata.labels.as_ref().and_then(|labels| labels.get(&ring.shard_label()).cloned());
        assert_eq!(shard_of(&parents.get("p").await.unwrap()).as_deref(), Some("only"), "the coordinator assigned the parent");
        let child =
            Api::<DynamicObject>::namespaced_with(config_maps.into_client(), &namespace, &kube::api::ApiResource::erase::<ConfigMap>(&()));
        assert_eq!(shard_of(&child.get("p-config").await.unwrap()).as_deref(), Some("only"), "the engine labelled the child");
        assert!(leases.get_opt("only").await.unwrap().is_some(), "the shard holds its Lease");
    }
    running.shutdown().await.unwrap();
}

/// `/metrics`, served securely with the deployed rights: an anonymous scrape gets 401, a
/// ServiceAccount without the role `bosun-metrics-reader` 403, one it is bound to 200.
async fn check_metrics_security(env: &TestEnv, namespace: &str, metrics: std::net::SocketAddr) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let scraper = reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().unwrap();
    let scrape = async |token: Option<&str>| {
        let mut request = scraper.get(format!("https://{metrics}/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status().as_u16()
    };
    assert_eq!(scrape(None).await, 401, "anonymous");
    let plane = env.control_plane();
    let stranger = plane.service_account_token(namespace, "stranger").await.unwrap();
    assert_eq!(scrape(Some(&stranger)).await, 403, "a ServiceAccount without the role");
    assert_eq!(scrape(Some("not-a-token")).await, 401, "a token the API server does not know");
    let prometheus = plane.service_account_token(namespace, "prometheus").await.unwrap();
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": { "name": format!("{namespace}-prometheus") },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bosun-metrics-reader" },
        "subjects": [{ "kind": "ServiceAccount", "name": "prometheus", "namespace": namespace }],
    }))
    .unwrap();
    let bindings =
        Api::<DynamicObject>::all_with(env.client(), &kube::api::ApiResource::erase::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(&()));
    bindings.create(&PostParams::default(), &binding).await.unwrap();
    // RBAC reaches the authorizer a moment after it is written.
    eventually("a scrape by the bound ServiceAccount", async || (scrape(Some(&prometheus)).await == 200).then_some(())).await;
}

/// The chart's monitoring switches render a Service, ServiceMonitor, PrometheusRule and
/// dashboard ConfigMap that apply; every metric the alerts and the Grafana dashboard query is
/// one the engine exposes (checked against a real engine's `/metrics` after it ran every
/// hook); every panel has a title, an axis label and a legend.
#[tokio::test]
async fn the_monitoring_manifests_apply_and_query_what_bosun_exposes() {
    let env = TestEnv::shared();
    for (plural, kind) in [("servicemonitors", "ServiceMonitor"), ("prometheusrules", "PrometheusRule")] {
        // prometheus-operator's CRDs, reduced to what a dry run needs.
        let crd = serde_json::from_value(json!({
            "metadata": { "name": format!("{plural}.monitoring.coreos.com") },
            "spec": {
                "group": "monitoring.coreos.com", "scope": "Namespaced",
                "names": { "plural": plural, "kind": kind },
                "versions": [{ "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                }}}],
            },
        }))
        .unwrap();
        env.install_crd(&crd).await;
    }
    let helm = env.control_plane().binaries().path(Component::Helm);
    let chart = deploy_dir().join("helm/bosun").display().to_string();
    let switches = "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,metrics.grafanaDashboard.enabled=true";
    let rendered = run(&helm, &["template", "bosun", &chart, "--namespace", "bosun-system", "--set", switches], None);
    let applied = dry_run(env, &rendered).await;
    for object in [
        "service/bosun-metrics",
        "servicemonitor.monitoring.coreos.com/bosun",
        "prometheusrule.monitoring.coreos.com/bosun",
        "configmap/bosun-dashboard",
    ] {
        assert!(applied.contains(&format!("{object} serverside-applied (server dry run)")), "{object} missing from:\n{applied}");
    }
    assert!(rendered.contains("scheme: https") && rendered.contains("bearerTokenFile:") && rendered.contains("insecureSkipVerify: true"));
    let without = run(&helm, &["template", "bosun", &chart], None);
    assert!(!without.contains("monitoring.coreos.com") && !without.contains("bosun-metrics\n"), "off by default");

    let mut queries: Vec<String> = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&rendered) {
        let object: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
        if object["kind"] == "PrometheusRule" {
            for rule in object["spec"]["groups"][0]["rules"].as_array().unwrap() {
                queries.push(rule["expr"].as_str().unwrap().to_owned());
            }
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy_dir().join("helm/bosun/dashboards/bosun.json")).unwrap()).unwrap();
    for panel in dashboard["panels"].as_array().unwrap().iter().filter(|panel| panel["type"] == "timeseries") {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty() && panel["description"].is_string(), "{panel}");
        assert!(panel["fieldConfig"]["defaults"]["custom"]["axisLabel"].as_str().is_some_and(|label| !label.is_empty()), "{title}");
        assert_eq!(panel["options"]["legend"]["showLegend"], true, "{title}");
        for target in panel["targets"].as_array().unwrap() {
            assert!(target["legendFormat"].as_str().is_some_and(|legend| !legend.is_empty()), "{title}");
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }

    // An engine that has called sync, customize and finalize hooks.
    let fixture = support::Fixture::new(bosun_engine::ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(|hook, request| match hook {
        "customize" => support::Reply::Json(json!({ "relatedResources": [] })),
        "finalize" => support::Reply::Json(json!({ "finalized": true })),
        _ => config_map_per_parent(hook, request),
    })
    .await;
    let hook = |name| hooks.hook(name, json!({}));
    fixture
        .composite_controller(json!({ "hooks": { "sync": hook("sync"), "customize": hook("customize"), "finalize": hook("finalize") } }))
        .await;
    fixture.parent("p", json!({ "data": { "a": "1" } })).await;
    eventually("the child", async || fixture.config_maps().get_opt("p-config").await.unwrap()).await;
    fixture.parents().delete("p", &Default::default()).await.unwrap();
    eventually("the parent finalized", async || fixture.parents().get_opt("p").await.unwrap().is_none().then_some(())).await;
    let exposed: std::collections::HashSet<String> = fixture
        .metrics
        .encode()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect();
    for query in &queries {
        for (at, _) in query.match_indices('{') {
            let name: String = query[..at]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            // Only with leader election, which this engine runs without (the runtime's tests cover it).
            if name.is_empty() || name == "leader_election_master_status" {
                continue;
            }
            assert!(exposed.contains(&name), "{name} (in {query}) is not exposed; bosun exposes {exposed:?}");
        }
    }
}
