//! Consent bound to the namespace that was meant. A destination namespace accepts copies from
//! the source namespaces its annotation `configmapsync.bosun.dev/accept-from` names — but a
//! name can be taken over: where namespaces are self-service, whoever creates `team-a` after
//! it was deleted would inherit every consent given to it. So the first time copies from a
//! source namespace are written into a destination, the operator records the source
//! namespace's UID there, in the ConfigMap `configmapsync-consent` (data: source namespace →
//! UID), and from then on refuses a namespace of that name with another UID, saying why.
//!
//! Withdrawing consent (the annotation no longer names the source) drops the entry, so naming
//! it again binds the namespace of that name at that time; deleting the record resets every
//! binding of the destination. `*` accepts any namespace and binds none.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube::api::DynamicObject;

/// The ConfigMap, in each destination namespace, that records which namespace each accepted
/// source name stood for.
pub const CONSENT_RECORD: &str = "configmapsync-consent";

/// The largest record whose content is read: a record is a few dozen bytes per source.
pub(super) const RECORD_LIMIT: usize = 64 * 1024;

/// How a destination's consent stands toward a source namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Binding {
    /// The destination accepts any namespace (`*`): nothing to bind.
    Any,
    /// The record names the source namespace with its UID.
    Bound,
    /// Nothing is recorded yet: the first write records the source namespace's UID.
    Unbound,
    /// The record names another namespace of the same name (`recorded` is its UID).
    Recreated {
        /// The UID the record holds.
        recorded: String,
    },
}

/// Whether `namespace`'s consent annotation names `source` by name (not only through `*`).
pub(super) fn names(namespace: &DynamicObject, source: &str) -> bool {
    accepted(namespace).any(|entry| entry == source)
}

/// The entries of `namespace`'s consent annotation.
pub(super) fn accepted(namespace: &DynamicObject) -> impl Iterator<Item = &str> {
    namespace.annotations().get(super::ACCEPT_FROM_ANNOTATION).into_iter().flat_map(|accepted| accepted.split(',').map(str::trim))
}

/// How the consent of a destination stands toward the source namespace `source` with UID
/// `uid`, given its record's entries (`None`: no record, or none readable).
pub(super) fn binding(destination: &DynamicObject, source: &str, uid: &str, record: Option<&BTreeMap<String, String>>) -> Binding {
    if !names(destination, source) {
        return Binding::Any;
    }
    match record.and_then(|entries| entries.get(source)) {
        None => Binding::Unbound,
        Some(recorded) if recorded == uid => Binding::Bound,
        Some(recorded) => Binding::Recreated { recorded: recorded.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn namespace(accepted: &str) -> DynamicObject {
        serde_json::from_value(
            json!({ "metadata": { "name": "d", "annotations": { crate::configmapsync::ACCEPT_FROM_ANNOTATION: accepted } } }),
        )
        .unwrap()
    }

    #[test]
    fn a_name_binds_to_the_uid_first_recorded_and_a_star_binds_nothing() {
        let record: BTreeMap<String, String> = [("team-a".to_owned(), "u1".to_owned())].into();
        assert_eq!(binding(&namespace("team-a"), "team-a", "u1", Some(&record)), Binding::Bound);
        assert_eq!(binding(&namespace("team-b, team-a"), "team-a", "u2", Some(&record)), Binding::Recreated { recorded: "u1".into() });
        assert_eq!(binding(&namespace("team-a"), "team-a", "u1", None), Binding::Unbound);
        assert_eq!(binding(&namespace("*"), "team-a", "u2", Some(&record)), Binding::Any);
        assert!(names(&namespace("team-b, team-a"), "team-a") && !names(&namespace("*"), "team-a"));
    }
}
