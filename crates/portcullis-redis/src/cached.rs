//! A local cache in front of any [`RevocationStore`].

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use portcullis_core::{RevocationStore, StoreError, TokenRef};

/// Longest cache key built; longer token references are not cached (they
/// go to the store every time), which bounds the cache's memory.
const MAX_CACHE_KEY: usize = 1024;

/// Longest duration accepted for either cache (moka refuses very long
/// ones).
const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A bounded, process-local cache of [`is_revoked`](RevocationStore::is_revoked)
/// answers in front of a shared revocation store.
///
/// - **Positive answers** (revoked) are cached for
///   [`positive_ttl`](Self::with_positive_ttl) (default one hour): a
///   revocation never ends before the token it covers expires, so a cached
///   "revoked" is never wrong while the token could still be accepted.
/// - **Negative answers** (not revoked) are cached for at most
///   [`max_staleness`](Self::with_max_staleness) (default 1 s). This is the
///   documented propagation bound: a revocation made through *another*
///   instance is seen here no later than `max_staleness` after it was
///   stored.
/// - **Writes go through** to the store and then drop every cached negative
///   answer of this instance at once, so a revocation made through this
///   instance is seen here immediately.
/// - At most [`capacity`](Self::with_capacity) answers of each kind are
///   kept (default 100 000); token references longer than 1 KiB are not
///   cached. An entry costs its key (token id, family and subject, usually
///   100–200 bytes) plus the cache's own overhead (a few hundred bytes).
///   In practice the negative cache holds the distinct tokens seen in the
///   last `max_staleness`, and the positive cache the revoked tokens still
///   being presented.
///
/// ```no_run
/// use portcullis_redis::{CachedRevocationStore, RedisBackend};
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), portcullis_core::StoreError> {
/// let backend = RedisBackend::connect("redis://127.0.0.1:6379", "myapp").await?;
/// let revocations = CachedRevocationStore::new(backend.revocations())
///     .with_max_staleness(Duration::from_millis(500));
/// # Ok(()) }
/// ```
pub struct CachedRevocationStore<S> {
    inner: S,
    positive: Cache<String, ()>,
    negative: Cache<String, ()>,
    /// Bumped by every local write; a negative answer fetched across a
    /// write is not kept.
    generation: Arc<AtomicU64>,
    capacity: u64,
    positive_ttl: Duration,
    max_staleness: Duration,
}

impl<S: Clone> Clone for CachedRevocationStore<S> {
    // Clones share the caches.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            positive: self.positive.clone(),
            negative: self.negative.clone(),
            generation: Arc::clone(&self.generation),
            capacity: self.capacity,
            positive_ttl: self.positive_ttl,
            max_staleness: self.max_staleness,
        }
    }
}

impl<S> fmt::Debug for CachedRevocationStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedRevocationStore")
            .field("capacity", &self.capacity)
            .field("positive_ttl", &self.positive_ttl)
            .field("max_staleness", &self.max_staleness)
            .field("cached_positive", &self.positive.entry_count())
            .field("cached_negative", &self.negative.entry_count())
            .finish_non_exhaustive()
    }
}

fn build_cache(capacity: u64, ttl: Duration) -> Cache<String, ()> {
    Cache::builder()
        .max_capacity(capacity)
        .time_to_live(ttl.min(MAX_TTL))
        .build()
}

/// An injective text form of the parts of `token` the answer depends on;
/// `None` when too long to cache.
fn cache_key(token: &TokenRef<'_>) -> Option<String> {
    let len =
        token.token_id.map_or(0, str::len) + token.family.map_or(0, str::len) + token.subject.len();
    if len > MAX_CACHE_KEY {
        return None;
    }
    let mut key = String::with_capacity(len + 48);
    // Length-prefixed parts: no content can shift a boundary.
    let mut part = |value: Option<&str>| match value {
        Some(v) => {
            let _ = write!(key, "{}:{v}|", v.len());
        }
        None => key.push_str("-|"),
    };
    part(token.token_id);
    part(token.family);
    part(Some(token.subject));
    match token
        .issued_at
        .map(|t| t.duration_since(SystemTime::UNIX_EPOCH))
    {
        Some(Ok(d)) => {
            let _ = write!(key, "{}", d.as_secs());
        }
        Some(Err(_)) => key.push('<'),
        None => key.push('-'),
    }
    Some(key)
}

impl<S> CachedRevocationStore<S> {
    /// Default bound on how stale a cached "not revoked" may be.
    pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(1);
    /// Default time a cached "revoked" is kept.
    pub const DEFAULT_POSITIVE_TTL: Duration = Duration::from_secs(3600);
    /// Default number of answers kept of each kind.
    pub const DEFAULT_CAPACITY: u64 = 100_000;

    /// Caches `inner`'s answers with the defaults.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            positive: build_cache(Self::DEFAULT_CAPACITY, Self::DEFAULT_POSITIVE_TTL),
            negative: build_cache(Self::DEFAULT_CAPACITY, Self::DEFAULT_MAX_STALENESS),
            generation: Arc::new(AtomicU64::new(0)),
            capacity: Self::DEFAULT_CAPACITY,
            positive_ttl: Self::DEFAULT_POSITIVE_TTL,
            max_staleness: Self::DEFAULT_MAX_STALENESS,
        }
    }

    /// Keeps a "not revoked" answer at most `bound` (capped at 30 days);
    /// [`Duration::ZERO`] caches no negative answers.
    #[must_use]
    pub fn with_max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound.min(MAX_TTL);
        self.negative = build_cache(self.capacity, self.max_staleness);
        self
    }

    /// Keeps a "revoked" answer for `ttl` (capped at 30 days).
    #[must_use]
    pub fn with_positive_ttl(mut self, ttl: Duration) -> Self {
        self.positive_ttl = ttl.min(MAX_TTL);
        self.positive = build_cache(self.capacity, self.positive_ttl);
        self
    }

    /// Keeps at most `capacity` answers of each kind.
    #[must_use]
    pub fn with_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self.positive = build_cache(capacity, self.positive_ttl);
        self.negative = build_cache(capacity, self.max_staleness);
        self
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The bound on how stale a "not revoked" answer can be.
    pub fn max_staleness(&self) -> Duration {
        self.max_staleness
    }

    fn after_write(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.negative.invalidate_all();
    }
}

impl<S: RevocationStore> RevocationStore for CachedRevocationStore<S> {
    async fn revoke_token(
        &self,
        token_id: &str,
        expires_at: SystemTime,
    ) -> Result<bool, StoreError> {
        let result = self.inner.revoke_token(token_id, expires_at).await;
        self.after_write();
        result
    }

    async fn revoke_family(&self, family: &str, expires_at: SystemTime) -> Result<(), StoreError> {
        let result = self.inner.revoke_family(family, expires_at).await;
        self.after_write();
        result
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        retain_until: SystemTime,
    ) -> Result<(), StoreError> {
        let result = self
            .inner
            .revoke_subject(subject, issued_before, retain_until)
            .await;
        self.after_write();
        result
    }

    async fn is_revoked(&self, token: &TokenRef<'_>) -> Result<bool, StoreError> {
        let Some(key) = cache_key(token) else {
            return self.inner.is_revoked(token).await;
        };
        if self.positive.contains_key(&key) {
            return Ok(true);
        }
        if self.negative.contains_key(&key) {
            return Ok(false);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let revoked = self.inner.is_revoked(token).await?;
        if revoked {
            self.positive.insert(key, ());
        } else if !self.max_staleness.is_zero() {
            self.negative.insert(key.clone(), ());
            // A local write landed meanwhile: this answer may predate it.
            if self.generation.load(Ordering::SeqCst) != generation {
                self.negative.invalidate(&key);
            }
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_are_injective() {
        let t = |id, fam, sub| TokenRef {
            token_id: id,
            family: fam,
            subject: sub,
            issued_at: None,
        };
        let a = cache_key(&t(Some("a|1:b"), None, "c")).unwrap();
        let b = cache_key(&t(Some("a"), Some("b"), "c")).unwrap();
        let c = cache_key(&t(None, Some("a|1:b"), "c")).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        assert!(cache_key(&t(Some(&"x".repeat(2000)), None, "s")).is_none());
    }
}
