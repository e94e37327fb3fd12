//! Simulated storage: a default StorageClass whose claims kube-controller-manager's own
//! hostPath provisioner serves, so that PersistentVolumeClaims bind, StatefulSets with
//! `volumeClaimTemplates` run, and a deleted claim takes its volume with it — as with a
//! cluster's default storage, minus disks.
//!
//! kube-controller-manager runs the volume binder (`--enable-hostpath-provisioner`, a
//! provisioner upstream keeps for testing) and the claim and volume protection controllers
//! that release the `kubernetes.io/pvc-protection` finalizer, so claims do not stay
//! Terminating. Each volume is an empty directory `/tmp/hostpath_pv/<uid>` on this machine
//! (upstream's path), removed with its volume.

use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use std::collections::BTreeMap;

/// The name of the default StorageClass on a control plane with simulated nodes.
pub const STORAGE_CLASS: &str = "standard";

/// kube-controller-manager's in-tree hostPath provisioner.
const PROVISIONER: &str = "kubernetes.io/host-path";

/// The default StorageClass: claims without a class get it (the `DefaultStorageClass`
/// admission plugin), bind at once, and their volumes are deleted with them.
fn storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.to_owned()),
            annotations: Some(BTreeMap::from([("storageclass.kubernetes.io/is-default-class".to_owned(), "true".to_owned())])),
            ..Default::default()
        },
        provisioner: PROVISIONER.to_owned(),
        reclaim_policy: Some("Delete".to_owned()),
        volume_binding_mode: Some("Immediate".to_owned()),
        ..Default::default()
    }
}

/// Creates the default StorageClass; one that exists already is kept.
pub(crate) async fn create(classes: &Api<StorageClass>) -> Result<(), kube::Error> {
    match classes.create(&PostParams::default(), &storage_class()).await {
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        result => result.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_is_the_default_and_deletes_its_volumes() {
        let class = storage_class();
        assert_eq!(class.metadata.annotations.unwrap()["storageclass.kubernetes.io/is-default-class"], "true");
        assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
    }
}
