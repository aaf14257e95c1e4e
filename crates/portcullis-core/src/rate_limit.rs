//! Shared request-rate limits: a GCRA whose state lives in a store, so that
//! every instance behind a load balancer draws from one budget (seed 003:
//! "use Redis for distributed rate limiting").
//!
//! GCRA (the generic cell rate algorithm) keeps one number per key, the
//! *theoretical arrival time* (TAT). A request at `now` is allowed when
//! `TAT - now <= (burst - 1) × period`, and then moves the TAT to
//! `max(TAT, now) + period`. [`gcra_step`] is that rule, once; every backend
//! applies it atomically per key (the memory store under a mutex, Redis in
//! a Lua script that mirrors it and is checked against it by the
//! conformance kit).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::StoreError;
use crate::StoreErrorKind;

/// A rate: `burst` requests at once, refilled at one per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateQuota {
    /// Time to earn one request back (the emission interval).
    pub period: Duration,
    /// Requests allowed at once (at least 1).
    pub burst: u32,
}

impl RateQuota {
    /// `burst` requests at once, one more every `period`.
    #[must_use]
    pub const fn new(period: Duration, burst: u32) -> Self {
        Self { period, burst }
    }
}

/// What a rate-limit check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateDecision {
    /// The request fits the budget.
    Allowed,
    /// The budget is spent; the next request fits after this long.
    Limited {
        /// When to retry (the `Retry-After` value).
        retry_after: Duration,
    },
}

/// Milliseconds since the epoch: the resolution shared stores keep.
#[must_use]
pub fn epoch_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One GCRA step in milliseconds: given the stored TAT (`None` or `0` when
/// the key is new), the quota and `now`, the decision and the TAT to store
/// (unchanged when limited).
#[must_use]
pub fn gcra_step(tat: Option<u64>, quota: &RateQuota, now_ms: u64) -> (RateDecision, u64) {
    let period = u64::try_from(quota.period.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let tolerance = period.saturating_mul(u64::from(quota.burst.max(1) - 1));
    let tat = tat.unwrap_or(0).max(now_ms);
    let allow_at = tat.saturating_sub(tolerance);
    if allow_at > now_ms {
        let retry_after = Duration::from_millis(allow_at - now_ms);
        return (RateDecision::Limited { retry_after }, tat);
    }
    (RateDecision::Allowed, tat.saturating_add(period))
}

/// How long a key's TAT matters after `now`: a backend's TTL. After it the
/// key is indistinguishable from a new one.
#[must_use]
pub fn gcra_ttl(tat_ms: u64, now_ms: u64) -> Duration {
    Duration::from_millis(tat_ms.saturating_sub(now_ms))
}

/// Where shared rate-limit state lives.
///
/// # Contract for implementors
///
/// - [`check`](Self::check) is one atomic step per key with the result of
///   [`gcra_step`] at millisecond resolution: when many callers check the
///   same key at once, exactly as many are allowed as the quota permits.
/// - `now` comes from the caller: instances sharing a store need clocks in
///   step (NTP), as for token expiry.
/// - State may be dropped once [`gcra_ttl`] has passed.
/// - Errors are for backend failures only; the layers fail closed on them.
pub trait RateLimitStore: Send + Sync + 'static {
    /// Spends one request of `key`'s budget, if there is one.
    fn check(
        &self,
        key: &str,
        quota: &RateQuota,
        now: SystemTime,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

trait DynRateLimitStore: Send + Sync {
    fn check_boxed<'a>(
        &'a self,
        key: &'a str,
        quota: &'a RateQuota,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<RateDecision, StoreError>>;
}

impl<T: RateLimitStore> DynRateLimitStore for T {
    fn check_boxed<'a>(
        &'a self,
        key: &'a str,
        quota: &'a RateQuota,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<RateDecision, StoreError>> {
        Box::pin(self.check(key, quota, now))
    }
}

/// A type-erased [`RateLimitStore`], cheap to clone.
#[derive(Clone)]
pub struct BoxRateLimitStore(Arc<dyn DynRateLimitStore>);

impl BoxRateLimitStore {
    /// Erases `store`'s type.
    pub fn new(store: impl RateLimitStore) -> Self {
        Self(Arc::new(store))
    }
}

impl fmt::Debug for BoxRateLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxRateLimitStore").finish_non_exhaustive()
    }
}

impl RateLimitStore for BoxRateLimitStore {
    async fn check(
        &self,
        key: &str,
        quota: &RateQuota,
        now: SystemTime,
    ) -> Result<RateDecision, StoreError> {
        self.0.check_boxed(key, quota, now).await
    }
}

impl<T: RateLimitStore> RateLimitStore for Arc<T> {
    fn check(
        &self,
        key: &str,
        quota: &RateQuota,
        now: SystemTime,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send {
        T::check(self, key, quota, now)
    }
}

/// A bounded in-process [`RateLimitStore`]: what the shared stores are
/// checked against, and a drop-in for tests and single instances.
///
/// When full, it drops keys whose TAT has passed; if none has, new keys
/// are refused with [`StoreErrorKind::CapacityExceeded`] (fail closed).
pub struct MemoryRateLimitStore {
    tats: Mutex<HashMap<String, u64>>,
    capacity: usize,
}

impl MemoryRateLimitStore {
    /// A store tracking at most `capacity` keys.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            tats: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }
}

impl fmt::Debug for MemoryRateLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRateLimitStore")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl RateLimitStore for MemoryRateLimitStore {
    async fn check(
        &self,
        key: &str,
        quota: &RateQuota,
        now: SystemTime,
    ) -> Result<RateDecision, StoreError> {
        let now = epoch_millis(now);
        let mut tats = self.tats.lock().unwrap_or_else(PoisonError::into_inner);
        if !tats.contains_key(key) && tats.len() >= self.capacity {
            tats.retain(|_, tat| *tat > now);
            if tats.len() >= self.capacity {
                return Err(StoreError::new(
                    StoreErrorKind::CapacityExceeded,
                    "rate-limit store is full",
                ));
            }
        }
        let (decision, tat) = gcra_step(tats.get(key).copied(), quota, now);
        tats.insert(key.to_owned(), tat);
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_period() {
        let q = RateQuota::new(Duration::from_millis(100), 3);
        let mut tat = None;
        let mut allowed = 0;
        for _ in 0..5 {
            let (d, t) = gcra_step(tat, &q, 1_000);
            tat = Some(t);
            allowed += u32::from(d == RateDecision::Allowed);
        }
        assert_eq!(allowed, 3);
        let (d, _) = gcra_step(tat, &q, 1_000);
        assert_eq!(
            d,
            RateDecision::Limited {
                retry_after: Duration::from_millis(100)
            }
        );
        let (d, _) = gcra_step(tat, &q, 1_100);
        assert_eq!(d, RateDecision::Allowed);
    }

    #[tokio::test]
    async fn memory_store_is_bounded_and_fails_closed() {
        let store = MemoryRateLimitStore::new(1);
        let q = RateQuota::new(Duration::from_secs(1), 1);
        let now = UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(
            store.check("a", &q, now).await.ok(),
            Some(RateDecision::Allowed)
        );
        let err = store.check("b", &q, now).await.err().map(|e| e.kind());
        assert_eq!(err, Some(StoreErrorKind::CapacityExceeded));
        // Once a's TAT has passed, there is room again.
        let later = now + Duration::from_secs(2);
        assert!(store.check("b", &q, later).await.is_ok());
    }
}
