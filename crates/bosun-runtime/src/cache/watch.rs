//! The watch that fills one cache: lists and watches its objects (or only their metadata), in
//! every namespace or in each namespace of its list, decodes them one by one so that an unreadable object costs only itself, and restarts with a
//! fresh list when it panics.

use std::sync::Weak;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, PartialObjectMeta, TypeMeta};
use kube::core::DynamicResourceScope;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::Deserialize;

use super::store::{Store, parse};
use super::{Cache, ObjectKey};

/// An object as the watch delivers it: parsed, or, when it cannot be parsed, its metadata and
/// why. Lists and watch events are decoded item by item into this, so one unreadable object
/// costs only itself.
#[derive(Clone, Debug)]
pub(super) enum Watched {
    Parsed(DynamicObject),
    Unreadable { metadata: ObjectMeta, error: String },
}

impl<'de> Deserialize<'de> for Watched {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Capturing the text skips over it without recursion, so no depth limit applies here.
        let text = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        match parse(text.get()) {
            Ok(object) => Ok(Watched::Parsed(object)),
            Err(error) => {
                // Only what identifies it: `managedFields` mirror the object's shape, depth too.
                #[derive(Deserialize, Default)]
                #[serde(rename_all = "camelCase")]
                struct Identity {
                    name: Option<String>,
                    namespace: Option<String>,
                    uid: Option<String>,
                    resource_version: Option<String>,
                }
                #[derive(Deserialize)]
                struct IdentityOnly {
                    #[serde(default)]
                    metadata: Identity,
                }
                let IdentityOnly { metadata } = serde_json::from_str(text.get()).map_err(serde::de::Error::custom)?;
                let metadata = ObjectMeta {
                    name: metadata.name,
                    namespace: metadata.namespace,
                    uid: metadata.uid,
                    resource_version: metadata.resource_version,
                    ..ObjectMeta::default()
                };
                Ok(Watched::Unreadable { metadata, error: error.to_string() })
            }
        }
    }
}

impl Resource for Watched {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(resource: &ApiResource) -> std::borrow::Cow<'_, str> {
        DynamicObject::group(resource)
    }

    fn version(resource: &ApiResource) -> std::borrow::Cow<'_, str> {
        DynamicObject::version(resource)
    }

    fn kind(resource: &ApiResource) -> std::borrow::Cow<'_, str> {
        DynamicObject::kind(resource)
    }

    fn api_version(resource: &ApiResource) -> std::borrow::Cow<'_, str> {
        DynamicObject::api_version(resource)
    }

    fn plural(resource: &ApiResource) -> std::borrow::Cow<'_, str> {
        DynamicObject::plural(resource)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Watched::Parsed(object) => &object.metadata,
            Watched::Unreadable { metadata, .. } => metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Watched::Parsed(object) => &mut object.metadata,
            Watched::Unreadable { metadata, .. } => metadata,
        }
    }
}

/// Says that the object `metadata` names cannot be read, and why.
fn warn_unreadable(resource: &ApiResource, metadata: &ObjectMeta, error: &str) {
    let key = ObjectKey { namespace: metadata.namespace.clone(), name: metadata.name.clone().unwrap_or_default() };
    tracing::warn!(kind = %resource.kind, object = %key, %error, "cannot read this object; controllers will not see it");
}

/// An object with only `metadata`: enough to find an unreadable object's entry.
fn stub(metadata: ObjectMeta) -> DynamicObject {
    DynamicObject { types: None, metadata, data: serde_json::Value::Null }
}

/// The first and the longest pause before a watch that panicked is restarted.
const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Runs the watch of `cache`, restarting it — with a fresh list, after a pause that doubles
/// up to [`RESTART_BACKOFF`]'s cap — if it panics (in decoding or an indexer). Until the
/// restarted watch has listed, the cache is not synced, which readiness checks report.
pub(super) async fn supervise_watch(client: Client, cache: Weak<Cache>) {
    use futures::FutureExt;
    let mut pause = RESTART_BACKOFF.0;
    loop {
        let watch = std::panic::AssertUnwindSafe(run_watch(client.clone(), cache.clone()));
        if watch.catch_unwind().await.is_ok() {
            return;
        }
        let Some(cache) = cache.upgrade() else { return };
        tracing::error!(resource = %cache.name(), restart_in = ?pause, "the watch panicked; restarting it with a fresh list");
        cache.panicked();
        cache.synced.send_replace(false);
        drop(cache);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RESTART_BACKOFF.1);
    }
}

/// Objects per list request.
const LIST_PAGE_SIZE: u32 = 100;

/// A metadata watch's event, as the object watches deliver: objects without content.
fn with_metadata(event: watcher::Event<PartialObjectMeta<DynamicObject>>, resource: &ApiResource) -> watcher::Event<Watched> {
    let object = |partial: PartialObjectMeta<DynamicObject>| {
        let types = TypeMeta { api_version: resource.api_version.clone(), kind: resource.kind.clone() };
        Watched::Parsed(DynamicObject { types: Some(types), metadata: partial.metadata, data: serde_json::Value::Null })
    };
    match event {
        watcher::Event::Apply(partial) => watcher::Event::Apply(object(partial)),
        watcher::Event::Delete(partial) => watcher::Event::Delete(object(partial)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(partial) => watcher::Event::InitApply(object(partial)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

async fn run_watch(client: Client, cache: Weak<Cache>) {
    let (resource, selector, metadata_only, namespaces) = match cache.upgrade() {
        Some(cache) => (cache.resource.clone(), cache.selector.clone(), cache.projection.is_some(), cache.namespaces.clone()),
        None => return,
    };
    // A list page is held parsed while it is stored: smaller pages than kube's 500 bound that
    // peak, for a few more list requests.
    let mut config = watcher::Config::default().page_size(LIST_PAGE_SIZE);
    if let Some(selector) = &selector {
        config = config.labels(selector);
    }
    // One watch for every namespace, or one per namespace watched, merged.
    let scopes: Vec<Option<String>> = match &namespaces {
        None => vec![None],
        Some(namespaces) => namespaces.iter().cloned().map(Some).collect(),
    };
    let watches = scopes.iter().enumerate().map(|(scope, namespace)| {
        let events = if metadata_only {
            // kube asks for metadata only when the type is `PartialObjectMeta`.
            let api: Api<PartialObjectMeta<DynamicObject>> = super::api_in(client.clone(), namespace.as_deref(), &resource);
            let resource = resource.clone();
            let events = watcher(api, config.clone()).default_backoff();
            events.map(move |event| event.map(|event| with_metadata(event, &resource))).boxed()
        } else {
            watcher(super::api_in::<Watched>(client.clone(), namespace.as_deref(), &resource), config.clone()).default_backoff().boxed()
        };
        events.map(move |event| (scope, event))
    });
    let mut events = futures::stream::select_all(watches);
    // A relist is gathered apart, each object stored as it arrives, and swapped in when
    // complete; the cache is synced once every scope has listed.
    let mut listings: Vec<Option<Store>> = scopes.iter().map(|_| None).collect();
    let mut listed = vec![false; scopes.len()];
    while let Some((scope, event)) = events.next().await {
        let Some(cache) = cache.upgrade() else { return };
        let listing = &mut listings[scope];
        match event {
            Ok(watcher::Event::Init) => *listing = Some(cache.empty_store()),
            Ok(watcher::Event::InitApply(Watched::Parsed(object))) => {
                let object = cache.prepare(object);
                listing.get_or_insert_with(|| cache.empty_store()).insert(&object);
            }
            Ok(watcher::Event::InitApply(Watched::Unreadable { metadata, error })) => warn_unreadable(&resource, &metadata, &error),
            Ok(watcher::Event::InitDone) => {
                let fresh = listing.take().unwrap_or_else(|| cache.empty_store());
                match &scopes[scope] {
                    Some(namespace) => cache.replace_namespace(fresh, namespace),
                    None => cache.replace(fresh),
                }
                listed[scope] = true;
                if listed.iter().all(|listed| *listed) {
                    cache.synced.send_replace(true);
                }
            }
            Ok(watcher::Event::Apply(Watched::Parsed(object))) => cache.apply(object),
            Ok(watcher::Event::Apply(Watched::Unreadable { metadata, error })) => {
                warn_unreadable(&resource, &metadata, &error);
                // What the cache held of it is outdated: controllers must not act on it.
                cache.delete(stub(metadata))
            }
            Ok(watcher::Event::Delete(Watched::Parsed(object))) => cache.delete(object),
            Ok(watcher::Event::Delete(Watched::Unreadable { metadata, .. })) => cache.delete(stub(metadata)),
            Err(error) => {
                let namespace = scopes[scope].as_deref().unwrap_or_default();
                tracing::warn!(resource = %resource.plural, api_version = %resource.api_version, namespace, %error, "watch failed; retrying")
            }
        }
    }
}
