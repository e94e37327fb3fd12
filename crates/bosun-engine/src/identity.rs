//! Per-controller identity (bosun's extension): a CompositeController or DecoratorController
//! annotated `bosun.dev/service-account: <namespace>/<name>` syncs as that ServiceAccount. Every
//! write of its syncs — children, their adoption and release, the object's status, labels and
//! finalizer, the events its hooks ask for — goes through a client that impersonates it, so the API server applies the
//! account's RBAC, not the engine's; and before a sync writes anything, the child writes it is
//! about to make are checked with SelfSubjectAccessReviews as that account. One it may not make
//! fails the sync with a `SyncError` that names the permission, and nothing is written. The
//! engine's own events about the controller (`SyncError`, `CreateError`) stay the engine's: an
//! account that may not write events would otherwise hide why it fails.
//!
//! Impersonation rather than a token from the TokenRequest API: there is no token to renew or
//! keep, the audit log names both the engine and the account, and the engine's right to do it
//! is one rule (`impersonate` on `serviceaccounts`, narrowed by `resourceNames` if wanted).
//! Answers are kept for [`ANSWERS_KEPT`], so a steady state asks nothing and a role granted
//! meanwhile is seen within that time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderValue;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::Api;
use kube::api::{ApiResource, PostParams};

use bosun_runtime::EventRecorder;

use crate::context::EngineContext;
use crate::sync_error::SyncError;

/// The annotation that names the ServiceAccount a controller acts as.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "bosun.dev/service-account";

/// How long an answer about a permission is trusted.
const ANSWERS_KEPT: Duration = Duration::from_secs(30);

/// A write a sync is about to make: a verb on a resource, in a namespace (or cluster-wide).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Permission {
    /// `create`, `update`, `patch` or `delete`.
    pub verb: &'static str,
    /// The API group (`""` for the core group).
    pub group: String,
    /// The resource's plural.
    pub resource: String,
    /// The namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
}

impl Permission {
    /// `verb` on `resource`'s objects in `namespace` (`None`: cluster-scoped).
    pub(crate) fn of(verb: &'static str, resource: &ApiResource, namespace: Option<String>) -> Permission {
        Permission { verb, group: resource.group.clone(), resource: resource.plural.clone(), namespace }
    }
}

impl std::fmt::Display for Permission {
    /// `create secrets in namespace "team-a"`, `delete widgets.example.com cluster-wide`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let resource = if self.group.is_empty() { self.resource.clone() } else { format!("{}.{}", self.resource, self.group) };
        match &self.namespace {
            Some(namespace) => write!(f, "{} {resource} in namespace {namespace:?}", self.verb),
            None => write!(f, "{} {resource} cluster-wide", self.verb),
        }
    }
}

/// Why a controller's identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdentityError {
    /// The annotation is not `<namespace>/<name>`.
    #[error("annotation {SERVICE_ACCOUNT_ANNOTATION}: {0:?} is not <namespace>/<name> of a ServiceAccount")]
    Malformed(String),
    /// The engine runs only controllers with an identity of their own.
    #[error(
        "this engine runs only controllers that name the ServiceAccount they act as (--require-service-account): annotate \
         the controller with {SERVICE_ACCOUNT_ANNOTATION}: <namespace>/<name>"
    )]
    Required,
}

/// Who a hosted controller's syncs act as.
pub(crate) struct Identity {
    /// The client every write of its syncs goes through.
    pub client: kube::Client,
    /// Records the events its hooks ask for, as the ServiceAccount; `None`: the engine does.
    pub recorder: Option<EventRecorder>,
    /// `namespace/name` of the ServiceAccount, when it is not the engine itself.
    account: Option<String>,
    /// Answers about permissions, and when they were given.
    answers: Mutex<HashMap<Permission, (bool, Instant)>>,
}

impl Identity {
    /// The identity a controller with these annotations acts as: the ServiceAccount its
    /// annotation names, impersonated through the engine's client; else the engine's own,
    /// unless the engine requires one.
    pub(crate) fn of(ctx: &EngineContext, annotations: &BTreeMap<String, String>) -> Result<Identity, IdentityError> {
        let Some(account) = annotations.get(SERVICE_ACCOUNT_ANNOTATION) else {
            if ctx.config.require_service_account {
                return Err(IdentityError::Required);
            }
            return Ok(Identity { client: ctx.client.clone(), recorder: None, account: None, answers: Mutex::default() });
        };
        let malformed = || IdentityError::Malformed(account.clone());
        let (namespace, name) = account.split_once('/').ok_or_else(malformed)?;
        let valid = |part: &str| !part.is_empty() && HeaderValue::from_str(part).is_ok() && !part.contains([':', '/']);
        if !valid(namespace) || !valid(name) {
            return Err(malformed());
        }
        let client = impersonating(&ctx.client, namespace, name);
        let recorder = Some(EngineContext::recorder_of(&client, &ctx.config));
        Ok(Identity { client, recorder, account: Some(account.clone()), answers: Mutex::default() })
    }

    /// Whether the syncs write as a ServiceAccount of the controller's, not as the engine.
    pub(crate) fn impersonates(&self) -> bool {
        self.account.is_some()
    }

    /// Checks that the account may make every write in `needed`; a `SyncError` naming those it
    /// may not. Always passes for the engine's own identity (its writes are its RBAC's).
    pub(crate) async fn check(&self, needed: BTreeSet<Permission>) -> Result<(), SyncError> {
        let Some(account) = &self.account else { return Ok(()) };
        let mut missing = Vec::new();
        for permission in needed {
            let known = self.lock().get(&permission).filter(|(_, when)| when.elapsed() < ANSWERS_KEPT).map(|(allowed, _)| *allowed);
            let allowed = match known {
                Some(allowed) => allowed,
                None => {
                    let allowed = self
                        .review(&permission)
                        .await
                        .map_err(|source| SyncError::Permissions { account: account.clone(), source: Box::new(source) })?;
                    let mut answers = self.lock();
                    answers.retain(|_, (_, when)| when.elapsed() < ANSWERS_KEPT);
                    answers.insert(permission.clone(), (allowed, Instant::now()));
                    allowed
                }
            };
            if !allowed {
                missing.push(permission);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(SyncError::Forbidden { account: account.clone(), missing: missing.iter().map(ToString::to_string).collect() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Permission, (bool, Instant)>> {
        self.answers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks the API server, as the account, whether it may.
    async fn review(&self, permission: &Permission) -> Result<bool, kube::Error> {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(permission.verb.to_owned()),
                    group: Some(permission.group.clone()),
                    resource: Some(permission.resource.clone()),
                    namespace: permission.namespace.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SelfSubjectAccessReview>::all(self.client.clone()).create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|status| status.allowed))
    }
}

/// A client that makes `client`'s requests as ServiceAccount `namespace/name`. No groups are
/// sent: the API server gives an impersonated ServiceAccount its own groups, and sending them
/// would need the right to impersonate groups too.
fn impersonating(client: &kube::Client, namespace: &str, name: &str) -> kube::Client {
    let user = HeaderValue::from_str(&format!("system:serviceaccount:{namespace}:{name}")).expect("validated as a header value");
    let inner = client.clone();
    let service = tower::service_fn(move |mut request: http::Request<kube::client::Body>| {
        request.headers_mut().insert("Impersonate-User", user.clone());
        let inner = inner.clone();
        async move { inner.send(request).await }
    });
    kube::Client::new(service, client.default_namespace().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_read_as_rbac_rules() {
        let secrets = Permission { verb: "create", group: String::new(), resource: "secrets".into(), namespace: Some("team-a".into()) };
        assert_eq!(secrets.to_string(), "create secrets in namespace \"team-a\"");
        let widgets = Permission { verb: "delete", group: "example.com".into(), resource: "widgets".into(), namespace: None };
        assert_eq!(widgets.to_string(), "delete widgets.example.com cluster-wide");
    }
}
