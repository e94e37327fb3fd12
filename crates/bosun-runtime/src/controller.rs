//! The controller runner: the one place where bosun's controllers run, in the shape
//! controller-runtime and kube-runtime users know. A [`Controller`] watches a primary type
//! (`for_resource`), the types it owns (`owns`, through owner references) and any other type
//! with a mapping function (`watches`), each through the process's shared caches and
//! optional [predicates](crate::predicate); it waits for the caches to sync (its readiness
//! check fails until they have, and again while a watch restarts; after the sync timeout the
//! caches still waiting are logged and reported), queues every primary object, and runs a
//! bounded number of workers over one deduplicating queue.
//!
//! A reconcile returns an [`Action`]: done, or requeue after a delay (not a failure). An
//! error goes to the error policy, which may pick the delay; otherwise the key is retried
//! with the queue's capped, jittered exponential backoff. A panicking reconcile is caught,
//! logged and counted as an error, and its key retried, without taking its worker down.
//! Every reconcile is counted and timed under the controller's name
//! (`controller_runtime_reconcile_*`). On shutdown the queue stops handing out keys and the
//! reconciles in flight finish; before the caches synced there are none to wait for.

use std::fmt::Display;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject};

use crate::{Cache, CacheEvent, Health, Metrics, ObjectKey, ReconcileResult, Subscription, WorkQueue};

/// What to do with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the next event.
    Done,
    /// Reconcile again after this long (e.g. to retry a conflict, or to poll); not a failure.
    RequeueAfter(Duration),
}

/// How long a controller waits for its caches before it logs that they have not synced.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(120);

type ListKeys<K> = Arc<dyn Fn() -> Vec<K> + Send + Sync>;
type OnSyncTimeout = Box<dyn FnOnce(Vec<String>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A controller: its watches, its queue and its workers. Build it, then [`Controller::run`].
pub struct Controller<K = ObjectKey> {
    name: String,
    queue: WorkQueue<K>,
    metrics: Metrics,
    health: Option<Health>,
    caches: Vec<Arc<Cache>>,
    subscriptions: Vec<Subscription>,
    /// Lists the keys to reconcile at start and on every resync.
    list_all: Vec<ListKeys<K>>,
    primary: Option<ApiResource>,
    workers: usize,
    resync: Option<Duration>,
    sync_timeout: Duration,
    on_sync_timeout: Option<OnSyncTimeout>,
}

impl<K: Clone + Eq + Hash + Display + Send + Sync + 'static> Controller<K> {
    /// A controller called `name` (in logs, metrics and its readiness check) recording into
    /// `metrics`, with one worker and no watches yet. [`crate::Manager::controller`] makes
    /// one with the Manager's metrics and health.
    pub fn new(name: impl Into<String>, metrics: &Metrics) -> Self {
        let name = name.into();
        metrics.controller_started(&name);
        Controller {
            queue: WorkQueue::default().with_metrics(metrics.queue(&name)),
            name,
            metrics: metrics.clone(),
            health: None,
            caches: Vec::new(),
            subscriptions: Vec::new(),
            list_all: Vec::new(),
            primary: None,
            workers: 1,
            resync: None,
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
            on_sync_timeout: None,
        }
    }

    /// The queue, for callers that add keys themselves (e.g. from a hook's answer).
    pub fn queue(&self) -> WorkQueue<K> {
        self.queue.clone()
    }

    /// Queues the keys `map` finds for every change of `cache`'s objects, and waits for the
    /// cache to sync before the first reconcile.
    pub fn watches(mut self, cache: Arc<Cache>, map: impl Fn(&CacheEvent<'_>) -> Vec<K> + Send + Sync + 'static) -> Self {
        let queue = self.queue.clone();
        self.subscriptions.push(cache.subscribe(Arc::new(move |event: &CacheEvent<'_>| {
            for key in map(event) {
                queue.add(key);
            }
        })));
        self.caches.push(cache);
        self
    }

    /// Also reconciles every key `list` returns at start and on every resync.
    pub fn reconciles_all(mut self, list: impl Fn() -> Vec<K> + Send + Sync + 'static) -> Self {
        self.list_all.push(Arc::new(list));
        self
    }

    /// How many reconciles run at once (at least one).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Reconciles everything again this often, even without changes.
    pub fn resync(mut self, every: Duration) -> Self {
        self.resync = Some(every);
        self
    }

    /// How long to wait for the caches before logging that they have not synced (the
    /// readiness check fails until they have, whatever the timeout).
    pub fn sync_timeout(mut self, timeout: Duration) -> Self {
        self.sync_timeout = timeout;
        self
    }

    /// Calls `report` once with the resources whose caches have not synced after the sync
    /// timeout (e.g. to record an event saying so); the controller keeps waiting.
    pub fn on_sync_timeout<F, Fut>(mut self, report: F) -> Self
    where
        F: FnOnce(Vec<String>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_sync_timeout = Some(Box::new(move |waiting| Box::pin(report(waiting))));
        self
    }

    /// Registers the readiness check `<name>` now, failing: it passes once the controller
    /// runs and its caches have synced, and goes when the controller stops.
    pub fn with_health(mut self, health: &Health) -> Self {
        health.add_readiness_check(self.name.clone(), || false);
        self.health = Some(health.clone());
        self
    }

    /// Runs until `shutdown` completes, then lets the reconciles in flight finish and returns.
    /// `reconcile` is called with one key at a time per key; `error_policy` picks when a
    /// failed key is retried (`None`: the queue's backoff).
    pub async fn run<F, Fut, E, P>(self, reconcile: F, error_policy: P, shutdown: impl Future<Output = ()>)
    where
        F: Fn(K) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: Display + Send + 'static,
        P: Fn(&K, &E) -> Option<Duration> + Clone + Send + Sync + 'static,
    {
        let Controller {
            name,
            queue,
            metrics,
            health,
            caches,
            subscriptions,
            list_all,
            workers,
            resync,
            sync_timeout,
            on_sync_timeout,
            ..
        } = self;
        let synced = Arc::new(AtomicBool::new(false));
        if let Some(health) = &health {
            // Live: a watch that restarts (and relists) makes the controller not ready meanwhile.
            let (synced, caches) = (synced.clone(), caches.clone());
            health.remove_readiness_check(&name);
            health.add_readiness_check(name.clone(), move || synced.load(Ordering::SeqCst) && caches.iter().all(|cache| cache.is_synced()));
        }
        let _subscriptions = subscriptions;
        let queue_all = || {
            for list in &list_all {
                for key in list() {
                    queue.add(key);
                }
            }
        };
        let work = async {
            wait_synced(&name, &caches, sync_timeout, on_sync_timeout).await;
            synced.store(true, Ordering::SeqCst);
            queue_all();
            let workers = run_workers(&name, &queue, workers, &metrics, reconcile, error_policy);
            let resyncs = async {
                let Some(period) = resync else { return std::future::pending().await };
                let mut ticker = tokio::time::interval(period);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    queue_all();
                }
            };
            tokio::select! {
                () = workers => {}
                () = resyncs => {}
            }
        };
        tokio::pin!(work);
        tokio::select! {
            () = &mut work => {}
            () = shutdown => {
                queue.shut_down();
                // Workers that started finish their reconcile; before the caches synced there are none.
                if synced.load(Ordering::SeqCst) {
                    work.await;
                }
            }
        }
        if let Some(health) = &health {
            health.remove_readiness_check(&name);
        }
    }
}

impl Controller<ObjectKey> {
    /// Reconciles the objects of `cache` — the primary type — queued on every change that
    /// `predicate` lets through (deletions always), and all of them at start and on resync.
    pub fn for_resource(self, cache: Arc<Cache>, predicate: impl Fn(&CacheEvent<'_>) -> bool + Send + Sync + 'static) -> Self {
        let mut controller = self.watches(cache.clone(), move |event| match event {
            CacheEvent::Applied { new, .. } if predicate(event) => vec![ObjectKey::of(new)],
            CacheEvent::Applied { .. } => Vec::new(),
            CacheEvent::Deleted(old) => vec![ObjectKey::of(old)],
        });
        controller.primary = Some(cache.resource().clone());
        let weak = Arc::downgrade(&cache);
        controller.reconciles_all(move || {
            weak.upgrade().map(|cache| cache.list().iter().map(|object| ObjectKey::of(object)).collect()).unwrap_or_default()
        })
    }

    /// Reconciles the primary object that controls (controller owner reference) an object of
    /// `cache` whenever that object changes or goes.
    ///
    /// # Panics
    ///
    /// If called before [`Controller::for_resource`].
    pub fn owns(self, cache: Arc<Cache>) -> Self {
        let primary = self.primary.clone().expect("Controller::owns needs for_resource first");
        self.watches(cache, move |event| {
            let (old, new) = match event {
                CacheEvent::Applied { old, new } => (*old, Some(*new)),
                CacheEvent::Deleted(old) => (Some(*old), None),
            };
            let mut keys: Vec<ObjectKey> = old.into_iter().chain(new).filter_map(|object| controller_key(object, &primary, true)).collect();
            keys.dedup();
            keys
        })
    }
}

/// The key of the object of type `owner` (of any version) that controls `object`, if one
/// does: in `object`'s namespace when `owner_namespaced`, else cluster-scoped.
pub fn controller_key(object: &DynamicObject, owner: &ApiResource, owner_namespaced: bool) -> Option<ObjectKey> {
    let reference = object.owner_references().iter().find(|reference| reference.controller == Some(true))?;
    // Any version of the owner's group and kind: owner references keep the version they were made with.
    let group = reference.api_version.rsplit_once('/').map_or("", |(group, _)| group);
    (reference.kind == owner.kind && group == owner.group)
        .then(|| ObjectKey { namespace: if owner_namespaced { object.namespace() } else { None }, name: reference.name.clone() })
}

/// Waits until every cache has synced; reports the ones that have not after `timeout`.
async fn wait_synced(name: &str, caches: &[Arc<Cache>], timeout: Duration, report: Option<OnSyncTimeout>) {
    let all = futures::future::join_all(caches.iter().map(|cache| cache.wait_synced()));
    tokio::pin!(all);
    if tokio::time::timeout(timeout, &mut all).await.is_err() {
        let waiting: Vec<String> = caches.iter().filter(|cache| !cache.is_synced()).map(|cache| cache.name()).collect();
        tracing::error!(controller = name, ?waiting, ?timeout, "caches have not synced; still waiting (the readiness check fails)");
        if let Some(report) = report {
            report(waiting).await;
        }
        all.await;
        tracing::info!(controller = name, "caches synced");
    }
}

/// Runs `workers` tasks over `queue` until it is shut down; each returns after finishing the
/// reconcile it is in.
async fn run_workers<K, F, Fut, E, P>(name: &str, queue: &WorkQueue<K>, workers: usize, metrics: &Metrics, reconcile: F, error_policy: P)
where
    K: Clone + Eq + Hash + Display + Send + Sync + 'static,
    F: Fn(K) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: Display + Send + 'static,
    P: Fn(&K, &E) -> Option<Duration> + Clone + Send + Sync + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (name, queue, metrics, reconcile, error_policy) =
            (name.to_owned(), queue.clone(), metrics.clone(), reconcile.clone(), error_policy.clone());
        tasks.spawn(async move {
            while let Some(key) = queue.next().await {
                let started = Instant::now();
                let outcome = std::panic::AssertUnwindSafe(reconcile(key.clone())).catch_unwind().await;
                let result = match outcome {
                    Ok(Ok(Action::Done)) => {
                        queue.forget(&key);
                        ReconcileResult::Success
                    }
                    Ok(Ok(Action::RequeueAfter(delay))) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), delay);
                        ReconcileResult::RequeueAfter
                    }
                    Ok(Err(error)) => {
                        let retry_in = match error_policy(&key, &error) {
                            Some(delay) => {
                                queue.add_after(key.clone(), delay);
                                delay
                            }
                            None => queue.add_rate_limited(key.clone()),
                        };
                        tracing::warn!(controller = %name, object = %key, %error, ?retry_in, "reconcile failed");
                        ReconcileResult::Error
                    }
                    Err(_) => {
                        let retry_in = queue.add_rate_limited(key.clone());
                        tracing::error!(controller = %name, object = %key, ?retry_in, "reconcile panicked");
                        ReconcileResult::Error
                    }
                };
                let took = started.elapsed();
                // What Metacontroller's verbosity 4 shows: every sync, at debug.
                tracing::debug!(controller = %name, object = %key, result = result.label(), ?took, "reconciled");
                metrics.reconcile(&name, result, took);
                queue.done(&key);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test]
    async fn failures_and_panics_are_retried_counted_and_success_stops() {
        let metrics = Metrics::new();
        let controller: Controller<String> = Controller::new("test", &metrics).workers(2).reconciles_all(|| vec!["key".to_owned()]);
        let calls = Arc::new(AtomicU32::new(0));
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(std::sync::Mutex::new(Some(done)));
        let reconcile = {
            let calls = calls.clone();
            move |_key: String| {
                let (calls, done) = (calls.clone(), done.clone());
                async move {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 => Err("first attempt fails"),
                        1 => panic!("second attempt panics"),
                        _ => {
                            done.lock().unwrap().take().map(|done| done.send(()));
                            Ok(Action::Done)
                        }
                    }
                }
            }
        };
        let shutdown = async {
            let _ = finished.await;
        };
        let run = controller.run(reconcile, |_: &String, _: &&str| Some(Duration::from_millis(1)), shutdown);
        tokio::time::timeout(Duration::from_secs(5), run).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let text = metrics.encode();
        assert!(text.contains(r#"controller_runtime_reconcile_total{controller="test",result="error"} 2"#), "{text}");
        assert!(text.contains(r#"controller_runtime_reconcile_errors_total{controller="test"} 2"#), "{text}");
        assert!(text.contains(r#"controller_runtime_reconcile_total{controller="test",result="success"} 1"#), "{text}");
    }
}
