//! Measuring convergence from the outside: a watch on the objects a scenario waits for, which
//! notes when a given number of them carry a given value. The engine and the raw client are
//! timed by the same observer, so its own latency cancels out of their ratio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::sync::Notify;

/// The value of one data key of every ConfigMap matching a label selector, kept current.
pub struct Observer {
    values: Arc<Mutex<HashMap<String, String>>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    /// Watches ConfigMaps in every namespace matching `selector`, recording `data[key]`;
    /// returns once the initial list is in.
    pub async fn start(client: kube::Client, selector: &str, key: &str) -> Observer {
        let values: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let changed = Arc::new(Notify::new());
        let listed = Arc::new(Notify::new());
        let (recorded, notify, done, key) = (values.clone(), changed.clone(), listed.clone(), key.to_owned());
        let api: Api<ConfigMap> = Api::all(client);
        let mut events = watcher(api, watcher::Config::default().labels(selector)).boxed();
        let task = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let mut values = recorded.lock().unwrap();
                match event {
                    Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                        let value = object.data.as_ref().and_then(|data| data.get(&key)).cloned().unwrap_or_default();
                        values.insert(format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any()), value);
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        values.remove(&format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any()));
                    }
                    Ok(watcher::Event::InitDone) => done.notify_one(),
                    Ok(watcher::Event::Init) | Err(_) => {}
                }
                drop(values);
                notify.notify_waiters();
            }
        });
        listed.notified().await;
        Observer { values, changed, task }
    }

    /// How many objects carry `value`.
    pub fn count(&self, value: &str) -> usize {
        self.values.lock().unwrap().values().filter(|current| *current == value).count()
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
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
