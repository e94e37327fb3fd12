//! Sharding with real `bosun run --sharding` processes: three replicas split 300 parents
//! roughly evenly; when one is killed with SIGKILL the others take its parents over once its
//! Lease has expired; a fourth replica takes about a third of the parents through the drain
//! handshake; when all but one leave, that one syncs everything. Through all of it the hook
//! records every sync (parent, process, start, end), and no two syncs of one parent overlap.
//! DecoratorController targets and ConfigMapSyncs are shared and taken over the same way. A
//! replica cut off from the API server stops syncing before another takes its parents.
//!
//! And what a label edited by hand, or a child created as its parent moves, cannot do: strand
//! a child (a new child per version while the ring grows), steer a parent to two replicas at
//! once (a parent relabelled and a drain label set during a slow sync), get a ConfigMap no
//! controller selects labelled, or release a parent another replica is still finalizing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bosun_testenv::ManagedProcess;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const PARENTS: usize = 300;

/// One hook call: the parent, the process that made it, when it started and ended.
type Sync = (String, Option<u32>, Instant, Instant);

/// How the recording hook answers.
#[derive(Clone, Copy)]
struct Answers {
    /// How long each sync call takes.
    delay: Duration,
    /// Name each parent's child after its version (`<parent>-v<version>`), so that every
    /// version creates a child and deletes the one before; else `<parent>-config`.
    versioned: bool,
    /// How long a finalize call takes (it answers `finalized: true`).
    finalize_delay: Duration,
}

impl Default for Answers {
    fn default() -> Self {
        Answers { delay: Duration::from_millis(20), versioned: false, finalize_delay: Duration::ZERO }
    }
}

/// A sync hook on 127.0.0.1 that records every call and takes a moment over each, so that two
/// syncs of one parent at once would be caught: one ConfigMap per parent and the parent's
/// `spec.version` in its status. `/finalize` records when each call ended.
struct RecordingHook {
    url: String,
    syncs: Arc<Mutex<Vec<Sync>>>,
    pids: Arc<Mutex<Vec<u32>>>,
    finalized: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl RecordingHook {
    async fn start() -> RecordingHook {
        Self::answering(Answers::default()).await
    }

    async fn answering(answers: Answers) -> RecordingHook {
        use axum::extract::ConnectInfo;
        let (syncs, pids) = <(Arc<Mutex<Vec<Sync>>>, Arc<Mutex<Vec<u32>>>)>::default();
        let finalized: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let (record, known, finals) = (syncs.clone(), pids.clone(), finalized.clone());
        let router = axum::Router::new()
            .route(
                "/finalize",
                axum::routing::post(move |axum::Json(request): axum::Json<serde_json::Value>| async move {
                    tokio::time::sleep(answers.finalize_delay).await;
                    let name = request["parent"]["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                    finals.lock().unwrap().push((name, Instant::now()));
                    axum::Json(json!({ "finalized": true, "children": [] }))
                }),
            )
            .route(
            "/sync",
            axum::routing::post(
                move |ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>, axum::Json(request): axum::Json<serde_json::Value>| async move {
                    let started = Instant::now();
                    let process = support::owner_of(peer, &known.lock().unwrap());
                    tokio::time::sleep(answers.delay).await;
                    // A DecoratorController's target: labelled with its data's version.
                    if let Some(target) = request.get("object") {
                        let name = target["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                        let version = target["data"]["version"].clone();
                        record.lock().unwrap().push((name, process, started, Instant::now()));
                        return axum::Json(json!({ "labels": { "decorated": version } }));
                    }
                    let parent = &request["parent"];
                    let name = parent["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                    let version = parent["spec"]["version"].clone();
                    let child_name = if answers.versioned { format!("{name}-v{version}") } else { format!("{name}-config") };
                    let child = json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": { "name": child_name },
                        "data": { "version": version.to_string() },
                    });
                    record.lock().unwrap().push((name, process, started, Instant::now()));
                    axum::Json(json!({ "status": { "version": version }, "children": [child] }))
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sync", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
        });
        RecordingHook { url, syncs, pids, finalized }
    }

    /// Pairs of syncs of one parent that overlapped in time.
    fn overlaps(&self) -> Vec<String> {
        let mut by_parent: BTreeMap<String, Vec<(Instant, Instant, Option<u32>)>> = BTreeMap::new();
        for (parent, process, start, end) in self.syncs.lock().unwrap().iter() {
            by_parent.entry(parent.clone()).or_default().push((*start, *end, *process));
        }
        let mut overlaps = Vec::new();
        for (parent, mut syncs) in by_parent {
            syncs.sort();
            for pair in syncs.windows(2) {
                if pair[1].0 < pair[0].1 {
                    overlaps.push(format!("{parent}: a sync by {:?} started while one by {:?} ran", pair[1].2, pair[0].2));
                }
            }
        }
        overlaps
    }
}

/// The test's ring: its replicas, the parents' API and labels.
struct Ring {
    namespace: String,
    suffix: String,
    parents: Api<DynamicObject>,
    label: String,
    replicas: BTreeMap<&'static str, ManagedProcess>,
}

impl Ring {
    /// A ring of no replicas yet over `parents` in `namespace`, its names made unique by `suffix`.
    fn new(client: &kube::Client, namespace: &str, parents: &ApiResource, suffix: &str) -> Ring {
        Ring {
            parents: Api::namespaced_with(client.clone(), namespace, parents),
            label: format!("shard.bosun.dev/t{suffix}"),
            namespace: namespace.to_owned(),
            suffix: suffix.to_owned(),
            replicas: BTreeMap::new(),
        }
    }

    /// A ring over a parent CRD of its own (group `<prefix>-<suffix>.bosun.dev`) in a namespace
    /// of its own, and the parents' resource.
    async fn with_parent_crd(prefix: &str) -> (Ring, ApiResource) {
        let env = bosun_testenv::TestEnv::shared();
        bosun_engine::install_crds(&env.client()).await.unwrap();
        let suffix = bosun_testenv::unique_suffix();
        let resource = support::install_parent_crd(&format!("{prefix}-{suffix}.bosun.dev")).await;
        let namespace = env.namespace(prefix).await;
        (Ring::new(&env.client(), &namespace, &resource, &suffix), resource)
    }

    /// Creates the CompositeController of the ring's parents (one ConfigMap each from `hook`,
    /// resynced every `resync` seconds if given), then `count` parents at version 1.
    async fn create_controller_and_parents(&self, resource: &ApiResource, hook: &RecordingHook, resync: Option<u32>, count: usize) {
        self.create_controller(resource, hook, json!({ "resyncPeriodSeconds": resync })).await;
        self.create_parents(resource, count).await;
    }

    /// Creates the CompositeController of the ring's parents, whose sync hook is `hook`, with
    /// `extra` merged into its spec.
    async fn create_controller(&self, resource: &ApiResource, hook: &RecordingHook, extra: serde_json::Value) {
        let mut spec = json!({
            "generateSelector": true,
            "parentResource": { "apiVersion": resource.api_version, "resource": "faultparents" },
            "childResources": [{ "apiVersion": "v1", "resource": "configmaps", "updateStrategy": { "method": "InPlace" } }],
            "hooks": { "sync": { "webhook": { "url": hook.url } } },
        });
        for (field, value) in extra.as_object().unwrap() {
            spec[field] = value.clone();
        }
        let controller: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1",
            "kind": "CompositeController",
            "metadata": { "name": format!("sharded-{}", self.suffix), "labels": { "shard": self.suffix } },
            "spec": spec,
        }))
        .unwrap();
        Api::<DynamicObject>::all_with(self.parents.clone().into_client(), &controller_resource())
            .create(&PostParams::default(), &controller)
            .await
            .unwrap();
    }

    /// Creates `count` parents, `p-0` …, at version 1.
    async fn create_parents(&self, resource: &ApiResource, count: usize) {
        for index in 0..count {
            let parent: DynamicObject = serde_json::from_value(json!({
                "apiVersion": resource.api_version, "kind": "FaultParent",
                "metadata": { "name": format!("p-{index}") }, "spec": { "version": 1 },
            }))
            .unwrap();
            self.parents.create(&PostParams::default(), &parent).await.unwrap();
        }
    }

    fn start(&mut self, name: &'static str, hook: &RecordingHook) {
        self.start_with(name, hook, "--configmapsync=false", bosun_testenv::TestEnv::shared().control_plane().kubeconfig_path());
    }

    fn start_with(&mut self, name: &'static str, hook: &RecordingHook, operators: &str, kubeconfig: &std::path::Path) {
        let args: Vec<String> = [
            "run",
            "--sharding",
            "--shard-name",
            name,
            "--sharding-ring",
            &format!("t{}", self.suffix),
            "--leader-election-namespace",
            &self.namespace,
            "--leader-election-id",
            &format!("coordinator-{}", self.suffix),
            "--leader-election-lease-duration=4s",
            "--leader-election-renew-deadline=3s",
            "--leader-election-retry-period=500ms",
            operators,
            "--metrics-address=0",
            "--health-probe-bind-address=0",
            "--discovery-interval=1s",
            // Edited labels are put back within seconds rather than a minute.
            "--sharding-repair-period=3s",
            &format!("--target-label-selector=shard={}", self.suffix),
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        let log = std::env::temp_dir().join(format!("bosun-sharding-{}-{name}.log", self.suffix));
        let process = ManagedProcess::spawn(name, env!("CARGO_BIN_EXE_bosun").as_ref(), &args, log).unwrap();
        hook.pids.lock().unwrap().push(process.pid());
        self.replicas.insert(name, process);
    }

    /// Waits until every parent is assigned to one of `shards`, has synced `version` (in its
    /// status) and its ConfigMap carries the version and its parent's shard label; returns the
    /// assignment.
    async fn converged(&self, shards: &[&str], version: u64) -> BTreeMap<String, String> {
        let config_maps: Api<DynamicObject> = Api::namespaced_with(
            self.parents.clone().into_client(),
            &self.namespace,
            &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        );
        let what = format!("{PARENTS} parents on {shards:?} at version {version}, with their children");
        self.eventually(&what, async || {
            let parents = self.parents.list(&ListParams::default()).await.unwrap().items;
            let children: BTreeMap<String, DynamicObject> =
                config_maps.list(&ListParams::default()).await.unwrap().items.into_iter().map(|child| (child.name_any(), child)).collect();
            let mut assignment = BTreeMap::new();
            for parent in &parents {
                let shard = parent.labels().get(&self.label).filter(|shard| shards.contains(&shard.as_str()))?;
                (parent.data["status"]["version"] == json!(version)).then_some(())?;
                let child = children.get(&format!("{}-config", parent.name_any()))?;
                (child.data["data"]["version"] == json!(version.to_string()) && child.labels().get(&self.label) == Some(shard))
                    .then_some(())?;
                assignment.insert(parent.name_any(), shard.clone());
            }
            (assignment.len() == PARENTS).then_some(assignment)
        })
        .await
    }

    /// Fails the test, with the end of every replica's log.
    fn fail(&self, what: &str) -> ! {
        let logs: Vec<String> =
            self.replicas.values().map(|replica| format!("--- {}:\n{}", replica.name(), replica.log_tail(15))).collect();
        panic!("timed out waiting for {what}\n{}", logs.join("\n"));
    }

    /// Waits until `check` returns something, for at most two minutes.
    async fn eventually<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if Instant::now() > deadline {
                self.fail(what);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Sets `spec.version` of every parent.
    async fn set_version(&self, version: u64) {
        self.set_versions(&(0..PARENTS).map(|index| (index, version)).collect::<Vec<_>>()).await;
    }

    /// Sets `spec.version` of parent `p-<index>` to `version` for each pair.
    async fn set_versions(&self, versions: &[(usize, u64)]) {
        for (index, version) in versions {
            let patch = json!({ "spec": { "version": version } });
            self.parents.patch(&format!("p-{index}"), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        }
    }

    /// The ConfigMaps in the ring's namespace.
    fn config_maps(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.parents.clone().into_client(),
            &self.namespace,
            &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        )
    }

    /// Waits until parents `p-0` … `p-<versions.len() - 1>` are each on one of `shards`, have
    /// synced their version in `versions` (in their status), and own exactly the child the
    /// versioned hook last asked for — `p-<index>-v<version>`, carrying the version and its
    /// parent's shard label; returns the assignment.
    async fn exactly(&self, shards: &[&str], versions: &[u64]) -> BTreeMap<String, String> {
        let what = format!("{} parents on {shards:?}, each owning exactly its latest versioned child, on its shard", versions.len());
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let wrong = self.mismatches(shards, versions).await;
            if wrong.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                self.fail(&format!("{what}; still {} differences, e.g. {}", wrong.len(), wrong[..wrong.len().min(10)].join("; ")));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let parents = self.parents.list(&ListParams::default()).await.unwrap().items;
        parents.iter().map(|parent| (parent.name_any(), parent.labels()[&self.label].clone())).collect()
    }

    /// What differs from [`Ring::exactly`]'s expectation, parent by parent.
    async fn mismatches(&self, shards: &[&str], versions: &[u64]) -> Vec<String> {
        let parents = self.parents.list(&ListParams::default()).await.unwrap().items;
        let children = self.config_maps().list(&ListParams::default()).await.unwrap().items;
        let mut owned: BTreeMap<String, Vec<&DynamicObject>> = BTreeMap::new();
        for child in &children {
            if let Some(owner) = child.owner_references().iter().find(|owner| owner.controller == Some(true)) {
                owned.entry(owner.uid.clone()).or_default().push(child);
            }
        }
        let mut wrong = Vec::new();
        for parent in &parents {
            let name = parent.name_any();
            let Some(index) = name.strip_prefix("p-").and_then(|index| index.parse::<usize>().ok()) else { continue };
            let version = versions[index];
            let shard = parent.labels().get(&self.label).cloned().unwrap_or_default();
            if !shards.contains(&shard.as_str()) {
                wrong.push(format!("{name} is on {shard:?}"));
            }
            if parent.data["status"]["version"] != json!(version) {
                wrong.push(format!("{name}'s status says {}, not {version}", parent.data["status"]["version"]));
            }
            let children = owned.get(&parent.uid().unwrap_or_default()).cloned().unwrap_or_default();
            let expected = format!("{name}-v{version}");
            let names: Vec<String> = children.iter().map(|child| child.name_any()).collect();
            if names != [expected.clone()] {
                wrong.push(format!("{name} owns {names:?}, not [{expected}]"));
            }
            for child in children {
                if child.labels().get(&self.label) != Some(&shard) {
                    wrong.push(format!("{} is on {:?}, its parent on {shard:?}", child.name_any(), child.labels().get(&self.label)));
                }
                if child.name_any() == expected && child.data["data"]["version"] != json!(version.to_string()) {
                    wrong.push(format!("{expected} holds version {}", child.data["data"]["version"]));
                }
            }
        }
        if parents.len() != versions.len() {
            wrong.push(format!("{} parents, not {}", parents.len(), versions.len()));
        }
        wrong
    }
}

fn controller_resource() -> ApiResource {
    ApiResource::erase::<bosun_engine::api::CompositeController>(&())
}

fn count(assignment: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for shard in assignment.values() {
        *counts.entry(shard.clone()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_share_the_parents_and_never_sync_one_at_the_same_time() {
    let (mut ring, resource) = Ring::with_parent_crd("sharding").await;
    let hook = RecordingHook::start().await;
    for name in ["shard-a", "shard-b", "shard-c"] {
        ring.start(name, &hook);
    }
    let created = Instant::now();
    ring.create_controller_and_parents(&resource, &hook, None, PARENTS).await;

    // Three replicas: each syncs about a third.
    let first = ring.converged(&["shard-a", "shard-b", "shard-c"], 1).await;
    let counts = count(&first);
    println!("{PARENTS} parents created and synced by 3 replicas in {:.1} s: {counts:?}", created.elapsed().as_secs_f64());
    assert_eq!(counts.len(), 3, "every replica has parents: {counts:?}");
    assert!(counts.values().all(|count| (60..=140).contains(count)), "roughly even: {counts:?}");

    // kill -9: the others take its parents over once its Lease has expired.
    let victim = "shard-b";
    let pid = ring.replicas[victim].pid();
    #[allow(unsafe_code)]
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL)
    };
    let killed = Instant::now();
    ring.set_version(2).await;
    let second = ring.converged(&["shard-a", "shard-c"], 2).await;
    println!(
        "after SIGKILL of {victim}: all {PARENTS} parents synced by the other two in {:.1} s (lease duration 4 s): {:?}",
        killed.elapsed().as_secs_f64(),
        count(&second)
    );
    for (parent, shard) in &first {
        if shard != victim {
            assert_eq!(&second[parent], shard, "{parent} moved though its replica stayed");
        }
    }

    // A new replica takes about a third, only from the others and through the drain
    // handshake — while every parent changes, so that syncs are running as parents move.
    ring.start("shard-d", &hook);
    let joined = Instant::now();
    ring.set_version(3).await;
    let third = loop {
        let assignment = ring.converged(&["shard-a", "shard-c", "shard-d"], 3).await;
        if assignment.values().any(|shard| shard == "shard-d") {
            break assignment;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let moved: Vec<&String> = third.keys().filter(|parent| second[*parent] != third[*parent]).collect();
    println!(
        "shard-d joined: {} of {PARENTS} parents moved to it, all synced in {:.1} s: {:?}",
        moved.len(),
        joined.elapsed().as_secs_f64(),
        count(&third)
    );
    assert!((60..=140).contains(&moved.len()), "about a third moves: {}", moved.len());
    assert!(moved.iter().all(|parent| third[*parent] == "shard-d"), "parents move only to the new replica");

    // All but one leave cleanly: the last one syncs everything.
    for leaving in ["shard-a", "shard-c"] {
        let status = ring.replicas.get_mut(leaving).unwrap().stop(Duration::from_secs(20));
        assert!(status.is_some_and(|status| status.success()), "{leaving} exits cleanly on SIGTERM");
    }
    let left = Instant::now();
    ring.set_version(4).await;
    ring.converged(&["shard-d"], 4).await;
    println!("two replicas left cleanly: all parents synced by shard-d in {:.1} s", left.elapsed().as_secs_f64());

    // The Leases of the replicas that are gone are removed once nothing is assigned to them.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(ring.parents.clone().into_client(), &ring.namespace);
    let selector = format!("sharding.bosun.dev/ring=t{}", ring.suffix);
    ring.eventually("only shard-d's Lease left", async || {
        let names: Vec<String> =
            leases.list(&ListParams::default().labels(&selector)).await.unwrap().items.iter().map(|lease| lease.name_any()).collect();
        (names == ["shard-d"]).then_some(())
    })
    .await;

    let overlaps = hook.overlaps();
    let syncs = hook.syncs.lock().unwrap().len();
    println!("{syncs} syncs recorded, {} overlapping", overlaps.len());
    assert!(overlaps.is_empty(), "two syncs of one parent ran at once:\n{}", overlaps.join("\n"));
    let processes: BTreeSet<Option<u32>> = hook.syncs.lock().unwrap().iter().map(|(_, process, _, _)| *process).collect();
    assert!(processes.len() >= 4, "every replica synced: {processes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn decorator_targets_and_configmapsyncs_are_shared_and_taken_over() {
    use bosun_operators::configmapsync::{ACCEPT_FROM_ANNOTATION, ConfigMapSync};
    const TARGETS: usize = 20;
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    bosun_operators::install_crds(&client).await.unwrap();
    let suffix = bosun_testenv::unique_suffix();
    let source = env.namespace("shared-source").await;
    let destination = env.namespace("shared-destination").await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let consent = json!({ "metadata": { "annotations": { ACCEPT_FROM_ANNOTATION: source } } });
    namespaces.patch(&destination, &PatchParams::default(), &Patch::Merge(&consent)).await.unwrap();
    let hook = RecordingHook::start().await;
    let config_map_resource = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
    let mut ring = Ring::new(&client, &source, &config_map_resource, &suffix);
    for name in ["shard-a", "shard-b"] {
        ring.start_with(name, &hook, "--configmapsync=true", env.control_plane().kubeconfig_path());
    }
    let decorator: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "DecoratorController",
        "metadata": { "name": format!("sharded-{suffix}"), "labels": { "shard": suffix } },
        "spec": {
            "resources": [{ "apiVersion": "v1", "resource": "configmaps", "labelSelector": { "matchLabels": { "decorate": suffix } } }],
            "hooks": { "sync": { "webhook": { "url": hook.url } } },
        },
    }))
    .unwrap();
    let decorators = ApiResource::erase::<bosun_engine::api::DecoratorController>(&());
    Api::<DynamicObject>::all_with(client.clone(), &decorators).create(&PostParams::default(), &decorator).await.unwrap();
    let syncs: Api<ConfigMapSync> = Api::namespaced(client.clone(), &source);
    for index in 0..TARGETS {
        let target: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("target-{index}"), "labels": { "decorate": suffix } },
            "data": { "version": "1" },
        }))
        .unwrap();
        ring.parents.create(&PostParams::default(), &target).await.unwrap();
        let sync: ConfigMapSync = serde_json::from_value(json!({
            "metadata": { "name": format!("sync-{index}") },
            "spec": { "configMapName": format!("target-{index}"), "destinationNamespace": destination },
        }))
        .unwrap();
        syncs.create(&PostParams::default(), &sync).await.unwrap();
    }
    let copies: Api<DynamicObject> = Api::namespaced_with(client.clone(), &destination, &config_map_resource);
    let label = ring.label.clone();
    // Every target decorated with `version` and every copy at `version`; the shards of the
    // targets and of the ConfigMapSyncs.
    let converged = async |ring: &Ring, shards: &[&str], version: &str| {
        ring.eventually(&format!("{TARGETS} targets decorated and copied at version {version} by {shards:?}"), async || {
            let mut owners = BTreeMap::new();
            for index in 0..TARGETS {
                let target = ring.parents.get(&format!("target-{index}")).await.unwrap();
                let shard = target.labels().get(&label).filter(|shard| shards.contains(&shard.as_str()))?;
                (target.labels().get("decorated").map(String::as_str) == Some(version)).then_some(())?;
                let copy = copies.get_opt(&format!("target-{index}")).await.unwrap()?;
                (copy.data["data"]["version"] == json!(version)).then_some(())?;
                let sync = syncs.get(&format!("sync-{index}")).await.unwrap();
                let sync_shard = sync.labels().get(&label).filter(|shard| shards.contains(&shard.as_str()))?;
                owners.insert(index, (shard.clone(), sync_shard.clone()));
            }
            Some(owners)
        })
        .await
    };
    let owners = converged(&ring, &["shard-a", "shard-b"], "1").await;
    for shard in ["shard-a", "shard-b"] {
        assert!(owners.values().any(|(target, _)| target == shard), "{shard} decorates some targets: {owners:?}");
        assert!(owners.values().any(|(_, sync)| sync == shard), "{shard} syncs some ConfigMapSyncs: {owners:?}");
    }

    let pid = ring.replicas["shard-b"].pid();
    #[allow(unsafe_code)]
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL)
    };
    for index in 0..TARGETS {
        let patch = json!({ "data": { "version": "2" } });
        ring.parents.patch(&format!("target-{index}"), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    converged(&ring, &["shard-a"], "2").await;
    let overlaps = hook.overlaps();
    assert!(overlaps.is_empty(), "two syncs of one target ran at once:\n{}", overlaps.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_cut_off_from_the_api_server_stops_before_its_parents_move() {
    const PARENTS: usize = 20;
    let env = bosun_testenv::TestEnv::shared();
    let (mut ring, resource) = Ring::with_parent_crd("frozen").await;
    let (hook, suffix) = (RecordingHook::start().await, ring.suffix.clone());
    // shard-a reaches the API server only through a proxy that can freeze its connections.
    let upstream = env.control_plane().server().trim_start_matches("https://").parse().unwrap();
    let proxy = bosun_testenv::FreezableProxy::start(upstream).await.unwrap();
    let kubeconfig = std::fs::read_to_string(env.control_plane().kubeconfig_path()).unwrap();
    let proxied = std::env::temp_dir().join(format!("bosun-sharding-frozen-{suffix}.kubeconfig"));
    std::fs::write(&proxied, kubeconfig.replace(env.control_plane().server(), &proxy.url())).unwrap();
    ring.start_with("shard-a", &hook, "--configmapsync=false", &proxied);
    ring.start("shard-b", &hook);
    // Synced every second from the cache: a replica that kept working while cut off would call the hook.
    ring.create_controller_and_parents(&resource, &hook, Some(1), PARENTS).await;
    let (a, b) = (ring.replicas["shard-a"].pid(), ring.replicas["shard-b"].pid());
    let label = ring.label.clone();
    let frozen: Vec<String> = ring
        .eventually("both replicas syncing their parents", async || {
            let parents = ring.parents.list(&ListParams::default()).await.unwrap().items;
            let of_a: Vec<String> = parents
                .iter()
                .filter(|parent| parent.labels().get(&label).map(String::as_str) == Some("shard-a"))
                .map(|parent| parent.name_any())
                .collect();
            let calls = hook.syncs.lock().unwrap().iter().filter(|(_, process, _, _)| *process == Some(a)).count();
            (parents.len() == PARENTS && !of_a.is_empty() && calls > of_a.len() * 2).then_some(of_a)
        })
        .await;

    proxy.freeze();
    let frozen_at = Instant::now();
    // shard-b syncs shard-a's parents once shard-a's Lease has expired.
    ring.eventually("shard-b syncing the frozen replica's parents", async || {
        let syncs = hook.syncs.lock().unwrap();
        frozen
            .iter()
            .all(|parent| syncs.iter().any(|(name, process, start, _)| name == parent && *process == Some(b) && *start > frozen_at))
            .then_some(())
    })
    .await;
    let syncs = hook.syncs.lock().unwrap().clone();
    let last_of_a =
        syncs.iter().filter(|(name, process, _, _)| *process == Some(a) && frozen.contains(name)).map(|(_, _, _, end)| *end).max().unwrap();
    let first_of_b = syncs
        .iter()
        .filter(|(name, process, start, _)| *process == Some(b) && frozen.contains(name) && *start > frozen_at)
        .map(|(_, _, start, _)| *start)
        .min()
        .unwrap();
    println!(
        "after the freeze: shard-a's last sync ended {:.2} s, shard-b's first sync of its parents started {:.2} s (renew deadline 3 s, lease 4 s)",
        (last_of_a - frozen_at).as_secs_f64(),
        (first_of_b - frozen_at).as_secs_f64()
    );
    assert!(last_of_a > frozen_at, "the frozen replica went on syncing from its cache while it held its Lease");
    assert!(last_of_a < first_of_b, "shard-b started on shard-a's parents before shard-a had stopped");
    let overlaps = hook.overlaps();
    assert!(overlaps.is_empty(), "two syncs of one parent ran at once:\n{}", overlaps.join("\n"));
    // Losing its Lease is an error exit, for the kubelet to restart it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let cut_off = ring.replicas.get_mut("shard-a").unwrap();
    while cut_off.is_running() {
        assert!(Instant::now() < deadline, "the frozen replica did not exit:\n{}", cut_off.log_tail(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_file(&proxied);
}

/// Children always follow their parents: while every parent's version changes (the hook names
/// a new child after each version, so each change creates a child and deletes one) a third
/// replica joins, and parents are handed over with children created in their last sync before
/// the drain. Afterwards every child carries its parent's shard, and a further change reaches
/// every child.
#[tokio::test(flavor = "multi_thread")]
async fn children_follow_their_parents_through_hand_overs() {
    const COUNT: usize = 200;
    let (mut ring, resource) = Ring::with_parent_crd("follow").await;
    let hook = RecordingHook::answering(Answers { versioned: true, ..Answers::default() }).await;
    for name in ["shard-a", "shard-b"] {
        ring.start(name, &hook);
    }
    ring.create_controller(&resource, &hook, json!({})).await;
    ring.create_parents(&resource, COUNT).await;
    ring.exactly(&["shard-a", "shard-b"], &[1; COUNT]).await;

    // At once: every parent changes, and a replica joins.
    ring.start("shard-c", &hook);
    ring.set_versions(&(0..COUNT).map(|index| (index, 2)).collect::<Vec<_>>()).await;
    let grown = ring.exactly(&["shard-a", "shard-b", "shard-c"], &[2; COUNT]).await;
    let moved = grown.values().filter(|shard| *shard == "shard-c").count();
    println!("shard-c joined while {COUNT} parents changed: {moved} moved to it, every child with its parent");
    assert!(moved > 0, "some parents moved to the new replica: {:?}", count(&grown));

    ring.set_versions(&(0..COUNT).map(|index| (index, 3)).collect::<Vec<_>>()).await;
    ring.exactly(&["shard-a", "shard-b", "shard-c"], &[3; COUNT]).await;
    let overlaps = hook.overlaps();
    assert!(overlaps.is_empty(), "two syncs of one parent ran at once:\n{}", overlaps.join("\n"));
}

/// A parent's author cannot steer it: relabelled to another live shard in the middle of a
/// 5-second sync, it is not synced there meanwhile, and its label is put back; a drain label
/// set by hand moves nothing and is removed; a child relabelled for another shard is taken
/// back, and a change of its parent reaches it.
#[tokio::test(flavor = "multi_thread")]
async fn an_edited_label_steers_nothing_and_is_put_back() {
    const COUNT: usize = 6;
    let (mut ring, resource) = Ring::with_parent_crd("steer").await;
    let hook = RecordingHook::answering(Answers { delay: Duration::from_secs(5), versioned: true, ..Answers::default() }).await;
    for name in ["shard-a", "shard-b"] {
        ring.start(name, &hook);
    }
    ring.create_controller(&resource, &hook, json!({})).await;
    ring.create_parents(&resource, COUNT).await;
    let mut versions = [1; COUNT];
    let assignment = ring.exactly(&["shard-a", "shard-b"], &versions).await;
    let other = |shard: &str| if shard == "shard-a" { "shard-b" } else { "shard-a" };
    let shard_of = |parent: &str| assignment[parent].clone();

    // p-0: a change starts a 5 s sync on its shard; a second in, it is relabelled for the other.
    versions[0] = 2;
    ring.set_versions(&[(0, 2)]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let relabel = json!({ "metadata": { "labels": { &ring.label: other(&shard_of("p-0")) } } });
    ring.parents.patch("p-0", &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();

    // p-1: a drain label towards the other shard, by hand.
    let drain = format!("drain.bosun.dev/t{}", ring.suffix);
    let steer = json!({ "metadata": { "labels": { &drain: other(&shard_of("p-1")) } } });
    ring.parents.patch("p-1", &PatchParams::default(), &Patch::Merge(&steer)).await.unwrap();

    // p-2's child: relabelled for the other shard, then p-2 changes.
    let child = "p-2-v1";
    let stray = json!({ "metadata": { "labels": { &ring.label: other(&shard_of("p-2")) } } });
    ring.config_maps().patch(child, &PatchParams::default(), &Patch::Merge(&stray)).await.unwrap();
    versions[2] = 2;
    ring.set_versions(&[(2, 2)]).await;

    let settled = ring.exactly(&["shard-a", "shard-b"], &versions).await;
    for parent in ["p-0", "p-1", "p-2"] {
        assert_eq!(settled[parent], shard_of(parent), "{parent} is back on the shard the ring picks");
    }
    ring.eventually("the drain label set by hand removed", async || {
        (!ring.parents.get("p-1").await.unwrap().labels().contains_key(&drain)).then_some(())
    })
    .await;
    let overlaps = hook.overlaps();
    assert!(overlaps.is_empty(), "two syncs of one parent ran at once:\n{}", overlaps.join("\n"));
}

/// A ring assigns and moves only what a controller selects: a DecoratorController on the
/// ConfigMaps with an annotation; the ConfigMaps without it get no shard label, and a replica
/// joining the ring writes none of them.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_objects_a_controller_selects_are_labelled_or_moved() {
    let env = bosun_testenv::TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let suffix = bosun_testenv::unique_suffix();
    let namespace = env.namespace("selected").await;
    let hook = RecordingHook::start().await;
    let config_maps = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
    let mut ring = Ring::new(&client, &namespace, &config_maps, &suffix);
    for name in ["shard-a", "shard-b"] {
        ring.start(name, &hook);
    }
    let decorator: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "DecoratorController",
        "metadata": { "name": format!("annotated-{suffix}"), "labels": { "shard": suffix } },
        "spec": {
            "resources": [{ "apiVersion": "v1", "resource": "configmaps", "annotationSelector": { "matchAnnotations": { "decorate": suffix } } }],
            "hooks": { "sync": { "webhook": { "url": hook.url } } },
        },
    }))
    .unwrap();
    let decorators = ApiResource::erase::<bosun_engine::api::DecoratorController>(&());
    Api::<DynamicObject>::all_with(client.clone(), &decorators).create(&PostParams::default(), &decorator).await.unwrap();
    for index in 0..6 {
        let annotations = if index % 2 == 0 { json!({ "decorate": suffix }) } else { json!({}) };
        let config_map: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("cm-{index}"), "annotations": annotations }, "data": { "version": "1" },
        }))
        .unwrap();
        ring.parents.create(&PostParams::default(), &config_map).await.unwrap();
    }
    let label = ring.label.clone();
    let unselected = async |ring: &Ring| -> Vec<(String, Option<String>)> {
        let mut versions = Vec::new();
        for index in [1, 3, 5] {
            let config_map = ring.parents.get(&format!("cm-{index}")).await.unwrap();
            assert!(!config_map.labels().contains_key(&label), "cm-{index} is not selected, yet labelled: {:?}", config_map.labels());
            versions.push((config_map.name_any(), config_map.resource_version()));
        }
        versions
    };
    ring.eventually("the annotated ConfigMaps decorated", async || {
        for index in [0, 2, 4] {
            let config_map = ring.parents.get(&format!("cm-{index}")).await.unwrap();
            config_map.labels().get(&label)?;
            config_map.labels().get("decorated")?;
        }
        Some(())
    })
    .await;
    let before = unselected(&ring).await;

    // A replica joins; the ring is rebalanced (and checked every repair period).
    ring.start("shard-c", &hook);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(unselected(&ring).await, before, "the ConfigMaps no controller selects were written");
}

/// Deleting a controller releases its finalizer only from the parents no replica is still
/// finalizing: a parent whose finalize hook takes 20 s goes only once the hook has answered,
/// though the controller is deleted meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_controller_leaves_a_parent_being_finalized_to_its_shard() {
    let (mut ring, resource) = Ring::with_parent_crd("finalizing").await;
    let hook = RecordingHook::answering(Answers { finalize_delay: Duration::from_secs(20), ..Answers::default() }).await;
    for name in ["shard-a", "shard-b", "shard-c"] {
        ring.start(name, &hook);
    }
    let finalize = hook.url.replace("/sync", "/finalize");
    ring.create_controller(&resource, &hook, json!({ "hooks": { "sync": { "webhook": { "url": hook.url } }, "finalize": { "webhook": { "url": finalize, "timeout": "60s" } } } }))
        .await;
    ring.create_parents(&resource, 6).await;
    ring.eventually("every parent synced", async || {
        let parents = ring.parents.list(&ListParams::default()).await.unwrap().items;
        (parents.len() == 6 && parents.iter().all(|parent| parent.data["status"]["version"] == json!(1) && !parent.finalizers().is_empty()))
            .then_some(())
    })
    .await;
    ring.parents.delete("p-0", &Default::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let controller = format!("sharded-{}", ring.suffix);
    Api::<DynamicObject>::all_with(ring.parents.clone().into_client(), &controller_resource())
        .delete(&controller, &Default::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    let gone = ring.eventually("p-0 gone", async || ring.parents.get_opt("p-0").await.unwrap().is_none().then(Instant::now)).await;
    let answered = hook.finalized.lock().unwrap().iter().find(|(parent, _)| parent == "p-0").map(|(_, at)| *at);
    println!("p-0 went {:.1} s after its controller was deleted; its finalize hook answered: {answered:?}", (gone - deleted).as_secs_f64());
    assert!(answered.is_some_and(|answered| answered <= gone), "p-0 was released before its finalize hook answered");
}

/// The ring under chaos: parents whose versions keep changing (a new child each time), the
/// membership going 3 → 5 → 2 with `kill -9`, and a tenant relabelling random parents and
/// children meanwhile. Afterwards every parent owns exactly the child its hook last asked for,
/// on the parent's shard; no two syncs of one parent overlapped; and a resync of every parent
/// writes nothing. 300 parents for about a minute of chaos; `BOSUN_CHAOS_LONG=1` runs 1,000
/// for five minutes (its counts are recorded in docs/benchmarks.md).
#[tokio::test(flavor = "multi_thread")]
async fn the_ring_holds_under_chaos() {
    let long = std::env::var_os("BOSUN_CHAOS_LONG").is_some();
    let (parents, chaos) = if long { (1000, Duration::from_secs(300)) } else { (300, Duration::from_secs(60)) };
    let (mut ring, resource) = Ring::with_parent_crd("chaos").await;
    let hook = RecordingHook::answering(Answers { versioned: true, ..Answers::default() }).await;
    for name in ["shard-a", "shard-b", "shard-c"] {
        ring.start(name, &hook);
    }
    ring.create_controller(&resource, &hook, json!({ "resyncPeriodSeconds": 30 })).await;
    ring.create_parents(&resource, parents).await;
    let mut versions = vec![1_u64; parents];
    ring.exactly(&["shard-a", "shard-b", "shard-c"], &versions).await;

    let all = ["shard-a", "shard-b", "shard-c", "shard-d", "shard-e"];
    let (started, mut rng) = (Instant::now(), fastrand::Rng::with_seed(7));
    let (mut changes, mut parents_relabelled, mut children_relabelled) = (0, 0, 0);
    let mut script: Vec<(Duration, &str)> = vec![
        (chaos / 6, "start shard-d"),
        (chaos / 6, "start shard-e"),
        (chaos / 2, "kill shard-a"),
        (chaos * 2 / 3, "kill shard-c"),
        (chaos * 5 / 6, "kill shard-e"),
    ];
    while started.elapsed() < chaos {
        if let Some((at, step)) = script.first().copied()
            && started.elapsed() >= at
        {
            script.remove(0);
            let (verb, name) = step.split_once(' ').unwrap();
            let name = all.into_iter().find(|shard| *shard == name).unwrap();
            if verb == "start" {
                ring.start(name, &hook);
            } else {
                let pid = ring.replicas[name].pid();
                #[allow(unsafe_code)]
                // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL)
                };
            }
            println!("{:.0} s: {step}", started.elapsed().as_secs_f64());
        }
        // A few parents change; a tenant relabels a parent and a child for a random shard.
        let changed: Vec<(usize, u64)> = (0..5)
            .map(|_| {
                let index = rng.usize(..parents);
                versions[index] += 1;
                (index, versions[index])
            })
            .collect();
        changes += changed.len();
        ring.set_versions(&changed).await;
        let relabel = json!({ "metadata": { "labels": { &ring.label: all[rng.usize(..all.len())] } } });
        let parent = format!("p-{}", rng.usize(..parents));
        if ring.parents.patch(&parent, &PatchParams::default(), &Patch::Merge(&relabel)).await.is_ok() {
            parents_relabelled += 1;
        }
        let index = rng.usize(..parents);
        let child = format!("p-{index}-v{}", versions[index]);
        if ring.config_maps().patch(&child, &PatchParams::default(), &Patch::Merge(&relabel)).await.is_ok() {
            children_relabelled += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settling = Instant::now();
    let assignment = ring.exactly(&["shard-b", "shard-d"], &versions).await;
    println!(
        "{parents} parents, {:.0} s of chaos: {changes} version changes, {parents_relabelled} parents and {children_relabelled} children \
         relabelled by hand; settled {:.1} s later: {:?}; {} syncs recorded",
        chaos.as_secs_f64(),
        settling.elapsed().as_secs_f64(),
        count(&assignment),
        hook.syncs.lock().unwrap().len()
    );
    let overlaps = hook.overlaps();
    assert!(overlaps.is_empty(), "two syncs of one parent ran at once:\n{}", overlaps.join("\n"));

    // A resync of every parent (every 30 s) writes nothing: no parent or child changes.
    let snapshot = async |ring: &Ring| -> BTreeMap<String, Option<String>> {
        let parents = ring.parents.list(&ListParams::default()).await.unwrap().items;
        let children = ring.config_maps().list(&ListParams::default()).await.unwrap().items;
        parents
            .iter()
            .chain(&children)
            .map(|object| {
                (
                    format!("{}/{}", object.types.as_ref().map(|types| types.kind.as_str()).unwrap_or_default(), object.name_any()),
                    object.resource_version(),
                )
            })
            .collect()
    };
    let before = snapshot(&ring).await;
    let resync_from = Instant::now();
    ring.eventually("a resync of every parent", async || {
        let syncs = hook.syncs.lock().unwrap();
        let resynced: BTreeSet<&String> =
            syncs.iter().filter(|(_, _, start, _)| *start > resync_from).map(|(parent, _, _, _)| parent).collect();
        (resynced.len() == parents).then_some(())
    })
    .await;
    assert_eq!(snapshot(&ring).await, before, "a resync wrote to a parent or a child");
}
