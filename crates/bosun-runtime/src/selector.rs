//! Label selectors (`matchLabels` and `matchExpressions`) evaluated over a label map, with
//! Kubernetes' semantics: an absent selector matches nothing where that is the rule's meaning,
//! an empty one matches everything.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Why a selector cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// An operator other than `In`, `NotIn`, `Exists`, `DoesNotExist`.
    #[error("unknown label selector operator {0:?} (expected In, NotIn, Exists or DoesNotExist)")]
    UnknownOperator(String),
    /// `In` or `NotIn` without values, or `Exists`/`DoesNotExist` with values.
    #[error("label selector operator {operator} on key {key:?} {problem}")]
    Values {
        /// The operator.
        operator: String,
        /// The key.
        key: String,
        /// What is wrong with its values.
        problem: &'static str,
    },
    /// Text that is not a term of the label selector syntax.
    #[error("{0:?} is not a label selector term (key=value, key!=value, key, !key, key in (a,b), key notin (a,b))")]
    Term(String),
}

/// Whether `labels` satisfy `selector`. An empty selector matches everything.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> Result<bool, SelectorError> {
    if let Some(match_labels) = &selector.match_labels
        && match_labels.iter().any(|(key, value)| labels.get(key) != Some(value))
    {
        return Ok(false);
    }
    for requirement in selector.match_expressions.iter().flatten() {
        let values = requirement.values.as_deref().unwrap_or_default();
        let value = labels.get(&requirement.key);
        let values_problem =
            |problem| SelectorError::Values { operator: requirement.operator.clone(), key: requirement.key.clone(), problem };
        let satisfied = match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => return Err(values_problem("needs values")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(values_problem("takes no values")),
            "In" => value.is_some_and(|value| values.contains(value)),
            "NotIn" => value.is_none_or(|value| !values.contains(value)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(SelectorError::UnknownOperator(other.to_owned())),
        };
        if !satisfied {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Parses Kubernetes' label selector syntax, as `kubectl -l` and `--target-label-selector`
/// take it: comma-separated `key=value`, `key==value`, `key!=value`, `key`, `!key`,
/// `key in (a,b)` and `key notin (a,b)`.
pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    let mut selector = LabelSelector::default();
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    let requirement = |key: &str, operator: &str, values: Option<Vec<String>>| LabelSelectorRequirement {
        key: key.trim().to_owned(),
        operator: operator.to_owned(),
        values,
    };
    for term in terms.into_iter().map(str::trim).filter(|term| !term.is_empty()) {
        let set = |keyword: &str| {
            let (key, rest) = term.split_once(keyword)?;
            let values = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            Some((key.trim().to_owned(), values.split(',').map(|value| value.trim().to_owned()).collect::<Vec<_>>()))
        };
        let expression = if let Some((key, values)) = set(" notin ") {
            requirement(&key, "NotIn", Some(values))
        } else if let Some((key, values)) = set(" in ") {
            requirement(&key, "In", Some(values))
        } else if let Some((key, value)) = term.split_once("!=") {
            requirement(key, "NotIn", Some(vec![value.trim().to_owned()]))
        } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
            selector.match_labels.get_or_insert_default().insert(key.trim().to_owned(), value.trim().to_owned());
            continue;
        } else if let Some(key) = term.strip_prefix('!') {
            requirement(key, "DoesNotExist", None)
        } else if term.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
            requirement(term, "Exists", None)
        } else {
            return Err(SelectorError::Term(term.to_owned()));
        };
        selector.match_expressions.get_or_insert_default().push(expression);
    }
    Ok(selector)
}

/// The selector in Kubernetes' label selector syntax, as list and watch requests take it
/// (`labelSelector=`); [`parse`] reads it back.
pub fn to_query(selector: &LabelSelector) -> Result<String, SelectorError> {
    let mut terms: Vec<String> = selector.match_labels.iter().flatten().map(|(key, value)| format!("{key}={value}")).collect();
    for requirement in selector.match_expressions.iter().flatten() {
        let values = requirement.values.as_deref().unwrap_or_default();
        let problem = |problem| SelectorError::Values { operator: requirement.operator.clone(), key: requirement.key.clone(), problem };
        let key = &requirement.key;
        terms.push(match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => return Err(problem("needs values")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(problem("takes no values")),
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => return Err(SelectorError::UnknownOperator(other.to_owned())),
        });
    }
    Ok(terms.join(","))
}

/// Whether the selector has at least one term (an empty selector selects everything).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty) && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn selector(value: serde_json::Value) -> LabelSelector {
        serde_json::from_value(value).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn operators() {
        let app = labels(&[("app", "web"), ("tier", "front")]);
        let cases = [
            (json!({ "matchLabels": { "app": "web" } }), true),
            (json!({ "matchLabels": { "app": "db" } }), false),
            (json!({ "matchExpressions": [{ "key": "app", "operator": "In", "values": ["web", "db"] }] }), true),
            (json!({ "matchExpressions": [{ "key": "app", "operator": "NotIn", "values": ["web"] }] }), false),
            (json!({ "matchExpressions": [{ "key": "missing", "operator": "NotIn", "values": ["x"] }] }), true),
            (json!({ "matchExpressions": [{ "key": "tier", "operator": "Exists" }] }), true),
            (json!({ "matchExpressions": [{ "key": "tier", "operator": "DoesNotExist" }] }), false),
            (json!({}), true),
        ];
        for (value, expected) in cases {
            assert_eq!(matches(&selector(value.clone()), &app).unwrap(), expected, "{value}");
        }
    }

    #[test]
    fn malformed_requirements_are_errors() {
        let no_values = selector(json!({ "matchExpressions": [{ "key": "a", "operator": "In" }] }));
        assert!(matches(&no_values, &labels(&[])).is_err());
        let unknown = selector(json!({ "matchExpressions": [{ "key": "a", "operator": "Gt", "values": ["1"] }] }));
        assert_eq!(matches(&unknown, &labels(&[])), Err(SelectorError::UnknownOperator("Gt".into())));
    }

    #[test]
    fn selector_syntax() {
        let parsed = parse("tier=front, env in (prod, staging),!legacy,team!=ops,owner").unwrap();
        let object = labels(&[("tier", "front"), ("env", "prod"), ("owner", "me")]);
        assert!(matches(&parsed, &object).unwrap());
        assert!(!matches(&parsed, &labels(&[("tier", "front"), ("env", "dev"), ("owner", "me")])).unwrap());
        assert_eq!(parse("").unwrap(), LabelSelector::default());
        assert!(parse("a b").is_err());
    }

    #[test]
    fn selectors_print_as_queries_that_parse_back() {
        let original = selector(json!({
            "matchLabels": { "tier": "front" },
            "matchExpressions": [
                { "key": "env", "operator": "In", "values": ["prod", "staging"] },
                { "key": "team", "operator": "NotIn", "values": ["ops"] },
                { "key": "owner", "operator": "Exists" },
                { "key": "legacy", "operator": "DoesNotExist" },
            ],
        }));
        let query = to_query(&original).unwrap();
        assert_eq!(query, "tier=front,env in (prod,staging),team notin (ops),owner,!legacy");
        let parsed = parse(&query).unwrap();
        for object in [labels(&[("tier", "front"), ("env", "prod"), ("owner", "me")]), labels(&[("tier", "front"), ("owner", "me")])] {
            assert_eq!(matches(&parsed, &object).unwrap(), matches(&original, &object).unwrap(), "{object:?}");
        }
        assert_eq!(to_query(&LabelSelector::default()).unwrap(), "");
    }

    proptest! {
        /// A selector built from a subset of an object's labels always matches it.
        #[test]
        fn match_labels_from_own_labels_match(
            object in prop::collection::btree_map("[a-z]{1,3}", "[a-z]{0,3}", 0..6),
            take in 0usize..6,
        ) {
            let subset: BTreeMap<String, String> = object.iter().take(take).map(|(k, v)| (k.clone(), v.clone())).collect();
            let selector = LabelSelector { match_labels: Some(subset), ..Default::default() };
            prop_assert!(matches(&selector, &object).unwrap());
        }

        /// `In` and `NotIn` over the same values never agree.
        #[test]
        fn in_and_not_in_are_complements(
            object in prop::collection::btree_map("[a-c]", "[a-c]", 0..3),
            values in prop::collection::vec("[a-c]", 1..3),
        ) {
            let with = |operator: &str| selector(json!({ "matchExpressions": [{ "key": "a", "operator": operator, "values": values }] }));
            prop_assert_ne!(matches(&with("In"), &object).unwrap(), matches(&with("NotIn"), &object).unwrap());
        }
    }
}
