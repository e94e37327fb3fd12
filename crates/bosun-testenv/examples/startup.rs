//! Measures the local control plane: start-to-ready time over several starts (binaries
//! already cached), and the memory of each process once ready and after some work.
//!
//! `cargo run -p bosun-testenv --example startup -- [starts] [nodes]`: with `nodes` above 0
//! (default 0) kube-scheduler and `kwok` run too, with that many simulated nodes, and the last
//! start also runs a Deployment of 100 replicas.

use std::time::Instant;

use bosun_testenv::ControlPlane;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn print_memory(plane: &ControlPlane, when: &str) {
    let mut total = 0.0;
    for (name, pid) in plane.pids() {
        let rss = rss_mib(pid);
        total += rss;
        println!("  {when:<28} {name:<24} {rss:>7.1} MiB");
    }
    println!("  {when:<28} {:<24} {total:>7.1} MiB", "total");
}

/// Creates a Deployment of `replicas` Pods and returns the seconds until all are Ready.
async fn run_pods(plane: &ControlPlane, replicas: i32) -> Result<f64, Box<dyn std::error::Error>> {
    let deployments: Api<Deployment> = Api::namespaced(plane.client()?, "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "load" },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "load" } },
            "template": {
                "metadata": { "labels": { "app": "load" } },
                "spec": { "containers": [{ "name": "main", "image": "registry.k8s.io/pause:3.10" }] },
            },
        },
    }))?;
    let began = Instant::now();
    deployments.create(&PostParams::default(), &deployment).await?;
    loop {
        let ready = deployments.get("load").await?.status.and_then(|status| status.ready_replicas);
        if ready == Some(replicas) {
            return Ok(began.elapsed().as_secs_f64());
        }
        if began.elapsed().as_secs() > 120 {
            return Err(format!("only {ready:?} of {replicas} replicas Ready after 120 s").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let starts: usize = std::env::args().nth(1).map(|n| n.parse()).transpose()?.unwrap_or(5);
    let nodes: usize = std::env::args().nth(2).map(|n| n.parse()).transpose()?.unwrap_or(0);
    bosun_testenv::Binaries::ensure()?;
    let mut times = Vec::new();
    for start in 1..=starts {
        let began = Instant::now();
        let plane = ControlPlane::builder().nodes(nodes).start().await?;
        let elapsed = began.elapsed().as_secs_f64();
        println!("start {start}: ready in {elapsed:.2} s");
        times.push(elapsed);
        if start == starts {
            print_memory(&plane, "idle, just ready");
            let config_maps: Api<ConfigMap> = Api::namespaced(plane.client()?, "default");
            for index in 0..1000 {
                let object: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": { "name": format!("load-{index}") }, "data": { "k": "v".repeat(100) },
                }))?;
                config_maps.create(&PostParams::default(), &object).await?;
            }
            print_memory(&plane, "after 1,000 ConfigMaps");
            if nodes > 0 {
                let ready = run_pods(&plane, 100).await?;
                println!("a Deployment of 100 replicas: all Ready in {ready:.2} s");
                print_memory(&plane, "with 100 Pods running");
            }
        }
        plane.stop();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "start-to-ready with {nodes} nodes over {starts} starts: min {:.2} s, median {:.2} s, max {:.2} s",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    Ok(())
}
