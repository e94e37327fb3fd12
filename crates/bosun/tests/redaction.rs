//! No credential in any output, whatever part of a hook URL carries it: a DecoratorController
//! whose hook URL has a password in its user information, keys in its query and a token in its
//! fragment — with the hook down, and through `bosun hook test` up — and every surface bosun
//! prints on is read back: the engine's log at trace level, the events, the metrics, `bosun
//! migrate`'s report, `bosun hook test`'s text and JSON output and its saved vector, `bosun
//! tree`. None may hold a secret; each shows the URL redacted, which proves it was reached.

mod support;

use std::process::Command;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::json;

const SECRETS: &[&str] = &["pwSECRET0", "SECRET1code", "SECRET2token", "SECRET3frag"];

/// The secrets `text` holds, for the failure message.
fn leaked(text: &str) -> Vec<&'static str> {
    SECRETS.iter().copied().filter(|secret| text.contains(secret)).collect()
}

/// Checks that `text`, one surface's output, holds no secret and shows `expected` (which says
/// the URL reached it, redacted).
fn check(surface: &str, text: &str, expected: &str) {
    assert!(leaked(text).is_empty(), "{surface} leaks {:?}:\n{text}", leaked(text));
    assert!(text.contains(expected), "{surface} does not show {expected:?}, so it was not reached:\n{text}");
}

/// Runs `bosun <args>` against the shared control plane; returns the exit code and everything
/// it printed.
fn bosun(env: &bosun_testenv::TestEnv, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .arg("--kubeconfig")
        .arg(env.control_plane().kubeconfig_path())
        .output()
        .unwrap();
    (output.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

// Two threads: the hook this test serves answers while `bosun hook test` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_part_of_a_hook_url_reaches_any_output() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("redaction").await;
    let label = bosun_testenv::unique_suffix();
    // A hook that is down: a port nothing listens on.
    let down = bosun_testenv::free_port();
    let url = format!("http://user:pwSECRET0@127.0.0.1:{down}/sync?code=SECRET1code&token=SECRET2token#SECRET3frag");
    let redacted = format!("http://REDACTED@127.0.0.1:{down}/sync?code=REDACTED&token=REDACTED#REDACTED");
    let name = format!("redaction-{label}");
    let controller: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "DecoratorController",
        "metadata": { "name": name, "labels": { "redaction": label } },
        "spec": {
            "resources": [{ "apiVersion": "v1", "resource": "configmaps", "labelSelector": { "matchLabels": { "redaction": label } } }],
            "hooks": { "sync": { "webhook": { "url": url } } },
        },
    }))
    .unwrap();
    let resource = ApiResource::erase::<bosun_engine::api::DecoratorController>(&());
    Api::<DynamicObject>::all_with(client.clone(), &resource).create(&PostParams::default(), &controller).await.unwrap();
    let target: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "target", "labels": { "redaction": label } }, "data": { "a": "1" } }))
            .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &target).await.unwrap();

    // The engine, logging everything (to a file: at trace level a pipe read only at the end
    // would fill up and stop it), calls the hook that is down.
    let metrics = bosun_testenv::free_port();
    let log = std::env::temp_dir().join(format!("bosun-redaction-{label}.log"));
    let args = [
        "run".to_owned(),
        "--allow-insecure-hook-credentials".to_owned(),
        "--log-level=trace".to_owned(),
        "--health-probe-bind-address=127.0.0.1:0".to_owned(),
        format!("--metrics-address=127.0.0.1:{metrics}"),
        "--metrics-secure=false".to_owned(),
        format!("--target-label-selector=redaction={label}"),
        format!("--kubeconfig={}", env.control_plane().kubeconfig_path().display()),
    ];
    let mut run =
        bosun_testenv::ManagedProcess::spawn("bosun run", std::path::Path::new(env!("CARGO_BIN_EXE_bosun")), &args, log.clone()).unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    bosun_testenv::eventually("a SyncError on the target", async || {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.iter().any(|event| event.reason.as_deref() == Some("SyncError")).then_some(())
    })
    .await;
    let scraped = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics")).await.unwrap().text().await.unwrap();
    check("the metrics", &scraped, &format!("url=\"{redacted}\""));
    let all_events = Api::<Event>::all(client.clone()).list(&ListParams::default()).await.unwrap();
    check("the events", &serde_json::to_string(&all_events.items).unwrap(), &redacted);
    run.stop(std::time::Duration::from_secs(30));
    check("the engine's log", &std::fs::read_to_string(&log).unwrap(), &redacted);
    std::fs::remove_file(&log).unwrap();

    // The migration report, which also warns that bosun refuses the password over plain http.
    let (_, report) = bosun(env, &["migrate", &format!("--target-label-selector=redaction={label}")]);
    check("bosun migrate", &report, &redacted);
    assert!(report.contains("sent credentials over plain http"), "{report}");

    // `bosun hook test`: refused as the engine would refuse it, then called with consent.
    let decorator = format!("decoratorcontroller/{name}");
    let (code, refused) = bosun(env, &["hook", "test", &decorator, "configmaps/target", "-n", &namespace]);
    assert_ne!(code, 0, "{refused}");
    check("bosun hook test's refusal", &refused, &redacted);
    let (_, failed) = bosun(env, &["hook", "test", &decorator, "configmaps/target", "-n", &namespace, "--allow-insecure-hook-credentials"]);
    check("bosun hook test's failed call", &failed, &redacted);

    // Through a hook that answers, at a URL with secrets of its own: the request carries the
    // controller object, whose URL must not be printed or saved either.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap().port();
    let router =
        axum::Router::new().route("/sync", axum::routing::post(|| async { axum::Json(json!({ "labels": { "decorated": "yes" } })) }));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let live = format!("http://127.0.0.1:{up}/sync?code=SECRET1code#SECRET3frag");
    let live_redacted = format!("http://127.0.0.1:{up}/sync?code=REDACTED#REDACTED");
    let dir = std::env::temp_dir().join(format!("bosun-redaction-{label}"));
    let save = dir.to_str().unwrap();
    for output in ["text", "json"] {
        let args = ["hook", "test", &decorator, "configmaps/target", "-n", &namespace, "--url", &live, "-o", output, "--save", save];
        let (code, printed) = bosun(env, &args);
        assert_eq!(code, 0, "{printed}");
        check(&format!("bosun hook test -o {output}"), &printed, &live_redacted);
    }
    let mut saved = String::new();
    for file in std::fs::read_dir(&dir).unwrap() {
        saved.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap());
    }
    check("bosun hook test --save", &saved, &live_redacted);
    std::fs::remove_dir_all(&dir).unwrap();

    let (_, tree) = bosun(env, &["tree", "configmaps/target", "-n", &namespace]);
    assert!(leaked(&tree).is_empty(), "bosun tree leaks {:?}:\n{tree}", leaked(&tree));
}
