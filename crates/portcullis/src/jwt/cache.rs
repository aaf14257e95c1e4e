//! Short-lived caches in front of signature verification and revocation
//! lookups.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use quick_cache::sync::Cache;

use super::verifier::VerifiedToken;

/// Verified tokens, keyed by the whole token string.
///
/// A hit skips parsing and signature verification, but `exp` is still
/// checked against the clock on every hit and revocation is checked as for
/// any request. Entries are also re-verified after `ttl`, so a key that is
/// removed from the key set (a fallback past its deadline, a key dropped
/// from a JWKS) stops being honoured within that bound.
pub(crate) struct TokenCache {
    cache: Cache<Box<str>, Arc<Entry>>,
    ttl: Duration,
}

pub(crate) struct Entry {
    pub(crate) verified: VerifiedToken,
    inserted: SystemTime,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            cache: Cache::new(capacity.max(1)),
            ttl,
        }
    }

    pub(crate) fn get(
        &self,
        token: &str,
        now: SystemTime,
        now_unix: i64,
        slack: i64,
    ) -> Option<Arc<Entry>> {
        let entry = self.cache.get(token)?;
        let fresh = now
            .duration_since(entry.inserted)
            .is_ok_and(|age| age <= self.ttl);
        let unexpired = now_unix <= entry.verified.expires_at_unix().saturating_add(slack);
        if fresh && unexpired {
            Some(entry)
        } else {
            self.cache.remove(token);
            None
        }
    }

    pub(crate) fn insert(&self, token: &str, verified: VerifiedToken, now: SystemTime) {
        self.cache.insert(
            token.into(),
            Arc::new(Entry {
                verified,
                inserted: now,
            }),
        );
    }

    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}

/// Recent answers of the revocation store, keyed by token id.
///
/// A revocation therefore takes effect within `ttl` on every instance.
pub(crate) struct RevocationCache {
    cache: Cache<Box<str>, (SystemTime, bool)>,
    ttl: Duration,
}

impl RevocationCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            cache: Cache::new(capacity.max(1)),
            ttl,
        }
    }

    pub(crate) fn get(&self, key: &str, now: SystemTime) -> Option<bool> {
        let (checked, revoked) = self.cache.get(key)?;
        // A revocation never expires early: cached "revoked" answers stay.
        if revoked || now.duration_since(checked).is_ok_and(|age| age <= self.ttl) {
            Some(revoked)
        } else {
            None
        }
    }

    pub(crate) fn insert(&self, key: &str, revoked: bool, now: SystemTime) {
        if self.ttl.is_zero() && !revoked {
            return;
        }
        self.cache.insert(key.into(), (now, revoked));
    }
}
