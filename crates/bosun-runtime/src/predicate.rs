//! Predicates: which changes of a watched object are worth a reconcile, as
//! controller-runtime's `predicate` package names them. Pass one (or a closure combining
//! several) to [`Controller::for_resource`](crate::Controller::for_resource). A creation
//! (no old object) always passes.

use crate::CacheEvent;

fn changed(event: &CacheEvent<'_>, differs: impl Fn(&kube::api::DynamicObject, &kube::api::DynamicObject) -> bool) -> bool {
    match event {
        CacheEvent::Applied { old: Some(old), new } => differs(old, new),
        CacheEvent::Applied { old: None, .. } | CacheEvent::Deleted(_) => true,
    }
}

/// Every change.
pub fn any(_: &CacheEvent<'_>) -> bool {
    true
}

/// `metadata.generation` changed: the spec changed, not only the status or metadata.
pub fn generation_changed(event: &CacheEvent<'_>) -> bool {
    changed(event, |old, new| old.metadata.generation != new.metadata.generation)
}

/// The labels changed.
pub fn labels_changed(event: &CacheEvent<'_>) -> bool {
    changed(event, |old, new| old.metadata.labels != new.metadata.labels)
}

/// The annotations changed.
pub fn annotations_changed(event: &CacheEvent<'_>) -> bool {
    changed(event, |old, new| old.metadata.annotations != new.metadata.annotations)
}

/// `metadata.resourceVersion` changed: not a resync of an unchanged object.
pub fn resource_version_changed(event: &CacheEvent<'_>) -> bool {
    changed(event, |old, new| old.metadata.resource_version != new.metadata.resource_version)
}

/// The spec, deletion or finalizers changed: what a controller that writes its own status
/// (and adds its own finalizer) must see, without being woken by its status writes.
pub fn spec_or_lifecycle_changed(event: &CacheEvent<'_>) -> bool {
    changed(event, |old, new| {
        old.metadata.generation != new.metadata.generation
            || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
            || old.metadata.finalizers != new.metadata.finalizers
    })
}

/// Only the status changed: same generation, labels and annotations, and not being deleted —
/// the changes Metacontroller's `ignoreStatusChanges` skips. Unlike the others, it is `false`
/// for a creation or deletion, so it reads as "skip this one".
pub fn only_status_changed(event: &CacheEvent<'_>) -> bool {
    match event {
        CacheEvent::Applied { old: Some(old), new } => {
            old.metadata.generation == new.metadata.generation
                && old.metadata.labels == new.metadata.labels
                && old.metadata.annotations == new.metadata.annotations
                && new.metadata.deletion_timestamp.is_none()
        }
        CacheEvent::Applied { old: None, .. } | CacheEvent::Deleted(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::DynamicObject;

    fn object(generation: i64, label: &str) -> std::sync::Arc<DynamicObject> {
        std::sync::Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "x", "generation": generation, "labels": { "a": label } },
            }))
            .unwrap(),
        )
    }

    #[test]
    fn predicates_compare_old_and_new() {
        let (old, new) = (object(1, "x"), object(2, "x"));
        let relabelled = object(1, "y");
        assert!(generation_changed(&CacheEvent::Applied { old: Some(&old), new: &new }));
        assert!(!generation_changed(&CacheEvent::Applied { old: Some(&old), new: &relabelled }));
        assert!(labels_changed(&CacheEvent::Applied { old: Some(&old), new: &relabelled }));
        assert!(!labels_changed(&CacheEvent::Applied { old: Some(&old), new: &new }));
        assert!(generation_changed(&CacheEvent::Applied { old: None, new: &new }), "creations pass");
        assert!(spec_or_lifecycle_changed(&CacheEvent::Applied { old: Some(&old), new: &new }));
        let mut status = (*old).clone();
        status.data = serde_json::json!({ "status": { "ready": true } });
        let status = std::sync::Arc::new(status);
        assert!(only_status_changed(&CacheEvent::Applied { old: Some(&old), new: &status }));
        assert!(!only_status_changed(&CacheEvent::Applied { old: Some(&old), new: &relabelled }));
        assert!(!only_status_changed(&CacheEvent::Applied { old: None, new: &status }), "a creation is more than a status");
    }
}
