//! Admission latency: what bosun adds to each admission request. A validate hook on loopback
//! answers `allowed` at once; requests go to it directly, then through bosun's admission
//! endpoint (`bosun run --admission-url`, a separate release-built process) as the API server
//! sends them — AdmissionReviews over HTTPS, on kept-alive connections — at a fixed rate, each
//! timed. bosun's share is the difference of the percentiles.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::engine::EngineProcess;
use crate::report::Report;

/// The hook's whole answer.
async fn allow() -> axum::Json<Value> {
    axum::Json(json!({ "allowed": true }))
}

/// Sends `requests` POSTs of `body` to `url` at `rate` per second (each on schedule, whether
/// or not the ones before have answered), and returns each one's latency, sorted.
async fn timed(client: &reqwest::Client, url: &str, body: &Value, rate: u32, requests: usize) -> anyhow::Result<Vec<Duration>> {
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut sent = tokio::task::JoinSet::new();
    for _ in 0..requests {
        ticker.tick().await;
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
        sent.spawn(async move {
            let started = Instant::now();
            let response = client.post(&url).json(&body).send().await?.error_for_status()?;
            let _ = response.bytes().await?;
            Ok::<_, reqwest::Error>(started.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(requests);
    while let Some(latency) = sent.join_next().await {
        latencies.push(latency??);
    }
    latencies.sort();
    Ok(latencies)
}

fn percentile(latencies: &[Duration], fraction: f64) -> Duration {
    latencies[((latencies.len() as f64 * fraction) as usize).min(latencies.len() - 1)]
}

fn millis(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
}

pub async fn run(client: &Client, kubeconfig: &Path, bosun: &Path, rate: u32, requests: usize) -> anyhow::Result<Report> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    bosun_engine::install_crds(client).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/validate", listener.local_addr()?);
    let router = axum::Router::new().route("/validate", axum::routing::post(allow));
    let _hook = tokio::spawn(async move { axum::serve(listener, router).await });

    let port = bosun_testenv::free_port();
    let engine = EngineProcess::start(
        bosun,
        kubeconfig,
        &[
            "--engine=false".into(),
            "--configmapsync=false".into(),
            format!("--admission-url=https://127.0.0.1:{port}"),
            format!("--admission-address=127.0.0.1:{port}"),
            "--admission-ca-secret=default/bosun-admission-ca".into(),
        ],
    )
    .await?;
    let declared: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "bosun.dev/v1alpha1", "kind": "AdmissionController", "metadata": { "name": "bench" },
        "spec": {
            "rules": [{ "apiGroups": ["bench.bosun.dev"], "apiVersions": ["v1"], "resources": ["nothings"], "operations": ["CREATE"] }],
            "hooks": { "validate": { "webhook": { "url": hook } } },
        },
    }))?;
    let declarations: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::erase::<bosun_engine::admission::api::AdmissionController>(&()));
    declarations.create(&PostParams::default(), &declared).await?;
    // The CA bosun made: what the API server would trust.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let ca = loop {
        if let Some(secret) = secrets.get_opt("bosun-admission-ca").await? {
            break secret.data.and_then(|data| data.get("ca.crt").map(|pem| pem.0.clone())).unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let https = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca)?).build()?;
    let plain = reqwest::Client::new();

    let object = json!({ "apiVersion": "bench.bosun.dev/v1", "kind": "Nothing", "metadata": { "name": "n", "namespace": "default" }, "spec": { "size": 1 } });
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000000",
            "kind": { "group": "bench.bosun.dev", "version": "v1", "kind": "Nothing" },
            "resource": { "group": "bench.bosun.dev", "version": "v1", "resource": "nothings" },
            "name": "n", "namespace": "default", "operation": "CREATE",
            "userInfo": { "username": "bench" }, "object": object, "dryRun": false,
        },
    });
    let direct_body = json!({ "operation": "CREATE", "name": "n", "namespace": "default", "object": object, "userInfo": { "username": "bench" }, "dryRun": false });
    let via = format!("https://127.0.0.1:{port}/validate/bench");
    // Until bosun has the declaration: its answer names the hook's verdict, not a warning.
    let started = Instant::now();
    loop {
        let answer: Value = https.post(&via).json(&review).send().await?.json().await?;
        if answer["response"]["warnings"].is_null() {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(60), "bosun never served the declaration: {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm both paths (connections, caches), then measure.
    timed(&plain, &hook, &direct_body, rate, rate as usize).await?;
    timed(&https, &via, &review, rate, rate as usize).await?;
    let direct = timed(&plain, &hook, &direct_body, rate, requests).await?;
    let through = timed(&https, &via, &review, rate, requests).await?;
    drop(engine);

    let mut report = Report::with_columns(
        format!("Admission latency: {requests} validate requests at {rate}/s, the hook directly and through bosun"),
        &["figure", "p50", "p99", "max"],
    );
    for (name, latencies) in [("hook called directly (HTTP)", &direct), ("through bosun (HTTPS AdmissionReview)", &through)] {
        report.row(vec![
            name.into(),
            millis(percentile(latencies, 0.5)),
            millis(percentile(latencies, 0.99)),
            millis(*latencies.last().unwrap()),
        ]);
    }
    let added = |fraction| percentile(&through, fraction).saturating_sub(percentile(&direct, fraction));
    report.row(vec!["added by bosun".into(), millis(added(0.5)), millis(added(0.99)), "".into()]);
    Ok(report)
}
