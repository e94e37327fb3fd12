//! Sharding: the engine's fan-out (N parents × 3 children, as in `engine`) run by 1, 2, 3 …
//! `bosun run --sharding` replicas of one ring, each on a fresh control plane. Per replica
//! count: the fan-out time, and per replica its peak RSS, CPU and hook calls — what it
//! shows is how the work and the memory divide. Then, with more than one replica, one is
//! killed with SIGKILL and the parents it had are changed: the failover time is from the kill
//! until every one of them has converged again (the lease duration, 15 s, is most of it).
//! On a machine with fewer cores than replicas plus the control plane, the replicas compete
//! for CPU, so the fan-out time says little; the division of memory and hook calls does not
//! depend on it.

use std::path::Path;
use std::time::Instant;

use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::engine::EngineProcess;
use crate::fanout::{Bench, Convergence, apply_controller, parent_resource};
use crate::report::Report;
use crate::requests::concurrently;

/// The ring's name in the benchmark.
const RING: &str = "bench";

/// One replica count's run: its figures and its fan-out curve.
pub struct Run {
    pub report: Report,
    pub curve: (String, Vec<f64>),
}

pub async fn run(client: &Client, kubeconfig: &Path, bosun: &Path, parents: usize, replicas: usize, workers: usize) -> anyhow::Result<Run> {
    let mut report = Report::new(format!("Sharding: {parents} parents × 3 children on {replicas} replica(s), --workers {workers}"));
    let bench = Bench::set_up(client, parents).await?;
    eprintln!("starting {replicas} replica(s) …");
    let mut engines = Vec::new();
    for index in 0..replicas {
        let args = [
            "--sharding".to_owned(),
            format!("--shard-name=bench-{index}"),
            format!("--sharding-ring={RING}"),
            "--leader-election-namespace=bench".to_owned(),
            "--leader-election-id=bench-coordinator".to_owned(),
            format!("--workers={workers}"),
            "--configmapsync=false".to_owned(),
        ];
        engines.push(EngineProcess::start(bosun, kubeconfig, &args).await?);
    }
    let cpu_start: Vec<f64> = engines.iter().map(EngineProcess::cpu_seconds).collect();
    let convergence = Convergence::start(client, "engine", "bench").await;
    let started = apply_controller(client, &bench.hook_url).await?;
    let fan_out = convergence.until("1", parents).await - started;
    let curve = convergence.curve("1", started);
    eprintln!("fan-out: {:.2} s", fan_out.as_secs_f64());
    report.figure("fan-out: CompositeController created → all children and statuses", format!("{:.2} s", fan_out.as_secs_f64()));

    let label = format!("shard.bosun.dev/{RING}");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "bench", &parent_resource());
    let assigned = api.list_metadata(&ListParams::default()).await?.items;
    let mut peaks = Vec::new();
    for (index, engine) in engines.iter().enumerate() {
        let shard = format!("bench-{index}");
        let owned = assigned.iter().filter(|parent| parent.labels().get(&label) == Some(&shard)).count();
        let hook_calls = engine.counter_sum("metacontroller_sync_requests_total").await?;
        let cpu = engine.cpu_seconds() - cpu_start[index];
        peaks.push(engine.peak_rss_mib());
        report.figure(
            &format!("{shard}: parents, hook calls, peak RSS, CPU"),
            format!("{owned}, {hook_calls:.0}, {:.1} MiB, {cpu:.1} s", engine.peak_rss_mib()),
        );
    }
    let largest = peaks.iter().copied().fold(0.0, f64::max);
    report.figure("largest peak RSS of a replica", format!("{largest:.1} MiB"));

    if replicas > 1 {
        // kill -9 a replica that does not coordinate (when the coordinator dies too, the next
        // one first waits out its Lease, then the shard's), then change every parent it had.
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "bench");
        let coordinator = leases.get("bench-coordinator").await?.spec.and_then(|spec| spec.holder_identity).unwrap_or_default();
        let index = (0..replicas).find(|index| format!("bench-{index}") != coordinator).unwrap_or(0);
        let victim = format!("bench-{index}");
        let moved: Vec<String> =
            assigned.iter().filter(|parent| parent.labels().get(&label) == Some(&victim)).map(|parent| parent.name_any()).collect();
        engines[index].kill();
        let killed = Instant::now();
        concurrently(moved.clone(), 32, |name| {
            let api = api.clone();
            async move {
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({ "spec": { "version": "2" } }))).await?;
                Ok(())
            }
        })
        .await?;
        let failover = convergence.until("2", moved.len()).await - killed;
        eprintln!("failover: {:.2} s", failover.as_secs_f64());
        report.figure(
            &format!("failover: {victim} killed (SIGKILL) → its {} parents changed and synced by the others (lease 15 s)", moved.len()),
            format!("{:.2} s", failover.as_secs_f64()),
        );
    }
    drop(engines);
    Ok(Run { report, curve: (format!("{replicas} replica(s)"), curve) })
}
