//! Children anywhere: child types a CompositeController declares, with the annotation
//! `bosun.dev/children-anywhere`, as living outside their parent's namespace — in another
//! namespace, or cluster-scoped under a namespaced parent. No owner reference can tie such a
//! child to its parent (the garbage collector would delete it at once), so it is tied by the
//! label `bosun.dev/controller-uid` naming the parent's UID instead — which bosun's caches
//! read as a controller, like a controller owner reference — and deleted by the engine, under
//! the parent's finalizer, when the parent goes.

use std::collections::BTreeMap;

use super::Tie;

/// The annotation on a CompositeController listing the child types that may live anywhere, as
/// `kubectl` names them: `<resource>` for the core group, `<resource>.<group>` otherwise,
/// separated by commas (`namespaces,rolebindings.rbac.authorization.k8s.io`).
pub const CHILDREN_ANYWHERE_ANNOTATION: &str = "bosun.dev/children-anywhere";

/// How each of `declared` (apiVersion, resource) is tied to its parent, as the controller's
/// `annotations` say; an entry naming no declared child type is an error.
pub(crate) fn ties(annotations: &BTreeMap<String, String>, declared: &[(&str, &str)]) -> Result<Vec<Tie>, String> {
    let name = |(api_version, resource): &(&str, &str)| match api_version.rsplit_once('/') {
        Some((group, _)) => format!("{resource}.{group}"),
        None => (*resource).to_owned(),
    };
    let listed: Vec<&str> = match annotations.get(CHILDREN_ANYWHERE_ANNOTATION) {
        Some(text) => text.split(',').map(str::trim).filter(|entry| !entry.is_empty()).collect(),
        None => Vec::new(),
    };
    let names: Vec<String> = declared.iter().map(name).collect();
    if let Some(unknown) = listed.iter().find(|entry| !names.iter().any(|name| name == *entry)) {
        return Err(format!(
            "annotation {CHILDREN_ANYWHERE_ANNOTATION}: {unknown:?} is not a declared child type (declared: {})",
            names.join(", ")
        ));
    }
    Ok(names.iter().map(|name| if listed.contains(&name.as_str()) { Tie::Label } else { Tie::Owner }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_annotation_names_declared_types_as_kubectl_does() {
        let declared = [("v1", "configmaps"), ("v1", "namespaces"), ("rbac.authorization.k8s.io/v1", "rolebindings")];
        let annotations = |text: &str| [(CHILDREN_ANYWHERE_ANNOTATION.to_owned(), text.to_owned())].into();
        assert_eq!(ties(&BTreeMap::new(), &declared).unwrap(), [Tie::Owner, Tie::Owner, Tie::Owner]);
        assert_eq!(
            ties(&annotations("namespaces, rolebindings.rbac.authorization.k8s.io"), &declared).unwrap(),
            [Tie::Owner, Tie::Label, Tie::Label]
        );
        let error = ties(&annotations("rolebindings"), &declared).unwrap_err();
        assert!(
            error.contains("\"rolebindings\" is not a declared child type") && error.contains("rolebindings.rbac.authorization.k8s.io")
        );
    }
}
