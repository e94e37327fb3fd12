//! The CRDs: committed copies (the engine's and the AdmissionController's) are current, and Metacontroller manifests using every field
//! apply to them unchanged, with nothing pruned.

use bosun_testenv::TestEnv;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::Value;

const COMMITTED: &str = include_str!("../../../deploy/crds/metacontroller.k8s.io.yaml");
const ADMISSION: &str = include_str!("../../../deploy/crds/admissioncontrollers.bosun.dev.yaml");

#[test]
fn committed_crds_are_current() {
    assert!(
        COMMITTED == bosun_engine::api::crds_yaml(),
        "deploy/crds/metacontroller.k8s.io.yaml is stale: run `cargo run -p bosun -- crds engine > deploy/crds/metacontroller.k8s.io.yaml`"
    );
    assert!(
        ADMISSION == bosun_engine::admission::crd_yaml(),
        "deploy/crds/admissioncontrollers.bosun.dev.yaml is stale: run \
         `cargo run -p bosun -- crds admission > deploy/crds/admissioncontrollers.bosun.dev.yaml`"
    );
}

const COMPOSITE: &str = r#"
apiVersion: metacontroller.k8s.io/v1alpha1
kind: CompositeController
metadata:
  name: catset-controller-NAME
spec:
  parentResource:
    apiVersion: ctl.enisoc.com/v1
    resource: catsets
    revisionHistory:
      fieldPaths:
      - spec.template
    labelSelector:
      matchLabels:
        managed: "true"
    ignoreStatusChanges: true
  childResources:
  - apiVersion: v1
    resource: pods
    updateStrategy:
      method: RollingRecreate
      statusChecks:
        conditions:
        - type: Ready
          status: "True"
          reason: PodReady
  - apiVersion: v1
    resource: persistentvolumeclaims
  hooks:
    customize:
      webhook:
        url: http://catset-controller.metacontroller/customize
    sync:
      version: v1
      webhook:
        url: http://catset-controller.metacontroller/sync
        timeout: 10s
        etag:
          enabled: true
          cacheTimeoutSeconds: 60
          cacheCleanupSeconds: 120
    finalize:
      version: v2
      webhook:
        service:
          name: catset-controller
          namespace: metacontroller
          port: 8443
          protocol: https
        path: /finalize
        responseUnMarshallMode: loose
        caBundle:
          secretRef:
            name: hook-ca
            namespace: metacontroller
            key: ca.crt
        clientTLS:
          secretRef:
            name: hook-client
            namespace: metacontroller
          certKey: tls.crt
          privateKeyKey: tls.key
        basicAuth:
          secretRef:
            name: hook-basic
            namespace: metacontroller
          usernameKey: user
          passwordKey: pass
    preUpdateChild:
      webhook:
        url: http://catset-controller.metacontroller/pre
    postUpdateChild:
      webhook:
        url: http://catset-controller.metacontroller/post
  endpointConfigs:
  - host: catset-controller.metacontroller
    authorization:
      type: Bearer
      secretRef:
        name: hook-token
        namespace: metacontroller
        key: token
    caBundle:
      inline: "-----BEGIN CERTIFICATE-----"
  resyncPeriodSeconds: 30
  generateSelector: false
"#;

const DECORATOR: &str = r#"
apiVersion: metacontroller.k8s.io/v1alpha1
kind: DecoratorController
metadata:
  name: service-per-pod-NAME
spec:
  resources:
  - apiVersion: apps/v1
    resource: statefulsets
    labelSelector:
      matchExpressions:
      - key: app
        operator: Exists
    annotationSelector:
      matchAnnotations:
        service-per-pod: "true"
      matchExpressions:
      - key: service-per-pod-ports
        operator: Exists
    ignoreStatusChanges: false
  attachments:
  - apiVersion: v1
    resource: services
    updateStrategy:
      method: InPlace
  hooks:
    sync:
      webhook:
        url: http://service-per-pod.metacontroller/sync-service-per-pod
    finalize:
      webhook:
        url: http://service-per-pod.metacontroller/finalize-service-per-pod
  resyncPeriodSeconds: 10
"#;

/// Every leaf of `expected` is in `actual` with the same value.
fn assert_contains(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let field = format!("{path}.{key}");
                let found = actual.get(key).unwrap_or_else(|| panic!("{field} was pruned"));
                assert_contains(value, found, &field);
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            assert_eq!(expected.len(), actual.len(), "{path}");
            for (index, (expected, actual)) in expected.iter().zip(actual).enumerate() {
                assert_contains(expected, actual, &format!("{path}[{index}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{path}"),
    }
}

async fn apply_unchanged(manifest: &str, resource: &ApiResource) -> DynamicObject {
    let env = TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let manifest = manifest.replace("NAME", &bosun_testenv::unique_suffix());
    let object: DynamicObject = serde_yaml::from_str(&manifest).unwrap();
    let api: Api<DynamicObject> = Api::all_with(client, resource);
    let created = api.create(&PostParams::default(), &object).await.unwrap();
    let expected: Value = serde_yaml::from_str(&manifest).unwrap();
    assert_contains(&expected["spec"], &created.data["spec"], "spec");
    created
}

#[tokio::test]
async fn a_metacontroller_composite_controller_applies_unchanged() {
    let resource = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    let created = apply_unchanged(COMPOSITE, &resource).await;
    assert_eq!(created.data["spec"]["hooks"]["customize"]["version"], "v1", "the hook version defaults to v1");
    let typed: bosun_engine::api::CompositeController = serde_json::from_value(serde_json::to_value(&created).unwrap()).unwrap();
    let finalize = typed.spec.hooks.unwrap().finalize.unwrap();
    assert_eq!(finalize.version, Some(bosun_engine::api::HookVersion::V2));
}

#[tokio::test]
async fn a_metacontroller_decorator_controller_applies_unchanged() {
    let resource = ApiResource::erase::<bosun_engine::api::DecoratorController>(&());
    apply_unchanged(DECORATOR, &resource).await;
}

#[tokio::test]
async fn invalid_controllers_are_refused_by_the_schema() {
    let env = TestEnv::shared();
    let client = env.client();
    bosun_engine::install_crds(&client).await.unwrap();
    let resource = ApiResource::erase::<bosun_engine::api::CompositeController>(&());
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let bad_method = COMPOSITE.replace("NAME", &bosun_testenv::unique_suffix()).replace("RollingRecreate", "Sometimes");
    let object: DynamicObject = serde_yaml::from_str(&bad_method).unwrap();
    let error = api.create(&PostParams::default(), &object).await.unwrap_err();
    assert!(error.to_string().contains("Sometimes"), "{error}");
    let no_parent = r#"{"apiVersion":"metacontroller.k8s.io/v1alpha1","kind":"CompositeController","metadata":{"name":"NAME"},"spec":{}}"#
        .replace("NAME", &format!("no-parent-{}", bosun_testenv::unique_suffix()));
    let object: DynamicObject = serde_json::from_str(&no_parent).unwrap();
    let error = api.create(&PostParams::default(), &object).await.unwrap_err();
    assert!(error.to_string().contains("parentResource"), "{error}");
}
