//! `bosun rbac`: the RBAC the engine needs for a set of CompositeControllers and
//! DecoratorControllers — read from the cluster or from manifests — ready for `kubectl apply`.
//! Metacontroller runs with `*/*/*`; bosun runs least-privilege, and this is the difference a
//! migration must grant: per controller a ClusterRole labelled for aggregation into the
//! engine's role (its parents or targets, children or attachments, and the related types
//! named with `--related`), and per namespace holding its hook credentials a Role for exactly
//! those Secrets and ConfigMaps, bound to the engine's ServiceAccount. Every object is named
//! after its controller, so the RBAC of a few controllers applies without touching the others'.
//! For an engine that watches only some namespaces, the same rules are Roles in each of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Context;
use bosun_engine::api::{CompositeController, DecoratorController};
use clap::Args;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

/// Reading and writing a resource type, as children and attachments need.
const WRITE: &[&str] = &["get", "list", "watch", "create", "update", "patch", "delete"];
/// Reading a resource type and patching it (finalizers, labels, annotations, status).
const PATCH: &[&str] = &["get", "list", "watch", "patch"];
/// Reading a resource type.
const READ: &[&str] = &["get", "list", "watch"];
/// Recording events.
const EVENTS: &[&str] = &["create", "patch"];

/// Settings of `bosun rbac`.
#[derive(Debug, Args)]
pub struct RbacArgs {
    /// Read the controllers from these manifests (YAML or JSON, any number of documents; `-`
    /// for standard input) instead of the cluster. Objects of other kinds are skipped.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A type a customize hook selects related objects of, as `<apiVersion>/<resource>`
    /// (`v1/secrets`, `apps/v1/deployments`): read access is added for every controller with a
    /// customize hook. Repeatable. bosun cannot tell these from a controller's spec.
    #[arg(long, value_name = "API_VERSION/RESOURCE", value_parser = related_type)]
    related: Vec<(String, String)>,
    /// The engine's ServiceAccount, as `<namespace>/<name>`: the Roles for hook credentials
    /// are bound to it.
    #[arg(long, default_value = "bosun-system/bosun", value_name = "NAMESPACE/NAME", value_parser = service_account)]
    service_account: (String, String),
    /// The label that aggregates a ClusterRole into the engine's (the Helm chart's
    /// `aggregationLabel`, deploy/rbac.yaml's).
    #[arg(long, default_value = AGGREGATION_LABEL, value_name = "KEY")]
    aggregation_label: String,
    /// Per controller, the identity it writes as (docs/engine.md, "Per-controller identity"):
    /// its ServiceAccount (the one its bosun.dev/service-account annotation names, else
    /// `<composite|decorator>-<name>` in the engine's namespace, to annotate it with), a
    /// ClusterRole with the writes its syncs make bound to that account, and the engine's part
    /// — reading those types and impersonating that account — aggregated into the engine's role.
    #[arg(long)]
    per_controller: bool,
    /// For an engine that watches only these namespaces (`bosun run --namespace`; repeatable):
    /// Roles and RoleBindings in each, instead of ClusterRoles (docs/operations.md,
    /// "Namespace-scoped install").
    #[arg(long = "namespace", value_name = "NAMESPACE", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Only controllers whose labels match, as for `bosun run --target-label-selector`.
    #[arg(long, default_value = "", value_parser = crate::run::label_selector, value_name = "SELECTOR")]
    target_label_selector: String,
    #[command(flatten)]
    cluster: crate::run::ClusterArgs,
}

fn related_type(text: &str) -> Result<(String, String), String> {
    match text.rsplit_once('/') {
        Some((api_version, resource)) if !api_version.is_empty() && !resource.is_empty() => {
            Ok((api_version.to_owned(), resource.to_owned()))
        }
        _ => Err(format!("{text:?} is not <apiVersion>/<resource>, such as v1/secrets or apps/v1/deployments")),
    }
}

pub(crate) fn service_account(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((namespace.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{text:?} is not <namespace>/<name>, such as bosun-system/bosun")),
    }
}

/// The label by which deploy/rbac.yaml's engine role aggregates the roles `bosun rbac` prints.
pub(crate) const AGGREGATION_LABEL: &str = "bosun.dev/aggregate-to-engine";

/// What one controller needs.
#[derive(Debug)]
pub(crate) struct Needs {
    /// `CompositeController` or `DecoratorController`.
    pub kind: &'static str,
    pub name: String,
    /// (apiVersion, resource, verbs).
    grants: Vec<(String, String, &'static [&'static str])>,
    /// Whether it has a customize hook, whose related types `--related` names.
    pub customize: bool,
    /// (namespace, `secrets` or `configmaps`, name) of the objects its hooks' credentials are in.
    credentials: Vec<(String, &'static str, String)>,
    /// The ServiceAccount it names as its identity, as (namespace, name).
    service_account: Option<(String, String)>,
}

impl Needs {
    pub(crate) fn of_composite(controller: &CompositeController) -> Needs {
        let spec = &controller.spec;
        let parent = &spec.parent_resource;
        let mut grants = owner_grants(&parent.api_version, &parent.resource);
        for child in spec.child_resources.iter().flatten() {
            grants.push((child.api_version.clone(), child.resource.clone(), WRITE));
        }
        if spec.child_resources.iter().flatten().any(|child| child.method().is_rolling()) {
            // Its rolling updates' records, which its syncs write as it with --per-controller.
            let revisions = format!("{}/{}", bosun_engine::api::GROUP, bosun_engine::api::VERSION);
            grants.push((revisions, "controllerrevisions".to_owned(), WRITE));
        }
        Needs::new("CompositeController", controller.name_any(), grants, spec_json(controller), controller.annotations())
    }

    pub(crate) fn of_decorator(controller: &DecoratorController) -> Needs {
        let spec = &controller.spec;
        let mut grants = Vec::new();
        for target in &spec.resources {
            grants.extend(owner_grants(&target.api_version, &target.resource));
        }
        for attachment in spec.attachments.iter().flatten() {
            grants.push((attachment.api_version.clone(), attachment.resource.clone(), WRITE));
        }
        Needs::new("DecoratorController", controller.name_any(), grants, spec_json(controller), controller.annotations())
    }

    /// The rest of what a controller with this `spec` and `annotations` needs: its customize
    /// hook, credentials, identity.
    fn new(
        kind: &'static str,
        name: String,
        grants: Vec<(String, String, &'static [&'static str])>,
        spec: Value,
        annotations: &BTreeMap<String, String>,
    ) -> Needs {
        let customize = spec["hooks"]["customize"]["webhook"].is_object();
        let service_account = annotations.get(bosun_engine::SERVICE_ACCOUNT_ANNOTATION).and_then(|account| service_account(account).ok());
        Needs { kind, name, grants, customize, credentials: credentials_in(&spec), service_account }
    }

    fn short_kind(&self) -> &'static str {
        if self.kind == "CompositeController" { "composite" } else { "decorator" }
    }

    fn role_name(&self) -> String {
        format!("bosun:{}:{}", self.short_kind(), self.name)
    }

    /// The ServiceAccount it writes as with `--per-controller`: the one it names, else one
    /// named after it in `default_namespace`.
    fn identity(&self, default_namespace: &str) -> (String, String) {
        self.service_account.clone().unwrap_or_else(|| (default_namespace.to_owned(), format!("{}-{}", self.short_kind(), self.name)))
    }

    /// With `--per-controller`: its ServiceAccount `account`, the role of what its syncs read
    /// and write (children, the objects it syncs, the `related` types its customize hook
    /// selects, the events its hooks ask for) where `scope` says, and its binding to that
    /// account.
    fn identity_objects(&self, account: &(String, String), scope: &Scope, related: &[(String, String)]) -> Vec<Value> {
        let mut grants = self.grants.clone();
        grants.extend(["v1", "events.k8s.io/v1"].map(|api_version| (api_version.to_owned(), "events".to_owned(), EVENTS)));
        if self.customize {
            grants.extend(related.iter().map(|(api_version, resource)| (api_version.clone(), resource.clone(), READ)));
        }
        let mut objects = vec![json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": account.1, "namespace": account.0, "labels": managed_by() },
        })];
        objects.extend(scope.grant(&format!("{}:writes", self.role_name()), &self.describe(), rules(&grants), Some(account), None));
        objects
    }

    /// `<kind> <name>`, as the roles' `bosun.dev/for` annotation says whom they are for.
    fn describe(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }

    /// The Role (and RoleBinding) for its hook credentials, in each namespace that holds some:
    /// one per controller, so that applying the RBAC of some controllers leaves the others'.
    fn credentials_role_name(&self) -> String {
        format!("{}:credentials", self.role_name())
    }

    /// The objects holding its hook credentials, by namespace and resource.
    fn credentials_by_namespace(&self) -> BTreeMap<&str, BTreeMap<&'static str, BTreeSet<String>>> {
        let mut credentials: BTreeMap<&str, BTreeMap<&'static str, BTreeSet<String>>> = BTreeMap::new();
        for (namespace, resource, name) in &self.credentials {
            credentials.entry(namespace).or_default().entry(resource).or_default().insert(name.clone());
        }
        credentials
    }

    /// One line on what `bosun rbac` grants this controller: its ClusterRole's rules (but the
    /// `--related` types) and the credentials its Roles name.
    pub(crate) fn summary(&self) -> String {
        let words = |list: &Value| list.as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", ");
        let rules: Vec<String> =
            rules(&self.grants).iter().map(|rule| format!("{} {}", words(&rule["resources"]), words(&rule["verbs"]))).collect();
        let mut text = format!("ClusterRole {}: {}", self.role_name(), rules.join("; "));
        for (namespace, objects) in self.credentials_by_namespace() {
            let objects: Vec<String> =
                objects.iter().flat_map(|(resource, names)| names.iter().map(move |name| format!("{resource} {name}"))).collect();
            text.push_str(&format!("; Role {} in {namespace}: {}", self.credentials_role_name(), objects.join(", ")));
        }
        text
    }

    /// The rules of the engine's role for this controller's types. When the controller writes
    /// as `identity`, the engine only reads what it owns (and impersonates that account).
    fn engine_rules(&self, related: &[(String, String)], identity: bool) -> Vec<Value> {
        let mut grants = self.grants.clone();
        if identity {
            for grant in &mut grants {
                if grant.2 == WRITE {
                    grant.2 = READ;
                }
            }
        }
        if self.customize {
            grants.extend(related.iter().map(|(api_version, resource)| (api_version.clone(), resource.clone(), READ)));
        }
        rules(&grants)
    }

    /// The ClusterRole granting this controller's types, aggregated into the engine's. When the
    /// controller writes as `identity`, the engine only reads what it owns and may impersonate
    /// that account.
    pub(crate) fn cluster_role(&self, related: &[(String, String)], aggregation_label: &str, identity: Option<&(String, String)>) -> Value {
        let mut rules = self.engine_rules(related, identity.is_some());
        if let Some(account) = identity {
            rules.push(impersonate_rule(account));
        }
        let scope = Scope::Cluster { aggregation_label: aggregation_label.to_owned() };
        scope.grant(&self.role_name(), &self.describe(), rules, None, None).remove(0)
    }

    /// This controller's part of the engine's rights where `scope` says: its types (and, when
    /// it writes as `identity`, impersonating that account).
    fn engine_objects(&self, args: &RbacArgs, scope: &Scope, identity: Option<&(String, String)>) -> Vec<Value> {
        if let Scope::Cluster { aggregation_label } = scope {
            return vec![self.cluster_role(&args.related, aggregation_label, identity)];
        }
        let engine = Some(&args.service_account);
        let mut objects =
            scope.grant(&self.role_name(), &self.describe(), self.engine_rules(&args.related, identity.is_some()), engine, None);
        if let Some(account) = identity {
            // ServiceAccounts are namespaced: impersonating one is granted in its namespace.
            let name = format!("{}:impersonate", self.role_name());
            objects.extend(scope.grant(&name, &self.describe(), vec![impersonate_rule(account)], engine, Some(&account.0)));
        }
        objects
    }
}

/// The rule that lets the engine act as `account`.
fn impersonate_rule(account: &(String, String)) -> Value {
    json!({ "apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": [account.1], "verbs": ["impersonate"] })
}

/// The labels of everything `bosun rbac` prints.
fn managed_by() -> Value {
    json!({ "app.kubernetes.io/managed-by": "bosun-rbac" })
}

/// Where `bosun rbac` grants: cluster-wide, or in the namespaces a namespace-scoped engine
/// watches.
enum Scope {
    /// ClusterRoles; the engine's are aggregated by this label.
    Cluster { aggregation_label: String },
    /// Roles in each of these namespaces.
    Namespaces(Vec<String>),
}

impl Scope {
    /// The role `name` with `rules` (for the controller `for_`), bound to `subject` if given
    /// (else aggregated into the engine's ClusterRole): a ClusterRole, or a Role in each
    /// namespace — in `only` alone, if given.
    fn grant(&self, name: &str, for_: &str, rules: Vec<Value>, subject: Option<&(String, String)>, only: Option<&str>) -> Vec<Value> {
        let annotations = json!({ "bosun.dev/for": for_ });
        let subjects = |(namespace, name): &(String, String)| json!([{ "kind": "ServiceAccount", "namespace": namespace, "name": name }]);
        let role_ref = |kind: &str| json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name });
        match self {
            Scope::Cluster { aggregation_label } => {
                let mut labels = managed_by();
                if subject.is_none() {
                    labels[aggregation_label] = json!("true");
                }
                let mut objects = vec![json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": { "name": name, "labels": labels, "annotations": annotations }, "rules": rules,
                })];
                objects.extend(subject.map(|subject| {
                    json!({
                        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                        "metadata": { "name": name, "labels": managed_by() },
                        "roleRef": role_ref("ClusterRole"), "subjects": subjects(subject),
                    })
                }));
                objects
            }
            Scope::Namespaces(namespaces) => {
                let subject = subject.expect("a Role is bound to a subject");
                let within: Vec<&str> = match only {
                    Some(namespace) => vec![namespace],
                    None => namespaces.iter().map(String::as_str).collect(),
                };
                within
                    .into_iter()
                    .flat_map(|namespace| {
                        let metadata = json!({ "name": name, "namespace": namespace, "labels": managed_by(), "annotations": annotations });
                        [
                            json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata, "rules": rules }),
                            json!({
                                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata,
                                "roleRef": role_ref("Role"), "subjects": subjects(subject),
                            }),
                        ]
                    })
                    .collect()
            }
        }
    }
}

/// What the engine does to an object that owns others (a parent, a decorator's target): reads
/// and patches it, writes its status, and — as an owner with `blockOwnerDeletion`, where the
/// OwnerReferencesPermissionEnforcement admission plugin is on — updates its finalizers.
fn owner_grants(api_version: &str, resource: &str) -> Vec<(String, String, &'static [&'static str])> {
    vec![
        (api_version.to_owned(), resource.to_owned(), PATCH),
        (api_version.to_owned(), format!("{resource}/status"), &["patch"]),
        (api_version.to_owned(), format!("{resource}/finalizers"), &["update"]),
    ]
}

fn spec_json<K: serde::Serialize>(controller: &K) -> Value {
    serde_json::to_value(controller).map(|value| value["spec"].clone()).unwrap_or_default()
}

/// Every `secretRef` and `configMapRef` in a controller's spec (its hooks' webhooks and its
/// `endpointConfigs`), and the `configMap` a WebAssembly hook's module is in, as (namespace,
/// resource, name).
fn credentials_in(value: &Value) -> Vec<(String, &'static str, String)> {
    let mut found = Vec::new();
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                let resource = match key.as_str() {
                    "secretRef" => Some("secrets"),
                    "configMapRef" | "configMap" => Some("configmaps"),
                    _ => None,
                };
                match (resource, field["namespace"].as_str(), field["name"].as_str()) {
                    (Some(resource), Some(namespace), Some(name)) => found.push((namespace.to_owned(), resource, name.to_owned())),
                    _ => found.extend(credentials_in(field)),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| found.extend(credentials_in(item))),
        _ => {}
    }
    found
}

/// RBAC rules for `grants`: one per API group and set of verbs, resources sorted.
fn rules(grants: &[(String, String, &'static [&'static str])]) -> Vec<Value> {
    let mut merged: BTreeMap<(String, &[&str]), BTreeSet<String>> = BTreeMap::new();
    for (api_version, resource, verbs) in grants {
        let group = api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or_default();
        merged.entry((group.to_owned(), *verbs)).or_default().insert(resource.clone());
    }
    merged.into_iter().map(|((group, verbs), resources)| json!({ "apiGroups": [group], "resources": resources, "verbs": verbs })).collect()
}

/// The Role `name` for the credential objects in `namespace` and its binding to the engine's
/// ServiceAccount: get, list and watch of exactly those names (the engine watches each one
/// by name, so a rotated credential is used without a restart).
fn credential_role(
    name: &str,
    for_: &str,
    namespace: &str,
    objects: &BTreeMap<&'static str, BTreeSet<String>>,
    service_account: &(String, String),
) -> Vec<Value> {
    let rules: Vec<Value> = objects
        .iter()
        .map(|(resource, names)| json!({ "apiGroups": [""], "resources": [resource], "resourceNames": names, "verbs": READ }))
        .collect();
    Scope::Namespaces(vec![namespace.to_owned()]).grant(name, for_, rules, Some(service_account), None)
}

/// The manifests for `needs`, as YAML documents with a header saying what they are for.
fn render(needs: &[Needs], args: &RbacArgs) -> anyhow::Result<String> {
    let (mut objects, mut annotate) = (Vec::new(), Vec::new());
    let scope = if args.namespaces.is_empty() {
        Scope::Cluster { aggregation_label: args.aggregation_label.clone() }
    } else {
        Scope::Namespaces(args.namespaces.clone())
    };
    for controller in needs {
        let identity = args.per_controller.then(|| controller.identity(&args.service_account.0));
        if let Some(account) = &identity {
            objects.extend(controller.identity_objects(account, &scope, &args.related));
            if controller.service_account.is_none() {
                annotate.push(format!(
                    "# kubectl annotate {} {} {}={}/{}\n",
                    controller.kind.to_lowercase(),
                    controller.name,
                    bosun_engine::SERVICE_ACCOUNT_ANNOTATION,
                    account.0,
                    account.1
                ));
            }
        }
        objects.extend(controller.engine_objects(args, &scope, identity.as_ref()));
        for (namespace, objects_in) in &controller.credentials_by_namespace() {
            let name = controller.credentials_role_name();
            objects.extend(credential_role(&name, &controller.describe(), namespace, objects_in, &args.service_account));
        }
    }
    let mut text = format!("# RBAC for bosun's engine, generated by `bosun rbac` for {} controller(s).\n", needs.len());
    match &scope {
        Scope::Cluster { aggregation_label } => {
            text.push_str(&format!("# The ClusterRoles are aggregated into the engine's by the label {aggregation_label}=\"true\".\n"))
        }
        Scope::Namespaces(namespaces) => text.push_str(&format!(
            "# For an engine that watches only the namespaces {} (bosun run --namespace): Roles, bound to {}/{}.\n",
            namespaces.join(","),
            args.service_account.0,
            args.service_account.1
        )),
    }
    if !annotate.is_empty() {
        text.push_str("# Each controller writes as the ServiceAccount below once annotated with it:\n");
        text.extend(annotate);
    }
    for object in objects {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(&object)?);
    }
    Ok(text)
}

/// The cluster's CompositeControllers and DecoratorControllers whose labels match `selector`.
pub(crate) async fn cluster_controllers(
    client: &kube::Client,
    selector: &str,
) -> anyhow::Result<(Vec<CompositeController>, Vec<DecoratorController>)> {
    let params = ListParams::default().labels(selector);
    let composites = Api::<CompositeController>::all(client.clone())
        .list(&params)
        .await
        .context("listing CompositeControllers (are Metacontroller's CRDs installed? `bosun crds engine`)")?;
    let decorators = Api::<DecoratorController>::all(client.clone()).list(&params).await.context("listing DecoratorControllers")?;
    Ok((composites.items, decorators.items))
}

/// The controllers in `files`, or in the cluster without files, whose labels match.
async fn controllers(args: &RbacArgs) -> anyhow::Result<Vec<Needs>> {
    let selector = bosun_engine::selector::parse(&args.target_label_selector).expect("validated by clap");
    if args.files.is_empty() {
        let client = args.cluster.client(&bosun_runtime::Metrics::new()).await?;
        let (composites, decorators) = cluster_controllers(&client, &args.target_label_selector).await?;
        return Ok(composites.iter().map(Needs::of_composite).chain(decorators.iter().map(Needs::of_decorator)).collect());
    }
    let mut needs = Vec::new();
    for path in &args.files {
        for item in crate::manifests::objects(path)? {
            let labels: BTreeMap<String, String> = serde_json::from_value(item["metadata"]["labels"].clone()).unwrap_or_default();
            if item["apiVersion"] != CompositeController::api_version(&()).as_ref() || !bosun_engine::selector::matches(&selector, &labels)?
            {
                continue;
            }
            let described = || format!("{} {} in {}", item["kind"], item["metadata"]["name"], path.display());
            match item["kind"].as_str() {
                Some("CompositeController") => {
                    needs.push(Needs::of_composite(&serde_json::from_value(item.clone()).with_context(described)?));
                }
                Some("DecoratorController") => {
                    needs.push(Needs::of_decorator(&serde_json::from_value(item.clone()).with_context(described)?));
                }
                _ => {}
            }
        }
    }
    Ok(needs)
}

/// Prints the RBAC for the chosen controllers, and on standard error what it could not tell.
pub fn run(args: RbacArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let needs = controllers(&args).await?;
        if args.related.is_empty() {
            for controller in needs.iter().filter(|controller| controller.customize) {
                eprintln!(
                    "note: {} {} has a customize hook; name the types it selects with --related <apiVersion>/<resource>",
                    controller.kind, controller.name
                );
            }
        }
        print!("{}", render(&needs, &args)?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_composite_needs_its_parents_children_and_credentials() {
        let controller: CompositeController = serde_json::from_value(json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
            "metadata": { "name": "web" },
            "spec": {
                "parentResource": { "apiVersion": "example.com/v1", "resource": "sites" },
                "childResources": [
                    { "apiVersion": "apps/v1", "resource": "deployments" },
                    { "apiVersion": "v1", "resource": "services" },
                    { "apiVersion": "v1", "resource": "configmaps" },
                ],
                "hooks": {
                    "sync": { "webhook": { "url": "https://hooks/sync", "authorization": { "secretRef": { "name": "token", "namespace": "hooks", "key": "t" } } } },
                    "customize": { "webhook": { "url": "https://hooks/customize" } },
                    "finalize": { "wasm": { "configMap": { "namespace": "hooks", "name": "cleanup", "key": "hook.wasm" } } },
                },
                "endpointConfigs": [{ "host": "hooks", "caBundle": { "configMapRef": { "name": "ca", "namespace": "hooks" } } }],
            },
        }))
        .unwrap();
        let needs = Needs::of_composite(&controller);
        let role = needs.cluster_role(&[("v1".into(), "secrets".into())], "bosun.dev/aggregate-to-engine", None);
        assert_eq!(role["metadata"]["name"], "bosun:composite:web");
        assert_eq!(role["metadata"]["labels"]["bosun.dev/aggregate-to-engine"], "true");
        assert_eq!(
            role["rules"],
            json!([
                { "apiGroups": [""], "resources": ["secrets"], "verbs": READ },
                { "apiGroups": [""], "resources": ["configmaps", "services"], "verbs": WRITE },
                { "apiGroups": ["apps"], "resources": ["deployments"], "verbs": WRITE },
                { "apiGroups": ["example.com"], "resources": ["sites"], "verbs": PATCH },
                { "apiGroups": ["example.com"], "resources": ["sites/status"], "verbs": ["patch"] },
                { "apiGroups": ["example.com"], "resources": ["sites/finalizers"], "verbs": ["update"] },
            ])
        );
        let mut credentials = needs.credentials;
        credentials.sort();
        let expected = [("hooks", "configmaps", "ca"), ("hooks", "configmaps", "cleanup"), ("hooks", "secrets", "token")];
        assert_eq!(credentials, expected.map(|(namespace, resource, name)| (namespace.to_owned(), resource, name.to_owned())));
    }

    #[test]
    fn flags_are_checked() {
        assert_eq!(related_type("apps/v1/deployments"), Ok(("apps/v1".into(), "deployments".into())));
        assert!(related_type("secrets").is_err());
        assert_eq!(service_account("ops/bosun"), Ok(("ops".into(), "bosun".into())));
        assert!(service_account("bosun").is_err());
    }

    /// For a namespace-scoped engine: Roles in each namespace, bound to the engine, and with
    /// `--per-controller` the account's writes there and the right to impersonate it in its
    /// own namespace — no ClusterRole at all.
    #[test]
    fn namespaced_rbac_is_roles_in_each_namespace() {
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            args: RbacArgs,
        }
        let controller: CompositeController = serde_json::from_value(json!({
            "apiVersion": "metacontroller.k8s.io/v1alpha1", "kind": "CompositeController",
            "metadata": { "name": "web", "annotations": { bosun_engine::SERVICE_ACCOUNT_ANNOTATION: "ids/web" } },
            "spec": {
                "parentResource": { "apiVersion": "example.com/v1", "resource": "sites" },
                "childResources": [{ "apiVersion": "v1", "resource": "configmaps" }],
                "hooks": { "sync": { "webhook": { "url": "https://hooks/sync" } } },
            },
        }))
        .unwrap();
        let needs = [Needs::of_composite(&controller)];
        let args =
            <Command as clap::Parser>::parse_from(["rbac", "--namespace", "a,b", "--per-controller", "--service-account", "ops/bosun"])
                .args;
        let text = render(&needs, &args).unwrap();
        let objects: Vec<Value> =
            serde_yaml::Deserializer::from_str(&text).map(|document| serde::Deserialize::deserialize(document).unwrap()).collect();
        let placed: Vec<(String, String, String)> = objects
            .iter()
            .map(|object| {
                let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
                (text(&object["kind"]), text(&object["metadata"]["namespace"]), text(&object["metadata"]["name"]))
            })
            .collect();
        let expected: Vec<(String, String, String)> = [
            ("ServiceAccount", "ids", "web"),
            ("Role", "a", "bosun:composite:web:writes"),
            ("RoleBinding", "a", "bosun:composite:web:writes"),
            ("Role", "b", "bosun:composite:web:writes"),
            ("RoleBinding", "b", "bosun:composite:web:writes"),
            ("Role", "a", "bosun:composite:web"),
            ("RoleBinding", "a", "bosun:composite:web"),
            ("Role", "b", "bosun:composite:web"),
            ("RoleBinding", "b", "bosun:composite:web"),
            ("Role", "ids", "bosun:composite:web:impersonate"),
            ("RoleBinding", "ids", "bosun:composite:web:impersonate"),
        ]
        .iter()
        .map(|(kind, namespace, name)| (kind.to_string(), namespace.to_string(), name.to_string()))
        .collect();
        assert_eq!(placed, expected);
        let engine = &objects[6];
        assert_eq!(engine["subjects"], json!([{ "kind": "ServiceAccount", "namespace": "ops", "name": "bosun" }]));
        let writes = &objects[2];
        assert_eq!(writes["subjects"], json!([{ "kind": "ServiceAccount", "namespace": "ids", "name": "web" }]));
        assert_eq!(objects[9]["rules"][0]["resourceNames"], json!(["web"]));
        // The engine only reads what the account writes.
        assert!(objects[5]["rules"].as_array().unwrap().iter().all(|rule| !rule["verbs"].as_array().unwrap().contains(&json!("create"))));
    }
}
