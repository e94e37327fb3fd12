//! WebAssembly hooks (bosun's extension of the hook shape): a WASI preview 1 module run in
//! bosun's process once per call, the JSON request on its standard input and the response
//! read from its standard output — the protocol of a webhook, so any language that targets
//! WASI can write one. A module is loaded from a ConfigMap's `binaryData` or a URL, checked
//! against its pinned SHA-256 digest, compiled once per digest (with wasmtime's cranelift) and
//! instantiated fresh for every call: no state survives a call, and it sees no filesystem, no
//! network, no environment but what the hook declares. Every call is bounded in fuel, memory
//! and time (it runs as a future that yields at every epoch tick, dropped at the deadline),
//! so a module that loops, sleeps, allocates without bound or traps fails its sync and
//! nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::Digest as _;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use crate::api::WasmHook;

/// How often the epoch advances: a running module yields to the executor at every tick, so
/// that its deadline (and every other task) gets its turn.
const TICK: Duration = Duration::from_millis(5);
/// The defaults of a hook's limits.
const DEFAULT_MAX_MEMORY: u64 = 64 * 1024 * 1024;
const DEFAULT_FUEL: u64 = 10_000_000_000;
/// The largest module fetched from a URL (a ConfigMap's is bounded by the API server).
pub(crate) const MAX_MODULE_BYTES: usize = 64 * 1024 * 1024;
/// How long a ConfigMap's module without a pinned digest is used before it is read again.
const UNPINNED_FOR: Duration = Duration::from_secs(10);
/// How much of a module's standard error is kept (the end of it is quoted in errors).
const STDERR_BYTES: usize = 64 * 1024;
const QUOTED_STDERR_BYTES: usize = 512;

/// Where a module is, and its limits, resolved when the controller starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WasmModule {
    source: Source,
    /// The pinned digest, lowercase hex.
    sha256: Option<String>,
    max_memory: u64,
    fuel: u64,
    env: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    ConfigMap { namespace: String, name: String, key: String },
    Url(url::Url),
}

/// Why a WebAssembly hook's declaration cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModuleError {
    #[error("wasm needs configMap (namespace, name, key) or url, not both")]
    NoSource,
    #[error("wasm.url is not a valid http(s) URL")]
    Url,
    #[error("wasm.url needs sha256, the module's pinned digest")]
    Unpinned,
    #[error("wasm.sha256 must be 64 hex digits")]
    Digest,
}

impl WasmModule {
    pub(crate) fn resolve(wasm: &WasmHook) -> Result<WasmModule, ModuleError> {
        let source = match (&wasm.config_map, &wasm.url) {
            (Some(map), None) => Source::ConfigMap { namespace: map.namespace.clone(), name: map.name.clone(), key: map.key.clone() },
            (None, Some(url)) => {
                let url = url::Url::parse(url).map_err(|_| ModuleError::Url)?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(ModuleError::Url);
                }
                if wasm.sha256.is_none() {
                    return Err(ModuleError::Unpinned);
                }
                Source::Url(url)
            }
            _ => return Err(ModuleError::NoSource),
        };
        let sha256 = match &wasm.sha256 {
            Some(hex) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) => Some(hex.to_ascii_lowercase()),
            Some(_) => return Err(ModuleError::Digest),
            None => None,
        };
        Ok(WasmModule {
            source,
            sha256,
            max_memory: wasm.max_memory_bytes.unwrap_or(DEFAULT_MAX_MEMORY),
            fuel: wasm.fuel.unwrap_or(DEFAULT_FUEL),
            env: wasm.env.iter().map(|variable| (variable.name.clone(), variable.value.clone())).collect(),
        })
    }

    /// How logs, errors and metrics name the hook: `wasm:configmap/<namespace>/<name>/<key>`
    /// or `wasm:<url>` (its credentials, if any, left out).
    pub(crate) fn url(&self) -> url::Url {
        let text = match &self.source {
            Source::ConfigMap { namespace, name, key } => format!("wasm:configmap/{namespace}/{name}/{key}"),
            Source::Url(url) => format!("wasm:{}", bosun_runtime::redact::url(url)),
        };
        url::Url::parse(&text).expect("a wasm: URL parses")
    }
}

/// How a call ended, when it did not answer.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The module could not be loaded or compiled.
    Load(String),
    /// It ran past the deadline.
    TimedOut,
    /// It used all its fuel.
    OutOfFuel(u64),
    /// It exited with a status other than 0, or trapped: what happened, and the end of its
    /// standard error.
    Failed { what: String, stderr: String },
    /// It wrote more than the limit to its standard output.
    TooLarge,
}

/// The host side of a call.
struct State {
    wasi: WasiP1Ctx,
    limits: wasmtime::StoreLimits,
}

/// One wasmtime engine for every WebAssembly hook of a HookClient: modules compiled once per
/// digest, the epoch advanced by a thread of its own.
pub(crate) struct Runtime {
    engine: wasmtime::Engine,
    linker: wasmtime::Linker<State>,
    compiled: Mutex<HashMap<String, wasmtime::InstancePre<State>>>,
    /// For modules without a pinned digest: the digest last read from each source, and when.
    read: Mutex<HashMap<Source, (Instant, String)>>,
    loading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// The process's runtime, made on first use.
    pub(crate) fn shared() -> Result<Arc<Runtime>, String> {
        static RUNTIME: OnceLock<Result<Arc<Runtime>, String>> = OnceLock::new();
        RUNTIME.get_or_init(|| Runtime::new().map(Arc::new).map_err(|error| error.to_string())).clone()
    }

    fn new() -> wasmtime::Result<Runtime> {
        let mut config = wasmtime::Config::new();
        config.consume_fuel(true).epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config)?;
        let mut linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut State| &mut state.wasi)?;
        let ticking = engine.weak();
        std::thread::Builder::new().name("bosun-wasm-epoch".into()).spawn(move || {
            while let Some(engine) = ticking.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })?;
        Ok(Runtime { engine, linker, compiled: Mutex::default(), read: Mutex::default(), loading: tokio::sync::Mutex::default() })
    }

    /// Runs `module` with `request` on its standard input until `deadline`; its standard
    /// output. `fetch` reads a module from a URL.
    pub(crate) async fn run(
        self: &Arc<Self>,
        client: &kube::Client,
        fetch: impl AsyncFnOnce(&url::Url) -> Result<Vec<u8>, String>,
        module: &WasmModule,
        request: Vec<u8>,
        deadline: tokio::time::Instant,
        limit: usize,
    ) -> Result<Vec<u8>, RunError> {
        let prepared = tokio::time::timeout_at(deadline, self.prepare(client, fetch, module)).await.map_err(|_| RunError::TimedOut)??;
        // The module yields at every epoch tick, and the host's own waits (a sleep) are
        // futures too: at the deadline the call is dropped wherever it is.
        tokio::time::timeout_at(deadline, self.call(&prepared, module, request, limit)).await.map_err(|_| RunError::TimedOut)?
    }

    /// The compiled module, loading and compiling it if need be.
    async fn prepare(
        &self,
        client: &kube::Client,
        fetch: impl AsyncFnOnce(&url::Url) -> Result<Vec<u8>, String>,
        module: &WasmModule,
    ) -> Result<wasmtime::InstancePre<State>, RunError> {
        let cached = || {
            let known = match &module.sha256 {
                Some(pinned) => Some(pinned.clone()),
                None => {
                    let read = self.read.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    read.get(&module.source).filter(|(at, _)| at.elapsed() < UNPINNED_FOR).map(|(_, digest)| digest.clone())
                }
            };
            known.and_then(|digest| self.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&digest).cloned())
        };
        if let Some(prepared) = cached() {
            return Ok(prepared);
        }
        // One load at a time: the calls that wait find what the first loaded.
        let _loading = self.loading.lock().await;
        if let Some(prepared) = cached() {
            return Ok(prepared);
        }
        let bytes = match &module.source {
            Source::ConfigMap { namespace, name, key } => {
                let config_map = kube::Api::<ConfigMap>::namespaced(client.clone(), namespace)
                    .get(name)
                    .await
                    .map_err(|error| RunError::Load(format!("reading ConfigMap {namespace}/{name}: {error}")))?;
                let bytes = config_map.binary_data.and_then(|mut data| data.remove(key));
                bytes.ok_or_else(|| RunError::Load(format!("ConfigMap {namespace}/{name} has no binaryData key {key:?}")))?.0
            }
            Source::Url(url) => fetch(url).await.map_err(RunError::Load)?,
        };
        let digest = format!("{:x}", sha2::Sha256::digest(&bytes));
        if let Some(pinned) = &module.sha256
            && *pinned != digest
        {
            return Err(RunError::Load(format!("the module's SHA-256 is {digest}, not the pinned {pinned}")));
        }
        self.read.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(module.source.clone(), (Instant::now(), digest.clone()));
        if let Some(prepared) = self.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&digest).cloned() {
            return Ok(prepared);
        }
        let (engine, linker) = (self.engine.clone(), self.linker.clone());
        let prepared = tokio::task::spawn_blocking(move || {
            let compiled = wasmtime::Module::new(&engine, &bytes).map_err(|error| format!("compiling the module: {error}"))?;
            linker.instantiate_pre(&compiled).map_err(|error| format!("linking the module (WASI preview 1 only): {error}"))
        })
        .await
        .map_err(|error| RunError::Load(error.to_string()))?
        .map_err(RunError::Load)?;
        tracing::info!(sha256 = %digest, "compiled a WebAssembly hook");
        self.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(digest, prepared.clone());
        Ok(prepared)
    }

    /// One call in a fresh instance.
    async fn call(
        &self,
        prepared: &wasmtime::InstancePre<State>,
        module: &WasmModule,
        request: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<u8>, RunError> {
        // Room past the limit, so that output beyond it is seen as such (a write that does not
        // fit fails in the module, which then traps or exits).
        let (stdout, stderr) = (MemoryOutputPipe::new(limit.saturating_mul(2)), MemoryOutputPipe::new(STDERR_BYTES));
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(request)).stdout(stdout.clone()).stderr(stderr.clone()).arg("hook");
        for (name, value) in &module.env {
            wasi.env(name, value);
        }
        let limits = wasmtime::StoreLimitsBuilder::new().memory_size(usize::try_from(module.max_memory).unwrap_or(usize::MAX)).build();
        let mut store = wasmtime::Store::new(&self.engine, State { wasi: wasi.build_p1(), limits });
        store.limiter(|state| &mut state.limits);
        let failed = |what: String| RunError::Failed { what, stderr: String::new() };
        store.set_fuel(module.fuel).map_err(|error| failed(error.to_string()))?;
        store.epoch_deadline_async_yield_and_update(1);
        let ended = async {
            let instance = prepared.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        }
        .await;
        let stderr = stderr.contents();
        if !stderr.is_empty() {
            tracing::info!(module = %module.url(), stderr = %String::from_utf8_lossy(&stderr), "WebAssembly hook's standard error");
        }
        let output = stdout.contents();
        if output.len() > limit {
            return Err(RunError::TooLarge);
        }
        let quoted = || String::from_utf8_lossy(&stderr[stderr.len().saturating_sub(QUOTED_STDERR_BYTES)..]).trim().to_owned();
        let Err(error) = ended else { return Ok(output.to_vec()) };
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            if exit.0 == 0 {
                return Ok(output.to_vec());
            }
            return Err(RunError::Failed { what: format!("exited with status {}", exit.0), stderr: quoted() });
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::OutOfFuel) => Err(RunError::OutOfFuel(module.fuel)),
            _ => Err(RunError::Failed { what: format!("trapped: {}", root_cause(&error)), stderr: quoted() }),
        }
    }
}

/// The innermost cause of a wasmtime error, which says what happened.
fn root_cause(error: &wasmtime::Error) -> String {
    error.chain().last().map(ToString::to_string).unwrap_or_default()
}
