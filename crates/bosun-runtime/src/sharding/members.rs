//! Who is in a ring: the shards whose Leases are held and renewed. A shard holds a Lease named
//! after itself, labelled with the ring, and renews it every retry period; one that stops
//! renewing — it died, or lost the API server — is out once its Lease has not changed for the
//! lease duration, and one that shut down cleanly is out at once (it released the Lease after
//! finishing its syncs). As in leader election, expiry is judged by the local time at which
//! the coordinator saw each record change, never by comparing clocks between machines; a
//! shard that stops renewing stops working before that time has passed (its renew deadline
//! is shorter than the lease duration).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;

/// The ring's members as seen from the Leases over time.
#[derive(Debug, Default)]
pub struct Members {
    /// Per Lease name: (holder, renew time) last seen, for how long the holder holds it, and
    /// when that record was first seen.
    seen: BTreeMap<String, Seen>,
}

#[derive(Debug)]
struct Seen {
    record: (Option<String>, Option<String>),
    duration: Duration,
    since: Instant,
}

impl Members {
    /// Takes in the ring's Leases as they are at `now`.
    pub fn observe<'a>(&mut self, leases: impl IntoIterator<Item = &'a Lease>, now: Instant) {
        let mut present = BTreeSet::new();
        for lease in leases {
            let name = lease.name_any();
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.filter(|holder| !holder.is_empty());
            let record = (holder, spec.renew_time.map(|time| time.0.to_string()));
            let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(0) as u64);
            match self.seen.get_mut(&name) {
                Some(seen) if seen.record == record => seen.duration = duration,
                _ => {
                    self.seen.insert(name.clone(), Seen { record, duration, since: now });
                }
            }
            present.insert(name);
        }
        self.seen.retain(|name, _| present.contains(name));
    }

    /// The shards live at `now`: Leases held by the shard they are named after, renewed within
    /// their lease duration.
    pub fn live(&self, now: Instant) -> BTreeSet<String> {
        self.seen
            .iter()
            .filter(|(name, seen)| seen.record.0.as_deref() == Some(name.as_str()) && now.duration_since(seen.since) < seen.duration)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lease(name: &str, holder: Option<&str>, renewed: &str) -> Lease {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "bosun-system" },
            "spec": { "holderIdentity": holder, "renewTime": renewed, "leaseDurationSeconds": 15 },
        }))
        .unwrap()
    }

    #[test]
    fn a_shard_is_out_once_its_lease_is_released_or_not_renewed_for_the_duration() {
        let start = Instant::now();
        let mut members = Members::default();
        members.observe(
            &[
                lease("a", Some("a"), "2026-12-05T10:00:01.000000Z"),
                lease("b", Some("b"), "2026-12-05T10:00:01.000000Z"),
                lease("c", None, "2026-12-05T10:00:01.000000Z"),
            ],
            start,
        );
        assert_eq!(members.live(start), BTreeSet::from(["a".into(), "b".into()]));
        // a renews, b does not: b is out after the lease duration, counted from when it was seen.
        let later = start + Duration::from_secs(10);
        members
            .observe(&[lease("a", Some("a"), "2026-12-05T10:00:02.000000Z"), lease("b", Some("b"), "2026-12-05T10:00:01.000000Z")], later);
        assert_eq!(members.live(start + Duration::from_secs(16)), BTreeSet::from(["a".into()]));
        // a releases its Lease on shutdown: out at once.
        members.observe(&[lease("a", None, "2026-12-05T10:00:03.000000Z")], later);
        assert!(members.live(later).is_empty());
    }
}
