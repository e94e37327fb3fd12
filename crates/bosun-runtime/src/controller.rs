//! A controller's workers: a bounded number of tasks taking keys from a [`WorkQueue`] and
//! running a reconcile function on each, as controller-runtime's controllers do. A failed
//! reconcile is retried with the queue's backoff, a successful one forgets its failures, and
//! a panicking one is logged and retried without taking its worker down or stranding its
//! key. Every reconcile is counted and timed under the controller's name.

use std::fmt::Display;
use std::hash::Hash;
use std::time::{Duration, Instant};

use futures::FutureExt;

use crate::{Metrics, ReconcileResult, WorkQueue};

/// What to do with a key after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the next event.
    Done,
    /// Reconcile again after this long (e.g. to retry a conflict, or to poll).
    RequeueAfter(Duration),
}

/// Runs `workers` tasks over `queue` until it is shut down; each returns after finishing the
/// reconcile it is in.
pub async fn run_workers<K, F, Fut, E>(name: &str, queue: WorkQueue<K>, workers: usize, metrics: Metrics, reconcile: F)
where
    K: Clone + Eq + Hash + Display + Send + Sync + 'static,
    F: Fn(K) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (name, queue, metrics, reconcile) = (name.to_owned(), queue.clone(), metrics.clone(), reconcile.clone());
        tasks.spawn(async move {
            while let Some(key) = queue.next().await {
                let started = Instant::now();
                let outcome = std::panic::AssertUnwindSafe(reconcile(key.clone())).catch_unwind().await;
                let result = match outcome {
                    Ok(Ok(Action::Done)) => {
                        queue.forget(&key);
                        ReconcileResult::Success
                    }
                    Ok(Ok(Action::RequeueAfter(delay))) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), delay);
                        ReconcileResult::RequeueAfter
                    }
                    Ok(Err(error)) => {
                        let delay = queue.add_rate_limited(key.clone());
                        tracing::warn!(controller = %name, object = %key, %error, retry_in = ?delay, "reconcile failed");
                        ReconcileResult::Error
                    }
                    Err(_) => {
                        let delay = queue.add_rate_limited(key.clone());
                        tracing::error!(controller = %name, object = %key, retry_in = ?delay, "reconcile panicked");
                        ReconcileResult::Error
                    }
                };
                metrics.reconcile(&name, result, started.elapsed());
                queue.done(&key);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn failures_and_panics_are_retried_and_success_stops() {
        let queue: WorkQueue<String> =
            WorkQueue::new(crate::Backoff { base: Duration::from_millis(1), cap: Duration::from_millis(5), jitter: 0.0 });
        let calls = Arc::new(AtomicU32::new(0));
        let reconcile = {
            let (calls, queue) = (calls.clone(), queue.clone());
            move |_key: String| {
                let (calls, queue) = (calls.clone(), queue.clone());
                async move {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 => Err("first attempt fails"),
                        1 => panic!("second attempt panics"),
                        _ => {
                            queue.shut_down();
                            Ok(Action::Done)
                        }
                    }
                }
            }
        };
        queue.add("key".to_owned());
        let metrics = Metrics::new();
        tokio::time::timeout(Duration::from_secs(5), run_workers("test", queue, 2, metrics.clone(), reconcile)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let text = metrics.encode();
        assert!(text.contains(r#"controller_runtime_reconcile_total{controller="test",result="error"} 2"#), "{text}");
        assert!(text.contains(r#"controller_runtime_reconcile_total{controller="test",result="success"} 1"#), "{text}");
    }
}
