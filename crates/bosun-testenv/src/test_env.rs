//! The control plane shared by all tests of one test binary, with helpers for what almost
//! every test needs: a fresh namespace, an admin client, and a client that acts as a
//! ServiceAccount.
//!
//! The helpers panic with a clear message instead of returning errors: they are for tests,
//! where a failure to set up is a failed test.

use std::sync::OnceLock;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};

use crate::ControlPlane;

/// Polls `check` every 100 ms until it returns `Some`, and returns that. Panics after 60 s,
/// naming `what`: a bound on liveness for tests, not a timing assertion.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The shared control plane of a test binary.
#[derive(Debug)]
pub struct TestEnv {
    control_plane: ControlPlane,
    nodes: usize,
}

/// How many simulated nodes [`TestEnv::shared_with_nodes`] runs.
pub const SHARED_NODES: usize = 3;

static SHARED: OnceLock<Result<TestEnv, String>> = OnceLock::new();

extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(env)) = SHARED.get() {
        env.control_plane.stop();
    }
}

impl TestEnv {
    /// The control plane of this test binary, started by the first caller (building the
    /// binaries first if they are not cached) and stopped when the binary exits, whether its
    /// tests passed or panicked. If a test binary is killed, the processes die with it.
    ///
    /// # Panics
    /// If the control plane cannot be started; every later call panics with the same message.
    pub fn shared() -> &'static TestEnv {
        Self::shared_started(0)
    }

    /// Like [`TestEnv::shared`], with [`SHARED_NODES`] simulated nodes on which Pods run (see
    /// [`ControlPlaneBuilder::nodes`](crate::ControlPlaneBuilder::nodes)). Call it from every
    /// test of a binary that needs Pods to run: the first call of either function decides.
    ///
    /// # Panics
    /// As [`TestEnv::shared`], and when this binary's control plane was started without nodes.
    pub fn shared_with_nodes() -> &'static TestEnv {
        let env = Self::shared_started(SHARED_NODES);
        assert!(
            env.nodes > 0,
            "this test binary's control plane was started by TestEnv::shared, without nodes; \
             call TestEnv::shared_with_nodes in each of its tests"
        );
        env
    }

    fn shared_started(nodes: usize) -> &'static TestEnv {
        let shared = SHARED.get_or_init(|| {
            // Its own thread and runtime: the caller may be inside a runtime, and the control
            // plane must not depend on any one test's runtime staying alive.
            let started = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(ControlPlane::builder().nodes(nodes).start()).map_err(std::io::Error::other)
            })
            .join();
            match started {
                Ok(Ok(control_plane)) => {
                    #[allow(unsafe_code)]
                    // SAFETY: registers a plain `extern "C"` function with no captured state.
                    unsafe {
                        libc::atexit(stop_shared_at_exit)
                    };
                    Ok(TestEnv { control_plane, nodes })
                }
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("starting the control plane panicked".to_owned()),
            }
        });
        match shared {
            Ok(env) => env,
            Err(error) => panic!("the local control plane could not start: {error}"),
        }
    }

    /// The control plane itself: kubeconfig path, server URL, process ids.
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// A new admin client (user in `system:masters`), bound to the calling test's runtime.
    pub fn client(&self) -> kube::Client {
        self.control_plane.client().expect("building an admin client")
    }

    /// Creates a namespace named `<prefix>-<5 random characters>` and returns its name.
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", crate::unique_suffix());
        let namespace = Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|error| panic!("creating namespace {name}: {error}"));
        name
    }

    /// Installs (or updates) a CRD with server-side apply and waits until the API server
    /// serves it.
    pub async fn install_crd(&self, crd: &CustomResourceDefinition) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client());
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("bosun-testenv").force(), &Patch::Apply(crd))
            .await
            .unwrap_or_else(|error| panic!("installing CRD {name}: {error}"));
        let established = await_condition(crds, &name, conditions::is_crd_established());
        tokio::time::timeout(std::time::Duration::from_secs(60), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} was not established within 60 s"))
            .unwrap_or_else(|error| panic!("watching CRD {name}: {error}"));
    }

    /// A client that authenticates as ServiceAccount `name` in `namespace` with a token from
    /// the TokenRequest API, so RBAC applies to it as to a Pod running as that account. The
    /// ServiceAccount is created if it does not exist.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> kube::Client {
        kube::Client::try_from(self.service_account_config(namespace, name).await).expect("building a ServiceAccount client")
    }

    /// The client configuration of [`TestEnv::service_account_client`], for a client built
    /// with layers of one's own (metrics, say).
    pub async fn service_account_config(&self, namespace: &str, name: &str) -> kube::Config {
        let token = self.control_plane.service_account_token(namespace, name).await.unwrap_or_else(|error| panic!("{error}"));
        self.control_plane.config_for_token(&token).await.unwrap_or_else(|error| panic!("a client config for {namespace}/{name}: {error}"))
    }
}
