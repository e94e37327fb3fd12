//! Metacontroller's hook metrics, under the names its dashboards know:
//! `metacontroller_<hook>_requests_total` (by controller, URL, method and status code),
//! `…_request_duration_histogram_seconds` (Prometheus' default buckets) and
//! `…_in_flight_requests`. The engine registers them in the process's registry the first time
//! a hook of each name is called.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bosun_runtime::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// The labels of a hook call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HookLabels {
    /// The CompositeController or DecoratorController.
    pub controller_name: String,
    /// `CompositeController` or `DecoratorController`.
    pub controller_type: String,
    /// The hook's URL, redacted.
    pub url: String,
    /// Always `POST`.
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookRequestLabels {
    #[prometheus(flatten)]
    call: HookLabels,
    code: String,
}

/// The families of one hook name.
#[derive(Clone, Debug)]
struct Families {
    requests: Family<HookRequestLabels, Counter>,
    durations: Family<HookLabels, Histogram>,
    in_flight: Family<HookLabels, Gauge>,
}

/// Prometheus' default buckets, which Metacontroller's hook latencies use.
fn hook_seconds() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

/// The hook metrics of one engine, in the process's registry.
#[derive(Clone, Debug)]
pub(crate) struct HookMetrics {
    registry: Metrics,
    hooks: Arc<Mutex<HashMap<&'static str, Families>>>,
}

impl HookMetrics {
    /// Hook metrics recorded into `registry`.
    pub(crate) fn new(registry: Metrics) -> Self {
        HookMetrics { registry, hooks: Arc::default() }
    }

    fn families(&self, hook: &'static str) -> Families {
        let mut hooks = self.hooks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hooks
            .entry(hook)
            .or_insert_with(|| {
                let families = Families {
                    requests: Family::default(),
                    durations: Family::new_with_constructor(hook_seconds),
                    in_flight: Family::default(),
                };
                let registry = &self.registry;
                registry.register(
                    format!("metacontroller_{hook}_requests"),
                    format!("Number of {hook} hook requests"),
                    families.requests.clone(),
                );
                registry.register(
                    format!("metacontroller_{hook}_request_duration_histogram_seconds"),
                    format!("Duration of {hook} hook requests"),
                    families.durations.clone(),
                );
                registry.register(
                    format!("metacontroller_{hook}_in_flight_requests"),
                    format!("{hook} hook requests in flight"),
                    families.in_flight.clone(),
                );
                families
            })
            .clone()
    }

    /// Marks a call of the `hook` hook as started; the returned guard records it when finished.
    pub(crate) fn started(&self, hook: &'static str, labels: HookLabels) -> HookRequest {
        let families = self.families(hook);
        families.in_flight.get_or_create(&labels).inc();
        HookRequest { families, labels, started: Instant::now(), finished: false }
    }
}

/// An in-flight hook request; records count, code and duration when [`HookRequest::finish`]
/// is called (or as code `<error>` if dropped unfinished).
pub(crate) struct HookRequest {
    families: Families,
    labels: HookLabels,
    started: Instant,
    finished: bool,
}

impl HookRequest {
    /// Records the request with its HTTP status code, or `None` if no response came.
    pub(crate) fn finish(mut self, code: Option<u16>) {
        self.record(code);
    }

    fn record(&mut self, code: Option<u16>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.families.in_flight.get_or_create(&self.labels).dec();
        self.families.durations.get_or_create(&self.labels).observe(self.started.elapsed().as_secs_f64());
        let code = code.map(|code| code.to_string()).unwrap_or_else(|| "<error>".into());
        self.families.requests.get_or_create(&HookRequestLabels { call: self.labels.clone(), code }).inc();
    }
}

impl Drop for HookRequest {
    fn drop(&mut self) {
        self.record(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_metacontroller() {
        let registry = Metrics::new();
        let labels = HookLabels {
            controller_name: "things".into(),
            controller_type: "CompositeController".into(),
            url: "http://hook/sync".into(),
            method: "POST".into(),
        };
        HookMetrics::new(registry.clone()).started("sync", labels).finish(Some(200));
        let text = registry.encode();
        for name in [
            "metacontroller_sync_requests_total{controller_name=\"things\",controller_type=\"CompositeController\",url=\"http://hook/sync\",method=\"POST\",code=\"200\"} 1",
            "metacontroller_sync_request_duration_histogram_seconds_count",
            "metacontroller_sync_in_flight_requests",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
