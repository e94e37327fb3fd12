//! The examples, as written, each with its hook run as a real process — `python3` on the
//! standard library's HTTP server, `node` on its `http` module: the Greeting and PodService
//! CompositeControllers (`examples/greeting/`, `examples/podservice/`), and the
//! team-namespaces and Ingress annotator DecoratorControllers (`examples/team-namespaces/`,
//! `examples/ingress-annotator/`). Each test's engine hosts only its own controller (a `shard`
//! label and the engine's target selector).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bosun_engine::{Engine, EngineConfig};
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

struct Hook(Child);

impl Hook {
    /// Runs `<example>/hook.py` on a free port; returns it and the port.
    fn start(example: &str) -> (Hook, u16) {
        Hook::start_with("python3", &format!("{example}/hook.py"))
    }

    /// Runs `interpreter script <port>` on a free port and waits until it listens.
    fn start_with(interpreter: &str, script: &str) -> (Hook, u16) {
        let port = bosun_testenv::free_port();
        let child = Command::new(interpreter)
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("{interpreter} runs {script}: {error}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "{script} did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        (Hook(child), port)
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
    let shard = bosun_testenv::unique_suffix();
    let mut controller: DynamicObject = manifest_of(example, file);
    controller.metadata.name = Some(format!("{}-{shard}", controller.metadata.name.unwrap()));
    controller.metadata.labels = Some([("shard".to_owned(), shard.clone())].into());
    controller.data["spec"]["hooks"]["sync"]["webhook"]["url"] = json!(format!("http://127.0.0.1:{port}/sync"));
    Api::<DynamicObject>::all_with(client.clone(), &resource).create(&PostParams::default(), &controller).await.unwrap();
    let config = EngineConfig {
        target_label_selector: Some(bosun_engine::selector::parse(&format!("shard={shard}")).unwrap()),
        ..EngineConfig::default()
    };
    (tokio::spawn(Engine::new(client.clone(), config).run(std::future::pending())), shard)
}

impl Drop for Hook {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn manifest<T: serde::de::DeserializeOwned>(file: &str) -> T {
    manifest_of(EXAMPLE, file)
}

fn manifest_of<T: serde::de::DeserializeOwned>(example: &str, file: &str) -> T {
    serde_yaml::from_str(&std::fs::read_to_string(format!("{example}/{file}")).unwrap()).unwrap()
}

#[tokio::test]
async fn the_greeting_example_runs_with_its_python_hook() {
    let env = TestEnv::shared_with_nodes();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("greeting").await;

    let (_hook, port) = Hook::start(EXAMPLE);

    env.install_crd(&manifest::<CustomResourceDefinition>("crd.yaml")).await;

    let composite = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    let (engine, _) = host_controller(&client, EXAMPLE, "controller.yaml", composite, port).await;

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
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(env.client(), "podservice-system");
    let deployment = deployments.get("podservice-hook").await.unwrap();
    let volume = &deployment.spec.template.spec.unwrap().volumes.unwrap()[0];
    assert_eq!(
        volume.config_map.as_ref().unwrap().name,
        hook.metadata.name.clone().unwrap(),
        "the Deployment mounts the generated ConfigMap"
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
