//! Prometheus metrics under the names existing dashboards know: controller-runtime's reconcile
//! and work-queue metrics, client-go's REST client requests and latencies, leader election,
//! and process memory and CPU — with their label values and histogram buckets, so that
//! dashboards and alerts written for those work unchanged.
//!
//! [`Metrics`] is cheap to clone; every clone records into the same registry, which
//! [`Metrics::encode`] renders in the text format. A subsystem with metrics of its own (the
//! engine's Metacontroller hook metrics) registers them with [`Metrics::register`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestLabels {
    code: String,
    method: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestLatencyLabels {
    verb: String,
    host: String,
}

/// The outcome of one reconcile, as controller-runtime labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Done.
    Success,
    /// Failed; retried with backoff.
    Error,
    /// Asked to run again after a delay.
    RequeueAfter,
}

impl ReconcileResult {
    /// The value of the `result` label: `success`, `error` or `requeue_after`.
    pub fn label(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::Error => "error",
            ReconcileResult::RequeueAfter => "requeue_after",
        }
    }
}

/// When each key now in process was taken, per queue name: read at every scrape for
/// `workqueue_unfinished_work_seconds` and `workqueue_longest_running_processor_seconds`.
type InProcess = Arc<Mutex<BTreeMap<Instant, usize>>>;

struct Families {
    reconcile_total: Family<ReconcileLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    reconcile_time: Family<ControllerLabels, Histogram>,
    queue_depth: Family<QueueLabels, Gauge>,
    queue_adds: Family<QueueLabels, Counter>,
    queue_retries: Family<QueueLabels, Counter>,
    queue_latency: Family<QueueLabels, Histogram>,
    work_duration: Family<QueueLabels, Histogram>,
    in_process: Arc<Mutex<BTreeMap<String, InProcess>>>,
    leader: Family<QueueLabels, Gauge>,
    rest_requests: Family<RestLabels, Counter>,
    rest_latency: Family<RestLatencyLabels, Histogram>,
    records: Family<QueueLabels, Gauge>,
    watch_panics: Family<QueueLabels, Counter>,
}

/// The process's metrics registry and the families bosun records.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    families: Arc<Families>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// controller-runtime's reconcile-time buckets, 5 ms to 60 s.
fn reconcile_seconds() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0,
        3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
    ])
}

/// controller-runtime's work-queue buckets: 10 ns to 1000 s, by tens.
fn queue_seconds() -> Histogram {
    Histogram::new(exponential_buckets(1e-8, 10.0, 12))
}

/// client-go's REST client latency buckets.
fn rest_seconds() -> Histogram {
    Histogram::new([0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0])
}

impl Metrics {
    /// A registry with every family registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let families = Families {
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_time: Family::new_with_constructor(reconcile_seconds),
            queue_depth: Family::default(),
            queue_adds: Family::default(),
            queue_retries: Family::default(),
            queue_latency: Family::new_with_constructor(queue_seconds),
            work_duration: Family::new_with_constructor(queue_seconds),
            in_process: Arc::default(),
            leader: Family::default(),
            rest_requests: Family::default(),
            rest_latency: Family::new_with_constructor(rest_seconds),
            records: Family::default(),
            watch_panics: Family::default(),
        };
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            families.reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            families.reconcile_errors.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            families.reconcile_time.clone(),
        );
        registry.register("workqueue_depth", "Current depth of workqueue", families.queue_depth.clone());
        registry.register("workqueue_adds", "Total number of adds handled by workqueue", families.queue_adds.clone());
        registry.register("workqueue_retries", "Total number of retries handled by workqueue", families.queue_retries.clone());
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            families.queue_latency.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            families.work_duration.clone(),
        );
        registry.register_collector(Box::new(InProcessCollector(families.in_process.clone())));
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master",
            families.leader.clone(),
        );
        registry.register(
            "rest_client_requests",
            "Number of HTTP requests to the API server, partitioned by status code, method, and host",
            families.rest_requests.clone(),
        );
        registry.register(
            "rest_client_request_duration_seconds",
            "Request latency in seconds, to the API server's response headers, broken down by verb and host",
            families.rest_latency.clone(),
        );
        registry.register(
            "bosun_records",
            "Entries kept in memory per parent, child or controller, by kind of record; they must return to zero when those go",
            families.records.clone(),
        );
        registry.register(
            "bosun_watch_panics",
            "Panics caught on a watch, in its decoding, indexes or event handlers, by resource; the watch carries on or restarts",
            families.watch_panics.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector { started: Instant::now() }));
        Metrics { registry: Arc::new(Mutex::new(registry)), families: Arc::new(families) }
    }

    /// Registers a subsystem's own metric under `name` (without the `_total` a counter's
    /// samples get), recorded through the `metric` kept by the caller.
    pub fn register(&self, name: impl Into<String>, help: impl Into<String>, metric: impl prometheus_client::registry::Metric) {
        let mut registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        registry.register(name, help, metric);
    }

    /// Starts the reconcile counters of `controller` at zero, as controller-runtime does, so
    /// that rates and alerts over them have a series before the first error.
    pub fn controller_started(&self, controller: &str) {
        for result in [ReconcileResult::Success, ReconcileResult::Error, ReconcileResult::RequeueAfter] {
            let labels = ReconcileLabels { controller: controller.to_owned(), result: result.label().to_owned() };
            let _ = self.families.reconcile_total.get_or_create(&labels);
        }
        let _ = self.families.reconcile_errors.get_or_create(&ControllerLabels { controller: controller.to_owned() });
    }

    /// Records one reconcile of `controller`.
    pub fn reconcile(&self, controller: &str, result: ReconcileResult, took: Duration) {
        let labels = ControllerLabels { controller: controller.to_owned() };
        let result_labels = ReconcileLabels { controller: controller.to_owned(), result: result.label().to_owned() };
        self.families.reconcile_total.get_or_create(&result_labels).inc();
        if result == ReconcileResult::Error {
            self.families.reconcile_errors.get_or_create(&labels).inc();
        }
        self.families.reconcile_time.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// Work-queue metrics for the queue called `name`.
    pub fn queue(&self, name: &str) -> QueueMetrics {
        let labels = QueueLabels { name: name.to_owned() };
        let in_process =
            self.families.in_process.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entry(name.to_owned()).or_default().clone();
        QueueMetrics {
            depth: self.families.queue_depth.get_or_create(&labels).clone(),
            adds: self.families.queue_adds.get_or_create(&labels).clone(),
            retries: self.families.queue_retries.get_or_create(&labels).clone(),
            latency: self.families.queue_latency.get_or_create(&labels).clone(),
            work: self.families.work_duration.get_or_create(&labels).clone(),
            in_process,
        }
    }

    /// Sets `bosun_records{name}`: how many records of kind `name` are kept.
    pub fn set_records(&self, name: &str, count: usize) {
        self.families.records.get_or_create(&QueueLabels { name: name.to_owned() }).set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts a panic caught on the watch of `resource` (`bosun_watch_panics_total{name}`).
    pub fn watch_panicked(&self, resource: &str) {
        self.families.watch_panics.get_or_create(&QueueLabels { name: resource.to_owned() }).inc();
    }

    /// Sets `leader_election_master_status{name}`.
    pub fn set_leader(&self, lease: &str, leader: bool) {
        self.families.leader.get_or_create(&QueueLabels { name: lease.to_owned() }).set(i64::from(leader));
    }

    /// A tower layer that counts the requests of a kube client to the API server at `host`
    /// (`rest_client_requests_total`). Added with `ClientBuilder::with_layer`, it sees request
    /// paths before the server URL is filled in, hence the host is given here.
    pub fn rest_client_layer(&self, host: &str) -> RestClientLayer {
        RestClientLayer { metrics: self.clone(), host: host.to_owned() }
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
        text
    }
}

/// The metrics of one work queue.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    depth: Gauge,
    adds: Counter,
    retries: Counter,
    latency: Histogram,
    work: Histogram,
    in_process: InProcess,
}

impl Default for QueueMetrics {
    /// Metrics recorded nowhere.
    fn default() -> Self {
        QueueMetrics {
            depth: Gauge::default(),
            adds: Counter::default(),
            retries: Counter::default(),
            latency: queue_seconds(),
            work: queue_seconds(),
            in_process: InProcess::default(),
        }
    }
}

impl QueueMetrics {
    /// A key was queued; the queue now holds `depth` keys.
    pub fn added(&self, depth: usize) {
        self.adds.inc();
        self.depth.set(depth as i64);
    }

    /// A key that waited `waited` since it was added was taken, at `at`; the queue now holds
    /// `depth` keys.
    pub fn taken(&self, depth: usize, waited: Duration, at: Instant) {
        self.depth.set(depth as i64);
        self.latency.observe(waited.as_secs_f64());
        *self.lock_in_process().entry(at).or_insert(0) += 1;
    }

    /// The key taken at `taken` is done.
    pub fn done(&self, taken: Instant) {
        self.work.observe(taken.elapsed().as_secs_f64());
        let mut in_process = self.lock_in_process();
        if let Some(count) = in_process.get_mut(&taken) {
            *count -= 1;
            if *count == 0 {
                in_process.remove(&taken);
            }
        }
    }

    fn lock_in_process(&self) -> std::sync::MutexGuard<'_, BTreeMap<Instant, usize>> {
        self.in_process.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A failed key was scheduled again.
    pub fn retried(&self) {
        self.retries.inc();
    }
}

/// `workqueue_unfinished_work_seconds` and `workqueue_longest_running_processor_seconds`,
/// computed at each scrape from the start times of the keys in process.
#[derive(Debug)]
struct InProcessCollector(Arc<Mutex<BTreeMap<String, InProcess>>>);

impl Collector for InProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = Instant::now();
        let queues: Vec<(String, InProcess)> = {
            let queues = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            queues.iter().map(|(name, in_process)| (name.clone(), in_process.clone())).collect()
        };
        let figures: Vec<(QueueLabels, f64, f64)> = queues
            .into_iter()
            .map(|(name, in_process)| {
                let in_process = in_process.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let seconds = |at: &Instant| now.saturating_duration_since(*at).as_secs_f64();
                let unfinished = in_process.iter().fold(0.0, |sum, (at, count)| sum + seconds(at) * *count as f64);
                let longest = in_process.keys().next().map_or(0.0, seconds);
                (QueueLabels { name }, unfinished, longest)
            })
            .collect();
        for (family, help, pick) in [
            (
                "workqueue_unfinished_work_seconds",
                "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. Large values \
                 indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
                (|figures: &(QueueLabels, f64, f64)| figures.1) as fn(&(QueueLabels, f64, f64)) -> f64,
            ),
            (
                "workqueue_longest_running_processor_seconds",
                "How many seconds has the longest running processor for workqueue been running.",
                |figures| figures.2,
            ),
        ] {
            let mut family_encoder = encoder.encode_descriptor(family, help, None, prometheus_client::metrics::MetricType::Gauge)?;
            for figures in &figures {
                ConstGauge::new(pick(figures)).encode(family_encoder.encode_family(&figures.0)?)?;
            }
        }
        Ok(())
    }
}

/// Process memory and CPU, read from `/proc` on each scrape.
#[derive(Debug)]
struct ProcessCollector {
    started: Instant,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss_kib: i64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let rss = ConstGauge::new(rss_kib * 1024);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            rss.metric_type(),
        )?)?;
        // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let ticks: f64 = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().skip(11).take(2).filter_map(|field| field.parse::<f64>().ok()).sum())
            .unwrap_or(0.0);
        #[allow(unsafe_code)]
        // SAFETY: sysconf has no memory-safety preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let cpu = ConstCounter::new(ticks / per_second);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let uptime = ConstGauge::new(self.started.elapsed().as_secs_f64());
        uptime.encode(encoder.encode_descriptor(
            "process_uptime_seconds",
            "Seconds since the metrics registry was created",
            None,
            uptime.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Counts a kube client's requests by status code, method and host.
#[derive(Clone)]
pub struct RestClientLayer {
    metrics: Metrics,
    host: String,
}

impl<S> tower::Layer<S> for RestClientLayer {
    type Service = RestClientMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RestClientMetrics { inner, metrics: self.metrics.clone(), host: self.host.clone() }
    }
}

/// The service [`RestClientLayer`] wraps a client's stack in.
#[derive(Clone)]
pub struct RestClientMetrics<S> {
    inner: S,
    metrics: Metrics,
    host: String,
}

impl<S, B, R> tower::Service<http::Request<B>> for RestClientMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.method().to_string();
        let host = self.host.clone();
        let started = Instant::now();
        let response = self.inner.call(request);
        let families = self.metrics.families.clone();
        Box::pin(async move {
            let result = response.await;
            let latency = RestLatencyLabels { verb: method.clone(), host: host.clone() };
            families.rest_latency.get_or_create(&latency).observe(started.elapsed().as_secs_f64());
            let code = match &result {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => "<error>".to_owned(),
            };
            families.rest_requests.get_or_create(&RestLabels { code, method, host }).inc();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_controller_runtime() {
        let metrics = Metrics::new();
        metrics.controller_started("CompositeController-things");
        metrics.reconcile("CompositeController-things", ReconcileResult::Success, Duration::from_millis(3));
        let queue = metrics.queue("CompositeController-things");
        queue.added(1);
        let taken = Instant::now();
        queue.taken(0, Duration::from_millis(2), taken);
        metrics.set_leader("bosun", true);
        let text = metrics.encode();
        for name in [
            "controller_runtime_reconcile_total{controller=\"CompositeController-things\",result=\"success\"} 1",
            "controller_runtime_reconcile_total{controller=\"CompositeController-things\",result=\"error\"} 0",
            "controller_runtime_reconcile_errors_total{controller=\"CompositeController-things\"} 0",
            "controller_runtime_reconcile_time_seconds_bucket",
            "workqueue_depth{name=\"CompositeController-things\"} 0",
            "workqueue_adds_total{name=\"CompositeController-things\"} 1",
            "workqueue_queue_duration_seconds_bucket{le=\"0.01\",name=\"CompositeController-things\"} 1",
            "workqueue_unfinished_work_seconds{name=\"CompositeController-things\"} ",
            "workqueue_longest_running_processor_seconds{name=\"CompositeController-things\"} ",
            "leader_election_master_status{name=\"bosun\"} 1",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        queue.done(taken);
        let text = metrics.encode();
        for name in [
            "workqueue_work_duration_seconds_count{name=\"CompositeController-things\"} 1",
            "workqueue_unfinished_work_seconds{name=\"CompositeController-things\"} 0.0",
            "workqueue_longest_running_processor_seconds{name=\"CompositeController-things\"} 0.0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
