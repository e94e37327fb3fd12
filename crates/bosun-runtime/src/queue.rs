//! A work queue of keys to reconcile, with the guarantees controllers rely on (as client-go's
//! workqueue): a key queued many times is processed once; a key is never processed by two
//! workers at once (queued again while in process, it runs again afterwards); delayed adds
//! keep only the earliest due time, all waiting on one timer task per queue (not a task per
//! key); failures back off exponentially per key, with jitter and a cap.
//!
//! The default backoff is 100 ms doubling to a cap of 60 s (±20 % jitter). Metacontroller's
//! client-go default caps at 1000 s, which makes a controller whose hook was down for a while
//! look dead long after the hook is back.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
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
    /// Keys waiting in `queue` or waiting to be queued again after processing, and since when.
    dirty: HashMap<K, Instant>,
    /// Keys in process, and since when.
    processing: HashMap<K, Instant>,
    failures: HashMap<K, u32>,
    /// The due time of each delayed key (the earliest asked for) and its timer entry.
    scheduled: HashMap<K, (Instant, u64)>,
    /// The delayed keys' timer entries, earliest first: (due, entry).
    timers: BTreeSet<(Instant, u64)>,
    /// The key of each timer entry.
    timed: HashMap<u64, K>,
    next_entry: u64,
    timer_running: bool,
    shut_down: bool,
}

struct Inner<K> {
    state: Mutex<State<K>>,
    ready: Notify,
    /// Wakes the timer task when an earlier due time was added, on shutdown, and when the
    /// queue is dropped; shared so that the sleeping task does not keep the queue alive.
    timer: Arc<Notify>,
    backoff: Backoff,
    metrics: QueueMetrics,
}

impl<K> Drop for Inner<K> {
    fn drop(&mut self) {
        self.timer.notify_one();
    }
}

/// A deduplicating, delay-capable work queue. Cheap to clone; clones share the queue.
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue { inner: self.inner.clone() }
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
        Self::with_parts(backoff, QueueMetrics::default())
    }

    fn with_parts(backoff: Backoff, metrics: QueueMetrics) -> Self {
        let state = State {
            queue: VecDeque::new(),
            dirty: HashMap::new(),
            processing: HashMap::new(),
            failures: HashMap::new(),
            scheduled: HashMap::new(),
            timers: BTreeSet::new(),
            timed: HashMap::new(),
            next_entry: 0,
            timer_running: false,
            shut_down: false,
        };
        let inner = Inner { state: Mutex::new(state), ready: Notify::new(), timer: Arc::default(), backoff, metrics };
        WorkQueue { inner: Arc::new(inner) }
    }

    /// Records depth, adds and retries into `metrics` (`workqueue_*{name}`). Call before
    /// anything is queued: it makes a new, empty queue.
    pub fn with_metrics(self, metrics: QueueMetrics) -> Self {
        Self::with_parts(self.inner.backoff, metrics)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `key` now, unless it is already waiting.
    pub fn add(&self, key: K) {
        let mut state = self.lock();
        if state.shut_down || state.dirty.contains_key(&key) {
            return;
        }
        state.dirty.insert(key.clone(), Instant::now());
        if !state.processing.contains_key(&key) {
            state.queue.push_back(key);
            self.inner.metrics.added(state.queue.len());
            drop(state);
            self.inner.ready.notify_one();
        }
    }

    /// Queues `key` after `delay`, unless it is already due earlier.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        // Far beyond any sensible delay, and far from overflowing an Instant.
        let due = Instant::now() + delay.min(MAX_DELAY);
        let mut state = self.lock();
        if state.shut_down || state.scheduled.get(&key).is_some_and(|(earlier, _)| *earlier <= due) {
            return;
        }
        if let Some(replaced) = state.scheduled.remove(&key) {
            state.timers.remove(&replaced);
            state.timed.remove(&replaced.1);
        }
        let entry = state.next_entry;
        state.next_entry += 1;
        let earliest = state.timers.first().is_none_or(|(first, _)| due < *first);
        state.scheduled.insert(key.clone(), (due, entry));
        state.timers.insert((due, entry));
        state.timed.insert(entry, key);
        let start_timer = !std::mem::replace(&mut state.timer_running, true);
        drop(state);
        if start_timer {
            tokio::spawn(run_timer(Arc::downgrade(&self.inner)));
        } else if earliest {
            self.inner.timer.notify_one();
        }
    }

    /// Queues the delayed keys that are due; returns when the next one is.
    fn release_due(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut due = Vec::new();
        let next = {
            let mut state = self.lock();
            while let Some(&(at, entry)) = state.timers.first()
                && at <= now
            {
                state.timers.pop_first();
                if let Some(key) = state.timed.remove(&entry) {
                    state.scheduled.remove(&key);
                    due.push(key);
                }
            }
            state.timers.first().map(|(at, _)| *at)
        };
        for key in due {
            self.add(key);
        }
        next
    }

    /// Queues `key` after its next backoff delay, and returns that delay.
    pub fn add_rate_limited(&self, key: K) -> Duration {
        let failures = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures += 1;
            *failures
        };
        let delay = self.inner.backoff.delay(failures);
        self.inner.metrics.retried();
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
            let notified = self.inner.ready.notified();
            {
                let mut state = self.lock();
                if state.shut_down {
                    return None;
                }
                if let Some(key) = state.queue.pop_front() {
                    let now = Instant::now();
                    let added = state.dirty.remove(&key).unwrap_or(now);
                    state.processing.insert(key.clone(), now);
                    self.inner.metrics.taken(state.queue.len(), now - added, now.into_std());
                    if !state.queue.is_empty() {
                        self.inner.ready.notify_one();
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
        if let Some(taken) = state.processing.remove(key) {
            self.inner.metrics.done(taken.into_std());
        }
        if state.dirty.contains_key(key) {
            state.queue.push_back(key.clone());
            drop(state);
            self.inner.ready.notify_one();
        }
    }

    /// Stops handing out keys; waiting and future [`WorkQueue::next`] calls return `None`.
    pub fn shut_down(&self) {
        let mut state = self.lock();
        state.shut_down = true;
        state.queue.clear();
        state.dirty.clear();
        state.scheduled.clear();
        state.timers.clear();
        state.timed.clear();
        drop(state);
        self.inner.ready.notify_waiters();
        self.inner.timer.notify_one();
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

/// The one timer task of a queue: queues delayed keys when they are due, sleeping until the
/// earliest. Ends when the queue is shut down or dropped.
async fn run_timer<K: Clone + Eq + Hash + Send + 'static>(inner: Weak<Inner<K>>) {
    loop {
        let Some(queue) = inner.upgrade().map(|inner| WorkQueue { inner }) else { return };
        if queue.lock().shut_down {
            return;
        }
        let next = queue.release_due();
        let woken = queue.inner.timer.clone();
        // Only the Weak is held while sleeping, so a dropped queue ends this task.
        drop(queue);
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = woken.notified() => {}
                }
            }
            None => woken.notified().await,
        }
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

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_come_due_in_order_on_one_timer() {
        let queue = WorkQueue::default();
        let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
        for key in 0..1000u32 {
            queue.add_after(key, Duration::from_secs(u64::from(1000 - key)));
        }
        assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), tasks + 1, "one timer task");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.next().await, Some(999));
        tokio::time::sleep(Duration::from_secs(1000)).await;
        assert_eq!(queue.len(), 999);
        // An earlier due time added while the timer sleeps wakes it.
        queue.add_after(5000, Duration::from_secs(3600));
        queue.add_after(5001, Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(queue.len(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_ends_with_its_queue() {
        let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
        let queue = WorkQueue::default();
        queue.add_after("a", Duration::from_secs(3600));
        tokio::task::yield_now().await;
        assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), tasks + 1);
        drop(queue);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), tasks, "dropped with its queue");
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
