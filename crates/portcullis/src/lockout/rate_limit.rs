//! The per-IP request rate limit: governor's GCRA, keyed by client address
//! group, with bounded memory.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use portcullis_core::{RateQuota, SharedClock};

use crate::ConfigError;

/// Default number of addresses the limiter tracks before it drops idle ones.
pub const DEFAULT_MAX_TRACKED_IPS: usize = 100_000;

/// How many checks pass between two looks at the limiter's size.
const HOUSEKEEPING_EVERY: u32 = 1024;

/// A per-client request rate: `burst` requests at once, refilled at one
/// request per `period` (GCRA, as governor implements it).
///
/// ```
/// use portcullis::lockout::RateLimit;
/// use std::time::Duration;
///
/// // 10 requests a second, bursts of 20.
/// let rate = RateLimit::per_second(10)?.with_burst(20)?;
/// // Seed 003's alert threshold as a limit: 10 a minute.
/// let rate = RateLimit::per_minute(10)?;
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    quota: Quota,
    max_tracked: usize,
}

impl RateLimit {
    /// `n` requests per second, bursts of `n`.
    ///
    /// # Errors
    ///
    /// `n` must not be zero.
    pub fn per_second(n: u32) -> Result<Self, ConfigError> {
        Ok(Self::from_quota(Quota::per_second(nonzero(n)?)))
    }

    /// `n` requests per minute, bursts of `n`.
    ///
    /// # Errors
    ///
    /// `n` must not be zero.
    pub fn per_minute(n: u32) -> Result<Self, ConfigError> {
        Ok(Self::from_quota(Quota::per_minute(nonzero(n)?)))
    }

    /// One request per `period`, bursts of one.
    ///
    /// # Errors
    ///
    /// `period` must not be zero.
    pub fn every(period: Duration) -> Result<Self, ConfigError> {
        Quota::with_period(period)
            .map(Self::from_quota)
            .ok_or_else(|| ConfigError::invalid("rate limit period", "must not be zero"))
    }

    /// Allows bursts of `burst` requests.
    ///
    /// # Errors
    ///
    /// `burst` must not be zero.
    pub fn with_burst(mut self, burst: u32) -> Result<Self, ConfigError> {
        self.quota = self.quota.allow_burst(nonzero(burst)?);
        Ok(self)
    }

    /// Tracks at most about `n` addresses (default
    /// [`DEFAULT_MAX_TRACKED_IPS`]); see [`RateLimiterState`].
    #[must_use]
    pub fn with_max_tracked_ips(mut self, n: usize) -> Self {
        self.max_tracked = n.max(1);
        self
    }

    /// The same rate as a [`RateQuota`], for a shared
    /// [`RateLimitStore`](portcullis_core::RateLimitStore).
    #[must_use]
    pub fn to_quota(&self) -> RateQuota {
        RateQuota::new(
            self.quota.replenish_interval(),
            self.quota.burst_size().get(),
        )
    }

    fn from_quota(quota: Quota) -> Self {
        Self {
            quota,
            max_tracked: DEFAULT_MAX_TRACKED_IPS,
        }
    }
}

fn nonzero(n: u32) -> Result<NonZeroU32, ConfigError> {
    NonZeroU32::new(n).ok_or_else(|| ConfigError::invalid("rate limit", "must not be zero"))
}

/// Governor reads time through the crate's clock, so tests move it with a
/// `FakeClock`.
#[derive(Clone)]
struct ClockAdapter(SharedClock);

impl GovernorClock for ClockAdapter {
    type Instant = SystemTime;

    fn now(&self) -> SystemTime {
        self.0.now()
    }
}

/// The limiter's state: one GCRA cell per address group.
///
/// Memory is bounded: every 1024 checks, when more than the configured
/// number of addresses are tracked, the cells indistinguishable from fresh
/// ones (their clients are back to a full burst) are dropped
/// (`retain_recent`) and the map shrunk. Only clients still inside their
/// burst window stay tracked, so the map holds at most the number of
/// clients active within one burst period, plus 1024. A governor cell costs
/// about 43 bytes (DESIGN.md).
pub struct RateLimiterState {
    limiter:
        RateLimiter<IpAddr, DashMapStateStore<IpAddr>, ClockAdapter, NoOpMiddleware<SystemTime>>,
    rate: RateLimit,
    max_tracked: usize,
    checks: AtomicU32,
}

impl RateLimiterState {
    pub(crate) fn new(rate: RateLimit, clock: SharedClock) -> Self {
        Self {
            limiter: RateLimiter::dashmap_with_clock(rate.quota, ClockAdapter(clock)),
            rate,
            max_tracked: rate.max_tracked,
            checks: AtomicU32::new(0),
        }
    }

    pub(crate) fn rate(&self) -> RateLimit {
        self.rate
    }

    /// `Err(wait)` when `ip` is over its rate.
    pub(crate) fn check(&self, ip: IpAddr, now: SystemTime) -> Result<(), Duration> {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(HOUSEKEEPING_EVERY)
        {
            self.housekeeping();
        }
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    fn housekeeping(&self) {
        if self.limiter.len() > self.max_tracked {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }

    /// Number of addresses tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether no address is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    /// Drops the cells of clients back to a full burst.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

impl fmt::Debug for RateLimiterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterState")
            .field("tracked", &self.limiter.len())
            .field("max_tracked", &self.max_tracked)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{Clock as _, FakeClock};
    use std::sync::Arc;

    #[test]
    fn gcra_with_a_fake_clock_and_bounded_keys() {
        let clock = FakeClock::at_unix(1_700_000_000);
        let rate = RateLimit::per_second(2).unwrap().with_max_tracked_ips(10);
        let state = RateLimiterState::new(rate, Arc::new(clock.clone()));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(state.check(ip, clock.now()).is_ok());
        assert!(state.check(ip, clock.now()).is_ok());
        let wait = state.check(ip, clock.now()).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        clock.advance(Duration::from_millis(500));
        assert!(state.check(ip, clock.now()).is_ok());
        // Many one-off clients: once they are back to a full burst they are
        // dropped at the next housekeeping.
        for i in 0..5000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = state.check(ip, clock.now());
        }
        clock.advance(Duration::from_secs(2));
        state.retain_recent();
        assert!(state.len() <= 10, "{}", state.len());
        assert!(RateLimit::per_second(0).is_err());
    }
}
