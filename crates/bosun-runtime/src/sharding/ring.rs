//! Which shard owns an object: rendezvous (highest random weight) hashing of the object's key
//! over the live shards. Every shard scores every key, the highest score wins; adding a shard
//! moves to it only the keys it now wins (about 1/N of them), removing one moves only its own
//! keys, and the answer depends on nothing but the key and the set of shards — no ring state
//! to store or agree on. The hash is FNV-1a with a 64-bit finalizer, fixed here, so that
//! replicas of different builds agree.

use std::collections::BTreeSet;

use kube::api::ApiResource;

use crate::ObjectKey;

/// The shard of `members` that owns `key`, or `None` if there are no members.
pub fn owner<'a>(key: &str, members: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    members.into_iter().max_by_key(|member| (score(member, key), *member))
}

/// The live shard that owns the object under `key` of `resource`: the ring's answer, which
/// the coordinator assigns by and every shard checks before it syncs.
pub fn owner_of(resource: &ApiResource, key: &ObjectKey, live: &BTreeSet<String>) -> Option<String> {
    let key = format!("{}/{}/{}/{}", resource.group, resource.plural, key.namespace.as_deref().unwrap_or_default(), key.name);
    owner(&key, live.iter().map(String::as_str)).map(str::to_owned)
}

fn score(member: &str, key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.bytes().chain([0]).chain(key.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // FNV alone mixes the last bytes poorly; this finalizer (splitmix64's) spreads them.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn split(keys: &[String], members: &[&str]) -> BTreeMap<String, String> {
        keys.iter().map(|key| (key.clone(), owner(key, members.iter().copied()).unwrap().to_owned())).collect()
    }

    fn keys(count: usize) -> Vec<String> {
        (0..count).map(|index| format!("examples.bosun.dev/greetings/default/greeting-{index}")).collect()
    }

    #[test]
    fn three_shards_split_300_keys_roughly_evenly() {
        let assigned = split(&keys(300), &["bosun-0", "bosun-1", "bosun-2"]);
        for member in ["bosun-0", "bosun-1", "bosun-2"] {
            let count = assigned.values().filter(|owner| *owner == member).count();
            assert!((75..=125).contains(&count), "{member} owns {count} of 300");
        }
    }

    #[test]
    fn adding_a_shard_moves_about_a_third_and_only_to_it() {
        let keys = keys(3000);
        let before = split(&keys, &["a", "b"]);
        let after = split(&keys, &["a", "b", "c"]);
        let moved: Vec<&String> = keys.iter().filter(|key| before[*key] != after[*key]).collect();
        assert!((800..=1200).contains(&moved.len()), "{} of 3000 moved", moved.len());
        assert!(moved.iter().all(|key| after[*key] == "c"), "keys move only to the new shard");
    }

    #[test]
    fn removing_a_shard_moves_only_its_keys() {
        let keys = keys(1000);
        let before = split(&keys, &["a", "b", "c"]);
        let after = split(&keys, &["a", "c"]);
        for key in &keys {
            if before[key] != "b" {
                assert_eq!(before[key], after[key], "{key} moved though its shard stayed");
            }
        }
    }

    #[test]
    fn no_members_no_owner_and_order_does_not_matter() {
        assert_eq!(owner("x", []), None);
        assert_eq!(owner("some/key", ["a", "b", "c"]), owner("some/key", ["c", "a", "b"]));
    }
}
