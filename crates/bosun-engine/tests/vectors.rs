//! The protocol test vectors (`protocol/vectors/`), held against the engine: each vector's
//! request describes a world — controller, parent, children, related objects — which the test
//! builds in a fresh namespace; a loopback hook answers with the vector's response; a dry run
//! of the engine's sync must then send exactly the vector's request and do what its
//! `expect.json` says (or refuse with its message). The SDKs' tests read the same files, so
//! the protocol has one definition. Exec and WebAssembly hooks are held to the same vectors.
//!
//! `BOSUN_BLESS_VECTORS=1` writes what the engine sent and did into the vectors instead of
//! comparing: for a new vector (whose request.json need only hold the world), or after a
//! deliberate protocol change — review the diff.

mod support;

use std::path::{Path, PathBuf};

use bosun_engine::dry_run::{DryRunRequest, dry_run};
use bosun_testenv::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../protocol/vectors");

/// The vectors' parent type: `Thing` in `vectors.bosun.dev/v1`, namespaced, with status.
async fn install_thing_crd(env: &TestEnv) {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": "things.vectors.bosun.dev" },
        "spec": {
            "group": "vectors.bosun.dev", "scope": "Namespaced",
            "names": { "plural": "things", "singular": "thing", "kind": "Thing" },
            "versions": [{
                "name": "v1", "served": true, "storage": true, "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } },
            }],
        },
    }))
    .unwrap();
    env.install_crd(&crd).await;
}

fn read(dir: &Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}/{name}: {error}", dir.display())))
}

fn write(dir: &Path, name: &str, value: &Value) {
    std::fs::write(dir.join(name), format!("{}\n", serde_json::to_string_pretty(value).unwrap())).unwrap();
}

/// An API for objects like `object` in `namespace`.
async fn api_for(client: &kube::Client, object: &Value, namespace: &str) -> Api<DynamicObject> {
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// `object` as a client creates it: what the server assigns left out, in `namespace`.
fn fresh(object: &Value, namespace: &str) -> Value {
    let mut object = object.clone();
    let metadata = object["metadata"].as_object_mut().unwrap();
    for field in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "deletionTimestamp", "ownerReferences"] {
        metadata.remove(field);
    }
    metadata.insert("namespace".into(), json!(namespace));
    object.as_object_mut().unwrap().remove("status");
    object
}

/// `value` without the particulars of one cluster and run: the namespace is `vectors`, every
/// UID `<uid>`, the hook server's address `127.0.0.1:1`, timestamps fixed, resourceVersions
/// and managed fields gone.
fn normalized(value: &Value, namespace: &str, uids: &[String], address: &str) -> Value {
    let mut text = value.to_string().replace(namespace, "vectors").replace(address, "127.0.0.1:1");
    for uid in uids {
        text = text.replace(uid, "<uid>");
    }
    let mut value: Value = serde_json::from_str(&text).unwrap();
    fn scrub(value: &mut Value) {
        match value {
            Value::Object(object) => {
                if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
                    metadata.remove("managedFields");
                    metadata.remove("resourceVersion");
                    for field in ["creationTimestamp", "deletionTimestamp"] {
                        if metadata.contains_key(field) {
                            metadata.insert(field.into(), json!("2026-01-01T00:00:00Z"));
                        }
                    }
                }
                object.values_mut().for_each(scrub);
            }
            Value::Array(items) => items.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    scrub(&mut value);
    value
}

/// A loopback hook answering `/sync` and `/finalize` with `response`, `/customize` with
/// `customize`; returns its address.
async fn serve(response: Value, customize: Option<Value>) -> String {
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(move || async move { axum::Json(response) }))
        .route("/customize", axum::routing::post(move || async move { axum::Json(customize.unwrap_or_default()) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// How the vector's hook is reached.
#[derive(Clone, Copy, PartialEq)]
enum Hook {
    /// A loopback HTTP server.
    Webhook,
    /// A program the engine runs (an exec hook) that prints the response.
    Exec,
    /// A WebAssembly module that prints the response, kept in a ConfigMap.
    Wasm,
}

/// Builds the world of the vector in `dir`, runs the engine's sync as a dry run against the
/// vector's response, and compares (or, blessing, records) what the engine sent and did.
async fn check(env: &TestEnv, dir: &Path, bless: bool, hook: Hook) -> Result<(), String> {
    let client = env.client();
    let namespace = env.namespace("vectors").await;
    let request = read(dir, "request.json").expect("a vector has request.json");
    let response = read(dir, "response.json").expect("a vector has response.json");
    let customize = read(dir, "customize.json");
    let mut controller = request["controller"].clone();
    let decorator = controller["kind"] == "DecoratorController";
    let address = serve(response, customize.clone()).await;
    if customize.is_some() {
        controller["spec"]["hooks"]["customize"]["webhook"]["url"] = json!(format!("http://{address}/customize"));
    }
    let runs_here = match hook {
        Hook::Webhook => None,
        Hook::Exec => Some((
            "exec",
            json!({
                "command": ["sh", "-c", "cat >/dev/null; cat \"$RESPONSE\""],
                "env": [{ "name": "RESPONSE", "value": dir.join("response.json").to_str().unwrap() }],
            }),
        )),
        Hook::Wasm => {
            let (module, sha256) = support::wasm_module("crates/bosun-engine/tests/wasm-adversary");
            let config_map = ConfigMap {
                metadata: kube::api::ObjectMeta { name: Some("hook".into()), ..Default::default() },
                binary_data: Some([("hook.wasm".to_owned(), k8s_openapi::ByteString(module))].into()),
                ..Default::default()
            };
            Api::<ConfigMap>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &config_map).await.unwrap();
            let response = read(dir, "response.json").unwrap().to_string();
            Some((
                "wasm",
                json!({
                    "configMap": { "namespace": namespace, "name": "hook", "key": "hook.wasm" }, "sha256": sha256,
                    "env": [{ "name": "RESPONSE", "value": response }],
                }),
            ))
        }
    };
    if let Some((field, declaration)) = &runs_here {
        for name in ["sync", "finalize"] {
            if let Some(declared) = controller["spec"]["hooks"].get_mut(name).and_then(Value::as_object_mut) {
                declared.remove("webhook");
                declared.insert((*field).into(), declaration.clone());
            }
        }
    }

    // The parent (or target); being deleted when the vector is a finalize call.
    let parent_json = if decorator { &request["object"] } else { &request["parent"] };
    let parents = api_for(&client, parent_json, &namespace).await;
    let mut parent_spec = fresh(parent_json, &namespace);
    let finalizing = request["finalizing"] == true;
    let kind_name = if decorator { "decoratorcontroller" } else { "compositecontroller" };
    if finalizing {
        parent_spec["metadata"]["finalizers"] =
            json!([format!("metacontroller.io/{kind_name}-{}", controller["metadata"]["name"].as_str().unwrap())]);
    }
    let mut parent = parents.create(&PostParams::default(), &serde_json::from_value(parent_spec).unwrap()).await.unwrap();
    if finalizing {
        parents.delete(&parent.name_any(), &DeleteParams::default()).await.unwrap();
        parent = parents.get(&parent.name_any()).await.unwrap();
    }
    let parent_uid = parent.uid().unwrap();
    let mut uids = vec![parent_uid.clone()];

    // Its children (or attachments), controlled by it; the related objects, as they are.
    let owned = if decorator { &request["attachments"] } else { &request["children"] };
    for objects in owned.as_object().into_iter().flat_map(|groups| groups.values()) {
        for object in objects.as_object().into_iter().flat_map(|objects| objects.values()) {
            let mut child = fresh(object, &namespace);
            let text = child.to_string().replace("<uid>", &parent_uid);
            child = serde_json::from_str(&text).unwrap();
            if !decorator && controller["spec"]["generateSelector"] == true {
                child["metadata"]["labels"]["controller-uid"] = json!(parent_uid);
            }
            child["metadata"]["ownerReferences"] = json!([{
                "apiVersion": parent_json["apiVersion"], "kind": parent_json["kind"], "name": parent.name_any(),
                "uid": parent_uid, "controller": true, "blockOwnerDeletion": true,
            }]);
            let api = api_for(&client, &child, &namespace).await;
            let created = api.create(&PostParams::default(), &serde_json::from_value(child).unwrap()).await.unwrap();
            uids.push(created.uid().unwrap());
        }
    }
    for objects in request["related"].as_object().into_iter().flat_map(|groups| groups.values()) {
        for object in objects.as_object().into_iter().flat_map(|objects| objects.values()) {
            let related = fresh(object, &namespace);
            let created = api_for(&client, &related, &namespace)
                .await
                .create(&PostParams::default(), &serde_json::from_value(related).unwrap())
                .await
                .unwrap();
            uids.push(created.uid().unwrap());
        }
    }

    let result = dry_run(
        env.control_plane().config(),
        bosun_engine::EngineConfig { exec_hooks: true, ..Default::default() },
        DryRunRequest {
            controller: serde_json::from_value(controller).unwrap(),
            object: parent,
            url: (hook == Hook::Webhook).then(|| format!("http://{address}/hook")),
            send_credentials: false,
        },
    )
    .await
    .map_err(|error| format!("the dry run could not be made: {error}"))?;
    let normalize = |value: &Value| normalized(value, &namespace, &uids, &address);
    // With a hook that runs here, the controller in each request declares the program or
    // module; the rest is as the vector's.
    let normalize = |value: &Value| {
        let mut value = normalize(value);
        for name in ["sync", "finalize"] {
            if let Some(declared) = value.pointer_mut(&format!("/controller/spec/hooks/{name}")) {
                *declared = request["controller"]["spec"]["hooks"][name].clone();
            }
        }
        value
    };
    let sent = result.main_exchange().map(|exchange| normalize(&exchange.request)).unwrap_or_default();
    let customize_sent = result.exchanges.iter().find(|exchange| exchange.hook == "customize").map(|exchange| normalize(&exchange.request));
    // Messages name the program where they would name the webhook.
    let program = result.main_exchange().map(|exchange| exchange.url.clone()).filter(|_| hook != Hook::Webhook);
    let expectation = result.expectation().to_string();
    let expectation = program.map_or(expectation.clone(), |program| expectation.replace(&program, &format!("http://{address}/hook")));
    let did = normalize(&serde_json::from_str(&expectation).unwrap());
    if bless {
        write(dir, "request.json", &sent);
        write(dir, "expect.json", &did);
        if let Some(customize_sent) = &customize_sent {
            write(dir, "customize-request.json", customize_sent);
        }
        return Ok(());
    }
    let mut problems = Vec::new();
    if sent != request {
        problems.push(format!("the engine sent\n{}\nnot request.json", serde_json::to_string_pretty(&sent).unwrap()));
    }
    if customize_sent != read(dir, "customize-request.json") {
        problems.push(format!("the engine's customize request was\n{customize_sent:#?}"));
    }
    let expected = read(dir, "expect.json").unwrap_or_default();
    if did != expected {
        problems.push(format!(
            "the engine did\n{}\nnot expect.json's\n{}",
            serde_json::to_string_pretty(&did).unwrap(),
            serde_json::to_string_pretty(&expected).unwrap()
        ));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
}

#[tokio::test]
async fn the_engine_speaks_the_protocol_of_every_vector() {
    let env = TestEnv::shared();
    bosun_engine::install_crds(&env.client()).await.unwrap();
    install_thing_crd(env).await;
    let bless = std::env::var_os("BOSUN_BLESS_VECTORS").is_some();
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(VECTORS).unwrap().map(|entry| entry.unwrap().path()).filter(|path| path.is_dir()).collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "the vectors are in {VECTORS}");
    let mut failures = Vec::new();
    for dir in &dirs {
        if let Err(problem) = check(env, dir, bless, Hook::Webhook).await {
            failures.push(format!("{}: {problem}", dir.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The same vectors, each hook a program that the engine runs (an exec hook): the same
/// request on its input, the same outcome of its output.
#[tokio::test]
async fn an_exec_hook_speaks_the_same_protocol() {
    the_vectors_hold_for(Hook::Exec).await;
}

/// The same vectors, each hook a WebAssembly module.
#[tokio::test]
async fn a_webassembly_hook_speaks_the_same_protocol() {
    the_vectors_hold_for(Hook::Wasm).await;
}

async fn the_vectors_hold_for(hook: Hook) {
    let env = TestEnv::shared();
    bosun_engine::install_crds(&env.client()).await.unwrap();
    install_thing_crd(env).await;
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(VECTORS).unwrap().map(|entry| entry.unwrap().path()).filter(|path| path.is_dir()).collect();
    dirs.sort();
    let mut failures = Vec::new();
    for dir in &dirs {
        if let Err(problem) = check(env, dir, false, hook).await {
            failures.push(format!("{}: {problem}", dir.file_name().unwrap().to_string_lossy()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
