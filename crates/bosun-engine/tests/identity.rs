//! Per-controller identity: a controller annotated `bosun.dev/service-account` writes as that
//! ServiceAccount, and a sync that needs a write it may not make writes nothing and says which
//! permission is missing — whatever the engine itself may do. And children outside their
//! parent's namespace (`bosun.dev/children-anywhere`), which identity decides whether a
//! controller may write.

#[macro_use]
mod support;

use bosun_engine::ApplyStrategy;
use bosun_engine::{CHILDREN_ANYWHERE_ANNOTATION, SERVICE_ACCOUNT_ANNOTATION};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use support::{Fixture, HookServer, Reply, TEST_LABEL, eventually};

/// Creates ServiceAccount `name` in `namespace`, bound in `bound_in` to a Role with `rules`.
async fn service_account(fixture: &Fixture, name: &str, bound_in: &str, rules: Value) {
    let created =
        |kind: &str, value: Value| serde_json::from_value::<DynamicObject>(value).unwrap_or_else(|error| panic!("{kind}: {error}"));
    let account = created("ServiceAccount", json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": name } }));
    let role = created(
        "Role",
        json!({ "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": { "name": name }, "rules": rules }),
    );
    let binding = created(
        "RoleBinding",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": { "name": name },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
            "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": fixture.namespace }],
        }),
    );
    let api = |namespace: &str, resource: ApiResource| Api::<DynamicObject>::namespaced_with(fixture.client.clone(), namespace, &resource);
    api(&fixture.namespace, ApiResource::erase::<k8s_openapi::api::core::v1::ServiceAccount>(&()))
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    api(bound_in, ApiResource::erase::<k8s_openapi::api::rbac::v1::Role>(&())).create(&PostParams::default(), &role).await.unwrap();
    api(bound_in, ApiResource::erase::<k8s_openapi::api::rbac::v1::RoleBinding>(&()))
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// A CompositeController `name` over the fixture's Things labelled `owner: <name>`, with
/// ConfigMap and Secret children, acting as ServiceAccount `name` of the fixture's namespace.
async fn controller_as(fixture: &Fixture, name: &str, hooks: &HookServer) {
    controller_as_with(fixture, name, hooks, json!({})).await
}

/// [`controller_as`] with `spec` merged over its spec.
async fn controller_as_with(fixture: &Fixture, name: &str, hooks: &HookServer, spec: Value) {
    let mut controller = json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "CompositeController",
        "metadata": {
            "name": format!("{name}-{}", fixture.id),
            "labels": { TEST_LABEL: fixture.id },
            "annotations": { SERVICE_ACCOUNT_ANNOTATION: format!("{}/{name}", fixture.namespace) },
        },
        "spec": {
            "parentResource": {
                "apiVersion": fixture.things.api_version, "resource": "things",
                "labelSelector": { "matchLabels": { "owner": name } },
            },
            "childResources": [{ "apiVersion": "v1", "resource": "configmaps" }, { "apiVersion": "v1", "resource": "secrets" }],
            "hooks": { "sync": hooks.hook("sync", json!({})) },
        },
    });
    support::merge_into(&mut controller["spec"], spec);
    let controller: DynamicObject = serde_json::from_value(controller).unwrap();
    fixture.controllers().create(&PostParams::default(), &controller).await.unwrap();
}

/// A parent `name` of the Things controller `owner` syncs.
async fn parent_of(fixture: &Fixture, owner: &str, name: &str) {
    let mut parent =
        DynamicObject::new(name, &fixture.things).data(json!({ "spec": { "selector": { "matchLabels": { "thing": name } } } }));
    parent.metadata.labels = Some([("owner".to_owned(), owner.to_owned())].into());
    fixture.parents().create(&PostParams::default(), &parent).await.unwrap();
}

/// Every parent gets a ConfigMap and a Secret.
fn config_map_and_secret(_hook: &str, request: &Value) -> Reply {
    let name = request["parent"]["metadata"]["name"].as_str().unwrap().to_owned();
    let labels = json!({ "thing": name });
    Reply::Json(json!({
        "status": { "ok": true },
        "events": [{ "type": "Normal", "reason": "Greeted", "message": format!("hello from {name}") }],
        "children": [
            { "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "labels": labels }, "data": { "a": "1" } },
            { "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name, "labels": labels }, "stringData": { "b": "2" } },
        ],
    }))
}

#[tokio::test]
async fn each_controller_writes_with_its_own_rights_and_nothing_it_may_not() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    // Each may read its parents, as its syncs do.
    let writes = |resources: &[&str], status: bool| {
        let mut rules = json!([
            { "apiGroups": [""], "resources": resources, "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] },
            { "apiGroups": [fixture.things.group], "resources": ["things"], "verbs": ["get", "list", "watch"] },
        ]);
        if status {
            let rules = rules.as_array_mut().unwrap();
            rules.push(json!({ "apiGroups": [fixture.things.group], "resources": ["things/status"], "verbs": ["patch"] }));
            rules.push(json!({ "apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"] }));
        }
        rules
    };
    // A may write ConfigMaps and only read Secrets; B write both; C both, but only in another
    // namespace; D both, but not its parents' status.
    let elsewhere = fixture.env.namespace("identity-elsewhere").await;
    let mut reads_secrets = writes(&["configmaps"], true);
    reads_secrets.as_array_mut().unwrap().push(json!({ "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"] }));
    service_account(&fixture, "a", &fixture.namespace, reads_secrets).await;
    service_account(&fixture, "b", &fixture.namespace, writes(&["configmaps", "secrets"], true)).await;
    service_account(&fixture, "c", &elsewhere, writes(&["configmaps", "secrets"], true)).await;
    service_account(&fixture, "d", &fixture.namespace, writes(&["configmaps", "secrets"], false)).await;
    // E may do everything but patch ConfigMaps: adopting an orphan needs it.
    let mut no_patch = writes(&["secrets"], true);
    no_patch
        .as_array_mut()
        .unwrap()
        .push(json!({ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "delete"] }));
    service_account(&fixture, "e", &fixture.namespace, no_patch).await;
    // F may write both, but not read its parents: it is shown nothing, and writes nothing.
    let mut unread = writes(&["configmaps", "secrets"], true);
    unread.as_array_mut().unwrap().remove(1);
    service_account(&fixture, "f", &fixture.namespace, unread).await;
    let orphan = ConfigMap {
        metadata: ObjectMeta {
            name: Some("e-orphan".into()),
            labels: Some([("thing".to_owned(), "e-parent".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    fixture.config_maps().create(&PostParams::default(), &orphan).await.unwrap();
    let hooks = HookServer::start(config_map_and_secret).await;
    for name in ["a", "b", "c", "d", "e", "f"] {
        controller_as(&fixture, name, &hooks).await;
        parent_of(&fixture, name, &format!("{name}-parent")).await;
    }

    // B's parent gets both children and its status, written as B.
    let (config_maps, secrets) = (fixture.config_maps(), Api::<Secret>::namespaced(fixture.client.clone(), &fixture.namespace));
    eventually("B's children", async || {
        let both = config_maps.get_opt("b-parent").await.unwrap().is_some() && secrets.get_opt("b-parent").await.unwrap().is_some();
        both.then_some(())
    })
    .await;

    // A may not create the Secret: nothing is written, not even the ConfigMap it may create,
    // and the event says what is missing.
    let message = fixture.event_with_reason("a-parent", None, "SyncError").await;
    let account = format!("{}/a", fixture.namespace);
    assert!(
        message.contains(&format!("ServiceAccount {account} may not create secrets in namespace \"{}\"", fixture.namespace))
            && message.contains("nothing was written"),
        "{message}"
    );
    assert!(!message.contains("configmaps"), "A may write ConfigMaps: {message}");
    assert!(config_maps.get_opt("a-parent").await.unwrap().is_none(), "A wrote its ConfigMap after all");
    assert!(secrets.get_opt("a-parent").await.unwrap().is_none());

    // C's Role is bound in another namespace: it may read neither here, and its hook is not
    // shown what it may not read.
    let message = fixture.event_with_reason("c-parent", None, "SyncError").await;
    for missing in ["list configmaps", "list secrets"] {
        assert!(message.contains(missing), "{missing}: {message}");
    }
    assert!(config_maps.get_opt("c-parent").await.unwrap().is_none());

    // E may not adopt the orphan: nothing is written, the orphan stays an orphan.
    let message = fixture.event_with_reason("e-parent", None, "SyncError").await;
    assert!(message.contains(&format!("may not patch configmaps in namespace \"{}\"", fixture.namespace)), "{message}");
    assert!(config_maps.get("e-orphan").await.unwrap().metadata.owner_references.is_none());
    assert!(config_maps.get_opt("e-parent").await.unwrap().is_none() && secrets.get_opt("e-parent").await.unwrap().is_none());

    // F may not read the parent its hook would be shown: the hook is not called for it.
    let message = fixture.event_with_reason("f-parent", None, "SyncError").await;
    let asked: Vec<String> = hooks.requests().iter().map(|(_, request)| request["parent"]["metadata"]["name"].to_string()).collect();
    assert!(!asked.contains(&"\"f-parent\"".to_owned()), "{asked:?}");
    assert!(message.contains(&format!("may not get things.{} in namespace", fixture.things.group)), "{message}");
    assert!(config_maps.get_opt("f-parent").await.unwrap().is_none());

    // D's writes are D's: its children are written, and its status write is refused by the
    // API server for D — though the engine itself may make it.
    let message = fixture.event_with_reason("d-parent", None, "SyncError").await;
    assert!(message.contains(&format!("system:serviceaccount:{}:d", fixture.namespace)) && message.contains("status"), "{message}");
    assert!(config_maps.get_opt("d-parent").await.unwrap().is_some());

    // B is not held up by the others: its status is written, and its hook's event recorded
    // (as B, which may write events).
    fixture.event_with_reason("b-parent", None, "Greeted").await;
    eventually("B's status", async || {
        let parent = fixture.parents().get("b-parent").await.unwrap();
        (parent.data["status"]["ok"] == true).then_some(())
    })
    .await;
}

/// An engine that requires identities runs no controller without one, and says why.
#[tokio::test]
async fn an_engine_that_requires_identities_runs_no_controller_without_one() {
    let fixture = Fixture::with_config(ApplyStrategy::DynamicApply, true, |config| config.require_service_account = true).await;
    let hooks = HookServer::start(config_map_and_secret).await;
    let name = fixture.composite_controller(json!({ "hooks": { "sync": hooks.hook("sync", json!({})) } })).await;
    let message = fixture.event_with_reason(&name, Some("default"), "CreateError").await;
    assert!(message.contains("--require-service-account") && message.contains(SERVICE_ACCOUNT_ANNOTATION), "{message}");
}

/// A team's parent: a Namespace of its own and, while `spec.bind`, a RoleBinding in it giving
/// `spec.group` the `view` ClusterRole — children outside the parent's namespace.
fn team(_hook: &str, request: &Value) -> Reply {
    let parent = &request["parent"];
    let (name, spec) = (parent["metadata"]["name"].as_str().unwrap(), &parent["spec"]);
    let labels = json!({ "thing": name });
    let namespace = spec["namespace"].as_str().unwrap();
    let mut children = vec![json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace, "labels": labels } })];
    if spec["bind"] == true {
        children.push(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": "viewers", "namespace": namespace, "labels": labels },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": spec["group"] }],
        }));
    }
    Reply::Json(json!({ "status": { "children": children.len() }, "children": children }))
}

/// A CompositeController `name` over Things labelled `owner: <name>` whose Namespace and
/// RoleBinding children may live anywhere, acting as `account` if given.
async fn team_controller(fixture: &Fixture, name: &str, hooks: &HookServer, account: Option<&str>) {
    let mut annotations = json!({ CHILDREN_ANYWHERE_ANNOTATION: "namespaces, rolebindings.rbac.authorization.k8s.io" });
    if let Some(account) = account {
        annotations[SERVICE_ACCOUNT_ANNOTATION] = json!(format!("{}/{account}", fixture.namespace));
    }
    let controller: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metacontroller.k8s.io/v1alpha1",
        "kind": "CompositeController",
        "metadata": { "name": format!("{name}-{}", fixture.id), "labels": { TEST_LABEL: fixture.id }, "annotations": annotations },
        "spec": {
            "parentResource": {
                "apiVersion": fixture.things.api_version, "resource": "things",
                "labelSelector": { "matchLabels": { "owner": name } },
            },
            "childResources": [
                { "apiVersion": "v1", "resource": "namespaces", "updateStrategy": { "method": "InPlace" } },
                { "apiVersion": "rbac.authorization.k8s.io/v1", "resource": "rolebindings", "updateStrategy": { "method": "InPlace" } },
            ],
            "resyncPeriodSeconds": 1,
            "hooks": { "sync": hooks.hook("sync", json!({})) },
        },
    }))
    .unwrap();
    fixture.controllers().create(&PostParams::default(), &controller).await.unwrap();
}

/// Children outside the parent's namespace, declared with bosun.dev/children-anywhere: a
/// namespaced parent's Namespace (an orphan it adopts) and a RoleBinding in it are tied by
/// label; a steady state writes nothing; a change is applied, a dropped child deleted, and
/// deleting the parent deletes the rest — nothing is left behind. A controller whose identity
/// may not create Namespaces writes nothing.
#[tokio::test]
async fn children_anywhere_are_tied_by_label_and_go_with_their_parent() {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::RoleBinding;

    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let hooks = HookServer::start(team).await;
    team_controller(&fixture, "teams", &hooks, None).await;
    let namespaces: Api<Namespace> = Api::all(fixture.client.clone());
    let team_namespace = format!("team-{}", fixture.id);
    // The Namespace exists already, labelled as the parent selects: it is adopted.
    let orphan: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": team_namespace, "labels": { "thing": "team" } } })).unwrap();
    namespaces.create(&PostParams::default(), &orphan).await.unwrap();
    let mut parent = DynamicObject::new("team", &fixture.things).data(json!({ "spec": {
        "selector": { "matchLabels": { "thing": "team" } }, "namespace": team_namespace, "bind": true, "group": "readers",
    } }));
    parent.metadata.labels = Some([("owner".to_owned(), "teams".to_owned())].into());
    let uid = fixture.parents().create(&PostParams::default(), &parent).await.unwrap().metadata.uid.unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(fixture.client.clone(), &team_namespace);
    let tied = |labels: Option<&std::collections::BTreeMap<String, String>>| {
        labels.and_then(|labels| labels.get("bosun.dev/controller-uid")) == Some(&uid)
    };
    let binding = eventually("the RoleBinding in the team's namespace", async || bindings.get_opt("viewers").await.unwrap()).await;
    assert!(tied(binding.metadata.labels.as_ref()) && binding.metadata.owner_references.is_none(), "{binding:?}");
    let adopted = namespaces.get(&team_namespace).await.unwrap();
    assert!(tied(adopted.metadata.labels.as_ref()), "the orphan Namespace is adopted by label: {adopted:?}");
    let synced = eventually("the parent's status and finalizer", async || {
        let parent = fixture.parents().get("team").await.unwrap();
        (parent.data["status"]["children"] == 2 && parent.metadata.finalizers.is_some()).then_some(parent)
    })
    .await;

    // A steady state writes nothing: three more syncs leave every resourceVersion as it was.
    let calls = hooks.calls();
    eventually("three more syncs", async || (hooks.calls() >= calls + 3).then_some(())).await;
    assert_eq!(bindings.get("viewers").await.unwrap().metadata.resource_version, binding.metadata.resource_version);
    assert_eq!(namespaces.get(&team_namespace).await.unwrap().metadata.resource_version, adopted.metadata.resource_version);
    assert_eq!(fixture.parents().get("team").await.unwrap().metadata.resource_version, synced.metadata.resource_version);

    // A change is applied in place; a child dropped is deleted.
    let change = json!({ "spec": { "group": "auditors" } });
    fixture.parents().patch("team", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&change)).await.unwrap();
    eventually("the RoleBinding updated", async || {
        let binding = bindings.get("viewers").await.unwrap();
        (binding.subjects?[0].name == "auditors").then_some(())
    })
    .await;
    let change = json!({ "spec": { "bind": false } });
    fixture.parents().patch("team", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&change)).await.unwrap();
    eventually("the RoleBinding deleted", async || bindings.get_opt("viewers").await.unwrap().is_none().then_some(())).await;

    // Deleting the parent deletes the Namespace, then lets the parent go.
    fixture.parents().delete("team", &Default::default()).await.unwrap();
    eventually("the parent gone and its Namespace deleted", async || {
        let gone = fixture.parents().get_opt("team").await.unwrap().is_none();
        let namespace = namespaces.get_opt(&team_namespace).await.unwrap();
        (gone && namespace.is_none_or(|namespace| namespace.metadata.deletion_timestamp.is_some())).then_some(())
    })
    .await;

    // A controller whose ServiceAccount may write RoleBindings in its namespace but not read or
    // write Namespaces (no Role can grant them) writes nothing, and says so.
    let rules = json!([
        { "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"] },
        { "apiGroups": [fixture.things.group], "resources": ["things", "things/status"], "verbs": ["get", "list", "watch", "patch"] },
    ]);
    service_account(&fixture, "limited", &fixture.namespace, rules).await;
    team_controller(&fixture, "limited", &hooks, Some("limited")).await;
    let other_namespace = format!("limited-{}", fixture.id);
    let mut parent = DynamicObject::new("limited", &fixture.things).data(json!({ "spec": {
        "selector": { "matchLabels": { "thing": "limited" } }, "namespace": other_namespace, "bind": true, "group": "readers",
    } }));
    parent.metadata.labels = Some([("owner".to_owned(), "limited".to_owned())].into());
    fixture.parents().create(&PostParams::default(), &parent).await.unwrap();
    let message = fixture.event_with_reason("limited", None, "SyncError").await;
    assert!(message.contains("may not list namespaces cluster-wide") && message.contains("nothing was written"), "{message}");
    assert!(namespaces.get_opt(&other_namespace).await.unwrap().is_none());
}

/// A rolling controller's ControllerRevisions are writes of its identity too: one that may
/// not create a child its hook asks for writes no revision either.
#[tokio::test]
async fn a_rolling_controller_writes_no_revision_before_a_refused_child() {
    let fixture = Fixture::new(ApplyStrategy::DynamicApply).await;
    let everything = ["get", "list", "watch", "create", "update", "patch", "delete"];
    let rules = json!([
        { "apiGroups": [""], "resources": ["configmaps"], "verbs": everything },
        { "apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"] },
        { "apiGroups": ["metacontroller.k8s.io"], "resources": ["controllerrevisions"], "verbs": everything },
        { "apiGroups": [fixture.things.group], "resources": ["things"], "verbs": ["get", "list", "watch"] },
        { "apiGroups": [fixture.things.group], "resources": ["things/status"], "verbs": ["patch"] },
    ]);
    service_account(&fixture, "rolling", &fixture.namespace, rules).await;
    let hooks = HookServer::start(config_map_and_secret).await;
    let rolling = json!({ "childResources": [
        { "apiVersion": "v1", "resource": "configmaps", "updateStrategy": { "method": "RollingInPlace" } },
        { "apiVersion": "v1", "resource": "secrets" },
    ] });
    controller_as_with(&fixture, "rolling", &hooks, rolling).await;
    parent_of(&fixture, "rolling", "rolling-parent").await;
    let message = fixture.event_with_reason("rolling-parent", None, "SyncError").await;
    assert!(message.contains("may not create secrets") && message.contains("nothing was written"), "{message}");
    let revisions = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("metacontroller.k8s.io", "v1alpha1", "ControllerRevision"),
        "controllerrevisions",
    );
    let written = Api::<DynamicObject>::namespaced_with(fixture.client.clone(), &fixture.namespace, &revisions);
    assert!(written.list(&Default::default()).await.unwrap().items.is_empty(), "no ControllerRevision was written");
    assert!(fixture.config_maps().get_opt("rolling-parent").await.unwrap().is_none());
}
