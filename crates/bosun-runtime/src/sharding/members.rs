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

use kube::ResourceExt;
use kube::api::DynamicObject;

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
    pub fn observe<'a>(&mut self, leases: impl IntoIterator<Item = &'a DynamicObject>, now: Instant) {
        let mut present = BTreeSet::new();
        for lease in leases {
            let name = lease.name_any();
            let spec = &lease.data["spec"];
            let holder = spec["holderIdentity"].as_str().filter(|holder| !holder.is_empty()).map(str::to_owned);
            let record = (holder, spec["renewTime"].as_str().map(str::to_owned));
            let duration = Duration::from_secs(spec["leaseDurationSeconds"].as_u64().unwrap_or(15));
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

    fn lease(name: &str, holder: Option<&str>, renewed: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": name, "namespace": "bosun-system" },
            "spec": { "holderIdentity": holder, "renewTime": renewed, "leaseDurationSeconds": 15 },
        }))
        .unwrap()
    }

    #[test]
    fn a_shard_is_out_once_its_lease_is_released_or_not_renewed_for_the_duration() {
        let start = Instant::now();
        let mut members = Members::default();
        members.observe(&[lease("a", Some("a"), "t1"), lease("b", Some("b"), "t1"), lease("c", None, "t1")], start);
        assert_eq!(members.live(start), BTreeSet::from(["a".into(), "b".into()]));
        // a renews, b does not: b is out after the lease duration, counted from when it was seen.
        let later = start + Duration::from_secs(10);
        members.observe(&[lease("a", Some("a"), "t2"), lease("b", Some("b"), "t1")], later);
        assert_eq!(members.live(start + Duration::from_secs(16)), BTreeSet::from(["a".into()]));
        // a releases its Lease on shutdown: out at once.
        members.observe(&[lease("a", None, "t3")], later);
        assert!(members.live(later).is_empty());
    }
}
