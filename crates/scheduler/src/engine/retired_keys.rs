//! Which idempotency keys may belong to a finished intent that left memory for the index:
//! a Bloom filter, so that a submit with a new key (the common case) answers from memory
//! instead of looking the key up in the index (issue 11: with a million finished intents,
//! every new key was a random read of sled pages the cache no longer held).
//!
//! A Bloom filter never says "absent" for a key it holds, so dedup (G4) stays exact: "may
//! hold" sends the submit to the index as before (about 1 % of new keys are false
//! positives); "absent" is proof. The filter holds every key of an intent that is out of
//! memory and inside the key-retention window, because each such intent entered it
//! under the same state lock that removed it from memory (retirement, compaction's
//! eviction) or when replay kept it out of memory (a checkpoint's finished intents). The
//! submit checks memory and the filter under that one lock.
//!
//! It grows (a scalable Bloom filter: a new, larger slice when one fills) and is rebuilt
//! at each compaction from the keys the new checkpoint keeps, so keys past the window
//! leave it: a little over a byte a key (more as slices are added), not a whole intent.

use growable_bloom_filter::{GrowableBloom, GrowableBloomBuilder};

/// False-positive rate: the share of new keys still looked up in the index.
const FALSE_POSITIVE_RATE: f64 = 0.01;
/// The first slice's size (slices grow when full; a rebuild starts at the last size).
const FIRST_CAPACITY: usize = 100_000;

pub(super) struct RetiredKeys {
    filter: GrowableBloom,
    inserted: usize,
}

impl Default for RetiredKeys {
    fn default() -> RetiredKeys {
        RetiredKeys::with_capacity(FIRST_CAPACITY)
    }
}

impl RetiredKeys {
    /// An empty filter sized for about `capacity` keys before it first grows.
    pub(super) fn with_capacity(capacity: usize) -> RetiredKeys {
        RetiredKeys {
            filter: GrowableBloomBuilder::new()
                .estimated_insertions(capacity.max(FIRST_CAPACITY))
                .desired_error_ratio(FALSE_POSITIVE_RATE)
                .build(),
            inserted: 0,
        }
    }

    pub(super) fn insert(&mut self, connector: &str, key: &str) {
        self.filter.insert((connector, key));
        self.inserted += 1;
    }

    /// False: no intent out of memory holds this key. True: one may (look in the index).
    pub(super) fn may_hold(&self, connector: &str, key: &str) -> bool {
        self.filter.contains((connector, key))
    }

    /// Keys inserted (with repeats).
    pub(super) fn inserted(&self) -> usize {
        self.inserted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inserted_key_is_held_and_few_new_ones_seem_held() {
        let mut keys = RetiredKeys::default();
        for i in 0..250_000 {
            keys.insert("pf", &format!("key-{i}"));
        }
        // No false negative, across the growth of the filter past its first slice.
        assert!((0..250_000).all(|i| keys.may_hold("pf", &format!("key-{i}"))));
        // The connector is part of the key.
        let other_connector = (0..10_000)
            .filter(|i| keys.may_hold("aeeron", &format!("key-{i}")))
            .count();
        let new = (0..100_000)
            .filter(|i| keys.may_hold("pf", &format!("new-{i}")))
            .count();
        assert!(other_connector < 300, "{other_connector} of 10,000");
        assert!(new < 3_000, "{new} of 100,000 new keys seemed held");
        assert_eq!(keys.inserted(), 250_000);
    }
}
