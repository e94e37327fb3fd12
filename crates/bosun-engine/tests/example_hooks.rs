//! The examples, as written, each with its hook run as a real process — `python3` on the
//! standard library's HTTP server, `node` on its `http` module: the Greeting, PodService and
//! PodSet and BlueGreen (rolling updates) CompositeControllers (`examples/greeting/`,
//! `examples/podservice/`, `examples/podset/`, `examples/bluegreen/`), and the
//! TeamSpace (children outside the parent's namespace, `examples/team-space/`), and the
//! team-namespaces and Ingress annotator DecoratorControllers (`examples/team-namespaces/`,
//! `examples/ingress-annotator/`); the Greeting's hook also as a bash script (an exec hook) and
//! compiled from Rust to a WebAssembly module. Each test's engine hosts only its own controller (a `shard`
//! label and the engine's target selector).

mod support;

use std::process::Command;
use std::time::Duration;

use bosun_engine::{ApplyStrategy, Engine, EngineConfig};
use bosun_testenv::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/greeting");
const TEAMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/team-namespaces");
const PODSERVICE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/podservice");
const ANNOTATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/ingress-annotator");
const PODSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/podset");
const BLUEGREEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/bluegreen");
const TEAM_SPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/team-space");

/// An example's hook process; stopped when dropped.
struct Hook(#[allow(dead_code, reason = "held only to keep the process running")] bosun_testenv::ManagedProcess);

impl Hook {
    /// Runs `<example>/hook.py` on a free port; returns it and the port.
    fn start(example: &str) -> (Hook, u16) {
        Hook::start_with("python3", &format!("{example}/hook.py"))
    }

    /// Runs `interpreter script <port>` on a free port and waits until it listens.
    fn start_with(interpreter: &str, script: &str) -> (Hook, u16) {
        let port = bosun_testenv::free_port();
        let log = std::env::temp_dir().join(format!("bosun-example-hook-{port}.log"));
        let mut hook = bosun_testenv::ManagedProcess::spawn(
            "example hook",
            std::path::Path::new(interpreter),
            &[script.to_owned(), port.to_string()],
            log,
        )
        .unwrap_or_else(|error| panic!("{interpreter} runs {script}: {error}"));
        hook.wait_listening(port, Duration::from_secs(15)).unwrap();
        (Hook(hook), port)
    }
}

/// Creates the controller of `<example>/<file>` (a `resource` of the engine), labelled with a
/// fresh shard and calling the hook on `port`, and starts an engine hosting only that shard;
/// returns the engine's task and the shard.
async fn host_controller(
    client: &kube::Client,
    example: &str,
    file: &str,
    resource: ApiResource,
    port: u16,
) -> (tokio::task::JoinHandle<()>, String) {
    host_controller_with(client, example, file, resource, port, ApplyStrategy::DynamicApply, |_| {}).await
}

/// [`host_controller`] with an apply strategy, and `edit` applied to the controller first.
async fn host_controller_with(
    client: &kube::Client,
    example: &str,
    file: &str,
    resource: ApiResource,
    port: u16,
    apply_strategy: ApplyStrategy,
    edit: impl FnOnce(&mut DynamicObject),
) -> (tokio::task::JoinHandle<()>, String) {
    let shard = bosun_testenv::unique_suffix();
    let mut controller: DynamicObject = manifest_of(example, file);
    edit(&mut controller);
    controller.metadata.name = Some(format!("{}-{shard}", controller.metadata.name.unwrap()));
    controller.metadata.labels = Some([("shard".to_owned(), shard.clone())].into());
    if let Some(url) = controller.data.pointer_mut("/spec/hooks/sync/webhook/url") {
        *url = json!(format!("http://127.0.0.1:{port}/sync"));
    }
    Api::<DynamicObject>::all_with(client.clone(), &resource).create(&PostParams::default(), &controller).await.unwrap();
    let config = EngineConfig {
        target_label_selector: Some(bosun_engine::selector::parse(&format!("shard={shard}")).unwrap()),
        apply_strategy,
        exec_hooks: true,
        ..EngineConfig::default()
    };
    (tokio::spawn(Engine::new(&bosun_runtime::Context::standalone(client.clone()), config).run(std::future::pending())), shard)
}

fn manifest<T: serde::de::DeserializeOwned>(file: &str) -> T {
    manifest_of(EXAMPLE, file)
}

fn manifest_of<T: serde::de::DeserializeOwned>(example: &str, file: &str) -> T {
    serde_yaml::from_str(&std::fs::read_to_string(format!("{example}/{file}")).unwrap()).unwrap()
}

#[tokio::test]
async fn the_greeting_example_runs_with_its_python_hook() {
    let (_hook, port) = Hook::start(EXAMPLE);
    greeting_runs("controller.yaml", port, |_| {}).await;
}

/// The same Greeting with its hook in bash and jq, a program the engine runs (an exec hook),
/// its path made absolute as the repository's root would make it.
#[tokio::test]
async fn the_greeting_example_runs_with_its_bash_exec_hook() {
    greeting_runs("exec-controller.yaml", 0, |controller| {
        let script = controller.data.pointer_mut("/spec/hooks/sync/exec/command/1").unwrap();
        *script = json!(format!("{EXAMPLE}/../../{}", script.as_str().unwrap()));
    })
    .await;
}

/// The same Greeting with its hook compiled from Rust to WebAssembly, in a ConfigMap.
#[tokio::test]
async fn the_greeting_example_runs_with_its_webassembly_hook() {
    let env = TestEnv::shared_with_nodes();
    let (module, _) = support::wasm_module("examples/greeting/wasm");
    let name = format!("greeting-hook-{}", bosun_testenv::unique_suffix());
    let config_map = ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
        binary_data: Some([("hook.wasm".to_owned(), k8s_openapi::ByteString(module))].into()),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(env.client(), "default").create(&PostParams::default(), &config_map).await.unwrap();
    greeting_runs("wasm-controller.yaml", 0, |controller| {
        *controller.data.pointer_mut("/spec/hooks/sync/wasm/configMap/name").unwrap() = json!(name);
    })
    .await;
}

/// Hosts the Greeting example's controller from `file` (its webhook on `port`, if it has one;
/// `edit`ed first) and checks that a Greeting gets its ConfigMap, follows a change of its
/// message, and reports its status.
async fn greeting_runs(file: &str, port: u16, edit: impl FnOnce(&mut DynamicObject)) {
    let env = TestEnv::shared_with_nodes();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("greeting").await;
    env.install_crd(&manifest::<CustomResourceDefinition>("crd.yaml")).await;

    let composite = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    let (engine, _) = host_controller_with(&client, EXAMPLE, file, composite, port, ApplyStrategy::DynamicApply, edit).await;

    let greetings_resource = ApiResource {
        group: "examples.bosun.dev".into(),
        version: "v1".into(),
        api_version: "examples.bosun.dev/v1".into(),
        kind: "Greeting".into(),
        plural: "greetings".into(),
    };
    let greetings: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &greetings_resource);
    let greeting: DynamicObject = manifest("greeting.yaml");
    greetings.create(&PostParams::default(), &greeting).await.unwrap();

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let wait_for = async |message: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let data = config_maps.get_opt("hello-greeting").await.unwrap().and_then(|cm| cm.data);
            if data.as_ref().and_then(|data| data.get("message")).map(String::as_str) == Some(message) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "no ConfigMap with {message:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_for("Hello from bosun").await;
    let change = json!({ "spec": { "message": "Hello again" } });
    greetings.patch("hello", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    wait_for("Hello again").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = greetings.get("hello").await.unwrap().data["status"].clone();
        if status["observedGeneration"] == 2 {
            assert_eq!(status["configMaps"], 1, "{status}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "status never reported generation 2: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.abort();
}

#[tokio::test]
async fn the_team_namespaces_example_runs_with_its_python_hook() {
    let env = TestEnv::shared_with_nodes();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let (_hook, port) = Hook::start(TEAMS);

    let decorator = ApiResource::erase::<bosun_engine::api::DecoratorController>(&());
    let (engine, shard) = host_controller(&client, TEAMS, "controller.yaml", decorator, port).await;

    let mut namespace: k8s_openapi::api::core::v1::Namespace = manifest_of(TEAMS, "namespace.yaml");
    let name = format!("payments-{shard}");
    namespace.metadata.name = Some(name.clone());
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    let info = bosun_testenv::eventually("the team-info attachment", async || config_maps.get_opt("team-info").await.unwrap()).await;
    assert_eq!(info.data.unwrap()["team"], "payments");
    let decorated = bosun_testenv::eventually("the namespace's label and annotation", async || {
        let namespace = namespaces.get(&name).await.unwrap();
        (namespace.metadata.labels.as_ref()?.get("teams.example.com/has-info")? == "true").then_some(namespace)
    })
    .await;
    assert_eq!(decorated.metadata.annotations.unwrap()["teams.example.com/team"], "payments");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    bosun_testenv::eventually("the hook's event on the namespace", async || {
        let list = events.list(&Default::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|event| {
                event.reason.as_deref() == Some("TeamInfoCreated") && event.involved_object.name.as_deref() == Some(name.as_str())
            })
            .map(|_| ())
    })
    .await;
    engine.abort();
}

fn podservices_resource() -> ApiResource {
    ApiResource {
        group: "examples.bosun.dev".into(),
        version: "v1".into(),
        api_version: "examples.bosun.dev/v1".into(),
        kind: "PodService".into(),
        plural: "podservices".into(),
    }
}

#[tokio::test]
async fn the_podservice_example_runs_with_its_python_hook() {
    use k8s_openapi::api::core::v1::{Pod, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use k8s_openapi::api::networking::v1::Ingress;
    use kube::api::ListParams;

    let env = TestEnv::shared_with_nodes();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    env.install_crd(&manifest_of::<CustomResourceDefinition>(PODSERVICE, "crd.yaml")).await;
    let namespace = env.namespace("podservice").await;
    let (_hook, port) = Hook::start(PODSERVICE);
    let composite = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    let (engine, _) = host_controller(&client, PODSERVICE, "controller.yaml", composite, port).await;

    let podservices: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &podservices_resource());
    let created = podservices.create(&PostParams::default(), &manifest_of(PODSERVICE, "podservice.yaml")).await.unwrap();
    let (pods, services, ingresses): (Api<Pod>, Api<Service>, Api<Ingress>) = (
        Api::namespaced(client.clone(), &namespace),
        Api::namespaced(client.clone(), &namespace),
        Api::namespaced(client.clone(), &namespace),
    );
    // Status comes from the children observed before each sync: all three, at this generation.
    let synced = async |generation: i64, children: i64| {
        bosun_testenv::eventually(&format!("PodService status of generation {generation} with {children} children"), async || {
            let podservice = podservices.get("hello").await.unwrap();
            let status = &podservice.data["status"];
            (status["observedGeneration"] == generation && status["children"] == children).then(|| status.clone())
        })
        .await
    };

    synced(1, 3).await;
    // The Pod runs on a simulated node; the PodService's status says so once the Pod's change
    // has been synced, and the Service has the Pod as its ready endpoint.
    let status = bosun_testenv::eventually("the PodService to report its Pod Running and Ready", async || {
        let status = podservices.get("hello").await.unwrap().data["status"].clone();
        (status["pod"]["phase"] == "Running" && status["pod"]["ready"] == true).then_some(status)
    })
    .await;
    let pod_ip = status["pod"]["podIP"].as_str().expect("a running Pod's IP in status").to_owned();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    bosun_testenv::eventually("the Service's endpoint to be the ready Pod", async || {
        let listed = slices.list(&ListParams::default().labels("kubernetes.io/service-name=hello")).await.unwrap().items;
        let endpoints: Vec<(String, Option<bool>)> = listed
            .iter()
            .flat_map(|slice| slice.endpoints.iter().flatten())
            .map(|endpoint| (endpoint.addresses[0].clone(), endpoint.conditions.as_ref().and_then(|conditions| conditions.ready)))
            .collect();
        (endpoints == [(pod_ip.clone(), Some(true))]).then_some(())
    })
    .await;
    let service = services.get("hello").await.unwrap();
    let cluster_ip = service.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    assert_eq!(status["service"]["clusterIP"], cluster_ip.as_str());
    assert_eq!(status["ingress"]["url"], "http://podservice.local/");
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 80);
    let pod = pods.get("hello").await.unwrap();
    assert_eq!(pod.owner_references()[0].uid, created.metadata.uid.clone().unwrap());
    let container = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("nginx:1.27"));
    assert_eq!(container.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0, "64Mi");
    let rule_host = |ingress: &Ingress| ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0].host.clone().unwrap();
    assert_eq!(rule_host(&ingresses.get("hello").await.unwrap()), "podservice.local");

    // A new image and host: the Pod is recreated (Recreate), the Ingress updated in place.
    let change = json!({ "spec": { "image": "nginx:1.28", "host": "hello.example.com" } });
    podservices.patch("hello", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    bosun_testenv::eventually("the Pod recreated with the new image", async || {
        let pod = pods.get_opt("hello").await.unwrap()?;
        (pod.spec?.containers[0].image.as_deref() == Some("nginx:1.28")).then_some(())
    })
    .await;
    assert_eq!(rule_host(&ingresses.get("hello").await.unwrap()), "hello.example.com");
    synced(2, 3).await;

    // No host: no Ingress.
    let change = json!({ "spec": { "host": null } });
    podservices.patch("hello", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    bosun_testenv::eventually("the Ingress deleted", async || ingresses.get_opt("hello").await.unwrap().is_none().then_some(())).await;
    synced(3, 2).await;

    // Deleting the PodService deletes its children (the garbage collector follows them).
    podservices.delete("hello", &Default::default()).await.unwrap();
    bosun_testenv::eventually("the Pod and Service deleted", async || {
        (pods.get_opt("hello").await.unwrap().is_none() && services.get_opt("hello").await.unwrap().is_none()).then_some(())
    })
    .await;
    engine.abort();
}

#[tokio::test]
async fn the_podservice_example_installs_in_a_cluster_with_kustomize() {
    let env = TestEnv::shared_with_nodes();
    bosun_engine::install_crds(&env.client()).await.unwrap();
    let plane = env.control_plane();
    let output = Command::new(plane.binaries().path(bosun_testenv::Component::Kubectl))
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .args(["apply", "--server-side", "-k", PODSERVICE])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client(), "podservice-system");
    let list = config_maps.list(&Default::default()).await.unwrap();
    let hook = list
        .items
        .iter()
        .find(|cm| cm.metadata.name.as_deref().unwrap().starts_with("podservice-hook-"))
        .expect("the generated hook ConfigMap");
    assert_eq!(hook.data.as_ref().unwrap()["hook.py"], std::fs::read_to_string(format!("{PODSERVICE}/hook.py")).unwrap());
    let sdk = list
        .items
        .iter()
        .find(|cm| cm.metadata.name.as_deref().unwrap().starts_with("bosun-hooks-python-"))
        .expect("the generated SDK ConfigMap");
    let sdk_source = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk/python/src/bosun_hooks");
    for module in ["__init__.py", "children.py", "protocol.py", "server.py", "testing.py"] {
        assert_eq!(sdk.data.as_ref().unwrap()[module], std::fs::read_to_string(format!("{sdk_source}/{module}")).unwrap(), "{module}");
    }
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(env.client(), "podservice-system");
    let deployment = deployments.get("podservice-hook").await.unwrap();
    let volumes = deployment.spec.template.spec.unwrap().volumes.unwrap();
    let volume = &volumes[0];
    assert_eq!(
        volume.config_map.as_ref().unwrap().name,
        hook.metadata.name.clone().unwrap(),
        "the Deployment mounts the generated ConfigMap"
    );
    assert!(
        volumes.iter().any(|volume| volume.config_map.as_ref().map(|cm| &cm.name) == sdk.metadata.name.as_ref()),
        "the Deployment mounts the SDK beside the hook"
    );
    bosun_testenv::eventually("the hook's Deployment to become Available on the simulated nodes", async || {
        let status = deployments.get("podservice-hook").await.unwrap().status?;
        let available = |c: &k8s_openapi::api::apps::v1::DeploymentCondition| {
            c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True")
        };
        status.conditions?.iter().any(available).then_some(())
    })
    .await;
    let composite = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    let controller = Api::<DynamicObject>::all_with(env.client(), &composite).get("podservice-controller").await.unwrap();
    assert_eq!(controller.data["spec"]["hooks"]["sync"]["webhook"]["url"], "http://podservice-hook.podservice-system/sync");
}

#[tokio::test]
async fn the_ingress_annotator_example_runs_with_its_node_hook() {
    use k8s_openapi::api::networking::v1::Ingress;

    let env = TestEnv::shared_with_nodes();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("annotated").await;
    let (_hook, port) = Hook::start_with("node", &format!("{ANNOTATOR}/hook.js"));
    let decorator = ApiResource::erase::<bosun_engine::api::DecoratorController>(&());
    let (engine, _) = host_controller(&client, ANNOTATOR, "decorator.yaml", decorator, port).await;

    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), &namespace);
    ingresses.create(&PostParams::default(), &manifest_of(ANNOTATOR, "ingress.yaml")).await.unwrap();
    let annotated = async || {
        bosun_testenv::eventually("the Ingress annotated foo: bar", async || {
            let ingress = ingresses.get("web").await.unwrap();
            (ingress.metadata.annotations.as_ref()?.get("foo")? == "bar").then_some(ingress)
        })
        .await
    };
    let ingress = annotated().await;
    assert_eq!(ingress.metadata.annotations.unwrap()["team"], "storefront", "other annotations stay");
    // Taken off by hand, it comes back.
    let remove = json!([{ "op": "remove", "path": "/metadata/annotations/foo" }]);
    ingresses.patch("web", &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(remove).unwrap())).await.unwrap();
    annotated().await;
    engine.abort();
}

fn podsets_resource() -> ApiResource {
    ApiResource {
        group: "examples.bosun.dev".into(),
        version: "v1".into(),
        api_version: "examples.bosun.dev/v1".into(),
        kind: "PodSet".into(),
        plural: "podsets".into(),
    }
}

fn controller_revisions() -> ApiResource {
    ApiResource {
        group: "metacontroller.k8s.io".into(),
        version: "v1alpha1".into(),
        api_version: "metacontroller.k8s.io/v1alpha1".into(),
        kind: "ControllerRevision".into(),
        plural: "controllerrevisions".into(),
    }
}

fn pod_is_ready(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions.into_iter().flatten().any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

/// The PodSet's `Updated` condition: (status, reason, message).
fn updated_condition(podset: &DynamicObject) -> Option<(String, String, String)> {
    let conditions = podset.data["status"]["conditions"].as_array()?;
    let updated = conditions.iter().find(|condition| condition["type"] == "Updated")?;
    let field = |name: &str| updated[name].as_str().unwrap_or_default().to_owned();
    Some((field("status"), field("reason"), field("message")))
}

/// The PodSet example (RollingRecreate Pods with a Ready status check) on simulated nodes: a
/// template change replaces one Pod at a time, each only once the one before is Ready; a Pod
/// that stays unready stops the rollout and the `Updated` condition names it; changing the
/// template back rolls back; old revisions are pruned; a steady state writes nothing.
async fn the_podset_example_rolls_one_pod_at_a_time(strategy: ApplyStrategy) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::watcher;

    let env = TestEnv::shared_with_nodes();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    env.install_crd(&manifest_of::<CustomResourceDefinition>(PODSET, "crd.yaml")).await;
    let namespace = env.namespace("podset").await;
    let (_hook, port) = Hook::start(PODSET);
    let composite = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    // Resyncs every 5 s, to show that a steady state writes nothing; handles only this test's
    // PodSets (the other strategy's test runs alongside).
    let (engine, _) = host_controller_with(&client, PODSET, "controller.yaml", composite, port, strategy, |controller| {
        controller.data["spec"]["resyncPeriodSeconds"] = json!(5);
        controller.data["spec"]["parentResource"]["labelSelector"] = json!({ "matchLabels": { "test": namespace } });
    })
    .await;

    let podsets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &podsets_resource());
    let revisions: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &controller_revisions());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let mut podset: DynamicObject = manifest_of(PODSET, "podset.yaml");
    podset.metadata.labels = Some([("test".to_owned(), namespace.clone())].into());
    podsets.create(&PostParams::default(), &podset).await.unwrap();
    let on_latest = async || {
        bosun_testenv::eventually("the PodSet on its latest revision with 3 ready Pods", async || {
            let podset = podsets.get("web").await.unwrap();
            let (status, reason, _) = updated_condition(&podset)?;
            let synced = podset.data["status"]["observedGeneration"] == json!(podset.metadata.generation);
            (synced && status == "True" && reason == "OnLatestRevision" && podset.data["status"]["readyReplicas"] == 3).then_some(())
        })
        .await
    };
    on_latest().await;
    assert_eq!(revisions.list(&Default::default()).await.unwrap().items.len(), 1, "one revision");

    // A template change, watched: Pods are replaced in the hook's order, one at a time.
    let set_version = async |version: &str, ready: Option<&str>| {
        let annotations = json!({ "version": version, bosun_testenv::POD_READY_ANNOTATION: ready });
        let patch = json!({ "spec": { "template": { "metadata": { "annotations": annotations } } } });
        podsets.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    };
    let mut events = std::pin::pin!(watcher(pods.clone(), watcher::Config::default().labels("examples.bosun.dev/podset=web")));
    let mut current: std::collections::BTreeMap<String, Pod> = Default::default();
    while let Some(event) = futures::TryStreamExt::try_next(&mut events).await.unwrap() {
        match event {
            watcher::Event::InitApply(pod) => {
                current.insert(pod.name_any(), pod);
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    set_version("2", None).await;
    let version = |pod: &Pod| pod.annotations().get("version").cloned().unwrap_or_default();
    let (mut most_unavailable, mut replaced) = (0, Vec::<String>::new());
    let rolled = async {
        while let Some(event) = futures::TryStreamExt::try_next(&mut events).await.unwrap() {
            match event {
                watcher::Event::Apply(pod) => {
                    if version(&pod) == "2" && pod_is_ready(&pod) && !replaced.contains(&pod.name_any()) {
                        replaced.push(pod.name_any());
                    }
                    current.insert(pod.name_any(), pod);
                }
                watcher::Event::Delete(pod) => {
                    current.remove(&pod.name_any());
                }
                _ => {}
            }
            let available = ["web-0", "web-1", "web-2"].iter().filter(|name| current.get(**name).is_some_and(pod_is_ready)).count();
            most_unavailable = most_unavailable.max(3 - available);
            if replaced.len() == 3 {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), rolled).await.expect("the rollout finishes");
    assert_eq!(replaced, ["web-0", "web-1", "web-2"], "in the hook's order");
    assert_eq!(most_unavailable, 1, "one Pod at a time");
    on_latest().await;
    assert_eq!(revisions.list(&Default::default()).await.unwrap().items.len(), 1, "the old revision is pruned");

    // Steady state: resyncs write nothing (the parent, its Pods and its revision keep their
    // resourceVersions across two resync periods).
    let versions = async || {
        let mut versions = vec![podsets.get("web").await.unwrap().resource_version()];
        versions.extend(pods.list(&Default::default()).await.unwrap().items.iter().map(|pod| pod.resource_version()));
        versions.extend(revisions.list(&Default::default()).await.unwrap().items.iter().map(|revision| revision.resource_version()));
        versions
    };
    // The last Pod's readiness may still be on its way into the status: once a resync period
    // passed without a write, two more must pass without one.
    let before = bosun_testenv::eventually("the writes to settle", async || {
        let before = versions().await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        (versions().await == before).then_some(before)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(versions().await, before, "a steady state writes nothing");

    // A Pod that never becomes Ready stops the rollout, and the condition says which.
    set_version("3", Some("false")).await;
    let waiting = bosun_testenv::eventually("the rollout to wait for web-0 to become Ready", async || {
        let (status, reason, message) = updated_condition(&podsets.get("web").await.unwrap())?;
        (status == "False" && reason == "RolloutWaiting" && message.contains("web-0"))
            .then_some(message)
            .filter(|message| message.contains(r#""Ready" condition status is "False""#))
    })
    .await;
    assert_eq!(waiting, r#"child Pod web-0 failed status check: "Ready" condition status is "False" (want "True")"#);
    let versions_now = async || -> Vec<String> {
        let mut listed = pods.list(&Default::default()).await.unwrap().items;
        listed.sort_by_key(|pod| pod.name_any());
        listed.iter().map(version).collect()
    };
    assert_eq!(versions_now().await, ["3", "2", "2"], "only the first Pod moved");
    assert_eq!(revisions.list(&Default::default()).await.unwrap().items.len(), 2);

    // Back to the last good template: the stuck Pod rolls back, the failed revision goes.
    set_version("2", None).await;
    on_latest().await;
    assert_eq!(versions_now().await, ["2", "2", "2"]);
    assert_eq!(revisions.list(&Default::default()).await.unwrap().items.len(), 1);
    engine.abort();
}

#[tokio::test]
async fn the_podset_example_rolls_one_pod_at_a_time_with_dynamic_apply() {
    the_podset_example_rolls_one_pod_at_a_time(ApplyStrategy::DynamicApply).await;
}

#[tokio::test]
async fn the_podset_example_rolls_one_pod_at_a_time_with_server_side_apply() {
    the_podset_example_rolls_one_pod_at_a_time(ApplyStrategy::ServerSideApply { field_manager: "bosun".into() }).await;
}

/// The BlueGreen example (two Deployments, RollingInPlace, an `Available` status check; its
/// hook in Node): a template change updates blue in place first, and green only once blue has
/// observed its new spec and is Available; then one revision is left.
#[tokio::test]
async fn the_bluegreen_example_updates_green_only_after_blue_is_available() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::runtime::watcher;

    let env = TestEnv::shared_with_nodes();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    env.install_crd(&manifest_of::<CustomResourceDefinition>(BLUEGREEN, "crd.yaml")).await;
    let namespace = env.namespace("bluegreen").await;
    let (_hook, port) = Hook::start_with("node", &format!("{BLUEGREEN}/hook.js"));
    let composite = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    let (engine, _) = host_controller(&client, BLUEGREEN, "controller.yaml", composite, port).await;
    let resource = ApiResource {
        group: "examples.bosun.dev".into(),
        version: "v1".into(),
        api_version: "examples.bosun.dev/v1".into(),
        kind: "BlueGreen".into(),
        plural: "bluegreens".into(),
    };
    let bluegreens: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let revisions: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &controller_revisions());
    bluegreens.create(&PostParams::default(), &manifest_of(BLUEGREEN, "bluegreen.yaml")).await.unwrap();
    let on_latest = async |generation: i64| {
        bosun_testenv::eventually("both colors available on the latest revision", async || {
            let bluegreen = bluegreens.get("shop").await.unwrap();
            let status = &bluegreen.data["status"];
            let (state, reason, _) = updated_condition(&bluegreen)?;
            (status["observedGeneration"] == generation
                && state == "True"
                && reason == "OnLatestRevision"
                && status["blue"]["availableReplicas"] == 2
                && status["green"]["availableReplicas"] == 2)
                .then_some(())
        })
        .await
    };
    on_latest(1).await;

    let version = |deployment: &Deployment| {
        let template = deployment.spec.template.metadata.as_ref();
        template.and_then(|metadata| metadata.annotations.as_ref()).and_then(|annotations| annotations.get("version").cloned())
    };
    let settled = |deployment: &Deployment| {
        let status = deployment.status.as_ref();
        let observed = status.and_then(|status| status.observed_generation) >= deployment.metadata.generation;
        let available = status
            .and_then(|status| status.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|condition| condition.type_.as_deref() == Some("Available") && condition.status.as_deref() == Some("True"));
        observed && available
    };
    let mut events = std::pin::pin!(watcher(deployments.clone(), watcher::Config::default()));
    let mut current: std::collections::BTreeMap<String, Deployment> = Default::default();
    while let Some(event) = futures::TryStreamExt::try_next(&mut events).await.unwrap() {
        match event {
            watcher::Event::InitApply(deployment) => {
                current.insert(deployment.name_any(), deployment);
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": { "version": "2" } } } } });
    bluegreens.patch("shop", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    // The moment green gets the new template, blue must have it, have observed it, and be Available.
    let blue_when_green_moved = async {
        while let Some(event) = futures::TryStreamExt::try_next(&mut events).await.unwrap() {
            if let watcher::Event::Apply(deployment) = event {
                let green_moved = deployment.name_any() == "shop-green" && version(&deployment).as_deref() == Some("2");
                current.insert(deployment.name_any(), deployment);
                if green_moved {
                    return current["shop-blue"].clone();
                }
            }
        }
        unreachable!("the watch ends only with the test")
    };
    let blue = tokio::time::timeout(Duration::from_secs(60), blue_when_green_moved).await.expect("green is updated");
    assert_eq!(version(&blue).as_deref(), Some("2"), "blue first");
    assert!(settled(&blue), "blue had observed its spec and was Available: {:?}", blue.status);
    on_latest(2).await;
    assert_eq!(revisions.list(&Default::default()).await.unwrap().items.len(), 1, "the old revision is pruned");
    engine.abort();
}

/// The TeamSpace example: a namespaced parent whose Namespace and RoleBinding live outside its
/// namespace, tied by label, updated, dropped, and deleted with it.
#[tokio::test]
async fn the_team_space_example_keeps_children_outside_its_namespace() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::RoleBinding;

    let env = TestEnv::shared_with_nodes();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    env.install_crd(&manifest_of::<CustomResourceDefinition>(TEAM_SPACE, "crd.yaml")).await;
    let namespace = env.namespace("teams").await;
    let (_hook, port) = Hook::start(TEAM_SPACE);
    let composite = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    let (engine, shard) = host_controller(&client, TEAM_SPACE, "controller.yaml", composite, port).await;

    let resource =
        ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk("examples.bosun.dev", "v1", "TeamSpace"), "teamspaces");
    let teams: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
    let mut team: DynamicObject = manifest_of(TEAM_SPACE, "teamspace.yaml");
    let name = format!("payments-{shard}");
    team.metadata.name = Some(name.clone());
    let uid = teams.create(&PostParams::default(), &team).await.unwrap().metadata.uid.unwrap();
    let team_namespace = format!("team-{name}");
    let (namespaces, bindings): (Api<Namespace>, Api<RoleBinding>) =
        (Api::all(client.clone()), Api::namespaced(client.clone(), &team_namespace));
    let binding =
        bosun_testenv::eventually("the RoleBinding in the team's Namespace", async || bindings.get_opt("viewers").await.unwrap()).await;
    assert_eq!(binding.labels().get("bosun.dev/controller-uid"), Some(&uid));
    assert_eq!(binding.subjects.unwrap()[0].name, "payments-auditors");
    assert_eq!(namespaces.get(&team_namespace).await.unwrap().labels().get("bosun.dev/controller-uid"), Some(&uid));
    bosun_testenv::eventually("the TeamSpace's status", async || {
        let status = teams.get(&name).await.unwrap().data["status"].clone();
        (status["namespace"] == team_namespace.as_str() && status["roleBindings"] == 1).then_some(())
    })
    .await;

    let change = json!({ "spec": { "viewers": null } });
    teams.patch(&name, &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    bosun_testenv::eventually("the RoleBinding deleted", async || bindings.get_opt("viewers").await.unwrap().is_none().then_some(())).await;
    teams.delete(&name, &Default::default()).await.unwrap();
    bosun_testenv::eventually("the TeamSpace gone, and its Namespace deleted", async || {
        let gone = teams.get_opt(&name).await.unwrap().is_none();
        let left = namespaces.get_opt(&team_namespace).await.unwrap();
        (gone && left.is_none_or(|namespace| namespace.metadata.deletion_timestamp.is_some())).then_some(())
    })
    .await;
    engine.abort();
}

/// The PodService admission example: `admission.py` (validate and mutate) behind bosun's
/// admission endpoint refuses an unpinned image with its message and stores a default memory
/// limit.
#[tokio::test]
async fn the_podservice_admission_example_refuses_unpinned_images_and_defaults_memory() {
    use bosun_engine::admission::{Admission, AdmissionConfig};

    let env = TestEnv::shared_with_nodes();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    env.install_crd(&manifest_of::<CustomResourceDefinition>(PODSERVICE, "crd.yaml")).await;
    let namespace = env.namespace("podservice-admission").await;
    let config = AdmissionConfig::loopback((namespace.clone(), "bosun-admission-ca".into())).unwrap();
    let admission = Admission::new(&bosun_runtime::Context::standalone(client.clone()), config);
    let serving = tokio::spawn(admission.clone().serve(std::future::pending()));
    let wiring = tokio::spawn(admission.wire(std::future::pending()));
    let (_hook, hook_port) = Hook::start_with("python3", &format!("{PODSERVICE}/admission.py"));

    // The example's declaration, for this test's namespace only and its hook's port.
    let mut declared: DynamicObject = manifest_of(PODSERVICE, "admission.yaml");
    declared.metadata.name = Some(format!("podservices-{namespace}"));
    declared.data["spec"]["namespaceSelector"] = json!({ "matchLabels": { "kubernetes.io/metadata.name": namespace } });
    for hook in ["validate", "mutate"] {
        declared.data["spec"]["hooks"][hook]["webhook"]["url"] = json!(format!("http://127.0.0.1:{hook_port}/{hook}"));
    }
    let resource = ApiResource::erase::<bosun_engine::admission::api::AdmissionController>(&());
    Api::<DynamicObject>::all_with(client.clone(), &resource).create(&PostParams::default(), &declared).await.unwrap();

    let podservices: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &podservices_resource());
    let podservice =
        |name: &str, image: &str| DynamicObject::new(name, &podservices_resource()).data(json!({ "spec": { "image": image } }));
    let refused = bosun_testenv::eventually("the unpinned image refused", async || {
        podservices.create(&PostParams::default(), &podservice("unpinned", "nginx")).await.err()
    })
    .await;
    assert!(refused.to_string().contains("spec.image \"nginx\" is not pinned"), "{refused}");
    let stored = podservices.create(&PostParams::default(), &podservice("pinned", "nginx:1.27")).await.unwrap();
    assert_eq!(stored.data["spec"]["resources"]["limits"]["memory"], "128Mi", "{:?}", stored.data);
    serving.abort();
    wiring.abort();
}
