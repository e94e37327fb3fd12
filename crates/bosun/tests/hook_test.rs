//! `bosun hook test`: one sync as the engine would make it, with nothing written — tried with
//! the Greeting example's Python hook on a new parent, a live one and a changed one, and with
//! test hooks that answer what the engine must refuse or that drop a child.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

mod support;

use support::transcript::{Shell, transcript};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn greetings() -> ApiResource {
    ApiResource {
        group: "examples.bosun.dev".into(),
        version: "v1".into(),
        api_version: "examples.bosun.dev/v1".into(),
        kind: "Greeting".into(),
        plural: "greetings".into(),
    }
}

/// Runs `bosun hook test <args>` from the repository's root; returns the exit code and stdout
/// (stderr is added to failure messages).
fn hook_test(env: &bosun_testenv::TestEnv, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .current_dir(ROOT)
        .args(["hook", "test"])
        .args(args)
        .arg("--kubeconfig")
        .arg(env.control_plane().kubeconfig_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{}", if stderr.is_empty() { String::new() } else { format!("\n[stderr]\n{stderr}") }),
    )
}

/// An example's hook (`<interpreter> examples/<script> <port>`) on a free loopback port;
/// returns it and its URL.
fn example_hook(interpreter: &str, script: &str, dir: &Path) -> (bosun_testenv::ManagedProcess, String) {
    let port = bosun_testenv::free_port();
    let mut hook = bosun_testenv::ManagedProcess::spawn(
        "example hook",
        Path::new(interpreter),
        &[format!("{ROOT}/examples/{script}"), port.to_string()],
        dir.join(format!("hook-{port}.log")),
    )
    .unwrap();
    hook.wait_listening(port, Duration::from_secs(15)).unwrap();
    (hook, format!("http://127.0.0.1:{port}/sync"))
}

fn greeting_hook(dir: &Path) -> (bosun_testenv::ManagedProcess, String) {
    example_hook("python3", "greeting/hook.py", dir)
}

/// A loopback sync hook that answers every request with `answer(request)`.
async fn test_hook(answer: impl Fn(&Value) -> Value + Clone + Send + Sync + 'static) -> String {
    let router = axum::Router::new().route(
        "/sync",
        axum::routing::post(move |axum::Json(request): axum::Json<Value>| {
            let answer = answer.clone();
            async move { axum::Json(answer(&request)) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sync", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

async fn install_greeting_crd(env: &bosun_testenv::TestEnv) {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{ROOT}/examples/greeting/crd.yaml")).unwrap()).unwrap();
    env.install_crd(&crd).await;
}

/// A new Greeting, given as a file, with the controller's manifest and the hook on this
/// machine: the dry run shows the ConfigMap the engine would create and the status it would
/// write — and creates neither, nor the Greeting. `--output json` and `--save` say the same.
#[tokio::test]
async fn a_new_parent_shows_what_would_be_created_and_nothing_is_written() {
    let env = bosun_testenv::TestEnv::shared();
    bosun_engine::install_crds(&env.client()).await.unwrap();
    install_greeting_crd(env).await;
    let namespace = env.namespace("hook-new").await;
    let dir = tempfile_dir("hook-new");
    let (_hook, url) = greeting_hook(&dir);
    let args = ["examples/greeting/controller.yaml", "examples/greeting/greeting.yaml", "-n", &namespace, "--url", &url];

    let (code, out) = hook_test(env, &args);
    assert_eq!(code, 0, "{out}");
    for expected in [
        format!("bosun hook test: CompositeController greeting-controller syncing Greeting {namespace}/hello"),
        format!("sync hook {url}: HTTP 200"),
        format!("ConfigMap {namespace}/hello-greeting: would be created"),
        "+  message: Hello from bosun".to_owned(),
        format!("Greeting {namespace}/hello: its status would be written"),
        "+  configMaps: 0".to_owned(),
        "Synced;".to_owned(),
    ] {
        assert!(out.contains(&expected), "{expected:?} missing from:\n{out}");
    }
    let client = env.client();
    assert!(Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &greetings()).get_opt("hello").await.unwrap().is_none());
    assert!(Api::<ConfigMap>::namespaced(client.clone(), &namespace).get_opt("hello-greeting").await.unwrap().is_none());

    // Server-side apply, previewed the same way.
    let (code, out) = hook_test(env, &[&args[..], &["--apply-strategy", "server-side-apply"]].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("ConfigMap {namespace}/hello-greeting: would be created")), "{out}");
    assert!(!out.contains("last-applied-configuration"), "server-side apply keeps no annotation:\n{out}");

    let save = dir.join("vector");
    let (code, out) = hook_test(env, &[&args[..], &["--output", "json", "--save", save.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{out}");
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|error| panic!("{error}: {out}"));
    assert_eq!(result["written"], false);
    assert_eq!(result["outcome"]["result"], "Synced");
    assert_eq!(result["hooks"][0]["hook"], "sync");
    assert_eq!(result["hooks"][0]["request"]["parent"]["spec"]["message"], "Hello from bosun");
    assert_eq!(result["hooks"][0]["response"]["children"][0]["metadata"]["name"], "hello-greeting");
    let actions: Vec<(&str, &str)> = result["writes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|write| (write["action"].as_str().unwrap(), write["object"].as_str().unwrap()))
        .collect();
    assert!(actions.contains(&("create", &format!("ConfigMap {namespace}/hello-greeting"))), "{actions:?}");
    let read = |name: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(save.join(name)).unwrap()).unwrap() };
    assert_eq!(read("request.json")["parent"]["metadata"]["name"], "hello");
    assert_eq!(read("response.json")["children"][0]["data"]["message"], "Hello from bosun");
    let expect = read("expect.json");
    assert_eq!(expect["outcome"], "Synced");
    assert!(
        expect["writes"].as_array().unwrap().contains(&json!({ "action": "create", "kind": "ConfigMap", "name": "hello-greeting" })),
        "{expect}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Greeting example with its hook as a bash script (an exec hook): `bosun hook test` runs
/// the program, without `--exec-hooks` (it runs as the person testing), and shows the same.
#[tokio::test]
async fn an_exec_hook_is_run_and_shows_what_would_be_created() {
    let env = bosun_testenv::TestEnv::shared();
    bosun_engine::install_crds(&env.client()).await.unwrap();
    install_greeting_crd(env).await;
    let namespace = env.namespace("hook-exec").await;
    let (code, out) = hook_test(env, &["examples/greeting/exec-controller.yaml", "examples/greeting/greeting.yaml", "-n", &namespace]);
    assert_eq!(code, 0, "{out}");
    for expected in [
        "sync hook exec:///".to_owned(),
        "bash: exited 0, answered in ".to_owned(),
        format!("ConfigMap {namespace}/hello-greeting: would be created"),
        "+  message: Hello from bosun".to_owned(),
    ] {
        assert!(out.contains(&expected), "{expected:?} missing from:\n{out}");
    }
}

/// The Greeting example with its hook as a WebAssembly module in a ConfigMap: `bosun hook test`
/// loads and runs it the same way.
#[tokio::test]
async fn a_webassembly_hook_is_run_and_shows_what_would_be_created() {
    let env = bosun_testenv::TestEnv::shared();
    bosun_engine::install_crds(&env.client()).await.unwrap();
    install_greeting_crd(env).await;
    let namespace = env.namespace("hook-wasm").await;
    let built = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip1", "--manifest-path"])
        .arg(format!("{ROOT}/examples/greeting/wasm/Cargo.toml"))
        .env("CARGO_TARGET_DIR", format!("{ROOT}/target/wasm"))
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let module = std::fs::read(format!("{ROOT}/target/wasm/wasm32-wasip1/release/greeting-hook.wasm")).unwrap();
    let config_map = ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some("greeting-hook".into()), ..Default::default() },
        binary_data: Some([("hook.wasm".to_owned(), k8s_openapi::ByteString(module))].into()),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(env.client(), &namespace).create(&PostParams::default(), &config_map).await.unwrap();
    let dir = tempfile_dir("hook-wasm");
    let controller = std::fs::read_to_string(format!("{ROOT}/examples/greeting/wasm-controller.yaml"))
        .unwrap()
        .replace("namespace: default, name: greeting-hook", &format!("namespace: {namespace}, name: greeting-hook"));
    let file = dir.join("controller.yaml");
    std::fs::write(&file, controller).unwrap();

    let (code, out) = hook_test(env, &[file.to_str().unwrap(), "examples/greeting/greeting.yaml", "-n", &namespace]);
    assert_eq!(code, 0, "{out}");
    for expected in [
        format!("sync hook wasm:configmap/{namespace}/greeting-hook/hook.wasm: "),
        format!("ConfigMap {namespace}/hello-greeting: would be created"),
        "+  message: Hello from bosun".to_owned(),
    ] {
        assert!(out.contains(&expected), "{expected:?} missing from:\n{out}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A Greeting the engine has synced: the dry run of the controller in the cluster finds
/// nothing to change; of a changed Greeting from a file, the ConfigMap update as a diff. The
/// live objects stay as they were.
#[tokio::test]
async fn a_live_parent_shows_no_changes_and_a_changed_one_its_diff() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    install_greeting_crd(env).await;
    let namespace = env.namespace("hook-live").await;
    let dir = tempfile_dir("hook-live");
    let (_hook, url) = greeting_hook(&dir);
    let shard = bosun_testenv::unique_suffix();
    let name = format!("greeting-{shard}");
    let mut controller: DynamicObject =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{ROOT}/examples/greeting/controller.yaml")).unwrap()).unwrap();
    controller.metadata.name = Some(name.clone());
    controller.metadata.labels = Some([("shard".to_owned(), shard.clone())].into());
    controller.data["spec"]["hooks"]["sync"]["webhook"]["url"] = json!(url);
    Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()))
        .create(&PostParams::default(), &controller)
        .await
        .unwrap();
    let greetings: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &greetings());
    let greeting = DynamicObject::new("hello", &self::greetings()).data(json!({ "spec": { "message": "Hello from bosun" } }));
    greetings.create(&PostParams::default(), &greeting).await.unwrap();
    // The engine syncs it, and stops.
    let config = bosun_engine::EngineConfig {
        target_label_selector: Some(bosun_engine::selector::parse(&format!("shard={shard}")).unwrap()),
        ..Default::default()
    };
    let engine =
        tokio::spawn(bosun_engine::Engine::new(&bosun_runtime::Context::standalone(client.clone()), config).run(std::future::pending()));
    bosun_testenv::eventually("the engine's sync", async || {
        let status = greetings.get("hello").await.unwrap().data["status"].clone();
        (status["configMaps"] == 1).then_some(())
    })
    .await;
    engine.abort();
    let _ = engine.await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let versions = async || {
        (greetings.get("hello").await.unwrap().resource_version(), config_maps.get("hello-greeting").await.unwrap().resource_version())
    };
    let before = versions().await;

    let (code, out) = hook_test(env, &[&name, "greetings/hello", "-n", &namespace]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("No changes: the cluster already is what the hook asks for."), "{out}");

    let changed = dir.join("changed.yaml");
    std::fs::write(
        &changed,
        format!("apiVersion: examples.bosun.dev/v1\nkind: Greeting\nmetadata:\n  name: hello\n  namespace: {namespace}\nspec:\n  message: Hello, changed\n"),
    )
    .unwrap();
    let (code, out) = hook_test(env, &[&format!("compositecontroller/{name}"), changed.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    for expected in [
        format!("ConfigMap {namespace}/hello-greeting: would be updated"),
        "-  message: Hello from bosun".to_owned(),
        "+  message: Hello, changed".to_owned(),
    ] {
        assert!(out.contains(&expected), "{expected:?} missing from:\n{out}");
    }
    // The engine's own annotation, which repeats the whole child, only when asked for.
    assert!(!out.contains("last-applied-configuration"), "bookkeeping shown by default:\n{out}");
    let (code, out) = hook_test(env, &[&format!("compositecontroller/{name}"), changed.to_str().unwrap(), "--show-bookkeeping"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("-    metacontroller.k8s.io/last-applied-configuration: ")
            && out.contains("+    metacontroller.k8s.io/last-applied-configuration: "),
        "{out}"
    );
    assert_eq!(versions().await, before, "a dry run writes nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What the engine refuses is shown with the engine's own message, and the command fails: a
/// child in another namespace, a child whose name another object controls. A child the hook
/// stops declaring would be deleted.
// Several threads: the test's hooks answer while the command runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_engines_messages_and_dropped_children_would_be_deleted() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    install_greeting_crd(env).await;
    let namespace = env.namespace("hook-refused").await;
    let dir = tempfile_dir("hook-refused");
    let controller = format!("{ROOT}/examples/greeting/controller.yaml");
    let greetings: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &greetings());
    let greeting = DynamicObject::new("hello", &self::greetings()).data(json!({ "spec": { "message": "Hello" } }));
    let greeting = greetings.create(&PostParams::default(), &greeting).await.unwrap();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);

    // A child in another namespace.
    let elsewhere = test_hook(
        |_| json!({ "children": [{ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c", "namespace": "kube-system" } }] }),
    )
    .await;
    let (code, out) = hook_test(env, &[&controller, "greetings/hello", "-n", &namespace, "--url", &elsewhere]);
    assert_eq!(code, 2, "a refused response fails the command:\n{out}");
    assert!(out.contains("The sync fails: invalid sync hook response:") && out.contains("kube-system"), "{out}");
    assert!(out.contains("Event Warning SyncError: Sync error: invalid sync hook response:"), "{out}");

    // A name another object controls.
    let owner = config_maps
        .create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": "owner" } })).unwrap())
        .await
        .unwrap();
    let taken: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "taken", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.uid().unwrap(), "controller": true,
    }] } }))
    .unwrap();
    config_maps.create(&PostParams::default(), &taken).await.unwrap();
    let taker = test_hook(|_| json!({ "children": [{ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "taken" } }] })).await;
    let (code, out) = hook_test(env, &[&controller, "greetings/hello", "-n", &namespace, "--url", &taker]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("already exists and is not controlled by this parent (it is controlled by ConfigMap owner)"), "{out}");

    // A child of the parent the hook no longer declares.
    let uid = greeting.uid().unwrap();
    let old: ConfigMap = serde_json::from_value(json!({ "metadata": {
        "name": "old", "labels": { "controller-uid": uid },
        "ownerReferences": [{ "apiVersion": "examples.bosun.dev/v1", "kind": "Greeting", "name": "hello", "uid": uid, "controller": true }],
    } }))
    .unwrap();
    config_maps.create(&PostParams::default(), &old).await.unwrap();
    let forgetful = test_hook(|_| json!({ "children": [] })).await;
    let (code, out) = hook_test(env, &[&controller, "greetings/hello", "-n", &namespace, "--url", &forgetful]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("ConfigMap {namespace}/old: would be deleted")), "{out}");
    assert!(config_maps.get_opt("old").await.unwrap().is_some(), "a dry run deletes nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A DecoratorController's dry run, with the Ingress annotator's Node.js hook: the Ingress
/// would get the hook's annotation, and does not.
#[tokio::test]
async fn a_decorator_shows_what_it_would_write_on_its_target() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("hook-decorator").await;
    let dir = tempfile_dir("hook-decorator");
    let (_hook, url) = example_hook("node", "ingress-annotator/hook.js", &dir);
    let ingress: k8s_openapi::api::networking::v1::Ingress =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{ROOT}/examples/ingress-annotator/ingress.yaml")).unwrap()).unwrap();
    let ingresses: Api<k8s_openapi::api::networking::v1::Ingress> = Api::namespaced(client.clone(), &namespace);
    let before = ingresses.create(&PostParams::default(), &ingress).await.unwrap().resource_version();

    let (code, out) = hook_test(env, &["examples/ingress-annotator/decorator.yaml", "ingresses/web", "-n", &namespace, "--url", &url]);
    assert_eq!(code, 0, "{out}");
    for expected in [
        format!("bosun hook test: DecoratorController ingress-annotator syncing Ingress {namespace}/web"),
        format!("Ingress {namespace}/web: would be updated"),
        "+    foo: bar".to_owned(),
    ] {
        assert!(out.contains(&expected), "{expected:?} missing from:\n{out}");
    }
    assert_eq!(ingresses.get("web").await.unwrap().resource_version(), before, "a dry run writes nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The guide's `bosun hook test` transcript is what the commands print, with the Greeting
/// example's hook on the port its controller names.
#[tokio::test]
async fn the_guides_hook_test_transcript_is_what_the_command_prints() {
    let env = bosun_testenv::TestEnv::shared();
    bosun_engine::install_crds(&env.client()).await.unwrap();
    install_greeting_crd(env).await;
    let dir = tempfile_dir("hook-guide");
    let mut hook = bosun_testenv::ManagedProcess::spawn(
        "greeting hook",
        Path::new("python3"),
        &[format!("{ROOT}/examples/greeting/hook.py"), "8080".to_owned()],
        dir.join("hook.log"),
    )
    .unwrap();
    hook.wait_listening(8080, Duration::from_secs(15)).unwrap();
    let shell = Shell::new(&dir, &[("bosun", env!("CARGO_BIN_EXE_bosun").into())], env.control_plane().kubeconfig_path());
    let steps = transcript("Testing a hook");
    assert!(!steps.is_empty(), "the guide shows bosun hook test");
    for (command, expected) in &steps {
        let output = shell.run_until_shown(command, expected, String::new).await;
        eprintln!("$ {command}\n{output}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir(prefix: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bosun-{prefix}-{}", bosun_testenv::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `--url` naming another host than the hook's own sends none of the controller's credentials,
/// and says so; `--send-credentials` sends them, and the output says which went where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_credentials_stay_home_when_url_names_another_host() {
    let env = bosun_testenv::TestEnv::shared();
    bosun_engine::install_crds(&env.client()).await.unwrap();
    install_greeting_crd(env).await;
    let namespace = env.namespace("hook-credentials").await;
    let secret =
        json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "hook-token" }, "stringData": { "token": "T0KEN-42" } });
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(env.client(), &namespace)
        .create(&PostParams::default(), &serde_json::from_value(secret).unwrap())
        .await
        .unwrap();
    let dir = tempfile_dir("hook-credentials");
    let mut controller: Value =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{ROOT}/examples/greeting/controller.yaml")).unwrap()).unwrap();
    controller["spec"]["hooks"]["sync"]["webhook"] = json!({
        "url": "https://hooks.example/sync",
        "authorization": { "secretRef": { "name": "hook-token", "namespace": namespace, "key": "token" } },
    });
    let manifest = dir.join("controller.yaml");
    std::fs::write(&manifest, serde_yaml::to_string(&controller).unwrap()).unwrap();
    let seen: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>> = Default::default();
    let recorder = seen.clone();
    let router = axum::Router::new().route(
        "/sync",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let authorization = headers.get("authorization").map(|value| value.to_str().unwrap().to_owned());
            recorder.lock().unwrap().push(authorization);
            async { axum::Json(json!({ "status": {}, "children": [] })) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sync", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let credential = format!("an Authorization: Bearer header from Secret {namespace}/hook-token key token");
    let args = [manifest.to_str().unwrap(), "examples/greeting/greeting.yaml", "-n", &namespace, "--url", &url];

    let (code, out) = hook_test(env, &args);
    assert_eq!(code, 0, "{out}");
    assert_eq!(seen.lock().unwrap().as_slice(), [None], "no credential went to {url}");
    assert!(out.contains("credentials sent: none"), "{out}");
    assert!(out.contains("Not sent, because --url names another host than the hook's") && out.contains(&credential), "{out}");
    assert!(!out.contains("T0KEN-42"), "{out}");

    let consented = [&args[..], &["--send-credentials", "--allow-insecure-hook-credentials"]].concat();
    let (code, out) = hook_test(env, &consented);
    assert_eq!(code, 0, "{out}");
    assert_eq!(seen.lock().unwrap().last().cloned().flatten().as_deref(), Some("Bearer T0KEN-42"), "sent when asked to");
    assert!(out.contains(&format!("credentials sent: {credential}")) && !out.contains("Not sent"), "{out}");
    assert!(!out.contains("T0KEN-42"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An AdmissionController's hooks tried on an object, nothing written: the PodService
/// admission example refuses an unpinned image (exit 2, its message) and defaults a memory
/// limit on a pinned one (the patch, its warning).
#[tokio::test]
async fn an_admission_controller_shows_its_verdicts_and_the_patch() {
    let env = bosun_testenv::TestEnv::shared();
    let dir = tempfile_dir("bosun-hook-test-admission");
    let (_hook, url) = example_hook("python3", "podservice/admission.py", &dir);
    let base = url.trim_end_matches("/sync");
    let mut controller: Value =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{ROOT}/examples/podservice/admission.yaml")).unwrap()).unwrap();
    for hook in ["validate", "mutate"] {
        controller["spec"]["hooks"][hook]["webhook"]["url"] = json!(format!("{base}/{hook}"));
    }
    std::fs::write(dir.join("admission.yaml"), serde_yaml::to_string(&controller).unwrap()).unwrap();
    let podservice = |image: &str| json!({ "apiVersion": "examples.bosun.dev/v1", "kind": "PodService", "metadata": { "name": "web", "namespace": "default" }, "spec": { "image": image } });
    let admission = dir.join("admission.yaml").display().to_string();
    std::fs::write(dir.join("unpinned.yaml"), serde_yaml::to_string(&podservice("nginx")).unwrap()).unwrap();
    let (code, printed) = hook_test(env, &[&admission, &dir.join("unpinned.yaml").display().to_string()]);
    assert_eq!(code, 2, "{printed}");
    assert!(printed.contains("validate hook") && printed.contains("denied: spec.image \"nginx\" is not pinned"), "{printed}");
    std::fs::write(dir.join("pinned.yaml"), serde_yaml::to_string(&podservice("nginx:1.27")).unwrap()).unwrap();
    let (code, printed) = hook_test(env, &[&admission, &dir.join("pinned.yaml").display().to_string()]);
    assert_eq!(code, 0, "{printed}");
    assert!(printed.contains("mutate hook") && printed.contains("warning: spec.resources.limits.memory defaulted to 128Mi"), "{printed}");
    assert!(printed.contains("\"path\":\"/spec/resources\""), "the patch: {printed}");
    assert!(printed.contains("validate hook") && printed.contains(": allowed"), "{printed}");
}
