//! A work queue of keys to reconcile, with the guarantees controllers rely on (as client-go's
//! workqueue): a key queued many times is processed once; a key is never processed by two
//! workers at once (queued again while in process, it runs again afterwards); delayed adds
//! keep only the earliest due time; failures back off exponentially per key, with jitter and
//! a cap.
//!
//! The default backoff is 100 ms doubling to a cap of 60 s (±20 % jitter). Metacontroller's
//! client-go default caps at 1000 s, which makes a controller whose hook was down for a while
//! look dead long after the hook is back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::QueueMetrics;

/// The longest delay [`WorkQueue::add_after`] waits; longer ones are cut to it.
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Per-key exponential backoff with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The delay after the first failure.
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// The fraction by which a delay may randomly be shorter or longer.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(60), jitter: 0.2 }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let delay = self.base.saturating_mul(1 << exponent).min(self.cap);
        let factor = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        delay.mul_f64(factor.max(0.0))
    }
}

struct State<K> {
    queue: VecDeque<K>,
    /// Keys waiting in `queue` or waiting to be queued again after processing.
    dirty: HashSet<K>,
    processing: HashSet<K>,
    failures: HashMap<K, u32>,
    /// The earliest due time of each delayed key.
    scheduled: HashMap<K, Instant>,
    shut_down: bool,
}

/// A deduplicating, delay-capable work queue. Cheap to clone; clones share the queue.
pub struct WorkQueue<K> {
    state: Arc<Mutex<State<K>>>,
    ready: Arc<Notify>,
    backoff: Backoff,
    metrics: QueueMetrics,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue { state: self.state.clone(), ready: self.ready.clone(), backoff: self.backoff, metrics: self.metrics.clone() }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Default for WorkQueue<K> {
    fn default() -> Self {
        Self::new(Backoff::default())
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue with this failure backoff.
    pub fn new(backoff: Backoff) -> Self {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                scheduled: HashMap::new(),
                shut_down: false,
            })),
            ready: Arc::new(Notify::new()),
            backoff,
            metrics: QueueMetrics::default(),
        }
    }

    /// Records depth, adds and retries into `metrics` (`workqueue_*{name}`).
    pub fn with_metrics(mut self, metrics: QueueMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `key` now, unless it is already waiting.
    pub fn add(&self, key: K) {
        let mut state = self.lock();
        if state.shut_down || !state.dirty.insert(key.clone()) {
            return;
        }
        if !state.processing.contains(&key) {
            state.queue.push_back(key);
            self.metrics.added(state.queue.len());
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Queues `key` after `delay`, unless it is already due earlier.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        // Far beyond any sensible delay, and far from overflowing an Instant.
        let due = Instant::now() + delay.min(MAX_DELAY);
        {
            let mut state = self.lock();
            if state.shut_down || state.scheduled.get(&key).is_some_and(|earlier| *earlier <= due) {
                return;
            }
            state.scheduled.insert(key.clone(), due);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            {
                let mut state = queue.lock();
                // A later add with an earlier due time replaced this timer.
                if state.scheduled.get(&key) != Some(&due) {
                    return;
                }
                state.scheduled.remove(&key);
            }
            queue.add(key);
        });
    }

    /// Queues `key` after its next backoff delay, and returns that delay.
    pub fn add_rate_limited(&self, key: K) -> Duration {
        let failures = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures += 1;
            *failures
        };
        let delay = self.backoff.delay(failures);
        self.metrics.retried();
        self.add_after(key, delay);
        delay
    }

    /// Clears `key`'s failure count, after a success.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Waits for the next key and marks it in process; `None` once the queue is shut down.
    /// Call [`WorkQueue::done`] when finished with it.
    pub async fn next(&self) -> Option<K> {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if state.shut_down {
                    return None;
                }
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    self.metrics.taken(state.queue.len());
                    if !state.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` as no longer in process; if it was queued meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.queue.push_back(key.clone());
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Stops handing out keys; waiting and future [`WorkQueue::next`] calls return `None`.
    pub fn shut_down(&self) {
        let mut state = self.lock();
        state.shut_down = true;
        state.queue.clear();
        state.dirty.clear();
        state.scheduled.clear();
        drop(state);
        self.ready.notify_waiters();
    }

    /// The number of keys waiting to be processed now.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key is waiting to be processed now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_queued_twice_is_processed_once() {
        let queue = WorkQueue::default();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.next().await, Some("a"));
        assert_eq!(queue.next().await, Some("b"));
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_key_in_process_is_not_handed_out_again_until_done() {
        let queue = WorkQueue::default();
        queue.add("a");
        let key = queue.next().await.unwrap();
        queue.add("a");
        assert!(queue.is_empty(), "held back while in process");
        queue.done(&key);
        assert_eq!(queue.next().await, Some("a"), "queued again after done");
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_adds_keep_the_earliest_due_time() {
        let queue = WorkQueue::default();
        queue.add_after("a", Duration::from_secs(10));
        queue.add_after("a", Duration::from_secs(5));
        queue.add_after("a", Duration::from_secs(20));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(queue.len(), 1);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(queue.len(), 1, "the superseded timers do not add it again");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let backoff = Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(60), jitter: 0.0 };
        assert_eq!(backoff.delay(1), Duration::from_millis(100));
        assert_eq!(backoff.delay(2), Duration::from_millis(200));
        assert_eq!(backoff.delay(11), Duration::from_millis(102_400).min(Duration::from_secs(60)));
        assert_eq!(backoff.delay(1000), Duration::from_secs(60));
        let jittered = Backoff::default();
        for failures in 1..40 {
            let delay = jittered.delay(failures);
            assert!(delay <= Duration::from_secs(72), "{delay:?}");
        }
    }

    #[tokio::test]
    async fn shut_down_wakes_waiting_workers() {
        let queue: WorkQueue<&str> = WorkQueue::default();
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.shut_down();
        assert_eq!(worker.await.unwrap(), None);
    }
}
