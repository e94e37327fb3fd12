//! `bosun run` killed with SIGKILL at a random moment of each of 20 update waves over 500
//! parents (two children each), restarted each time: in the end every parent converges, every
//! child exists once with the right owner and content — none lost, none extra — and the steady
//! state costs no writes. The seed and the kill moments are printed, to replay a failure.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

mod support;

const PARENTS: usize = 500;
const KILLS: usize = 20;

struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(shard: &str, metrics_port: u16) -> Engine {
    let env = bosun_testenv::TestEnv::shared();
    let child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["run", "--configmapsync=false", "--discovery-interval=1s", "--health-probe-bind-address=0"])
        .arg(format!("--metrics-address=127.0.0.1:{metrics_port}"))
        .arg(format!("--target-label-selector=shard={shard}"))
        .arg("--kubeconfig")
        .arg(env.control_plane().kubeconfig_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Engine(child)
}

/// The writes (POST, PUT, PATCH, DELETE) the engine on `port` has made, from its `/metrics`;
/// `None` until it serves them.
fn writes(port: u16) -> Option<u64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let write = |line: &&str| ["POST", "PUT", "PATCH", "DELETE"].iter().any(|method| line.contains(&format!("method=\"{method}\"")));
    Some(
        text.lines()
            .filter(|line| line.starts_with("rest_client_requests_total{"))
            .filter(write)
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum(),
    )
}

/// How far from converged on `version`: parents whose status does not report it for their
/// generation, and what is wrong with the children (missing, extra, stale, wrongly owned).
async fn divergence(parents: &Api<DynamicObject>, children: &Api<ConfigMap>, shard: &str, version: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parents = parents.list(&ListParams::default()).await.unwrap().items;
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for parent in &parents {
        let reported = parent.data.pointer("/status/version").and_then(Value::as_str);
        let observed = parent.data.pointer("/status/observedGeneration").and_then(Value::as_i64);
        if reported != Some(version) || observed != parent.metadata.generation {
            problems.push(format!("parent {} reports {reported:?} for generation {observed:?}", parent.name_any()));
        }
        for suffix in ["a", "b"] {
            expected.insert(format!("{}-{suffix}", parent.name_any()), parent.uid().unwrap());
        }
    }
    for child in children.list(&ListParams::default().labels(&format!("faults={shard}"))).await.unwrap().items {
        let name = child.name_any();
        let owners: Vec<_> =
            child.owner_references().iter().filter(|owner| owner.controller == Some(true)).map(|owner| &owner.uid).collect();
        match expected.remove(&name) {
            None => problems.push(format!("child {name} belongs to no parent")),
            Some(uid) if owners != [&uid] => problems.push(format!("child {name} is controlled by {owners:?}, not {uid}")),
            Some(_) => {}
        }
        if child.data.as_ref().and_then(|data| data.get("version")).map(String::as_str) != Some(version) {
            problems.push(format!("child {name} does not carry version {version}"));
        }
    }
    problems.extend(expected.keys().map(|name| format!("child {name} is missing")));
    problems
}

/// Sets every parent's `spec.version`, 16 at a time.
async fn change_every_parent(parents: Api<DynamicObject>, version: String) {
    use futures::StreamExt;
    let patch = json!({ "spec": { "version": version } });
    futures::stream::iter(0..PARENTS)
        .for_each_concurrent(16, |index| {
            let (parents, patch) = (parents.clone(), patch.clone());
            async move {
                parents.patch(&format!("p-{index:03}"), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
            }
        })
        .await;
}

#[tokio::test]
async fn killed_at_random_moments_the_engine_still_converges_exactly() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("faults").await;
    let shard = bosun_testenv::unique_suffix();
    let resource = support::install_parent_crd(&format!("{shard}.faults.bosun.dev")).await;
    let parents: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
    let children: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let calls = Arc::new(AtomicUsize::new(0));
    let hook = support::start_hook(calls.clone(), shard.clone()).await;
    for index in 0..PARENTS {
        let parent = DynamicObject::new(&format!("p-{index:03}"), &resource).data(json!({ "spec": { "version": "1" } }));
        parents.create(&PostParams::default(), &parent).await.unwrap();
    }
    let controller: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
        "metadata": { "name": format!("faults-{shard}"), "labels": { "shard": shard } },
        "spec": {
            "generateSelector": true,
            "resyncPeriodSeconds": 2,
            "parentResource": { "apiVersion": format!("{}/v1", resource.group), "resource": "faultparents" },
            "childResources": [{ "apiVersion": "v1", "resource": "configmaps", "updateStrategy": { "method": "InPlace" } }],
            "hooks": { "sync": { "webhook": { "url": hook } } },
        },
    }))
    .unwrap();
    let controllers = Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<bosun_engine::api::CompositeController>(&()));
    controllers.create(&PostParams::default(), &controller).await.unwrap();

    let seed = std::env::var("BOSUN_FAULTS_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let mut random = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let mut moments = Vec::new();
    let port = bosun_testenv::free_port();
    let mut engine = start(&shard, port);
    for kill in 0..KILLS {
        // Every round is an update wave (every parent changes); the kill lands in it.
        let version = (kill + 2).to_string();
        let wave = tokio::spawn(change_every_parent(parents.clone(), version.clone()));
        let after = Duration::from_millis(random.u64(100..2000));
        tokio::time::sleep(after).await;
        engine.0.kill().unwrap();
        engine.0.wait().unwrap();
        wave.await.unwrap();
        moments.push((after.as_millis(), divergence(&parents, &children, &shard, &version).await.len()));
        engine = start(&shard, port);
    }
    println!("seed {seed} (BOSUN_FAULTS_SEED replays it); (ms run before the kill, objects not converged at the kill): {moments:?}");
    let last = (KILLS + 1).to_string();

    let killed_for = started.elapsed();
    bosun_testenv::eventually("every parent and child to converge on the last version", async || {
        divergence(&parents, &children, &shard, &last).await.is_empty().then_some(())
    })
    .await;
    println!(
        "{KILLS} kills in {:.1} s; converged {:.1} s after the last restart; {} hook calls",
        killed_for.as_secs_f64(),
        (started.elapsed() - killed_for).as_secs_f64(),
        calls.load(Ordering::Relaxed)
    );

    // Steady state: resyncs call the hook and write nothing.
    let before = bosun_testenv::eventually("the engine's metrics", async || writes(port)).await;
    let calls_before = calls.load(Ordering::Relaxed);
    bosun_testenv::eventually("two resyncs of every parent", async || {
        (calls.load(Ordering::Relaxed) >= calls_before + 2 * PARENTS).then_some(())
    })
    .await;
    let written = writes(port).unwrap() - before;
    println!("steady state: {} hook calls, {written} writes", calls.load(Ordering::Relaxed) - calls_before);
    assert_eq!(written, 0, "the steady state wrote");
    assert_eq!(divergence(&parents, &children, &shard, &last).await, Vec::<String>::new());
}
