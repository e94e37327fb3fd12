//! Leader election with real `bosun run` processes: one leads and only it reconciles; when it
//! is killed with SIGKILL a standby takes over after the lease duration; when the leader exits
//! cleanly it releases the Lease and a standby takes over at its next retry; when the leader's
//! API traffic hangs, it stops calling hooks before the standby starts.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /readyz` on a loopback port: status line and body.
fn readyz(port: u16) -> String {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            stream.write_all(b"GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            return response;
        }
        assert!(Instant::now() < deadline, "nothing serves /readyz on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start(name: &str, namespace: &str, lease: &str, shard: &str, health_port: u16) -> Engine {
    start_with(name, namespace, lease, shard, health_port, bosun_testenv::TestEnv::shared().control_plane().kubeconfig_path())
}

fn start_with(name: &str, namespace: &str, lease: &str, shard: &str, health_port: u16, kubeconfig: &std::path::Path) -> Engine {
    let child = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["run", "--leader-election", "--leader-election-namespace", namespace, "--leader-election-id", lease])
        .args(["--leader-election-lease-duration=4s", "--leader-election-renew-deadline=3s", "--leader-election-retry-period=500ms"])
        .args(["--metrics-address=0", "--discovery-interval=1s"])
        .arg(format!("--health-probe-bind-address=127.0.0.1:{health_port}"))
        .arg(format!("--target-label-selector=shard={shard}"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("HOSTNAME", name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Engine(child)
}

/// The name (`HOSTNAME`) of the Lease's holder, once there is one that is not `previous`.
async fn holder_other_than(leases: &Api<Lease>, lease: &str, previous: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let holder = leases
            .get_opt(lease)
            .await
            .unwrap()
            .and_then(|lease| lease.spec?.holder_identity)
            .and_then(|identity| identity.split('_').next().map(str::to_owned))
            .filter(|name| !name.is_empty() && Some(name.as_str()) != previous);
        if let Some(holder) = holder {
            return holder;
        }
        assert!(Instant::now() < deadline, "no new leader of {lease}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_dies_or_leaves() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("election").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let (lease, shard) = ("bosun-test", bosun_testenv::unique_suffix());

    let ports = [("alpha", bosun_testenv::free_port()), ("beta", bosun_testenv::free_port())];
    let mut engines: Vec<(&str, Engine)> =
        ports.iter().map(|(name, port)| (*name, start(name, &namespace, lease, &shard, *port))).collect();
    let leader = holder_other_than(&leases, lease, None).await;
    let reporters = support::reporters_of_a_new_controller(&client, &shard).await;
    assert!(reporters.iter().all(|reporter| *reporter == leader), "only the leader {leader} reconciles: {reporters:?}");
    // Both are ready: the leader with its caches synced, the standby because it reaches the Lease.
    for (name, port) in ports {
        let response = readyz(port);
        assert!(response.starts_with("HTTP/1.0 200"), "{name}: {response}");
        assert_eq!(response.ends_with("ok (standby)"), name != leader, "{name}: {response}");
    }

    // kill -9: the standby waits out the lease duration, then leads.
    let index = engines.iter().position(|(name, _)| *name == leader).unwrap();
    let (_, mut killed) = engines.remove(index);
    killed.0.kill().unwrap();
    let killed_at = Instant::now();
    let standby = holder_other_than(&leases, lease, Some(&leader)).await;
    println!("takeover after SIGKILL of the leader: {:.1} s (lease duration 4 s)", killed_at.elapsed().as_secs_f64());
    let reporters = support::reporters_of_a_new_controller(&client, &shard).await;
    assert!(reporters.iter().all(|reporter| *reporter == standby), "the new leader {standby} reconciles: {reporters:?}");

    // A clean exit releases the Lease: the next standby leads at its next retry.
    engines.push(("gamma", start("gamma", &namespace, lease, &shard, bosun_testenv::free_port())));
    let (_, leaving) = engines.iter_mut().find(|(name, _)| *name == standby).unwrap();
    #[allow(unsafe_code)]
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(leaving.0.id() as libc::pid_t, libc::SIGTERM)
    };
    let left_at = Instant::now();
    assert!(leaving.0.wait().unwrap().success(), "SIGTERM is a clean exit");
    let next = holder_other_than(&leases, lease, Some(&standby)).await;
    println!("takeover after the leader exited cleanly: {:.1} s (retry period 0.5 s)", left_at.elapsed().as_secs_f64());
    assert_eq!(next, "gamma");
}

/// When each hook call came, and from which engine process (if it could be told).
type Calls = std::sync::Arc<std::sync::Mutex<Vec<(Instant, Option<u32>)>>>;

/// A decorator hook on 127.0.0.1 that records, for every call, when it came and from which of
/// the engine processes.
struct RecordingHook {
    url: String,
    calls: Calls,
    pids: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
}

impl RecordingHook {
    async fn start() -> RecordingHook {
        use axum::extract::ConnectInfo;
        let (calls, pids) = <(Calls, std::sync::Arc<std::sync::Mutex<Vec<u32>>>)>::default();
        let (record, known) = (calls.clone(), pids.clone());
        let router = axum::Router::new().route(
            "/sync",
            axum::routing::post(move |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>| async move {
                let owner = support::owner_of(peer, &known.lock().unwrap());
                record.lock().unwrap().push((Instant::now(), owner));
                axum::Json(serde_json::json!({}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sync", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
        });
        RecordingHook { url, calls, pids }
    }

    /// The times of the calls made by process `pid`.
    fn calls_from(&self, pid: u32) -> Vec<Instant> {
        self.calls.lock().unwrap().iter().filter(|(_, owner)| *owner == Some(pid)).map(|(at, _)| *at).collect()
    }
}

#[tokio::test]
async fn a_leader_whose_api_traffic_hangs_stops_calling_hooks_before_the_standby_starts() {
    use kube::api::{ApiResource, DynamicObject, PostParams};
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let namespace = env.namespace("frozen").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let (lease, shard) = ("bosun-frozen", bosun_testenv::unique_suffix());

    // alpha reaches the API server only through the proxy.
    let upstream = env.control_plane().server().trim_start_matches("https://").parse().unwrap();
    let proxy = bosun_testenv::FreezableProxy::start(upstream).await.unwrap();
    let kubeconfig = std::fs::read_to_string(env.control_plane().kubeconfig_path()).unwrap();
    let proxied = std::env::temp_dir().join(format!("bosun-frozen-{shard}.kubeconfig"));
    std::fs::write(&proxied, kubeconfig.replace(env.control_plane().server(), &proxy.url())).unwrap();
    let hook = RecordingHook::start().await;
    let alpha = start_with("alpha", &namespace, lease, &shard, bosun_testenv::free_port(), &proxied);
    hook.pids.lock().unwrap().push(alpha.0.id());
    assert_eq!(holder_other_than(&leases, lease, None).await, "alpha");
    let mut beta = start("beta", &namespace, lease, &shard, bosun_testenv::free_port());
    hook.pids.lock().unwrap().push(beta.0.id());

    // A decorator over labelled ConfigMaps, resynced every second: the leader calls its hook
    // about twice a second without needing the API server.
    let controller: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "DecoratorController",
        "metadata": { "name": format!("frozen-{shard}"), "labels": { "shard": shard } },
        "spec": {
            "resources": [{ "apiVersion": "v1", "resource": "configmaps", "labelSelector": { "matchLabels": { "frozen": shard } } }],
            "resyncPeriodSeconds": 1,
            "hooks": { "sync": { "webhook": { "url": hook.url } } },
        },
    }))
    .unwrap();
    let resource = ApiResource::erase::<bosun_engine::api::DecoratorController>(&());
    Api::<DynamicObject>::all_with(client.clone(), &resource).create(&PostParams::default(), &controller).await.unwrap();
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &namespace);
    for name in ["one", "two"] {
        let config_map =
            serde_json::from_value(serde_json::json!({ "metadata": { "name": name, "labels": { "frozen": shard } } })).unwrap();
        config_maps.create(&PostParams::default(), &config_map).await.unwrap();
    }
    let alpha_pid = alpha.0.id();
    bosun_testenv::eventually("hook calls from the leader", async || (hook.calls_from(alpha_pid).len() >= 4).then_some(())).await;

    proxy.freeze();
    let frozen_at = Instant::now();
    assert_eq!(holder_other_than(&leases, lease, Some("alpha")).await, "beta");
    let taken_over_at = Instant::now();
    // A few resyncs of the new leader: long enough for calls from both, if both were working.
    bosun_testenv::eventually("hook calls from the new leader", async || (hook.calls_from(beta.0.id()).len() >= 4).then_some(())).await;

    let (alpha_calls, beta_calls) = (hook.calls_from(alpha_pid), hook.calls_from(beta.0.id()));
    let (alpha_last, beta_first) = (*alpha_calls.last().unwrap(), beta_calls[0]);
    println!(
        "after the freeze: alpha's last hook call {:.2} s, Lease to beta {:.2} s, beta's first hook call {:.2} s \
         (renew deadline 3 s, lease 4 s); {} calls unattributed",
        (alpha_last - frozen_at).as_secs_f64(),
        (taken_over_at - frozen_at).as_secs_f64(),
        (beta_first - frozen_at).as_secs_f64(),
        hook.calls.lock().unwrap().iter().filter(|(_, owner)| owner.is_none()).count()
    );
    assert!(alpha_calls.iter().any(|call| *call > frozen_at), "the frozen leader went on working while it held the Lease");
    assert!(
        alpha_last < beta_first,
        "hook calls overlapped: alpha called {:.2} s after the freeze, beta first at {:.2} s",
        (alpha_last - frozen_at).as_secs_f64(),
        (beta_first - frozen_at).as_secs_f64()
    );
    let mut alpha = alpha;
    let exited = bosun_testenv::eventually("the frozen leader to exit", async || alpha.0.try_wait().unwrap()).await;
    assert!(!exited.success(), "losing the Lease is an error exit, for the kubelet to restart it");
    let _ = std::fs::remove_file(&proxied);
    let _ = beta.0.kill();
}
