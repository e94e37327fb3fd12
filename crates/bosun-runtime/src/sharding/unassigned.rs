//! The parents no shard has yet, as the coordinator watches them: a metadata-only watch with a
//! label selector, each object kept as the few fields an assignment needs. When sharding is
//! turned on for a cluster that has objects already, every parent is unassigned at once, and
//! whole objects (as the shared caches keep them) would make the coordinator the largest
//! replica of the ring.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use crate::ObjectKey;

/// An unassigned parent: what the coordinator writes its label with.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Its namespace and name.
    pub key: ObjectKey,
    /// Its UID, which its children's controller references name.
    pub uid: String,
    /// The resourceVersion it was seen at: the precondition of the write.
    pub resource_version: Option<String>,
    /// `(group, kind)` of its controller owner, if it has one.
    pub controller: Option<(String, String)>,
    /// Its labels, and its annotations when a selection needs them: what tells whether a
    /// controller handles it.
    pub selected_by: ObjectMeta,
}

impl Pending {
    fn of(object: &PartialObjectMeta<DynamicObject>, annotations: bool) -> Option<Pending> {
        let metadata = &object.metadata;
        Some(Pending {
            key: ObjectKey { namespace: object.namespace(), name: object.name_any() },
            uid: metadata.uid.clone()?,
            resource_version: metadata.resource_version.clone(),
            controller: controller_kind(metadata.owner_references.as_deref()),
            selected_by: ObjectMeta {
                labels: metadata.labels.clone(),
                annotations: metadata.annotations.clone().filter(|_| annotations),
                ..ObjectMeta::default()
            },
        })
    }
}

/// `(group, kind)` of the controller owner among `owners`, if there is one.
pub fn controller_kind(owners: Option<&[OwnerReference]>) -> Option<(String, String)> {
    owners.into_iter().flatten().find(|owner| owner.controller == Some(true)).map(|owner| {
        let group = owner.api_version.rsplit_once('/').map_or("", |(group, _)| group);
        (group.to_owned(), owner.kind.clone())
    })
}

#[derive(Default)]
struct State {
    objects: HashMap<ObjectKey, Pending>,
    synced: bool,
}

/// The watched unassigned parents of one type and selector; the watch stops when it is dropped.
pub struct Unassigned {
    state: Arc<Mutex<State>>,
    watch: tokio::task::JoinHandle<()>,
}

impl Drop for Unassigned {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl Unassigned {
    /// Watches the objects of `resource` that `selector` selects, keeping their annotations
    /// if `annotations`, and notifies `wake` after every change.
    pub fn watch(
        client: kube::Client,
        resource: &ApiResource,
        selector: &str,
        annotations: bool,
        wake: Arc<tokio::sync::Notify>,
    ) -> Unassigned {
        let state = Arc::new(Mutex::new(State::default()));
        // Metadata only: the API server sends no spec or status.
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, resource);
        let config = watcher::Config::default().labels(selector);
        let watched = state.clone();
        let plural = resource.plural.clone();
        let watch = tokio::spawn(async move {
            let mut events = watcher(api, config).default_backoff().boxed();
            // A relist is gathered apart, and replaces the objects when it is complete.
            let mut listing: HashMap<ObjectKey, Pending> = HashMap::new();
            while let Some(event) = events.next().await {
                let mut state = watched.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match event {
                    Ok(watcher::Event::Init) => listing.clear(),
                    Ok(watcher::Event::InitApply(object)) => {
                        if let Some(pending) = Pending::of(&object, annotations) {
                            listing.insert(pending.key.clone(), pending);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        state.objects = std::mem::take(&mut listing);
                        state.synced = true;
                    }
                    Ok(watcher::Event::Apply(object)) => {
                        if let Some(pending) = Pending::of(&object, annotations) {
                            state.objects.insert(pending.key.clone(), pending);
                        }
                    }
                    Ok(watcher::Event::Delete(object)) => {
                        state.objects.remove(&ObjectKey { namespace: object.namespace(), name: object.name_any() });
                    }
                    Err(error) => tracing::warn!(resource = %plural, %error, "watch of unassigned objects failed; retrying"),
                }
                drop(state);
                wake.notify_one();
            }
        });
        Unassigned { state, watch }
    }

    /// Up to `limit` of the objects that `keep` keeps, or `None` until the watch has listed them.
    pub fn some(&self, limit: usize, keep: impl Fn(&Pending) -> bool) -> Option<Vec<Pending>> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.synced.then(|| state.objects.values().filter(|pending| keep(pending)).take(limit).cloned().collect())
    }
}
