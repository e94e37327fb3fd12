//! The customize hook and related objects. A controller with a customize hook asks it, per
//! parent (or target), which other objects its sync needs to see — `relatedResources` rules
//! that select objects by name, by label in a namespace, by label in namespaces chosen by a
//! namespace selector, or by label everywhere — and passes them to the sync and finalize hooks
//! under `related`.
//!
//! Answers are cached per parent UID and generation (for 20 minutes, as in Metacontroller):
//! label, annotation and status changes do not call the customize hook again, spec changes
//! do. Every parent's rules are indexed by what they select — names, namespaces, or (for rules
//! that can select anywhere) the parent — so a change to one related object re-syncs exactly
//! the parents whose rules select it, evaluating only the rules that could.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bosun_runtime::{Cache, CacheEvent, ObjectKey, Subscription, WorkQueue};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::HookVersion;
use crate::context::EngineContext;
use crate::hooks::{self, HookEndpoint, HookResponse, ObjectMaps, group_key};
use crate::invalid_response::{InvalidResponse, RuleProblem};
use crate::selector;
use crate::sync_error::SyncError;

/// How long a customize answer is trusted for an unchanged parent generation.
const ANSWER_TTL: Duration = Duration::from_secs(20 * 60);
/// How long a sync waits for a related type's cache to fill the first time.
const FIRST_SYNC: Duration = Duration::from_secs(10);

/// One rule of a customize response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RelatedResourceRule {
    /// `group/version` of the related resource.
    pub api_version: String,
    /// Its plural resource name.
    pub resource: String,
    /// Only objects whose labels match.
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
    /// Only objects in namespaces whose labels match.
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    /// Only objects in this namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only objects with these names.
    #[serde(default)]
    pub names: Option<Vec<String>>,
}

#[derive(Serialize)]
struct CustomizeRequest<'a> {
    controller: &'a Value,
    parent: &'a DynamicObject,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CustomizeResponse {
    #[serde(default)]
    related_resources: Option<Vec<RelatedResourceRule>>,
}

impl HookResponse for CustomizeResponse {
    const FIELDS: &'static [&'static str] = &["relatedResources"];
}

/// Which objects of a related type a rule selects.
#[derive(Debug, Clone, PartialEq)]
enum Selection {
    /// These names, in `namespace` (`None`: cluster-scoped objects, or any namespace).
    Names { namespace: Option<String>, names: Vec<String> },
    /// Objects matching `selector` in `namespace` (`""`: the cluster-scoped ones).
    InNamespace { namespace: String, selector: LabelSelector },
    /// Objects matching `selector` in every namespace whose labels match `namespaces`.
    InNamespaces { namespaces: LabelSelector, selector: LabelSelector },
    /// Objects matching `selector` anywhere.
    Everywhere { selector: LabelSelector },
}

/// A rule as messages name it: `relatedResources rule for <resource> in <apiVersion>`.
fn describe(rule: &RelatedResourceRule) -> String {
    format!("relatedResources rule for {} in {}", rule.resource, rule.api_version)
}

impl Selection {
    /// Turns a rule into a selection, or says why the rule is invalid. `version` is the
    /// customize hook's: v1 hooks of namespaced parents only see their own namespace.
    fn of(
        rule: &RelatedResourceRule,
        namespaced: bool,
        parent_namespace: Option<&str>,
        version: HookVersion,
    ) -> Result<Selection, InvalidResponse> {
        let invalid = |problem| InvalidResponse::RelatedRule { rule: describe(rule), problem };
        if rule.names.is_some() && (rule.label_selector.is_some() || rule.namespace_selector.is_some()) {
            return Err(invalid(RuleProblem::NamesAndSelector));
        }
        if rule.namespace.is_some() && rule.namespace_selector.is_some() {
            return Err(invalid(RuleProblem::NamespaceAndSelector));
        }
        if !namespaced && (rule.namespace.is_some() || rule.namespace_selector.is_some()) {
            return Err(invalid(RuleProblem::ClusterScoped(rule.resource.clone())));
        }
        for selector in [&rule.label_selector, &rule.namespace_selector].into_iter().flatten() {
            selector::matches(selector, &BTreeMap::new()).map_err(|error| invalid(RuleProblem::Selector(error)))?;
        }
        // v1 hooks of a namespaced parent see namespaced related objects of its namespace only.
        let own_namespace = match (version, parent_namespace, namespaced) {
            (HookVersion::V1, Some(parent), true) => Some(parent),
            _ => None,
        };
        if let Some(own) = own_namespace {
            if let Some(namespace) = rule.namespace.as_deref().filter(|namespace| *namespace != own) {
                return Err(invalid(RuleProblem::OtherNamespace { own: own.to_owned(), namespace: namespace.to_owned() }));
            }
            if rule.namespace_selector.is_some() {
                return Err(invalid(RuleProblem::NamespaceSelectorNeedsV2));
            }
        }
        let selector = rule.label_selector.clone().unwrap_or_default();
        let namespace = rule.namespace.clone().or(own_namespace.map(str::to_owned));
        Ok(if let Some(namespaces) = &rule.namespace_selector {
            Selection::InNamespaces { namespaces: namespaces.clone(), selector }
        } else if let Some(names) = &rule.names {
            // Names without a namespace: in any namespace (but a v1 hook's own), as Metacontroller.
            Selection::Names { namespace, names: names.clone() }
        } else if let Some(namespace) = namespace {
            Selection::InNamespace { namespace, selector }
        } else if !namespaced {
            Selection::InNamespace { namespace: String::new(), selector }
        } else {
            Selection::Everywhere { selector }
        })
    }

    /// Refuses a selection that reaches beyond the namespaces the engine watches (`watched`):
    /// a namespace not among them, or namespaces chosen by their labels (reading Namespaces
    /// needs the whole cluster). One selecting everywhere selects in the watched namespaces.
    fn watched_within(&self, rule: &RelatedResourceRule, watched: &[String]) -> Result<(), InvalidResponse> {
        let what = match self {
            Selection::Names { namespace: Some(namespace), .. } | Selection::InNamespace { namespace, .. }
                if !watched.contains(namespace) =>
            {
                format!("namespace {namespace:?} is not watched")
            }
            Selection::InNamespaces { .. } => "namespaceSelector needs to read every Namespace".to_owned(),
            _ => return Ok(()),
        };
        let problem = RuleProblem::NotWatched { what, watched: watched.join(",") };
        Err(InvalidResponse::RelatedRule { rule: describe(rule), problem })
    }

    /// The objects of `cache` it selects.
    fn select(&self, cache: &Cache, namespaces: Option<&Cache>) -> Vec<Arc<DynamicObject>> {
        let matching = |objects: Vec<Arc<DynamicObject>>, selector: &LabelSelector| {
            objects.into_iter().filter(|object| selector::matches(selector, object.labels()).unwrap_or(false)).collect::<Vec<_>>()
        };
        match self {
            Selection::Names { namespace, names } if names.is_empty() => match namespace {
                Some(namespace) => cache.in_namespace(namespace),
                None => cache.list(),
            },
            Selection::Names { namespace: Some(namespace), names } => {
                names.iter().filter_map(|name| cache.get(&ObjectKey { namespace: Some(namespace.clone()), name: name.clone() })).collect()
            }
            Selection::Names { namespace: None, names } => {
                cache.list().into_iter().filter(|object| names.contains(&object.name_any())).collect()
            }
            Selection::InNamespace { namespace, selector } => matching(cache.in_namespace(namespace), selector),
            Selection::InNamespaces { namespaces: namespace_selector, selector } => namespaces
                .map(|namespaces| namespaces.list())
                .unwrap_or_default()
                .iter()
                .filter(|namespace| selector::matches(namespace_selector, namespace.labels()).unwrap_or(false))
                .flat_map(|namespace| matching(cache.in_namespace(&namespace.name_any()), selector))
                .collect(),
            Selection::Everywhere { selector } => matching(cache.list(), selector),
        }
    }

    /// Whether it selects `object`.
    fn selects(&self, object: &DynamicObject, namespaces: Option<&Cache>) -> bool {
        let labels_match = |selector: &LabelSelector| selector::matches(selector, object.labels()).unwrap_or(false);
        let namespace = object.namespace().unwrap_or_default();
        match self {
            Selection::Names { namespace: scope, names } => {
                scope.as_ref().is_none_or(|scope| *scope == namespace) && (names.is_empty() || names.contains(&object.name_any()))
            }
            Selection::InNamespace { namespace: scope, selector } => *scope == namespace && labels_match(selector),
            Selection::InNamespaces { namespaces: namespace_selector, selector } => {
                let namespace = namespaces.and_then(|namespaces| namespaces.get(&ObjectKey { namespace: None, name: namespace }));
                namespace.is_some_and(|namespace| selector::matches(namespace_selector, namespace.labels()).unwrap_or(false))
                    && labels_match(selector)
            }
            Selection::Everywhere { selector } => labels_match(selector),
        }
    }
}

/// Where in a type's index a parent's selection is filed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Slot {
    /// By (namespace, name); `"*"` for any namespace.
    Name(String, String),
    /// By namespace.
    Namespace(String),
    /// Evaluated for every object of the type.
    Wide,
}

impl Slot {
    fn of(selection: &Selection) -> Vec<Slot> {
        match selection {
            Selection::Names { namespace, names } if !names.is_empty() => {
                let namespace = namespace.clone().unwrap_or_else(|| "*".into());
                names.iter().map(|name| Slot::Name(namespace.clone(), name.clone())).collect()
            }
            Selection::Names { namespace: Some(namespace), .. } | Selection::InNamespace { namespace, .. } => {
                vec![Slot::Namespace(namespace.clone())]
            }
            _ => vec![Slot::Wide],
        }
    }
}

/// The resource type of a rule: `(apiVersion, resource)`.
type TypeKey = (String, String);

/// A related type in use: its cache, watched for as long as this controller runs.
struct RelatedType {
    resource: ApiResource,
    namespaced: bool,
    cache: Arc<Cache>,
    _subscription: Subscription,
}

struct Answer {
    generation: Option<i64>,
    at: Instant,
    rules: Vec<RelatedResourceRule>,
}

struct State<K> {
    /// Customize answers by parent UID.
    answers: HashMap<String, Answer>,
    types: HashMap<TypeKey, Arc<RelatedType>>,
    /// Per type and slot, the parents filed there and their selections.
    index: HashMap<(TypeKey, Slot), HashMap<K, Vec<Selection>>>,
    /// What each parent is filed under, to refile it.
    filed: HashMap<K, Vec<(TypeKey, Slot)>>,
    /// Parents with a namespace selector: a namespace's labels changing concerns them.
    namespace_selecting: HashSet<K>,
    namespaces: Option<(Arc<Cache>, Subscription)>,
}

/// The related objects of one hosted controller's parents.
pub(crate) struct Related<K> {
    ctx: Arc<EngineContext>,
    hook: Option<HookEndpoint>,
    controller_json: Value,
    queue: WorkQueue<K>,
    state: Mutex<State<K>>,
    this: Weak<Related<K>>,
}

/// A sync's related objects of one type.
pub(crate) struct RelatedGroup {
    /// `Kind.apiVersion`, the key of object maps.
    pub group: String,
    /// The type.
    pub resource: ApiResource,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// The objects selected.
    pub objects: Vec<Arc<DynamicObject>>,
}

/// A sync's related objects, by type.
pub(crate) type RelatedObjects = Vec<RelatedGroup>;

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Related<K> {
    /// Related objects for a controller with customize hook `hook` (none: `related` is
    /// always empty), queueing parents into `queue` when their related objects change.
    pub(crate) fn new(ctx: Arc<EngineContext>, hook: Option<HookEndpoint>, controller_json: Value, queue: WorkQueue<K>) -> Arc<Related<K>> {
        Arc::new_cyclic(|this| Related {
            ctx,
            hook,
            controller_json,
            queue,
            state: Mutex::new(State {
                answers: HashMap::new(),
                types: HashMap::new(),
                index: HashMap::new(),
                filed: HashMap::new(),
                namespace_selecting: HashSet::new(),
                namespaces: None,
            }),
            this: this.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets the parent under `key` (it is gone): its objects no longer concern anyone.
    pub(crate) fn forget(&self, key: &K) {
        let mut state = self.lock();
        unfile(&mut state, key);
    }

    /// The related objects of `parent` (queued as `key`): calls the customize hook unless its answer for this generation is cached,
    /// validates the rules, files them in the index and selects the objects.
    pub(crate) async fn gather(&self, key: &K, parent: &DynamicObject) -> Result<RelatedObjects, SyncError> {
        let Some(hook) = &self.hook else { return Ok(Vec::new()) };
        let rules = self.rules(hook, parent).await?;
        let invalid = |source| SyncError::invalid_response("customize", source);
        let parent_namespace = parent.namespace();
        let mut selections = Vec::with_capacity(rules.len());
        for rule in &rules {
            let related_type = self.related_type(rule).await.map_err(invalid)?;
            let selection = Selection::of(rule, related_type.namespaced, parent_namespace.as_deref(), hook.version).map_err(invalid)?;
            if let Some(watched) = self.ctx.caches.namespaces() {
                selection.watched_within(rule, watched).map_err(invalid)?;
            }
            if !synced(&related_type.cache).await {
                return Err(SyncError::RelatedNotReadable { resource: rule.resource.clone(), api_version: rule.api_version.clone() });
            }
            selections.push((rule, related_type, selection));
        }
        let namespaces = if selections.iter().any(|(_, _, selection)| matches!(selection, Selection::InNamespaces { .. })) {
            Some(self.namespaces().await)
        } else {
            None
        };
        {
            let mut state = self.lock();
            unfile(&mut state, key);
            let mut filed = Vec::new();
            for (rule, _, selection) in &selections {
                let type_key = (rule.api_version.clone(), rule.resource.clone());
                for slot in Slot::of(selection) {
                    state
                        .index
                        .entry((type_key.clone(), slot.clone()))
                        .or_default()
                        .entry(key.clone())
                        .or_default()
                        .push(selection.clone());
                    filed.push((type_key.clone(), slot));
                }
                if matches!(selection, Selection::InNamespaces { .. }) {
                    state.namespace_selecting.insert(key.clone());
                }
            }
            state.filed.insert(key.clone(), filed);
        }
        let mut groups: BTreeMap<String, (&RelatedType, BTreeMap<ObjectKey, Arc<DynamicObject>>)> = BTreeMap::new();
        for (rule, related_type, selection) in &selections {
            let group =
                groups.entry(group_key(&related_type.resource.kind, &rule.api_version)).or_insert_with(|| (related_type, BTreeMap::new()));
            for object in selection.select(&related_type.cache, namespaces.as_deref()) {
                group.1.insert(ObjectKey::of(&object), object);
            }
        }
        Ok(groups
            .into_iter()
            .map(|(group, (related_type, objects))| RelatedGroup {
                group,
                resource: related_type.resource.clone(),
                namespaced: related_type.namespaced,
                objects: objects.into_values().collect(),
            })
            .collect())
    }

    /// The parent's rules: the cached answer for its generation, or the customize hook's.
    async fn rules(&self, hook: &HookEndpoint, parent: &DynamicObject) -> Result<Vec<RelatedResourceRule>, SyncError> {
        let uid = parent.uid().unwrap_or_default();
        let generation = parent.metadata.generation;
        if let Some(answer) =
            self.lock().answers.get(&uid).filter(|answer| answer.generation == generation && answer.at.elapsed() < ANSWER_TTL)
        {
            return Ok(answer.rules.clone());
        }
        let request = CustomizeRequest { controller: &self.controller_json, parent };
        let response: CustomizeResponse = self.ctx.hooks.call(hook, hooks::encode(&request), parent).await.map_err(SyncError::from_hook)?;
        let rules = response.related_resources.unwrap_or_default();
        let mut state = self.lock();
        state.answers.retain(|_, answer| answer.at.elapsed() < ANSWER_TTL);
        state.answers.insert(uid, Answer { generation, at: Instant::now(), rules: rules.clone() });
        Ok(rules)
    }

    /// The type a rule names, watched from its first use on.
    async fn related_type(&self, rule: &RelatedResourceRule) -> Result<Arc<RelatedType>, InvalidResponse> {
        let type_key = (rule.api_version.clone(), rule.resource.clone());
        if let Some(related_type) = self.lock().types.get(&type_key) {
            return Ok(related_type.clone());
        }
        let resolved = self
            .ctx
            .discovery
            .resolve(&rule.api_version, &rule.resource)
            .await
            .map_err(|error| InvalidResponse::RelatedRule { rule: describe(rule), problem: RuleProblem::Unknown(error) })?;
        if let (Some(watched), false) = (self.ctx.caches.namespaces(), resolved.namespaced) {
            let what = format!("{} is cluster-scoped", rule.resource);
            let problem = RuleProblem::NotWatched { what, watched: watched.join(",") };
            return Err(InvalidResponse::RelatedRule { rule: describe(rule), problem });
        }
        let cache = self.ctx.caches.cache(&resolved.resource);
        let this = self.this.clone();
        let watched = type_key.clone();
        let subscription = cache.subscribe(Arc::new(move |event| {
            if let Some(related) = this.upgrade() {
                related.on_related_event(&watched, event);
            }
        }));
        let related_type =
            Arc::new(RelatedType { resource: resolved.resource, namespaced: resolved.namespaced, cache, _subscription: subscription });
        Ok(self.lock().types.entry(type_key).or_insert(related_type).clone())
    }

    /// The Namespace cache, watched from the first namespace selector on.
    async fn namespaces(&self) -> Arc<Cache> {
        if let Some((cache, _)) = &self.lock().namespaces {
            return cache.clone();
        }
        let cache = self.ctx.caches.cache(&ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()));
        let this = self.this.clone();
        let subscription = cache.subscribe(Arc::new(move |event| {
            let labels_changed = match event {
                CacheEvent::Applied { old: Some(old), new } => old.metadata.labels != new.metadata.labels,
                _ => true,
            };
            if let Some(related) = this.upgrade().filter(|_| labels_changed) {
                let selecting: Vec<K> = related.lock().namespace_selecting.iter().cloned().collect();
                for key in selecting {
                    related.queue.add(key);
                }
            }
        }));
        cache.wait_synced().await;
        self.lock().namespaces.get_or_insert((cache, subscription)).0.clone()
    }

    /// A related object changed: queue the parents whose rules select it (before or after).
    fn on_related_event(&self, type_key: &TypeKey, event: &CacheEvent<'_>) {
        let (old, new) = match event {
            CacheEvent::Applied { old, new } => (*old, Some(*new)),
            CacheEvent::Deleted(object) => (Some(*object), None),
        };
        let state = self.lock();
        let namespaces = state.namespaces.as_ref().map(|(cache, _)| cache.clone());
        let mut concerned = HashSet::new();
        for object in old.into_iter().chain(new) {
            let namespace = object.namespace().unwrap_or_default();
            let name = object.name_any();
            let slots = [Slot::Name(namespace.clone(), name.clone()), Slot::Name("*".into(), name), Slot::Namespace(namespace), Slot::Wide];
            for slot in slots {
                let Some(parents) = state.index.get(&(type_key.clone(), slot)) else { continue };
                for (parent, selections) in parents {
                    if selections.iter().any(|selection| selection.selects(object, namespaces.as_deref())) {
                        concerned.insert(parent.clone());
                    }
                }
            }
        }
        drop(state);
        for parent in concerned {
            self.queue.add(parent);
        }
    }
}

/// Whether `cache` has completed its first list.
async fn synced(cache: &Cache) -> bool {
    tokio::time::timeout(FIRST_SYNC, cache.wait_synced()).await.is_ok()
}

fn unfile<K: Eq + Hash>(state: &mut State<K>, key: &K) {
    for slot in state.filed.remove(key).unwrap_or_default() {
        if let Some(parents) = state.index.get_mut(&slot) {
            parents.remove(key);
            if parents.is_empty() {
                state.index.remove(&slot);
            }
        }
    }
    state.namespace_selecting.remove(key);
}

/// `related` laid out for a hook of `version`, for a parent in `parent_namespace`.
pub(crate) fn related_maps<'a>(related: &'a RelatedObjects, version: HookVersion, parent_namespace: Option<&str>) -> ObjectMaps<'a> {
    let mut maps = ObjectMaps::new();
    for RelatedGroup { group, objects, .. } in related {
        hooks::insert_objects(&mut maps, group, version, parent_namespace, false, objects.iter().map(Arc::as_ref));
    }
    maps
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(value: Value) -> RelatedResourceRule {
        let mut full = json!({ "apiVersion": "v1", "resource": "configmaps" });
        full.as_object_mut().unwrap().extend(value.as_object().unwrap().clone());
        serde_json::from_value(full).unwrap()
    }

    #[test]
    fn selection_modes() {
        let of = |value, version| Selection::of(&rule(value), true, Some("ns"), version);
        let labels: LabelSelector = serde_json::from_value(json!({ "matchLabels": { "a": "b" } })).unwrap();
        assert_eq!(of(json!({ "names": ["x"] }), HookVersion::V2).unwrap(), Selection::Names { namespace: None, names: vec!["x".into()] });
        assert_eq!(
            of(json!({ "names": ["x"] }), HookVersion::V1).unwrap(),
            Selection::Names { namespace: Some("ns".into()), names: vec!["x".into()] }
        );
        assert_eq!(
            of(json!({ "labelSelector": { "matchLabels": { "a": "b" } }, "namespace": "other" }), HookVersion::V2).unwrap(),
            Selection::InNamespace { namespace: "other".into(), selector: labels.clone() }
        );
        assert_eq!(
            of(json!({ "labelSelector": { "matchLabels": { "a": "b" } } }), HookVersion::V1).unwrap(),
            Selection::InNamespace { namespace: "ns".into(), selector: labels.clone() },
            "v1 with a namespaced parent: its namespace only"
        );
        assert_eq!(of(json!({}), HookVersion::V2).unwrap(), Selection::Everywhere { selector: LabelSelector::default() });
        assert!(matches!(of(json!({ "namespaceSelector": {} }), HookVersion::V2).unwrap(), Selection::InNamespaces { .. }));
        assert_eq!(
            Selection::of(&rule(json!({ "names": ["x"] })), false, Some("ns"), HookVersion::V2).unwrap(),
            Selection::Names { namespace: None, names: vec!["x".into()] },
            "cluster-scoped objects by name"
        );
    }

    #[test]
    fn invalid_combinations() {
        let error = |value, version| Selection::of(&rule(value), true, Some("ns"), version).unwrap_err().to_string();
        assert!(error(json!({ "names": ["x"], "labelSelector": {} }), HookVersion::V2).contains("names cannot be combined"));
        assert!(error(json!({ "namespace": "a", "namespaceSelector": {} }), HookVersion::V2).contains("cannot be combined"));
        assert!(error(json!({ "namespace": "other" }), HookVersion::V1).contains("use version v2"));
        assert!(error(json!({ "namespaceSelector": {} }), HookVersion::V1).contains("needs a v2 customize hook"));
        let bad = json!({ "labelSelector": { "matchExpressions": [{ "key": "a", "operator": "Has" }] } });
        assert!(error(bad, HookVersion::V2).contains("unknown label selector operator"));
        let cluster = Selection::of(&rule(json!({ "namespace": "a" })), false, None, HookVersion::V2).unwrap_err().to_string();
        assert!(cluster.contains("cluster-scoped"));
    }

    #[test]
    fn slots_file_selections_by_what_they_name() {
        let by_name = Selection::Names { namespace: Some("a".into()), names: vec!["x".into(), "y".into()] };
        assert_eq!(Slot::of(&by_name), vec![Slot::Name("a".into(), "x".into()), Slot::Name("a".into(), "y".into())]);
        let in_namespace = Selection::InNamespace { namespace: "a".into(), selector: LabelSelector::default() };
        assert_eq!(Slot::of(&in_namespace), vec![Slot::Namespace("a".into())]);
        assert_eq!(Slot::of(&Selection::Everywhere { selector: LabelSelector::default() }), vec![Slot::Wide]);
    }
}
