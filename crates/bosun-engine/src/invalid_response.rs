//! What can be wrong with a hook's response. The engine validates a whole response before it
//! writes anything, so an invalid response changes nothing; the first problem found is
//! reported on the parent (or target) as a `SyncError` event, in words that point into the
//! response (`children[2] (ConfigMap settings) …`).

use serde_json::Value;

use crate::discovery::DiscoveryError;
use crate::limits::{MAX_HOOK_EVENTS, MAX_STATUS_BYTES};
use crate::selector::SelectorError;

/// Why a hook's response is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InvalidResponse {
    /// A declared child or attachment, named by its place in the response.
    #[error("{child} {problem}")]
    Child {
        /// `children[2]`, `children[2] (ConfigMap)` or `children[2] (ConfigMap settings)`.
        child: String,
        /// What is wrong with it.
        problem: ChildProblem,
    },
    /// The parent's selector, which children must match, cannot be evaluated.
    #[error("the parent's selector: {0}")]
    Selector(SelectorError),
    /// More events than one response may record.
    #[error("events has {count} entries; at most {MAX_HOOK_EVENTS} are recorded per response")]
    TooManyEvents {
        /// How many there were.
        count: usize,
    },
    /// An event is not an object.
    #[error("events[{index}] is {value}, not an object with type, reason and message")]
    EventNotAnObject {
        /// Its index.
        index: usize,
        /// What it was.
        value: Value,
    },
    /// An event's type is neither `Normal` nor `Warning`.
    #[error("events[{index}].type is {value:?}; it must be Normal or Warning")]
    EventType {
        /// Its index.
        index: usize,
        /// The type given.
        value: String,
    },
    /// An event's reason is empty, too long or has spaces.
    #[error("events[{index}].reason must be 1 to 128 characters without spaces (e.g. BackupCompleted), not {value:?}")]
    EventReason {
        /// Its index.
        index: usize,
        /// The reason given.
        value: String,
    },
    /// An event has no message.
    #[error("events[{index}] has no message")]
    EventMessage {
        /// Its index.
        index: usize,
    },
    /// A `labels` or `annotations` value is neither a string nor null.
    #[error("{field}.{key} is {value}; values must be strings, or null to remove the key")]
    MapValue {
        /// `labels` or `annotations`.
        field: &'static str,
        /// The key.
        key: String,
        /// The value given.
        value: Value,
    },
    /// `labels` or `annotations` is not an object.
    #[error("{field} must be an object of strings (or nulls), not {value}")]
    NotAMap {
        /// `labels` or `annotations`.
        field: &'static str,
        /// What it was.
        value: Value,
    },
    /// `status` is not an object.
    #[error("status must be an object (or null), not {value}")]
    StatusNotAnObject {
        /// What it was.
        value: Value,
    },
    /// `status` is larger than the API server would store.
    #[error("status is {size} bytes encoded; at most {MAX_STATUS_BYTES} are accepted (keep large data in children)")]
    StatusTooLarge {
        /// Its encoded size.
        size: usize,
    },
    /// A customize hook's related-resource rule, named as `relatedResources rule for <resource> in <apiVersion>`.
    #[error("{rule}: {problem}")]
    RelatedRule {
        /// Which rule.
        rule: String,
        /// What is wrong with it.
        problem: RuleProblem,
    },
}

/// What is wrong with one declared child or attachment.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChildProblem {
    /// Not a JSON object.
    #[error("is {0}, not an object")]
    NotAnObject(Value),
    /// No `apiVersion`.
    #[error("has no apiVersion")]
    NoApiVersion,
    /// No `kind`.
    #[error("has no kind")]
    NoKind,
    /// No `metadata.name`.
    #[error("has no metadata.name")]
    NoName,
    /// A type the controller does not declare.
    #[error("is a {kind} in {api_version}, which is not one of the {controller}'s {declared_in}")]
    Undeclared {
        /// Its kind.
        kind: String,
        /// Its apiVersion.
        api_version: String,
        /// `CompositeController` or `DecoratorController`.
        controller: &'static str,
        /// `childResources` or `attachments`.
        declared_in: &'static str,
    },
    /// Cluster-scoped, under a namespaced parent: no owner reference could tie them.
    #[error(
        "is cluster-scoped, but its parent is in namespace {parent_namespace:?}: an owner reference cannot tie a \
         cluster-scoped object to a namespaced parent, so it could never be updated or deleted (declare cluster-scoped \
         {field} from a cluster-scoped parent, or list the type in the controller's annotation \
         bosun.dev/children-anywhere)"
    )]
    ClusterScopedUnderNamespacedParent {
        /// The parent's namespace.
        parent_namespace: String,
        /// `children` or `attachments`.
        field: &'static str,
    },
    /// Cluster-scoped, with a namespace.
    #[error("is cluster-scoped, but has namespace {0:?}")]
    ClusterScopedWithNamespace(String),
    /// Namespaced, without a namespace, under a cluster-scoped parent.
    #[error("needs metadata.namespace: its parent is cluster-scoped")]
    NeedsNamespace,
    /// In another namespace than its namespaced parent.
    #[error(
        "is in namespace {namespace:?}, but a parent in namespace {parent_namespace:?} can only own {field} in its own namespace \
         (unless the controller's annotation bosun.dev/children-anywhere lists the type)"
    )]
    OtherNamespace {
        /// Its namespace.
        namespace: String,
        /// The parent's namespace.
        parent_namespace: String,
        /// `children` or `attachments`.
        field: &'static str,
    },
    /// In a namespace the engine does not watch (`bosun run --namespace`).
    #[error("is in namespace {namespace:?}, and this engine watches only the namespaces {watched} (bosun run --namespace)")]
    NotWatched {
        /// Its namespace.
        namespace: String,
        /// The namespaces watched, comma-separated.
        watched: String,
    },
    /// Sets the label that ties children to their parent, which is bosun's to set.
    #[error(
        "sets the label bosun.dev/controller-uid to another UID than its parent's: bosun sets it, to tie children that may live anywhere"
    )]
    ControllerLabel,
    /// Does not decode as a Kubernetes object.
    #[error("is not a valid object: {0}")]
    NotValid(String),
    /// `metadata.labels` has values that are not strings.
    #[error("has metadata.labels that do not map strings to strings")]
    LabelsNotStrings,
    /// Its labels do not match the parent's selector.
    #[error("has labels {labels} that do not match the parent's selector {selector}; a child must carry the selector's labels")]
    OutsideSelector {
        /// Its labels.
        labels: String,
        /// The selector, as JSON.
        selector: String,
    },
    /// Declared twice.
    #[error("appears more than once")]
    Duplicate,
    /// An owner reference with `controller: true` to another object than the parent.
    #[error(
        "has an owner reference with controller: true to {0}; the parent is the controller of its children (set \
         controller: false, or leave the reference out)"
    )]
    OtherController(String),
}

/// What is wrong with a customize hook's related-resource rule.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuleProblem {
    /// `names` together with a selector.
    #[error("names cannot be combined with labelSelector or namespaceSelector")]
    NamesAndSelector,
    /// `namespace` together with `namespaceSelector`.
    #[error("namespace and namespaceSelector cannot be combined")]
    NamespaceAndSelector,
    /// A namespace for a cluster-scoped resource.
    #[error("{0} is cluster-scoped, so namespace and namespaceSelector do not apply")]
    ClusterScoped(String),
    /// A selector that cannot be evaluated.
    #[error("{0}")]
    Selector(SelectorError),
    /// A v1 hook of a namespaced parent reaching into another namespace.
    #[error("a v1 customize hook of a parent in namespace {own:?} cannot select namespace {namespace:?}; use version v2")]
    OtherNamespace {
        /// The parent's namespace.
        own: String,
        /// The namespace asked for.
        namespace: String,
    },
    /// A v1 hook of a namespaced parent selecting namespaces.
    #[error("namespaceSelector needs a v2 customize hook when the parent is namespaced")]
    NamespaceSelectorNeedsV2,
    /// The resource is not served.
    #[error("{0}")]
    Unknown(DiscoveryError),
    /// Beyond the namespaces the engine watches (`bosun run --namespace`).
    #[error("{what}, and this engine watches only the namespaces {watched} (bosun run --namespace)")]
    NotWatched {
        /// What the rule asks for that the engine cannot see.
        what: String,
        /// The namespaces watched, comma-separated.
        watched: String,
    },
}
