//! The seeds' "top failing users / IPs", in bounded memory.
//!
//! Seed 000 asks Prometheus for `topk(10, sum by (user_id) (failures))`,
//! which needs one series per user: unbounded cardinality that an attacker
//! controls. Instead the audit pipeline keeps a Space-Saving summary
//! (Metwally, Agrawal, El Abbadi 2005) of failures per IP and per account:
//! a fixed number of counters, where any key with more than `total /
//! capacity` failures is guaranteed to be present and each count is at most
//! `error` above the truth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One tracked offender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offender {
    /// The IP address or the (pseudonymized) account.
    pub key: Arc<str>,
    /// Failures counted, an upper bound.
    pub failures: u64,
    /// How much of `failures` may belong to keys this slot held before.
    pub error: u64,
}

/// A Space-Saving summary with a fixed number of slots.
#[derive(Debug)]
pub(crate) struct SpaceSaving {
    slots: Vec<Offender>,
    index: HashMap<Arc<str>, usize>,
    capacity: usize,
}

impl SpaceSaving {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            slots: Vec::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            capacity,
        }
    }

    /// Counts one failure for `key`.
    pub(crate) fn record(&mut self, key: &str) {
        if let Some(&slot) = self.index.get(key) {
            self.slots[slot].failures += 1;
            return;
        }
        let key: Arc<str> = Arc::from(key);
        if self.slots.len() < self.capacity {
            self.index.insert(key.clone(), self.slots.len());
            self.slots.push(Offender {
                key,
                failures: 1,
                error: 0,
            });
            return;
        }
        // Replace the smallest counter: the newcomer inherits its count as
        // possible over-estimate.
        let (slot, _) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, offender)| offender.failures)
            .expect("capacity is at least one");
        let evicted = std::mem::replace(&mut self.slots[slot].key, key.clone());
        self.index.remove(&evicted);
        self.index.insert(key, slot);
        let offender = &mut self.slots[slot];
        offender.error = offender.failures;
        offender.failures += 1;
    }

    /// The `k` largest counters, largest first.
    pub(crate) fn top(&self, k: usize) -> Vec<Offender> {
        let mut all = self.slots.clone();
        all.sort_unstable_by(|a, b| b.failures.cmp(&a.failures).then_with(|| a.key.cmp(&b.key)));
        all.truncate(k);
        all
    }

    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
    }
}

/// Top offenders by IP and by account, shared between the audit pipeline
/// and whoever reads it (an admin endpoint, the CLI).
#[derive(Clone, Debug)]
pub struct TopOffenders {
    inner: Arc<Mutex<Summaries>>,
}

#[derive(Debug)]
struct Summaries {
    by_ip: SpaceSaving,
    by_account: SpaceSaving,
}

impl TopOffenders {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Summaries {
                by_ip: SpaceSaving::new(capacity),
                by_account: SpaceSaving::new(capacity),
            })),
        }
    }

    pub(crate) fn record(&self, ip: Option<&str>, account: Option<&str>) {
        let mut summaries = self.lock();
        if let Some(ip) = ip {
            summaries.by_ip.record(ip);
        }
        if let Some(account) = account {
            summaries.by_account.record(account);
        }
    }

    /// The `k` IPs with the most failures, most first.
    #[must_use]
    pub fn ips(&self, k: usize) -> Vec<Offender> {
        self.lock().by_ip.top(k)
    }

    /// The `k` accounts with the most failures, most first. Email-like
    /// identifiers appear as their pseudonyms.
    #[must_use]
    pub fn accounts(&self, k: usize) -> Vec<Offender> {
        self.lock().by_account.top(k)
    }

    /// Forgets every count (after an incident is closed, say).
    pub fn clear(&self) {
        let mut summaries = self.lock();
        summaries.by_ip.clear();
        summaries.by_account.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Summaries> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_hitters_survive_a_flood_of_distinct_keys() {
        let mut summary = SpaceSaving::new(16);
        for round in 0..10_000 {
            summary.record(&format!("noise-{round}"));
            if round % 10 == 0 {
                summary.record("attacker");
            }
        }
        let top = summary.top(3);
        assert_eq!(&*top[0].key, "attacker");
        assert!(top[0].failures >= 1000);
        assert!(top[0].failures - top[0].error <= 1000);
        assert_eq!(summary.slots.len(), 16);
        assert_eq!(summary.index.len(), 16);
    }

    #[test]
    fn counts_are_exact_while_there_is_room() {
        let mut summary = SpaceSaving::new(4);
        for key in ["a", "b", "a", "c", "a", "b"] {
            summary.record(key);
        }
        let top: Vec<_> = summary
            .top(2)
            .into_iter()
            .map(|o| (o.key.to_string(), o.failures, o.error))
            .collect();
        assert_eq!(top, [("a".into(), 3, 0), ("b".into(), 2, 0)]);
    }
}
