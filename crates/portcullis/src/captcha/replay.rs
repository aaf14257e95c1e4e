//! The local replay cache: a token is accepted once per process, even
//! before the provider says it was spent.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use std::collections::hash_map::RandomState;

/// Default number of tokens remembered.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// Tokens seen within their lifetime, as 64-bit keyed hashes (the tokens
/// themselves are never kept). All entries live equally long, so they
/// expire in insertion order. About 24 bytes per token.
pub(crate) struct ReplayCache {
    state: Mutex<Seen>,
    hasher: RandomState,
    ttl: Duration,
    capacity: usize,
}

#[derive(Default)]
struct Seen {
    set: HashSet<u64>,
    order: VecDeque<(SystemTime, u64)>,
}

/// The result of claiming a token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// First use: go ahead.
    Fresh,
    /// Seen before within its lifetime.
    Replayed,
    /// Full of live tokens: fail closed.
    Full,
}

impl ReplayCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            state: Mutex::new(Seen::default()),
            hasher: RandomState::new(),
            ttl,
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Atomically records `token` as used, unless it already was.
    pub(crate) fn claim(&self, token: &str, now: SystemTime) -> Claim {
        let hash = self.hasher.hash_one(token);
        let mut seen = self.lock();
        while let Some(&(at, old)) = seen.order.front() {
            if at + self.ttl > now {
                break;
            }
            seen.order.pop_front();
            seen.set.remove(&old);
        }
        if seen.set.contains(&hash) {
            return Claim::Replayed;
        }
        if seen.set.len() >= self.capacity {
            return Claim::Full;
        }
        seen.set.insert(hash);
        seen.order.push_back((now, hash));
        Claim::Fresh
    }

    /// Forgets `token` (the provider could not be asked: the user may try
    /// the same token again).
    pub(crate) fn forget(&self, token: &str) {
        let hash = self.hasher.hash_one(token);
        let mut seen = self.lock();
        if seen.set.remove(&hash) {
            seen.order.retain(|(_, h)| *h != hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn single_use_within_the_lifetime_and_bounded() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cache = ReplayCache::new(Duration::from_secs(300), 2);
        assert_eq!(cache.claim("a", t0), Claim::Fresh);
        assert_eq!(cache.claim("a", t0), Claim::Replayed);
        assert_eq!(cache.claim("b", t0), Claim::Fresh);
        assert_eq!(cache.claim("c", t0), Claim::Full);
        cache.forget("b");
        assert_eq!(cache.claim("b", t0), Claim::Fresh);
        let later = t0 + Duration::from_secs(300);
        assert_eq!(cache.claim("c", later), Claim::Fresh, "old entries expired");
        assert_eq!(cache.claim("a", later), Claim::Fresh);
    }
}
