//! The connections hooks are called over: HTTP/1.1 by hyper over TCP, TLS by rustls for
//! `https://` hooks, connections pooled per host and reused where the server allows it.
//!
//! It is as tolerant as Go's `net/http` — Metacontroller's client — where rustls alone is
//! stricter: a TLS peer that closes the TCP connection without a `close_notify` alert ends the
//! stream as a plain close would, instead of failing the call. Python's `ssl`-wrapped
//! `http.server` does exactly that after every HTTP/1.0 response, whose body ends where the
//! connection does. Truncation stays detectable: hyper still refuses a body shorter than its
//! `Content-Length` or a chunked body without its last chunk, and a close-delimited body cut
//! short is not a JSON object, which decoding reports.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A request body: the whole JSON request.
pub(crate) type Body = Full<Bytes>;

/// What a call can fail with before a response's head arrives.
pub(crate) type TransportError = hyper_util::client::legacy::Error;

/// A pool of connections to hooks, verifying servers with one TLS configuration.
#[derive(Clone, Debug)]
pub(crate) struct Transport(Client<CloseTolerantConnector, Body>);

impl Transport {
    /// Connections for `http://` and `https://` URLs; `tls` verifies servers (and may present
    /// a client certificate).
    pub(crate) fn new(mut tls: rustls::ClientConfig) -> Transport {
        // The builder below offers HTTP/1.1 by ALPN itself.
        tls.alpn_protocols.clear();
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(tcp);
        Transport(Client::builder(TokioExecutor::new()).build(CloseTolerantConnector(https)))
    }

    /// Sends `request`; the response's body is read by the caller.
    pub(crate) async fn send(&self, request: http::Request<Body>) -> Result<http::Response<Incoming>, TransportError> {
        self.0.request(request).await
    }
}

/// Connects as hyper-rustls does, handing out [`CloseTolerant`] streams.
#[derive(Clone, Debug)]
pub(crate) struct CloseTolerantConnector(HttpsConnector<HttpConnector>);

type Stream = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Uri> for CloseTolerantConnector {
    type Response = CloseTolerant;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<CloseTolerant, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move { connecting.await.map(CloseTolerant) })
    }
}

/// A connection whose reads end cleanly where a TLS peer closed without `close_notify`.
/// rustls reports that as `UnexpectedEof` only once every byte received has been read, so
/// nothing is lost by ending the stream there.
pub(crate) struct CloseTolerant(Stream);

impl Read for CloseTolerant {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl Write for CloseTolerant {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

impl Connection for CloseTolerant {
    fn connected(&self) -> Connected {
        self.0.connected()
    }
}
