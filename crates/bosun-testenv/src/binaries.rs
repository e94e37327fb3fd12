//! The control-plane binaries: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
//! kubectl, Helm and KWOK's `kwok` for simulated nodes — which components there are, at which
//! versions, and the cache that holds them per version outside the repository. They are built
//! once, from the official Go modules, by [`crate::go_build`].
//!
//! A cache entry is valid only when its `manifest.json` lists every binary with the SHA-256
//! it had when built; a missing, partial or corrupt entry is rebuilt. A file lock keeps two
//! processes (parallel test binaries, `bosun dev`) from building the same entry at once.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::go_build::build;
use sha2::{Digest, Sha256};

use crate::progress::Progress;

/// The Kubernetes release the control plane is built from.
pub const KUBERNETES_VERSION: &str = "v1.37.2";
/// The etcd release the control plane is built from.
pub const ETCD_VERSION: &str = "v3.6.16";
/// The Helm release built alongside, for validating charts.
pub const HELM_VERSION: &str = "v3.22.0";
/// The KWOK release whose `kwok` controller simulates nodes and the lifecycle of their Pods.
pub const KWOK_VERSION: &str = "v0.8.0";
/// The `go` directive of the build modules: what [`KUBERNETES_VERSION`]'s own `go.mod` says. An
/// older local Go fetches this toolchain through the module proxy (`GOTOOLCHAIN=auto`), or,
/// with `GOTOOLCHAIN=local`, says that it is too old.
pub(crate) const GO_DIRECTIVE: &str = "1.26.0";

/// Set to a directory holding every [`Component`]'s binary (`etcd`, `kube-apiserver`,
/// `kube-controller-manager`, `kube-scheduler`, `kubectl`, `helm`, `kwok`) to use those
/// binaries instead of building them.
pub const BIN_DIR_ENV: &str = "BOSUN_TESTENV_BIN_DIR";

/// Why the control-plane binaries could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No `go` command was found, or it could not be run.
    #[error(
        "the Go toolchain is needed once to build the local control plane, but `go version` failed: {0}\n\
         Install Go (Debian: `apt-get install golang-go`; Go {GO_DIRECTIVE} or newer is fetched through the \
         module proxy if the installed one is older) and make sure `go` is on PATH, or set {BIN_DIR_ENV} to a \
         directory with prebuilt binaries."
    )]
    GoMissing(String),
    /// A `go` step of the build failed.
    #[error("building the local control plane failed at step `{step}` (exit {status}); last output:\n{output}")]
    GoCommand {
        /// The command that failed.
        step: String,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        output: String,
    },
    /// A binary named by [`BIN_DIR_ENV`] does not exist.
    #[error("{BIN_DIR_ENV} is set, but {0} does not exist")]
    MissingPrebuilt(PathBuf),
    /// Reading or writing the cache failed.
    #[error("control-plane cache at {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io { path: path.to_owned(), source }
}

/// One binary of the control plane and the Go package it is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// `go.etcd.io/etcd/server/v3`.
    Etcd,
    /// `k8s.io/kubernetes/cmd/kube-apiserver`.
    KubeApiserver,
    /// `k8s.io/kubernetes/cmd/kube-controller-manager`.
    KubeControllerManager,
    /// `k8s.io/kubernetes/cmd/kube-scheduler`, which places Pods on the simulated nodes.
    KubeScheduler,
    /// `k8s.io/kubernetes/cmd/kubectl`.
    Kubectl,
    /// `helm.sh/helm/v3/cmd/helm`, to render charts for tests.
    Helm,
    /// `sigs.k8s.io/kwok/cmd/kwok`, which plays kubelet for simulated nodes.
    Kwok,
}

impl Component {
    /// Every component, in build order.
    pub const ALL: [Component; 7] = [
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::Kubectl,
        Component::Etcd,
        Component::Helm,
        Component::Kwok,
    ];

    /// The binary's file name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kubectl => "kubectl",
            Component::Helm => "helm",
            Component::Kwok => "kwok",
        }
    }

    /// The release it is built from.
    pub fn version(self) -> &'static str {
        match self {
            Component::Etcd => ETCD_VERSION,
            Component::Helm => HELM_VERSION,
            Component::Kwok => KWOK_VERSION,
            _ => KUBERNETES_VERSION,
        }
    }
}

/// A directory holding a complete, verified set of control-plane binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub(crate) dir: PathBuf,
}

/// What the cache holds: each binary with the version it was built from and its SHA-256.
#[derive(Serialize, Deserialize, Default)]
struct Manifest {
    binaries: std::collections::BTreeMap<String, Built>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Built {
    version: String,
    sha256: String,
}

impl Binaries {
    /// The binaries from [`BIN_DIR_ENV`] if it is set, otherwise from the cache, built first
    /// when the cache entry is missing, partial or corrupt. The first build takes minutes and
    /// reports its progress on standard error.
    pub fn ensure() -> Result<Binaries, BuildError> {
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
            let binaries = Binaries { dir: PathBuf::from(dir) };
            for component in Component::ALL {
                let path = binaries.path(component);
                if !path.is_file() {
                    return Err(BuildError::MissingPrebuilt(path));
                }
            }
            return Ok(binaries);
        }
        Self::ensure_in(&cache_root())
    }

    fn ensure_in(root: &Path) -> Result<Binaries, BuildError> {
        let entry = root.join(format!("kubernetes-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}"));
        let binaries = Binaries { dir: entry.join("bin") };
        if binaries.missing().is_empty() {
            return Ok(binaries);
        }
        fs::create_dir_all(&entry).map_err(io_error(&entry))?;
        let lock_path = entry.join(".lock");
        let lock = File::create(&lock_path).map_err(io_error(&lock_path))?;
        if lock.try_lock().is_err() {
            Progress::line(format_args!("waiting for another process that is building the control plane in {}", entry.display()));
            lock.lock().map_err(io_error(&lock_path))?;
        }
        // The other process may have finished the build while we waited.
        let missing = binaries.missing();
        if !missing.is_empty() {
            build(&entry, &missing)?;
        }
        Ok(binaries)
    }

    /// The directory that holds the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one binary.
    pub fn path(&self, component: Component) -> PathBuf {
        self.dir.join(component.name())
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.with_file_name("manifest.json")
    }

    fn manifest(&self) -> Manifest {
        fs::read(self.manifest_path()).ok().and_then(|text| serde_json::from_slice(&text).ok()).unwrap_or_default()
    }

    /// The components that are not in the cache as built from their pinned version with the
    /// recorded hash.
    fn missing(&self) -> Vec<Component> {
        let manifest = self.manifest();
        Component::ALL
            .into_iter()
            .filter(|component| {
                let valid = manifest.binaries.get(component.name()).is_some_and(|built| {
                    built.version == component.version() && sha256_file(&self.path(*component)).is_ok_and(|digest| digest == built.sha256)
                });
                !valid
            })
            .collect()
    }

    /// Records a freshly built component in the manifest, atomically.
    pub(crate) fn record(&self, component: Component) -> Result<(), BuildError> {
        let path = self.path(component);
        let sha256 = sha256_file(&path).map_err(io_error(&path))?;
        let mut manifest = self.manifest();
        manifest.binaries.insert(component.name().to_owned(), Built { version: component.version().to_owned(), sha256 });
        let manifest_path = self.manifest_path();
        let partial = manifest_path.with_extension("json.partial");
        fs::write(&partial, serde_json::to_vec_pretty(&manifest).expect("manifest serializes")).map_err(io_error(&partial))?;
        fs::rename(&partial, &manifest_path).map_err(io_error(&manifest_path))
    }
}

/// `$XDG_CACHE_HOME/bosun`, else `$HOME/.cache/bosun`, else a directory under the system
/// temporary directory.
fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("bosun")
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_or_changed_binaries_are_rebuilt() {
        let root = std::env::temp_dir().join(format!("bosun-testenv-cache-test-{}", std::process::id()));
        let entry = root.join("entry");
        fs::create_dir_all(entry.join("bin")).unwrap();
        let binaries = Binaries { dir: entry.join("bin") };
        assert_eq!(binaries.missing(), Component::ALL, "no manifest");
        for component in Component::ALL {
            fs::write(binaries.path(component), component.name()).unwrap();
            if component != Component::Helm {
                binaries.record(component).unwrap();
            }
        }
        assert_eq!(binaries.missing(), [Component::Helm], "one never recorded");
        binaries.record(Component::Helm).unwrap();
        assert!(binaries.missing().is_empty(), "complete entry");
        fs::write(binaries.path(Component::Etcd), "truncated").unwrap();
        assert_eq!(binaries.missing(), [Component::Etcd], "a changed binary");
        fs::remove_dir_all(root).unwrap();
    }
}
