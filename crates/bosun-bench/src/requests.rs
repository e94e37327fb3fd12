//! Counting API requests from the API server's own metrics (`apiserver_request_total`), and
//! making a scenario's requests with bounded concurrency.

use std::collections::BTreeMap;

use anyhow::Context;
use futures::StreamExt;
use kube::Client;

use crate::engine::label;

/// The API server's write requests (every verb but GET, LIST and WATCH) to `resources` (and
/// their subresources, as `resource/subresource`), summed per verb, since it started.
pub async fn apiserver_writes(client: &Client, resources: &[&str]) -> anyhow::Result<BTreeMap<String, u64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await.context("scraping the API server's metrics")?;
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|line| line.starts_with("apiserver_request_total{")) {
        let resource = label(line, "resource").unwrap_or_default();
        let verb = label(line, "verb").unwrap_or_default();
        if !resources.contains(&resource) || matches!(verb, "GET" | "LIST" | "WATCH") {
            continue;
        }
        let key = match label(line, "subresource").filter(|subresource| !subresource.is_empty()) {
            Some(subresource) => format!("{verb} {resource}/{subresource}"),
            None => verb.to_owned(),
        };
        let value: f64 = line.rsplit(' ').next().and_then(|value| value.parse().ok()).unwrap_or(0.0);
        *counts.entry(key).or_default() += value as u64;
    }
    Ok(counts)
}

/// The counts that grew from `before` to `after`, as `12 POST, 3 PATCH`, or `none`.
pub fn difference(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = after
        .iter()
        .filter_map(|(key, value)| {
            let delta = value - before.get(key).copied().unwrap_or(0);
            (delta > 0).then(|| format!("{delta} {key}"))
        })
        .collect();
    if parts.is_empty() { "none".into() } else { parts.join(", ") }
}

/// The total that grew from `before` to `after`.
pub fn total_difference(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> u64 {
    after.iter().map(|(key, value)| value - before.get(key).copied().unwrap_or(0)).sum()
}

/// Runs `work` over `items` with `concurrency` at once.
pub async fn concurrently<T, F, Fut>(items: Vec<T>, concurrency: usize, work: F) -> anyhow::Result<()>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let pending: Vec<Fut> = items.into_iter().map(work).collect();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(pending).buffer_unordered(concurrency.max(1)).collect().await;
    results.into_iter().collect()
}
