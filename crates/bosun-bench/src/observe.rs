//! Measuring convergence from the outside: a watch on the objects a scenario waits for, which
//! notes when a given number of them carry a given value, and when each one first did (for the
//! convergence plot). The engine and the raw client are timed by the same observer, so its own
//! latency cancels out of their ratio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::sync::Notify;

/// What an observer reads off an object: its "value" (`None`: not there yet).
pub type ValueOf = fn(&DynamicObject) -> Option<String>;

/// The data key that marks a version, in the objects the scenarios write.
pub const VERSION: &str = "version";

/// `data.version` of a ConfigMap.
pub fn data_version(object: &DynamicObject) -> Option<String> {
    object.data.pointer("/data/version").and_then(|value| value.as_str()).map(str::to_owned)
}

#[derive(Default)]
struct Seen {
    values: HashMap<String, String>,
    /// When each object first showed each value.
    first: HashMap<(String, String), Instant>,
}

/// The values of every object of a type matching a label selector, kept current.
pub struct Observer {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Watches `resource` in every namespace, matching `selector`, recording `value_of`;
    /// returns once the initial list is in.
    pub async fn start(client: kube::Client, resource: &ApiResource, selector: &str, value_of: ValueOf) -> Observer {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let changed = Arc::new(Notify::new());
        let listed = Arc::new(Notify::new());
        let (recorded, notify, done) = (seen.clone(), changed.clone(), listed.clone());
        let api: Api<DynamicObject> = Api::all_with(client, resource);
        let mut events = watcher(api, watcher::Config::default().labels(selector)).boxed();
        let task = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let now = Instant::now();
                let mut seen = recorded.lock().unwrap();
                match event {
                    Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                        let key = format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any());
                        match value_of(&object) {
                            Some(value) => {
                                seen.first.entry((key.clone(), value.clone())).or_insert(now);
                                seen.values.insert(key, value);
                            }
                            None => {
                                seen.values.remove(&key);
                            }
                        }
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        seen.values.remove(&format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any()));
                    }
                    Ok(watcher::Event::InitDone) => done.notify_one(),
                    Ok(watcher::Event::Init) | Err(_) => {}
                }
                drop(seen);
                notify.notify_waiters();
            }
        });
        listed.notified().await;
        Observer { seen, changed, task }
    }

    /// How many objects carry `value`.
    pub fn count(&self, value: &str) -> usize {
        self.seen.lock().unwrap().values.values().filter(|current| *current == value).count()
    }

    /// Waits until `count` objects carry `value`; returns when that was first seen.
    pub async fn until(&self, value: &str, count: usize) -> Instant {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.count(value) >= count {
                return Instant::now();
            }
            changed.await;
        }
    }

    /// When each object first carried `value`, sorted.
    pub fn arrivals(&self, value: &str) -> Vec<Instant> {
        let seen = self.seen.lock().unwrap();
        let mut times: Vec<Instant> = seen.first.iter().filter(|((_, v), _)| v == value).map(|(_, at)| *at).collect();
        times.sort();
        times
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
