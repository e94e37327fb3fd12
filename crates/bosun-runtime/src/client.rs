//! How a bosun process connects to the API server: kube's client with what a long-running
//! controller needs and kube's defaults leave out — a short connect timeout, a read timeout
//! that bounds a request whose server stopped answering (longer than a watch's 290 s, so idle
//! watches are not cut), and TCP keepalive, so a connection to a server that vanished is
//! noticed in about a minute instead of never. Every request is counted in
//! `rest_client_requests_total` and, if asked, rate-limited.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ClientBuilder, ConfigExt, DynBody};
use tower::{BoxError, ServiceBuilder, ServiceExt};

use crate::{Metrics, RateLimitLayer};

/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response may stay silent once its request is written; above the 290 s after
/// which the API server ends a watch itself.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// How long writing a request may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// An idle connection is probed after this long, then every [`KEEPALIVE_INTERVAL`]; it is
/// closed after [`KEEPALIVE_RETRIES`] unanswered probes.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Time between keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before a connection counts as dead.
pub const KEEPALIVE_RETRIES: u32 = 3;

/// A client for `config` with the timeouts and keepalive above, counting its requests in
/// `metrics`, limited to `limit` = (requests per second, burst) if given. Through an HTTP
/// proxy (`config.proxy_url`) kube's own connection stack is used, with the same timeouts
/// but the operating system's keepalive.
pub fn connect(mut config: kube::Config, metrics: &Metrics, limit: Option<(f64, u32)>) -> Result<kube::Client, kube::Error> {
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.write_timeout = Some(WRITE_TIMEOUT);
    // The read timeout counts from when a request is written, not from when its pooled
    // connection went idle.
    config.reset_reader_on_write = true;
    let counting = metrics.rest_client_layer(config.cluster_url.host().unwrap_or_default());
    let builder = if config.proxy_url.is_some() { ClientBuilder::try_from(config)? } else { with_keepalive(config)? };
    let builder = builder.with_layer(&counting);
    Ok(match limit {
        Some((qps, burst)) => builder.with_layer(&RateLimitLayer::new(qps, burst)).build(),
        None => builder.build(),
    })
}

/// The service stack under a [`kube::Client`], as kube types it.
type Stack = tower::util::BoxService<http::Request<Body>, http::Response<Box<DynBody>>, BoxError>;

/// kube's service stack (base URL, authentication, extra headers, retries of 429/503/504) over
/// a connector with keepalive and the configured timeouts.
fn with_keepalive(config: kube::Config) -> Result<ClientBuilder<Stack>, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(KEEPALIVE_IDLE));
    http.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    http.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
    let mut connector = hyper_timeout::TimeoutConnector::new(config.rustls_https_connector_with_connector(http)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry())))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(hyper)
        .map_response(|response| response.map(|body| Box::new(http_body_util::BodyExt::map_err(body, BoxError::from)) as Box<DynBody>))
        .boxed();
    Ok(ClientBuilder::new(service, config.default_namespace))
}

/// Sends a write (create, replace, patch) whose answer is not needed, skipping over the object
/// the API server answers with instead of parsing it: a controller learns the result from its
/// watch anyway, and parsing every written object again is a measurable part of its CPU. Errors
/// are kube's, as for any request (`kube::Error::Api` for a refusal).
pub async fn write(client: &kube::Client, request: Result<http::Request<Vec<u8>>, kube::core::request::Error>) -> Result<(), kube::Error> {
    send::<serde::de::IgnoredAny>(client, request).await.map(drop)
}

/// Sends a request built by `kube::core::Request` and decodes its answer as `T` — only as much
/// of the object as `T` reads (`IgnoredAny` for none of it). A request that could not be built
/// is `kube::Error::BuildRequest`, as `kube::Api` reports it.
pub async fn send<T: serde::de::DeserializeOwned>(
    client: &kube::Client,
    request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<T, kube::Error> {
    client.request::<T>(request.map_err(kube::Error::BuildRequest)?).await
}

/// Whether a refused JSON patch met a concurrent change — a failed `test`, or a path that
/// another client removed — rather than an invalid result (a bad label value, say), which is
/// an error to report, not a conflict to retry quietly.
pub fn is_patch_conflict(status: &kube::core::Status) -> bool {
    status.code == 409 || (status.code == 422 && status.details.as_ref().is_none_or(|details| details.causes.is_empty()))
}
