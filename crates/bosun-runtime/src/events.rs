//! Recording Kubernetes Events (`events.k8s.io/v1`) about objects, with repeats folded into
//! a series: the same reason *and message* about the same object updates the existing event's
//! count instead of creating another.
//!
//! kube-runtime's `Recorder` folds by reason alone, so a second, different message for the same
//! reason only bumps the count of the first event and the new message is never shown; a
//! controller whose failure changes cause would keep reporting the old one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;

use crate::rate_limit::TokenBucket;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// Whether an event reports normal operation or a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Normal operation.
    Normal,
    /// Something needs attention.
    Warning,
}

/// The API server refuses notes of more bytes.
const MAX_NOTE: usize = 1024;
/// How long a repeat is folded into the same event.
const SERIES_WINDOW: Duration = Duration::from_secs(30 * 60);
/// Bound on remembered events.
const MAX_REMEMBERED: usize = 4096;

/// `note` cut to at most [`MAX_NOTE`] bytes, on a character boundary.
fn truncate_note(note: &str) -> &str {
    if note.len() <= MAX_NOTE {
        return note;
    }
    let mut end = MAX_NOTE;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    &note[..end]
}

#[derive(Hash, PartialEq, Eq, Clone)]
struct SeriesKey {
    regarding: ObjectKey,
    type_: EventType,
    reason: String,
    note: String,
}

struct Series {
    name: String,
    count: i32,
    last: Instant,
}

/// Records events for one controller.
pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<HashMap<SeriesKey, Series>>,
    /// Per object: `--events-qps` and `--events-burst` (client-go's spam filter).
    limits: Mutex<HashMap<ObjectKey, TokenBucket>>,
    qps: f64,
    burst: u32,
}

type ObjectKey = (Option<String>, Option<String>, Option<String>, Option<String>);

impl EventRecorder {
    /// A recorder reporting as `controller` (and `instance`, e.g. the pod name), allowing each
    /// object `burst` events at once and `qps` a second after that (client-go: 25 and 1/300).
    pub fn new(client: Client, controller: impl Into<String>, instance: impl Into<String>, qps: f64, burst: u32) -> Self {
        EventRecorder {
            client,
            controller: controller.into(),
            instance: instance.into(),
            series: Mutex::default(),
            limits: Mutex::default(),
            qps,
            burst,
        }
    }

    /// Records an event about `regarding` as [`EventRecorder::publish`] does; a failure is
    /// logged, never fatal — what controllers want, since an event is never worth a retry.
    pub async fn record(&self, regarding: &ObjectReference, type_: EventType, reason: &str, note: &str) {
        if let Err(error) = self.publish(regarding, type_, reason, note).await {
            tracing::warn!(%error, reason, "recording an event failed");
        }
    }

    /// Records an event about `regarding`. Events of cluster-scoped objects go to `default`.
    pub async fn publish(&self, regarding: &ObjectReference, type_: EventType, reason: &str, note: &str) -> Result<(), kube::Error> {
        let note = truncate_note(note).to_owned();
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let object: ObjectKey = (
            regarding.api_version.clone(),
            regarding.kind.clone(),
            regarding.namespace.clone(),
            regarding.uid.clone().or_else(|| regarding.name.clone()),
        );
        {
            let mut limits = self.limits.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if limits.len() >= MAX_REMEMBERED {
                limits.clear();
            }
            if !limits.entry(object.clone()).or_insert_with(|| TokenBucket::new(self.qps, self.burst)).try_take() {
                tracing::debug!(reason, "event dropped: too many events about this object");
                return Ok(());
            }
        }
        let key = SeriesKey { regarding: object, type_, reason: reason.to_owned(), note: note.clone() };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Timestamp::now();
        let repeat = {
            let mut series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            series.retain(|_, entry| entry.last.elapsed() < SERIES_WINDOW);
            series.get_mut(&key).map(|entry| {
                entry.count += 1;
                entry.last = Instant::now();
                (entry.name.clone(), entry.count)
            })
        };
        if let Some((name, count)) = repeat {
            let series = json!({ "series": EventSeries { count, last_observed_time: MicroTime(now) } });
            match events.patch(&name, &PatchParams::default(), &Patch::Merge(&series)).await {
                Ok(_) => return Ok(()),
                // Expired or deleted meanwhile: record it anew.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let object_name = regarding.name.clone().unwrap_or_else(|| self.controller.clone());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{object_name}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(match type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            reason: Some(reason.to_owned()),
            action: Some(reason.to_owned()),
            note: Some(note),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        let created = events.create(&PostParams::default(), &event).await?;
        let mut series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if series.len() >= MAX_REMEMBERED {
            series.clear();
        }
        series.insert(key, Series { name: created.metadata.name.unwrap_or_default(), count: 1, last: Instant::now() });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_at_1024_bytes_on_a_character_boundary() {
        assert_eq!(truncate_note("short"), "short");
        let accented = "é".repeat(600);
        let cut = truncate_note(&accented);
        assert!(cut.len() == MAX_NOTE && cut.chars().all(|c| c == 'é'));
        let odd = format!("a{}", "é".repeat(600));
        assert_eq!(truncate_note(&odd).len(), 1023, "the character across the limit is dropped whole");
    }
}
