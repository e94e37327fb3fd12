//! The bounds the engine holds hooks' answers to, in one place: what a response may ask for
//! (events, status size, when to sync again). `invalid_response` quotes them when it
//! refuses an answer.

use std::time::Duration;

/// The most events one response may ask for.
pub(crate) const MAX_HOOK_EVENTS: usize = 10;

/// The largest status a hook may ask for, encoded: etcd refuses objects over 1.5 MiB, and the
/// parent's spec and metadata need room too.
pub(crate) const MAX_STATUS_BYTES: usize = 1024 * 1024;

/// The shortest and longest delay `resyncAfterSeconds` may ask for: a tiny value must not
/// become a hot loop (a couple of hook calls in ten seconds at most), nor a huge one overflow a
/// timer.
pub(crate) const RESYNC_AFTER_BOUNDS: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(24 * 60 * 60));

/// A response's `resyncAfterSeconds` as a delay within [`RESYNC_AFTER_BOUNDS`]; none unless
/// it is a positive number (as in Metacontroller, zero and negative values ask for none).
pub(crate) fn resync_after(seconds: Option<f64>) -> Option<Duration> {
    let seconds = seconds.filter(|seconds| *seconds > 0.0)?;
    let (floor, cap) = RESYNC_AFTER_BOUNDS;
    Some(Duration::try_from_secs_f64(seconds).unwrap_or(cap).clamp(floor, cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_after_is_bounded() {
        let (floor, cap) = RESYNC_AFTER_BOUNDS;
        for none in [None, Some(0.0), Some(-1.0), Some(f64::NAN), Some(f64::NEG_INFINITY)] {
            assert_eq!(resync_after(none), None, "{none:?}");
        }
        assert_eq!(resync_after(Some(1e-9)), Some(floor));
        assert_eq!(resync_after(Some(7.5)), Some(Duration::from_millis(7500)));
        for huge in [9_223_372_036_854_775_807.0, 18_446_744_073_709_551_615.0, f64::INFINITY, f64::MAX] {
            assert_eq!(resync_after(Some(huge)), Some(cap), "{huge}");
        }
    }
}
