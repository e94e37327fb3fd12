//! The examples of `docs/engine.md`, as written, each with its hook run as a real `python3`
//! process on the standard library's HTTP/1.0 server: the Greeting CompositeController
//! (`examples/greeting/`) and the team-namespaces DecoratorController
//! (`examples/team-namespaces/`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bosun_engine::{Engine, EngineConfig};
use bosun_testenv::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/greeting");
const TEAMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/team-namespaces");

struct Hook(Child);

impl Hook {
    /// Runs `<example>/hook.py` on a free port; returns it and the port.
    fn start(example: &str) -> (Hook, u16) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .arg(format!("{example}/hook.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the example hook");
        (Hook(child), port)
    }
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
    let env = TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("greeting").await;

    let (_hook, port) = Hook::start(EXAMPLE);

    env.install_crd(&manifest::<CustomResourceDefinition>("crd.yaml")).await;

    // The controller as in the example, pointed at this test's hook port and engine.
    let shard = bosun_testenv::unique_suffix();
    let mut controller: DynamicObject = manifest("controller.yaml");
    controller.metadata.name = Some(format!("greeting-controller-{shard}"));
    controller.metadata.labels = Some([("shard".to_owned(), shard.clone())].into());
    controller.data["spec"]["hooks"]["sync"]["webhook"]["url"] = json!(format!("http://127.0.0.1:{port}/sync"));
    let resource = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    Api::<DynamicObject>::all_with(client.clone(), &resource).create(&PostParams::default(), &controller).await.unwrap();
    let config = EngineConfig {
        target_label_selector: Some(bosun_engine::selector::parse(&format!("shard={shard}")).unwrap()),
        ..EngineConfig::default()
    };
    let engine = tokio::spawn(Engine::new(client.clone(), config).run(std::future::pending()));

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
    let env = TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let (_hook, port) = Hook::start(TEAMS);

    let shard = bosun_testenv::unique_suffix();
    let mut controller: DynamicObject = manifest_of(TEAMS, "controller.yaml");
    controller.metadata.name = Some(format!("team-namespaces-{shard}"));
    controller.metadata.labels = Some([("shard".to_owned(), shard.clone())].into());
    controller.data["spec"]["hooks"]["sync"]["webhook"]["url"] = json!(format!("http://127.0.0.1:{port}/sync"));
    let resource = ApiResource::erase::<bosun_engine::api::DecoratorController>(&());
    Api::<DynamicObject>::all_with(client.clone(), &resource).create(&PostParams::default(), &controller).await.unwrap();
    let config = EngineConfig {
        target_label_selector: Some(bosun_engine::selector::parse(&format!("shard={shard}")).unwrap()),
        ..EngineConfig::default()
    };
    let engine = tokio::spawn(Engine::new(client.clone(), config).run(std::future::pending()));

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
            .find(|event| event.reason.as_deref() == Some("TeamInfoCreated") && event.involved_object.name.as_deref() == Some(name.as_str()))
            .map(|_| ())
    })
    .await;
    engine.abort();
}
