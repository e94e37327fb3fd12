//! The client-side three-way merge of `dynamic-apply`, like `kubectl apply` without type
//! knowledge, with Metacontroller's semantics: what the hook applied last time
//! (`metacontroller.k8s.io/last-applied-configuration`) tells which fields it owns, so fields
//! it stopped returning are removed while fields others set are kept.
//!
//! Objects merge key by key. Lists are replaced, except "list maps": lists whose items are all
//! objects sharing one conventional key (`containerPort`, `port`, `mountPath`, `name`, `uid`,
//! `ip`, `path`, in that order of precedence), which merge item by item, keeping the observed
//! order and appending new items.

use serde_json::{Map, Value};

/// The annotation holding the hook's last desired state of a child.
pub(crate) const LAST_APPLIED_ANNOTATION: &str = "metacontroller.k8s.io/last-applied-configuration";

/// Keys that make a list of objects a list map, by precedence.
const LIST_MAP_KEYS: [&str; 7] = ["containerPort", "port", "mountPath", "name", "uid", "ip", "path"];

/// Where the desired and last-applied states disagree in type with the observed state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{side} value at {path} is a {found}, but the observed value is a {expected}")]
pub(crate) struct MergeError {
    /// `desired` or `last-applied`.
    pub side: &'static str,
    /// The field path, such as `.spec.ports`.
    pub path: String,
    /// What it is.
    pub found: &'static str,
    /// What it should be.
    pub expected: &'static str,
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Where a merge is in the object; written out (`.spec.ports`) only for an error.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(parent, key) => write!(f, "{parent}.{key}"),
        }
    }
}

/// Applies the change from `last_applied` to `desired` onto `observed`, returning the result.
pub(crate) fn merge(observed: &Value, last_applied: &Value, desired: &Value) -> Result<Value, MergeError> {
    merge_value(&Path::Root, observed.clone(), last_applied, desired)
}

/// Whether merging `desired` onto `observed` would leave `observed` as it is, when the
/// last-applied state is `desired` or has fewer fields of objects (so the merge removes
/// nothing): every desired field is there with its desired value, list maps matched item by
/// item, other lists equal. Cheaper than building the merge, for the common case of a child
/// already as desired; `false` when unsure (a merge decides), never wrongly `true`.
pub(crate) fn contains(observed: &Value, desired: &Value) -> bool {
    match (observed, desired) {
        // A desired null keeps or replaces depending on the observed type: let the merge decide.
        (_, Value::Null) => false,
        (Value::Object(observed), Value::Object(desired)) => {
            desired.iter().all(|(key, wanted)| observed.get(key).is_some_and(|current| contains(current, wanted)))
        }
        (Value::Array(observed), Value::Array(desired)) => match list_map_key(&[observed, desired]) {
            None => observed == desired,
            Some(merge_key) => {
                let mut items = std::collections::HashMap::with_capacity(observed.len());
                for item in observed {
                    // Items sharing a key collapse into one in a merge.
                    if items.insert(item_key(item, merge_key), item).is_some() {
                        return false;
                    }
                }
                desired.iter().all(|item| items.get(&item_key(item, merge_key)).is_some_and(|current| contains(current, item)))
            }
        },
        // A scalar desired over an object or list is a type mismatch: the merge reports it.
        (Value::Object(_) | Value::Array(_), _) => false,
        (observed, desired) => observed == desired,
    }
}

fn merge_value(path: &Path<'_>, destination: Value, last_applied: &Value, desired: &Value) -> Result<Value, MergeError> {
    let check = |side: &'static str, value: &Value, expected: &'static str| -> Result<(), MergeError> {
        if value.is_null() || type_name(value) == expected {
            Ok(())
        } else {
            Err(MergeError { side, path: path.to_string(), found: type_name(value), expected })
        }
    };
    match destination {
        Value::Object(destination) => {
            check("last-applied", last_applied, "object")?;
            check("desired", desired, "object")?;
            let empty = Map::new();
            let last = last_applied.as_object().unwrap_or(&empty);
            let wanted = desired.as_object().unwrap_or(&empty);
            merge_object(path, destination, last, wanted).map(Value::Object)
        }
        Value::Array(destination) => {
            check("last-applied", last_applied, "list")?;
            check("desired", desired, "list")?;
            let empty = Vec::new();
            let last = last_applied.as_array().unwrap_or(&empty);
            let wanted = desired.as_array().unwrap_or(&empty);
            merge_list(path, destination, last, wanted)
        }
        // A scalar, null or absent observed value: the desired value wins outright.
        _ => Ok(desired.clone()),
    }
}

fn merge_object(
    path: &Path<'_>,
    mut destination: Map<String, Value>,
    last_applied: &Map<String, Value>,
    desired: &Map<String, Value>,
) -> Result<Map<String, Value>, MergeError> {
    for key in last_applied.keys() {
        if !desired.contains_key(key) {
            destination.remove(key);
        }
    }
    for (key, wanted) in desired {
        let current = destination.remove(key).unwrap_or(Value::Null);
        let last = last_applied.get(key).unwrap_or(&Value::Null);
        let merged = merge_value(&Path::Field(path, key), current, last, wanted)?;
        destination.insert(key.clone(), merged);
    }
    Ok(destination)
}

fn merge_list(path: &Path<'_>, destination: Vec<Value>, last_applied: &[Value], desired: &[Value]) -> Result<Value, MergeError> {
    let Some(merge_key) = list_map_key(&[&destination, last_applied, desired]) else {
        return Ok(Value::Array(desired.to_vec()));
    };
    let item_key = |item: &Value| item_key(item, merge_key);
    let as_map = |items: &[Value]| -> Map<String, Value> { items.iter().map(|item| (item_key(item), item.clone())).collect() };
    let merged = merge_object(path, as_map(&destination), &as_map(last_applied), &as_map(desired))?;

    // Keep the observed order, then append what is new, in desired order.
    let mut list = Vec::with_capacity(merged.len());
    let mut placed = std::collections::HashSet::new();
    for item in destination.iter().chain(desired) {
        let key = item_key(item);
        if let Some(value) = merged.get(&key)
            && placed.insert(key)
        {
            list.push(value.clone());
        }
    }
    Ok(Value::Array(list))
}

/// What identifies `item` in a list map keyed by `merge_key`.
fn item_key(item: &Value, merge_key: &str) -> String {
    match &item[merge_key] {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The list-map key shared by every item of every list, if all items are objects.
fn list_map_key(lists: &[&[Value]]) -> Option<&'static str> {
    let mut common: Option<Vec<&str>> = None;
    for item in lists.iter().flat_map(|list| list.iter()) {
        let object = item.as_object()?;
        let keys = common.get_or_insert_with(|| LIST_MAP_KEYS.to_vec());
        keys.retain(|key| object.contains_key(*key));
    }
    common?.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn fields_dropped_from_desired_are_removed_and_others_fields_kept() {
        let observed = json!({ "data": { "a": "1", "b": "2", "theirs": "x" } });
        let last = json!({ "data": { "a": "1", "b": "2" } });
        let desired = json!({ "data": { "a": "9" } });
        assert_eq!(merge(&observed, &last, &desired).unwrap(), json!({ "data": { "a": "9", "theirs": "x" } }));
    }

    #[test]
    fn list_maps_merge_by_key_keeping_order() {
        let observed = json!({ "ports": [
            { "port": 80, "name": "http", "nodePort": 30080 },
            { "port": 443, "name": "https" },
            { "port": 9000, "name": "theirs" },
        ]});
        let last = json!({ "ports": [{ "port": 80, "name": "http" }, { "port": 443, "name": "https" }] });
        let desired = json!({ "ports": [{ "port": 8080, "name": "alt" }, { "port": 80, "name": "web" }] });
        let merged = merge(&observed, &last, &desired).unwrap();
        assert!(!contains(&observed, &desired));
        assert!(contains(&merged, &desired), "the merge's result has what was desired");
        assert!(!contains(&json!({ "ports": [{ "port": 80 }, { "port": 80 }] }), &json!({ "ports": [{ "port": 80 }] })), "duplicate keys");
        assert_eq!(
            merged,
            json!({ "ports": [
                { "port": 80, "name": "web", "nodePort": 30080 },
                { "port": 9000, "name": "theirs" },
                { "port": 8080, "name": "alt" },
            ]})
        );
    }

    #[test]
    fn plain_lists_are_replaced() {
        let observed = json!({ "args": ["a", "b"], "items": [{ "x": 1 }] });
        let desired = json!({ "args": ["c"], "items": [{ "x": 2 }] });
        assert_eq!(merge(&observed, &json!({}), &desired).unwrap(), desired);
    }

    #[test]
    fn an_empty_desired_list_replaces() {
        let observed = json!({ "containers": [{ "name": "a" }] });
        let merged = merge(&observed, &json!({ "containers": [{ "name": "a" }] }), &json!({ "containers": [] }));
        assert_eq!(merged.unwrap(), json!({ "containers": [] }));
    }

    #[test]
    fn a_type_mismatch_is_an_error() {
        let error = merge(&json!({ "spec": { "a": 1 } }), &json!({}), &json!({ "spec": [1] })).unwrap_err();
        assert_eq!(error.path, ".spec");
        assert_eq!(error.side, "desired");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..100).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-d]", inner, 0..4).prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[a-e]", json_value(), 0..5).prop_map(|map| Value::Object(map.into_iter().collect()))
    }

    /// A copy of `value` with some scalars (chosen by `seed`) replaced: the same shape, so a
    /// merge with it never meets a type mismatch.
    fn reshape(value: &Value, seed: &mut u64) -> Value {
        match value {
            Value::Object(map) => Value::Object(map.iter().map(|(key, value)| (key.clone(), reshape(value, seed))).collect()),
            Value::Array(items) => Value::Array(items.iter().map(|item| reshape(item, seed)).collect()),
            scalar => {
                *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                if *seed >> 63 == 1 { Value::from(*seed >> 58) } else { scalar.clone() }
            }
        }
    }

    /// A desired object and an observed one of the same shape (scalars changed by others) with
    /// fields of its own.
    fn observed_and_desired() -> impl Strategy<Value = (Value, Value)> {
        (object(), object(), any::<u64>()).prop_map(|(desired, extra, mut seed)| {
            let mut observed = reshape(&desired, &mut seed);
            for (key, value) in extra.as_object().unwrap() {
                observed.as_object_mut().unwrap().entry(key.clone()).or_insert_with(|| value.clone());
            }
            (observed, desired)
        })
    }

    proptest! {
        /// Applying what was already applied to what it produced changes nothing: a steady
        /// state makes no writes.
        #[test]
        fn merging_is_idempotent((observed, desired) in observed_and_desired()) {
            let once = merge(&observed, &desired, &desired).unwrap();
            prop_assert_eq!(merge(&once, &desired, &desired).unwrap(), once);
        }

        /// What `contains` accepts, a merge leaves unchanged — both with the desired state as
        /// the last applied and with a last-applied state lacking a field of an object.
        #[test]
        fn contained_means_unchanged(observed in object(), desired in object(), (same_shape, reshaped) in observed_and_desired()) {
            for (observed, desired) in [(observed, desired), (same_shape.clone(), reshaped.clone()), (merge(&same_shape, &reshaped, &reshaped).unwrap(), reshaped)] {
                if contains(&observed, &desired) {
                    prop_assert_eq!(&merge(&observed, &desired, &desired).unwrap(), &observed);
                    let mut fewer = desired.clone();
                    if let Some(key) = desired.as_object().unwrap().keys().next() {
                        fewer.as_object_mut().unwrap().remove(key);
                    }
                    prop_assert_eq!(&merge(&observed, &fewer, &desired).unwrap(), &observed);
                }
            }
        }

        /// Every top-level field of the desired state is in the result, as desired when the
        /// observed value is not an object or list.
        #[test]
        fn desired_scalars_win((observed, desired) in observed_and_desired()) {
            let merged = merge(&observed, &json!({}), &desired).unwrap();
            for (key, value) in desired.as_object().unwrap() {
                prop_assert!(merged.get(key).is_some());
                if !observed.get(key).is_some_and(|v| v.is_object() || v.is_array()) {
                    prop_assert_eq!(&merged[key], value);
                }
            }
        }

        /// Fields nobody applied survive any merge that does not name them.
        #[test]
        fn fields_of_others_survive(theirs in json_value(), desired in object()) {
            let mut observed = json!({ "theirs": theirs.clone() });
            observed.as_object_mut().unwrap().extend(desired.as_object().unwrap().clone());
            let mut desired = desired;
            desired.as_object_mut().unwrap().remove("theirs");
            let merged = merge(&observed, &desired, &desired).unwrap();
            prop_assert_eq!(&merged["theirs"], &theirs);
        }
    }
}
