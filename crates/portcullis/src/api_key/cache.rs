//! The positive-lookup cache and the debounced `last_used_at` touch.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::{ApiKeyDigest, ApiKeyInfo, Principal};
use quick_cache::sync::Cache;

/// Recently accepted keys, by key id.
///
/// Only keys that were accepted are cached ("positive" lookups): unknown
/// ids, wrong secrets, revoked and expired keys always go to the store. An
/// entry is used for at most `ttl` after the lookup that filled it, which
/// bounds how long a revocation made elsewhere can go unnoticed. quick_cache
/// is chosen for its hit cost (DESIGN.md: 24–68 ns against moka's
/// 173–558 ns).
pub(crate) struct KeyCache {
    cache: Option<Cache<Box<str>, Arc<Entry>>>,
    ttl: Duration,
}

pub(crate) struct Entry {
    pub(crate) principal: Principal,
    pub(crate) digest: ApiKeyDigest,
    /// The earlier of the key's expiry and a scheduled revocation.
    valid_until: Option<SystemTime>,
    inserted: SystemTime,
    /// Unix milliseconds of the last touch (or the stored `last_used_at`).
    pub(crate) last_touch_ms: AtomicU64,
}

impl Entry {
    pub(crate) fn new(
        principal: Principal,
        digest: ApiKeyDigest,
        info: &ApiKeyInfo,
        now: SystemTime,
    ) -> Self {
        let valid_until = match (info.expires_at, info.revoked_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            principal,
            digest,
            valid_until,
            inserted: now,
            last_touch_ms: AtomicU64::new(info.last_used_at.map_or(0, unix_ms)),
        }
    }
}

impl KeyCache {
    /// A cache of `capacity` keys, each used for less than `ttl`; a zero
    /// `ttl` or capacity disables it.
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            cache: (!ttl.is_zero() && capacity > 0).then(|| Cache::new(capacity)),
            ttl,
        }
    }

    /// Whether entries are kept at all.
    pub(crate) fn is_enabled(&self) -> bool {
        self.cache.is_some()
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh entry for `id`: inserted less than `ttl` ago, and the key
    /// neither expired nor past a scheduled revocation.
    pub(crate) fn get(&self, id: &str, now: SystemTime) -> Option<Arc<Entry>> {
        let cache = self.cache.as_ref()?;
        let entry = cache.get(id)?;
        let fresh = now
            .duration_since(entry.inserted)
            .is_ok_and(|age| age < self.ttl);
        if fresh && entry.valid_until.is_none_or(|until| now < until) {
            Some(entry)
        } else {
            cache.remove(id);
            None
        }
    }

    pub(crate) fn insert(&self, id: &str, entry: Arc<Entry>) {
        if let Some(cache) = &self.cache {
            cache.insert(id.into(), entry);
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        if let Some(cache) = &self.cache {
            cache.remove(id);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }
}

/// Most `last_used_at` writes in flight at once; beyond it a due touch is
/// skipped (and retried on a later request), so a slow store never piles up
/// tasks.
pub(crate) const MAX_TOUCHES_IN_FLIGHT: usize = 64;

/// Debounce state for `last_used_at` writes.
pub(crate) struct Toucher {
    /// `None`: never touch.
    pub(crate) interval_ms: Option<u64>,
    pub(crate) in_flight: AtomicUsize,
}

impl Toucher {
    pub(crate) fn new(interval: Option<Duration>) -> Self {
        Self {
            interval_ms: interval.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Claims a touch of `entry` at `now` if one is due: the debounce
    /// interval has passed, a tokio runtime is there to run it, and fewer
    /// than [`MAX_TOUCHES_IN_FLIGHT`] are running. The caller spawns the
    /// write and keeps the returned guard in it.
    pub(crate) fn claim(
        self: &Arc<Self>,
        entry: &Entry,
        now: SystemTime,
    ) -> Option<(tokio::runtime::Handle, InFlight)> {
        let interval = self.interval_ms?;
        let now_ms = unix_ms(now);
        let last = entry.last_touch_ms.load(Ordering::Relaxed);
        if now_ms < last.saturating_add(interval) {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let guard = InFlight::enter(self)?;
        entry
            .last_touch_ms
            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some((runtime, guard))
    }
}

/// One touch in flight; leaving (even by cancellation) frees its slot.
pub(crate) struct InFlight(Arc<Toucher>);

impl InFlight {
    fn enter(toucher: &Arc<Toucher>) -> Option<Self> {
        let before = toucher.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = Self(Arc::clone(toucher));
        (before < MAX_TOUCHES_IN_FLIGHT).then_some(guard)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
