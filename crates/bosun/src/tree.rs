//! `bosun tree`: an object and everything it owns, as a tree with a status column — the view
//! that answers "what did my controller make?".
//!
//! Descendants are found through owner references (every namespace, every listable type),
//! and through the ConfigMapSync owner annotation, whose copies live in other namespaces
//! where owner references cannot reach. Objects are listed as metadata only; full objects are
//! read for the descendants alone, and never for Secrets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client, ResourceExt};

/// `bosun tree` arguments.
#[derive(Debug, clap::Args)]
pub struct TreeArgs {
    /// The object, as `<resource>/<name>`: plural, singular, kind or short name, optionally
    /// with its group (`podservices/hello`, `cms/shared-config`, `ingress.networking.k8s.io/web`).
    #[arg(value_name = "RESOURCE/NAME", value_parser = |target: &str| split_target(target).map(|_| target.to_owned()))]
    target: String,
    /// The object's namespace; the kubeconfig context's namespace when unset. Ignored for
    /// cluster-scoped types.
    #[arg(short, long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    #[command(flatten)]
    cluster: crate::run::ClusterArgs,
}

/// Prints the tree of `args.target`.
pub fn run(args: TreeArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let client = args.cluster.client(&bosun_runtime::Metrics::new()).await?;
        let namespace = args.namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        print!("{}", render(&client, &args.target, &namespace).await?);
        Ok(())
    })
}

/// The annotation with which a ConfigMapSync marks its copies (`<namespace>/<name>`).
const COPY_OWNER_ANNOTATION: &str = bosun_operators::configmapsync::OWNER_ANNOTATION;

/// A listable resource type, as discovery describes it.
#[derive(Debug, Clone)]
pub(crate) struct ResourceType {
    resource: ApiResource,
    namespaced: bool,
    singular: String,
    short_names: Vec<String>,
}

impl ResourceType {
    /// Whether `name` (`pods`, `pod`, `Pod`, `po`, `pods.v1`, `ingresses.networking.k8s.io`) names it.
    fn is_named(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let (name, group) = match name.split_once('.') {
            Some((name, group)) => (name.to_owned(), Some(group.to_owned())),
            None => (name, None),
        };
        let group_matches = group.is_none_or(|group| {
            group == self.resource.group
                || group == self.resource.version
                || group == format!("{}.{}", self.resource.version, self.resource.group)
        });
        group_matches
            && (name == self.resource.plural
                || name == self.singular
                || name == self.resource.kind.to_ascii_lowercase()
                || self.short_names.contains(&name))
    }
}

/// Every listable type the API server serves, in each group's preferred version.
async fn discover(client: &Client) -> anyhow::Result<Vec<ResourceType>> {
    let mut lists: Vec<(String, String, APIResourceList)> =
        vec![(String::new(), "v1".to_owned(), client.list_core_api_resources("v1").await?)];
    for group in client.list_api_groups().await?.groups {
        let Some(version) = group.preferred_version.or_else(|| group.versions.first().cloned()) else { continue };
        // A group whose API service is unavailable fails alone; the tree shows the rest.
        match client.list_api_group_resources(&version.group_version).await {
            Ok(list) => lists.push((group.name, version.version, list)),
            Err(error) => tracing::warn!(group = %version.group_version, %error, "discovery failed; its objects are not shown"),
        }
    }
    let mut types = Vec::new();
    for (group, version, list) in lists {
        for resource in list.resources {
            if resource.name.contains('/') || !resource.verbs.iter().any(|verb| verb == "list") {
                continue;
            }
            let api_version = if group.is_empty() { version.clone() } else { format!("{group}/{version}") };
            types.push(ResourceType {
                resource: ApiResource {
                    group: group.clone(),
                    version: version.clone(),
                    api_version,
                    kind: resource.kind,
                    plural: resource.name,
                },
                namespaced: resource.namespaced,
                singular: resource.singular_name,
                short_names: resource.short_names.unwrap_or_default(),
            });
        }
    }
    Ok(types)
}

/// One object in the tree.
#[derive(Debug, Clone)]
struct Node {
    resource: ApiResource,
    namespace: Option<String>,
    name: String,
    uid: String,
}

/// `<type>/<name>` as its two parts, both non-empty.
fn split_target(target: &str) -> anyhow::Result<(&str, &str)> {
    match target.split_once('/') {
        Some((type_name, name)) if !type_name.is_empty() && !name.is_empty() && !name.contains('/') => Ok((type_name, name)),
        _ => bail!("{target:?} is not <resource>/<name>, e.g. podservices/hello or configmapsync/shared-config"),
    }
}

/// The object `<type>/<name>` (in `namespace` if the type is namespaced) and its type, and
/// every listable type the server serves.
pub(crate) async fn find(
    client: &Client,
    target: &str,
    namespace: &str,
) -> anyhow::Result<(Vec<ResourceType>, ResourceType, DynamicObject)> {
    let (type_name, name) = split_target(target)?;
    let types = discover(client).await.context("discovering the API server's resource types")?;
    let Some(root_type) = types.iter().find(|candidate| candidate.is_named(type_name)) else {
        bail!("the server has no resource type {type_name:?} (see kubectl api-resources)");
    };
    let root_api = api(client, &root_type.resource, root_type.namespaced.then_some(namespace));
    let Some(root) = root_api.get_opt(name).await? else {
        let place = if root_type.namespaced { format!(" in namespace {namespace}") } else { String::new() };
        bail!("{} {name} not found{place}", root_type.resource.kind);
    };
    let root_type = root_type.clone();
    Ok((types, root_type, root))
}

/// The tree of `<type>/<name>` (in `namespace` if the type is namespaced), as printed lines.
pub async fn render(client: &Client, target: &str, namespace: &str) -> anyhow::Result<String> {
    let (types, root_type, root) = find(client, target, namespace).await?;

    // Every object's owners, by owner UID; ConfigMapSync copies by the owner they name.
    let listed: Vec<(ApiResource, Vec<kube::core::PartialObjectMeta<DynamicObject>>)> = futures::stream::iter(types.iter().cloned())
        .map(|resource_type| async move {
            let listing =
                Api::<DynamicObject>::all_with(client.clone(), &resource_type.resource).list_metadata(&ListParams::default()).await;
            // Types this user may not list are left out of the tree rather than failing it.
            Ok::<_, anyhow::Error>(listing.ok().map(|list| (resource_type.resource, list.items)))
        })
        .buffer_unordered(8)
        .try_filter_map(|listed| async move { Ok(listed) })
        .try_collect()
        .await?;
    let mut children: HashMap<String, Vec<Node>> = HashMap::new();
    let mut copies: HashMap<(String, String), Vec<Node>> = HashMap::new();
    for (resource, objects) in listed {
        for object in objects {
            let node = Node {
                resource: resource.clone(),
                namespace: object.namespace(),
                name: object.name_any(),
                uid: object.uid().unwrap_or_default(),
            };
            for owner in object.owner_references() {
                children.entry(owner.uid.clone()).or_default().push(node.clone());
            }
            if let Some((owner_namespace, owner_name)) =
                object.annotations().get(COPY_OWNER_ANNOTATION).and_then(|owner| owner.split_once('/'))
            {
                copies.entry((owner_namespace.to_owned(), owner_name.to_owned())).or_default().push(node);
            }
        }
    }

    let root_node = Node {
        resource: root_type.resource.clone(),
        namespace: root.namespace(),
        name: root.name_any(),
        uid: root.uid().unwrap_or_default(),
    };
    let mut rows = vec![("".to_owned(), root_node.clone(), summary(&root))];
    let mut seen = HashSet::from([root_node.uid.clone()]);
    add_descendants(client, &root_node, "", &children, &copies, &mut seen, &mut rows).await;

    let name_width = rows.iter().map(|(prefix, node, _)| prefix.chars().count() + label(node).len()).max().unwrap_or(0).max(4);
    let namespace_width = rows.iter().map(|(_, node, _)| node.namespace.as_deref().unwrap_or("-").len()).max().unwrap_or(0).max(9);
    let mut out = format!("{:name_width$}  {:namespace_width$}  STATUS\n", "NAME", "NAMESPACE");
    for (prefix, node, status) in rows {
        let name = format!("{prefix}{}", label(&node));
        let padding = name_width - name.chars().count();
        let _ = writeln!(out, "{name}{:padding$}  {:namespace_width$}  {status}", "", node.namespace.as_deref().unwrap_or("-"));
    }
    Ok(out)
}

fn label(node: &Node) -> String {
    format!("{}/{}", node.resource.kind, node.name)
}

fn api(client: &Client, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Appends `parent`'s descendants to `rows` depth first, children sorted by kind and name.
async fn add_descendants(
    client: &Client,
    parent: &Node,
    indent: &str,
    children: &HashMap<String, Vec<Node>>,
    copies: &HashMap<(String, String), Vec<Node>>,
    seen: &mut HashSet<String>,
    rows: &mut Vec<(String, Node, String)>,
) {
    let copy_key = (parent.namespace.clone().unwrap_or_default(), parent.name.clone());
    let is_sync = parent.resource.kind == "ConfigMapSync";
    let mut below: BTreeMap<(String, String, String), Node> = BTreeMap::new();
    let owned = children.get(&parent.uid).into_iter().flatten();
    let copied = copies.get(&copy_key).into_iter().flatten().filter(|_| is_sync);
    for node in owned.chain(copied) {
        if seen.insert(node.uid.clone()) {
            below.insert((node.resource.kind.clone(), node.namespace.clone().unwrap_or_default(), node.name.clone()), node.clone());
        }
    }
    let count = below.len();
    for (index, node) in below.into_values().enumerate() {
        let last = index + 1 == count;
        let status = if node.resource.kind == "Secret" {
            "-".to_owned() // never read: its data is not the tree's business
        } else {
            match api(client, &node.resource, node.namespace.as_deref()).get_opt(&node.name).await {
                Ok(Some(object)) => summary(&object),
                Ok(None) => "deleted".to_owned(),
                Err(error) => format!("unreadable: {error}"),
            }
        };
        rows.push((format!("{indent}{}", if last { "└─" } else { "├─" }), node.clone(), status));
        let deeper = format!("{indent}{}", if last { "  " } else { "│ " });
        Box::pin(add_descendants(client, &node, &deeper, children, copies, seen, rows)).await;
    }
}

/// A one-line status: what `kubectl get` would say first about this kind of object.
fn summary(object: &DynamicObject) -> String {
    let status = &object.data["status"];
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let condition = |type_: &str| conditions.iter().find(|condition| condition["type"] == type_).cloned();
    let mut parts = Vec::new();
    if let Some(deleted) = &object.metadata.deletion_timestamp {
        parts.push(format!("deleting since {}", deleted.0));
    }
    let kind = object.types.as_ref().map(|types| types.kind.as_str()).unwrap_or_default();
    match kind {
        "Job" if condition("Complete").is_some_and(|c| c["status"] == "True") => parts.push("Complete".into()),
        "Job" if condition("Failed").is_some_and(|c| c["status"] == "True") => parts.push("Failed".into()),
        "Job" => parts.push(format!("active {}", status["active"].as_i64().unwrap_or(0))),
        "Service" => {
            let spec = &object.data["spec"];
            parts.push(format!("{} {}", spec["type"].as_str().unwrap_or("ClusterIP"), spec["clusterIP"].as_str().unwrap_or("")));
        }
        "Ingress" => {
            let hosts: Vec<&str> =
                object.data["spec"]["rules"].as_array().into_iter().flatten().filter_map(|rule| rule["host"].as_str()).collect();
            parts.push(format!("hosts {}", if hosts.is_empty() { "*".to_owned() } else { hosts.join(",") }));
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            let wanted = object.data["spec"]["replicas"].as_i64().unwrap_or(1);
            parts.push(format!("ready {}/{wanted}", status["readyReplicas"].as_i64().unwrap_or(0)));
        }
        "DaemonSet" => parts.push(format!(
            "ready {}/{}",
            status["numberReady"].as_i64().unwrap_or(0),
            status["desiredNumberScheduled"].as_i64().unwrap_or(0)
        )),
        "EndpointSlice" => {
            let endpoints = object.data["endpoints"].as_array().cloned().unwrap_or_default();
            let ready = endpoints.iter().filter(|endpoint| endpoint["conditions"]["ready"] == true).count();
            parts.push(format!("{} endpoint{}, {ready} ready", endpoints.len(), if endpoints.len() == 1 { "" } else { "s" }));
        }
        "ConfigMap" => {
            let keys = object.data["data"].as_object().map_or(0, |data| data.len())
                + object.data["binaryData"].as_object().map_or(0, |data| data.len());
            parts.push(format!("{keys} key{}", if keys == 1 { "" } else { "s" }));
        }
        _ => {}
    }
    if let Some(phase) = status["phase"].as_str() {
        parts.push(phase.to_owned());
    }
    // A finished Pod is never Ready; its phase says all.
    let finished = kind == "Pod" && matches!(status["phase"].as_str(), Some("Succeeded" | "Failed"));
    if let Some(ready) = condition("Ready").or_else(|| condition("Available")).filter(|_| !finished) {
        let state = if ready["status"] == "True" {
            "Ready".to_owned()
        } else {
            format!("NotReady ({})", ready["reason"].as_str().unwrap_or("no reason"))
        };
        parts.push(state);
    }
    if let (Some(observed), Some(generation)) = (status["observedGeneration"].as_i64(), object.metadata.generation) {
        parts.push(if observed == generation {
            format!("synced (generation {generation})")
        } else {
            format!("syncing (generation {generation}, status of {observed})")
        });
    }
    if parts.is_empty() { "-".to_owned() } else { parts.join(", ") }
}

/// Whether `object`'s status describes its current generation: `bosun dev` waits for that
/// before printing its sample's tree.
#[cfg(feature = "dev")]
pub fn is_synced(object: &DynamicObject) -> bool {
    let observed = object.data["status"]["observedGeneration"].as_i64();
    observed.is_some() && observed == object.metadata.generation
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn targets_are_resource_slash_name() {
        assert_eq!(split_target("podservices/hello").unwrap(), ("podservices", "hello"));
        assert_eq!(split_target("ingress.networking.k8s.io/web").unwrap(), ("ingress.networking.k8s.io", "web"));
        for bad in ["hello", "podservices/", "/hello", "podservices/a/b"] {
            let error = split_target(bad).unwrap_err().to_string();
            assert!(error.contains("is not <resource>/<name>"), "{bad}: {error}");
        }
    }

    #[test]
    fn summaries_say_what_kubectl_would() {
        let service = object(
            json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "name": "s" }, "spec": { "type": "ClusterIP", "clusterIP": "10.0.0.7" } }),
        );
        assert_eq!(summary(&service), "ClusterIP 10.0.0.7");
        let pod = object(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" }, "status": { "phase": "Pending" } }));
        assert_eq!(summary(&pod), "Pending");
        let parent = object(json!({ "apiVersion": "x/v1", "kind": "X", "metadata": { "name": "x", "generation": 2 },
            "status": { "observedGeneration": 2, "conditions": [{ "type": "Ready", "status": "False", "reason": "SourceNotFound" }] } }));
        assert_eq!(summary(&parent), "NotReady (SourceNotFound), synced (generation 2)");
        let slice = object(json!({ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": { "name": "s" },
            "endpoints": [{ "addresses": ["10.244.0.2"], "conditions": { "ready": true } },
                          { "addresses": ["10.244.0.3"], "conditions": { "ready": false } }] }));
        assert_eq!(summary(&slice), "2 endpoints, 1 ready");
        let completed = object(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" },
            "status": { "phase": "Succeeded", "conditions": [{ "type": "Ready", "status": "False", "reason": "PodCompleted" }] } }));
        assert_eq!(summary(&completed), "Succeeded");
        let deployment = object(json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "d" },
            "spec": { "replicas": 3 }, "status": { "readyReplicas": 2,
            "conditions": [{ "type": "Available", "status": "True" }] } }));
        assert_eq!(summary(&deployment), "ready 2/3, Ready");
        let config_map = object(json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c" }, "data": { "a": "1" } }));
        assert_eq!(summary(&config_map), "1 key");
    }

    #[test]
    fn types_are_found_by_any_of_their_names() {
        let ingresses = ResourceType {
            resource: ApiResource {
                group: "networking.k8s.io".into(),
                version: "v1".into(),
                api_version: "networking.k8s.io/v1".into(),
                kind: "Ingress".into(),
                plural: "ingresses".into(),
            },
            namespaced: true,
            singular: "ingress".into(),
            short_names: vec!["ing".into()],
        };
        for name in ["ingresses", "ingress", "Ingress", "ing", "ingresses.networking.k8s.io", "ingress.v1.networking.k8s.io"] {
            assert!(ingresses.is_named(name), "{name}");
        }
        assert!(!ingresses.is_named("ingresses.extensions"));
        assert!(!ingresses.is_named("pods"));
    }
}
