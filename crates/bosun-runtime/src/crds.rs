//! Installing CustomResourceDefinitions: applied with server-side apply (so re-installing an
//! unchanged CRD changes nothing), then waited for until the API server serves them.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt};

/// How long to wait for a CRD to become established.
const ESTABLISHED: Duration = Duration::from_secs(30);

/// Installs (or updates) `crds` as field manager `bosun` and waits until each is established.
pub async fn install(client: &kube::Client, crds: &[CustomResourceDefinition]) -> Result<(), kube::Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        api.patch(&crd.name_any(), &PatchParams::apply("bosun").force(), &Patch::Apply(crd)).await?;
    }
    for crd in crds {
        let name = crd.name_any();
        let established = await_condition(api.clone(), &name, conditions::is_crd_established());
        let _ = tokio::time::timeout(ESTABLISHED, established).await;
    }
    Ok(())
}
