//! Token buckets: `qps` tokens a second up to `burst`. One limits a client's requests to the
//! API server (`--client-go-qps`, `--client-go-burst`), others limit events per object
//! (`--events-qps`, `--events-burst`), as client-go does.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `qps` up to `burst` tokens.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket { qps, burst, tokens: burst, updated: Instant::now() }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.updated).as_secs_f64() * self.qps).min(self.burst);
        self.updated = now;
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes a token, possibly one not there yet; returns how long to wait before using it.
    pub fn reserve(&mut self) -> Duration {
        self.refill();
        self.tokens -= 1.0;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.qps) }
    }
}

/// Limits a kube client's requests to `qps` a second with bursts of `burst`.
#[derive(Clone)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<TokenBucket>>,
}

impl RateLimitLayer {
    /// A limit of `qps` requests a second, `burst` at once.
    pub fn new(qps: f64, burst: u32) -> Self {
        RateLimitLayer { bucket: Arc::new(Mutex::new(TokenBucket::new(qps, burst))) }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited { inner, bucket: self.bucket.clone(), reserved: None }
    }
}

/// The service [`RateLimitLayer`] wraps a client's stack in: not ready until a token is.
pub struct RateLimited<S> {
    inner: S,
    bucket: Arc<Mutex<TokenBucket>>,
    /// A token reserved for the next call, and the wait until it may be used.
    reserved: Option<Option<std::pin::Pin<Box<tokio::time::Sleep>>>>,
}

impl<S, R> tower::Service<R> for RateLimited<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let bucket = &self.bucket;
        let wait = self.reserved.get_or_insert_with(|| {
            let wait = bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).reserve();
            (!wait.is_zero()).then(|| Box::pin(tokio::time::sleep(wait)))
        });
        if let Some(sleep) = wait {
            if sleep.as_mut().poll(context).is_pending() {
                return Poll::Pending;
            }
            *wait = None;
        }
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.reserved = None;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(10.0, 3);
        assert!((0..3).all(|_| bucket.try_take()), "the burst");
        assert!(!bucket.try_take(), "then empty");
        let wait = bucket.reserve();
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(100), "{wait:?}");
    }

    /// On tokio's paused clock: 2 requests pass at once, the next 4 at 20 a second.
    #[tokio::test(start_paused = true)]
    async fn the_layer_spaces_requests_out() {
        use tower::{Layer, Service, ServiceExt};
        let mut service = RateLimitLayer::new(20.0, 2).layer(tower::service_fn(|_: ()| async { Ok::<_, ()>(tokio::time::Instant::now()) }));
        let start = tokio::time::Instant::now();
        let mut sent = Vec::new();
        for _ in 0..6 {
            sent.push(service.ready().await.unwrap().call(()).await.unwrap() - start);
        }
        assert_eq!(&sent[..2], [Duration::ZERO, Duration::ZERO]);
        assert!(sent[5] >= Duration::from_millis(200), "{sent:?}");
    }
}
