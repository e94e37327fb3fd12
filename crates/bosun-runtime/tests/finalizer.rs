//! The finalizer flow against a real control plane: the finalizer is stored before `Apply`
//! runs, a `Cleanup` that is not done keeps it, one that is done removes it — and only it,
//! another client's finalizer stays — and a finalizer list changed by someone else meanwhile
//! is read again rather than overwritten.

use std::sync::Arc;
use std::time::Duration;

use bosun_runtime::Action;
use bosun_runtime::finalizer::{self, Event, finalizer};
use bosun_testenv::TestEnv;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const OURS: &str = "example.com/cleanup";
const THEIRS: &str = "example.com/theirs";

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

/// Runs one reconcile; returns what it was asked to do and the action.
async fn reconcile(api: &Api<ConfigMap>, name: &str, cleanup: Action) -> (&'static str, Action) {
    let object = Arc::new(api.get(name).await.unwrap());
    let mut asked = "nothing";
    let action = finalizer(api, OURS, object, |event| {
        asked = match &event {
            Event::Apply(object) => {
                assert!(object.finalizers().iter().any(|existing| existing == OURS), "Apply runs only once the finalizer is stored");
                "apply"
            }
            Event::Cleanup(_) => "cleanup",
        };
        let action = if asked == "cleanup" { cleanup } else { Action::Done };
        async move { Ok::<_, Never>(action) }
    })
    .await
    .unwrap();
    (asked, action)
}

#[tokio::test]
async fn cleanup_runs_before_the_object_goes_and_other_finalizers_stay() {
    let env = TestEnv::shared();
    let namespace = env.namespace("finalizer").await;
    let api: Api<ConfigMap> = Api::namespaced(env.client(), &namespace);
    let object: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "x", "finalizers": [THEIRS] } })).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();

    assert_eq!(reconcile(&api, "x", Action::Done).await, ("apply", Action::Done));
    assert_eq!(api.get("x").await.unwrap().finalizers(), [THEIRS, OURS]);
    assert_eq!(reconcile(&api, "x", Action::Done).await, ("apply", Action::Done), "added once");
    assert_eq!(api.get("x").await.unwrap().finalizers().len(), 2);

    api.delete("x", &DeleteParams::default()).await.unwrap();
    let later = Action::RequeueAfter(Duration::from_secs(1));
    assert_eq!(reconcile(&api, "x", later).await, ("cleanup", later));
    assert_eq!(api.get("x").await.unwrap().finalizers(), [THEIRS, OURS], "a cleanup not done keeps the finalizer");
    assert_eq!(reconcile(&api, "x", Action::Done).await, ("cleanup", Action::Done));
    assert_eq!(api.get("x").await.unwrap().finalizers(), [THEIRS], "only ours went");
    assert_eq!(reconcile(&api, "x", Action::Done).await, ("nothing", Action::Done), "cleaned up already");

    let patch = json!({ "metadata": { "finalizers": null } });
    api.patch("x", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    assert!(api.get_opt("x").await.unwrap().is_none());
}

/// A stale copy (the list changed since it was read) is not written back: the helper reads
/// the object again and changes the list as it is now.
#[tokio::test]
async fn a_list_changed_meanwhile_is_read_again() {
    let env = TestEnv::shared();
    let namespace = env.namespace("finalizer-race").await;
    let api: Api<ConfigMap> = Api::namespaced(env.client(), &namespace);
    let object: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "x", "finalizers": [THEIRS] } })).unwrap();
    let stale = api.create(&PostParams::default(), &object).await.unwrap();
    let patch = json!({ "metadata": { "finalizers": [THEIRS, "example.com/another"] } });
    api.patch("x", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

    let written = finalizer::add(&api, &stale, OURS).await.unwrap().expect("written");
    assert_eq!(written.finalizers(), [THEIRS, "example.com/another", OURS]);
    let patch = json!({ "metadata": { "finalizers": [THEIRS, "example.com/another", OURS, "example.com/third"] } });
    api.patch("x", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    finalizer::remove(&api, &written, OURS).await.unwrap().expect("written");
    assert_eq!(api.get("x").await.unwrap().finalizers(), [THEIRS, "example.com/another", "example.com/third"]);

    let patch = json!({ "metadata": { "finalizers": null } });
    api.patch("x", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}
