//! Leader election against a real control plane, where it can split the brain: a leader whose
//! API traffic hangs (a TCP proxy the test freezes) stops its runnables before a standby can
//! take the Lease over, and a leader that shuts down keeps its Lease while its runnables drain.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bosun_runtime::{LeaderElectionConfig, LeaderElector, Manager, ManagerConfig, ManagerError, Metrics};
use bosun_testenv::{FreezableProxy, TestEnv, eventually};

/// Short durations, so that a takeover takes seconds: lease 3 s, renew deadline 2 s.
fn election(namespace: &str, identity: &str) -> LeaderElectionConfig {
    let mut config = LeaderElectionConfig::new("runtime-test", namespace);
    config.identity = identity.to_owned();
    config.lease_duration = Duration::from_secs(3);
    config.renew_deadline = Duration::from_secs(2);
    config.retry_period = Duration::from_millis(250);
    config
}

fn manager() -> Manager {
    Manager::new(ManagerConfig { metrics_address: None, health_address: None, shutdown_timeout: Duration::from_secs(30) })
}

/// Tries for the Lease every 100 ms as a standby would; returns when it got it.
async fn standby_takes_over(namespace: &str) -> Instant {
    let mut standby = LeaderElector::new(TestEnv::shared().client(), election(namespace, "standby"));
    eventually("the standby to take the Lease", async || {
        if standby.try_once().await {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        None
    })
    .await
}

/// A runnable that works (records the time) every 20 ms until it is stopped or aborted.
fn worker(manager: &mut Manager) -> Arc<Mutex<Option<Instant>>> {
    let last_work = Arc::new(Mutex::new(None));
    let record = last_work.clone();
    manager.add("worker", move |shutdown| async move {
        let work = async {
            loop {
                *record.lock().unwrap() = Some(Instant::now());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            _ = work => {}
            _ = shutdown.requested() => {}
        }
    });
    last_work
}

#[tokio::test]
async fn a_leader_whose_api_traffic_hangs_stops_before_the_standby_takes_over() {
    let env = TestEnv::shared();
    let namespace = env.namespace("frozen-leader").await;
    let upstream = env.control_plane().server().trim_start_matches("https://").parse().unwrap();
    let proxy = FreezableProxy::start(upstream).await.unwrap();
    let mut config = env.control_plane().config();
    config.cluster_url = proxy.url().parse().unwrap();
    let client = bosun_runtime::client::connect(config, &Metrics::new(), None).unwrap();

    let mut manager = manager().with_leader_election(client, election(&namespace, "leader"));
    let last_work = worker(&mut manager);
    let running = tokio::spawn(manager.run(std::future::pending()));
    eventually("the leader to work", async || last_work.lock().unwrap().map(|_| ())).await;

    proxy.freeze();
    let frozen_at = Instant::now();
    let taken_over_at = standby_takes_over(&namespace).await;
    let returned = tokio::time::timeout(Duration::from_secs(30), running).await.expect("the frozen leader gives up").unwrap();
    assert!(matches!(returned, Err(ManagerError::LeadershipLost(_))), "{returned:?}");
    let last_work = last_work.lock().unwrap().unwrap();
    println!(
        "frozen leader's last work {:.2} s after the freeze, standby took over after {:.2} s (renew deadline 2 s, lease 3 s)",
        (last_work - frozen_at).as_secs_f64(),
        (taken_over_at - frozen_at).as_secs_f64()
    );
    assert!(last_work < taken_over_at, "the frozen leader worked after the standby took over");
}

#[tokio::test]
async fn a_leader_keeps_its_lease_while_draining_then_releases_it() {
    let env = TestEnv::shared();
    let namespace = env.namespace("draining-leader").await;
    let mut manager = manager().with_leader_election(env.client(), election(&namespace, "leader"));
    let (started, drained) = (Arc::new(Mutex::new(false)), Arc::new(Mutex::new(None)));
    let (record_start, record_drain) = (started.clone(), drained.clone());
    manager.add("slow-to-drain", move |shutdown| async move {
        *record_start.lock().unwrap() = true;
        shutdown.requested().await;
        // Longer than the lease duration: without renewals the Lease would expire meanwhile.
        tokio::time::sleep(Duration::from_secs(5)).await;
        *record_drain.lock().unwrap() = Some(Instant::now());
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(manager.run(async {
        let _ = stopped.await;
    }));
    eventually("the leader to run", async || (*started.lock().unwrap()).then_some(())).await;

    stop.send(()).unwrap();
    let taken_over_at = standby_takes_over(&namespace).await;
    let drained_at = drained.lock().unwrap().expect("the runnable drained before the standby took over");
    println!("standby took over {:.2} s after the leader drained", (taken_over_at - drained_at).as_secs_f64());
    assert!(drained_at < taken_over_at);
    running.await.unwrap().unwrap();
}
