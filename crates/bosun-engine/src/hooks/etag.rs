//! Opt-in ETag caching of hook responses (`etag.enabled`): the last 200 response carrying an
//! `ETag` is kept per controller, hook URL and object; the next call sends `If-None-Match`, and
//! a 304 (or 412) answer replays the kept body. Entries expire after `cacheTimeoutSeconds`
//! (never, if unset) and are swept every `cacheCleanupSeconds` (on every call, if unset) —
//! either may be set without the other, unlike in Metacontroller, where that crashes the
//! process. A controller's entries go when it stops (deleted, or restarted by a spec change
//! such as a new hook URL), and an object's when it is deleted: each may hold a response of up
//! to `--max-hook-response-bytes`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;

use crate::api::WebhookEtagConfig;

/// A hook's ETag settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EtagSettings {
    /// How long an entry lives; `None`: until replaced.
    pub ttl: Option<Duration>,
    /// How often expired entries are removed; `None`: whenever the cache is used.
    pub cleanup: Option<Duration>,
}

impl EtagSettings {
    /// The settings of `config`, if it enables caching.
    pub(crate) fn of(config: Option<&WebhookEtagConfig>) -> Option<EtagSettings> {
        let config = config.filter(|config| config.enabled == Some(true))?;
        let seconds = |value: Option<i32>| value.filter(|seconds| *seconds > 0).map(|seconds| Duration::from_secs(seconds as u64));
        Some(EtagSettings { ttl: seconds(config.cache_timeout_seconds), cleanup: seconds(config.cache_cleanup_seconds) })
    }
}

struct Entry {
    etag: HeaderValue,
    body: Bytes,
    at: Instant,
}

/// How an entry names the object a response was about: `Kind/namespace/name`.
pub(crate) fn object_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    format!("{kind}/{}/{name}", namespace.unwrap_or_default())
}

/// What an entry is the answer to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EtagKey {
    /// `Kind/name` of the controller.
    pub controller: String,
    /// The hook's URL.
    pub url: String,
    /// The object, as [`object_key`] names it.
    pub object: String,
}

/// Kept responses by [`EtagKey`].
#[derive(Default)]
pub(crate) struct EtagCache {
    entries: Mutex<HashMap<EtagKey, Entry>>,
    swept: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for EtagCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtagCache").finish_non_exhaustive()
    }
}

impl EtagCache {
    fn sweep(&self, settings: &EtagSettings) {
        let Some(ttl) = settings.ttl else { return };
        let mut swept = self.swept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if swept.is_some_and(|at| settings.cleanup.is_some_and(|every| at.elapsed() < every)) {
            return;
        }
        *swept = Some(Instant::now());
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|_, entry| entry.at.elapsed() < ttl);
    }

    /// The ETag to send for `key`, if a live entry is kept.
    pub(crate) fn etag(&self, settings: &EtagSettings, key: &EtagKey) -> Option<HeaderValue> {
        self.sweep(settings);
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = entries.get(key)?;
        settings.ttl.is_none_or(|ttl| entry.at.elapsed() < ttl).then(|| entry.etag.clone())
    }

    /// The kept body for `key`, to replay on 304.
    pub(crate) fn body(&self, key: &EtagKey) -> Option<Bytes> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).map(|entry| entry.body.clone())
    }

    /// Drops the entries about `object` (as [`object_key`] names it): it is gone.
    pub(crate) fn forget(&self, object: &str) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|key, _| key.object != object);
    }

    /// Drops the entries of the controller `controller` (`Kind/name`): it stopped.
    pub(crate) fn forget_controller(&self, controller: &str) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|key, _| key.controller != controller);
    }

    /// How many entries are kept.
    pub(crate) fn count(&self) -> usize {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    /// Keeps `body` with `etag` for `key`.
    pub(crate) fn keep(&self, key: EtagKey, etag: HeaderValue, body: Bytes) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key, Entry { etag, body, at: Instant::now() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_timeout_alone_is_fine() {
        let only_timeout = WebhookEtagConfig { enabled: Some(true), cache_timeout_seconds: Some(5), cache_cleanup_seconds: None };
        assert_eq!(EtagSettings::of(Some(&only_timeout)), Some(EtagSettings { ttl: Some(Duration::from_secs(5)), cleanup: None }));
        let only_cleanup = WebhookEtagConfig { enabled: Some(true), cache_timeout_seconds: None, cache_cleanup_seconds: Some(5) };
        assert_eq!(EtagSettings::of(Some(&only_cleanup)).unwrap().ttl, None);
        let disabled = WebhookEtagConfig { enabled: None, cache_timeout_seconds: Some(5), cache_cleanup_seconds: Some(5) };
        assert_eq!(EtagSettings::of(Some(&disabled)), None);

        let cache = EtagCache::default();
        let key = EtagKey { controller: "CompositeController/c".into(), url: "http://h/sync".into(), object: "Thing/ns/p".into() };
        let settings = EtagSettings::of(Some(&only_timeout)).unwrap();
        assert!(cache.etag(&settings, &key).is_none());
        cache.keep(key.clone(), HeaderValue::from_static("\"v1\""), Bytes::from_static(b"{}"));
        assert_eq!(cache.etag(&settings, &key).unwrap(), "\"v1\"");
        let expired = EtagSettings { ttl: Some(Duration::ZERO), cleanup: None };
        assert!(cache.etag(&expired, &key).is_none(), "an expired entry is not sent, and is swept");
        assert!(cache.body(&key).is_none());
        cache.keep(key.clone(), HeaderValue::from_static("\"v2\""), Bytes::from_static(b"{}"));
        cache.forget(&object_key("Thing", Some("ns"), "other"));
        assert_eq!(cache.count(), 1);
        cache.forget(&object_key("Thing", Some("ns"), "p"));
        assert_eq!(cache.count(), 0, "the object went, and its entry with it");
        cache.keep(key.clone(), HeaderValue::from_static("\"v3\""), Bytes::from_static(b"{}"));
        cache.forget_controller("CompositeController/other");
        assert_eq!(cache.count(), 1);
        cache.forget_controller("CompositeController/c");
        assert_eq!(cache.count(), 0, "the controller stopped, and its entries went");
    }
}
