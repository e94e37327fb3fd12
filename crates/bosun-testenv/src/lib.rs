//! A real Kubernetes control plane on loopback, for tests and local development.
//!
//! `bosun-testenv` builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
//! kubectl and KWOK's `kwok` once from the official Go modules with the machine's Go
//! toolchain ([`Binaries`]), caches them outside the repository, and starts them on random
//! loopback ports with certificates generated in-process ([`ControlPlane`]), with simulated
//! nodes where Pods run when asked ([`ControlPlaneBuilder::nodes`]). Tests share one control
//! plane per test binary through [`TestEnv::shared`] (or [`TestEnv::shared_with_nodes`]) and
//! isolate themselves with a fresh namespace each:
//!
//! ```no_run
//! # async fn example() {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::Api;
//!
//! let env = bosun_testenv::TestEnv::shared();
//! let namespace = env.namespace("example").await;
//! let config_maps: Api<ConfigMap> = Api::namespaced(env.client(), &namespace);
//! assert!(config_maps.list(&Default::default()).await.unwrap().items.len() <= 1);
//! # }
//! ```
//!
//! No mock stands in for the API server: what passes here passes against Kubernetes.

#![warn(missing_docs)]

mod binaries;
mod cargo;
mod control_plane;
mod go_build;
mod kubeconfig;
mod nodes;
mod pki;
mod port;
mod process;
mod progress;
mod proxy;
mod storage;
mod test_env;

pub use binaries::{BIN_DIR_ENV, Binaries, BuildError, Component, ETCD_VERSION, HELM_VERSION, KUBERNETES_VERSION, KWOK_VERSION};
pub use cargo::cargo_build;
pub use control_plane::{ADMIN_USER, ControlPlane, ControlPlaneBuilder, DEFAULT_CONTROLLERS, Error};
pub use kubeconfig::CONTEXT;
pub use nodes::{NODE_CONTROLLERS, POD_EXIT_CODE_ANNOTATION, POD_READY_ANNOTATION, node_name};
pub use port::free_port;
pub use process::{ManagedProcess, is_running};
pub use proxy::FreezableProxy;
pub use storage::STORAGE_CLASS;
pub use test_env::{SHARED_NODES, TestEnv, eventually};

/// Five characters of `[a-z0-9]` that differ between calls and between processes, for names
/// of namespaces and directories.
pub fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let mut value = hasher.finish();
    (0..5)
        .map(|_| {
            let digit = (value % 36) as u32;
            value /= 36;
            char::from_digit(digit, 36).expect("a base-36 digit")
        })
        .collect()
}
