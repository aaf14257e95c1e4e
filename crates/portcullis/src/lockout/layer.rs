//! `LockoutLayer`: configuration and `impl Layer`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{
    AttemptPolicy, AttemptStore, BlockListStore, BoxBlockListStore, BoxRateLimitStore,
    MemoryBlockList, RateLimitStore, RateQuota, SharedClock, SystemClock,
};
use tower_layer::Layer;

use super::admin::LockoutAdmin;
use super::extract::IdentifierSource;
use super::key::IpGrouping;
use super::rate_limit::{RateLimit, RateLimiterState};
use super::service::Lockout;
use crate::ConfigError;
use crate::rejection::DefaultRejection;

/// A growing delay before the credential check once failures pile up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Delay {
    pub(crate) after: u32,
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl Delay {
    /// `base × 2^(failures - after)`, capped; zero below `after`.
    pub(crate) fn for_failures(self, failures: u32) -> Duration {
        if failures < self.after {
            return Duration::ZERO;
        }
        let doublings = (failures - self.after).min(16);
        self.base
            .checked_mul(1 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// Everything the layer, its services and the admin handle share.
pub(crate) struct Config<St> {
    pub(crate) store: Arc<St>,
    pub(crate) block_list: BoxBlockListStore,
    /// The same list when it is the in-memory default: the pre-check then
    /// reads it without a future.
    pub(crate) memory_block_list: Option<Arc<MemoryBlockList>>,
    pub(crate) account: AttemptPolicy,
    pub(crate) pair: Option<AttemptPolicy>,
    pub(crate) ip: Option<AttemptPolicy>,
    pub(crate) identifier: Option<IdentifierSource>,
    pub(crate) grouping: IpGrouping,
    pub(crate) rate: Option<Arc<RateLimiterState>>,
    pub(crate) shared_rate: Option<(RateQuota, BoxRateLimitStore)>,
    pub(crate) delay: Option<Delay>,
    pub(crate) captcha_unlock: bool,
    pub(crate) fail_open: bool,
    pub(crate) shadow: bool,
    pub(crate) clock: SharedClock,
}

impl<St> Clone for Config<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            block_list: self.block_list.clone(),
            memory_block_list: self.memory_block_list.clone(),
            account: self.account.clone(),
            pair: self.pair.clone(),
            ip: self.ip.clone(),
            identifier: self.identifier.clone(),
            grouping: self.grouping,
            rate: self.rate.clone(),
            shared_rate: self.shared_rate.clone(),
            delay: self.delay,
            captcha_unlock: self.captcha_unlock,
            fail_open: self.fail_open,
            shadow: self.shadow,
            clock: Arc::clone(&self.clock),
        }
    }
}

impl<St> Config<St> {
    /// The in-memory block list when the whole pre-check is local and
    /// needs nothing from the request body: no identifier source, no
    /// per-address counter, no shared rate limit, no delay. The service
    /// then runs it synchronously, before handing the request on.
    pub(crate) fn local_precheck(&self) -> Option<&MemoryBlockList> {
        if self.identifier.is_some()
            || self.ip.is_some()
            || self.shared_rate.is_some()
            || self.delay.is_some()
        {
            return None;
        }
        self.memory_block_list.as_deref()
    }
}

impl<St> fmt::Debug for Config<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("account", &self.account)
            .field("pair", &self.pair)
            .field("ip", &self.ip)
            .field("identifier", &self.identifier)
            .field("grouping", &self.grouping)
            .field("rate", &self.rate)
            .field("shared_rate", &self.shared_rate.as_ref().map(|(q, _)| q))
            .field("delay", &self.delay)
            .field("captcha_unlock", &self.captcha_unlock)
            .field("fail_open", &self.fail_open)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

/// The default per-address policy: 50 failures (on any accounts) in 300 s
/// lock the address for 900 s, doubling up to 24 h. Seed 003 alerts at 10
/// failures a minute from one address; this is that rate over five minutes,
/// loose enough for a shared NAT.
#[must_use]
pub fn default_ip_policy() -> AttemptPolicy {
    AttemptPolicy::new(50, Duration::from_secs(300), Duration::from_secs(900))
        .with_max_consecutive(None)
}

fn validate(policy: &AttemptPolicy, name: &'static str) -> Result<(), ConfigError> {
    if policy.limit == 0 {
        return Err(ConfigError::invalid(name, "the limit must be at least 1"));
    }
    if policy.window.is_zero() || policy.lock.is_zero() {
        return Err(ConfigError::invalid(
            name,
            "window and lock must not be zero",
        ));
    }
    if policy.forget_after < policy.window {
        return Err(ConfigError::invalid(
            name,
            "forget_after must be at least the window",
        ));
    }
    if policy.max_consecutive.is_some() && policy.forget_after <= policy.max_lock {
        // An attacker who waits out every lock must not also outwait the
        // consecutive-failure count.
        return Err(ConfigError::invalid(
            name,
            "forget_after must exceed max_lock, or waiting out a lock resets the consecutive-failure cap",
        ));
    }
    if policy.reservation_ttl.is_zero() {
        return Err(ConfigError::invalid(
            name,
            "reservation_ttl must not be zero",
        ));
    }
    Ok(())
}

/// Layer that applies the [`Lockout`] middleware: IP block list, per-IP rate
/// limit, failure counting and account locks.
///
/// See the [module docs](crate::lockout) for examples.
#[must_use]
pub struct LockoutLayer<St, R = DefaultRejection> {
    pub(crate) config: Config<St>,
    pub(crate) respond: R,
}

impl<St, R: Clone> Clone for LockoutLayer<St, R> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            respond: self.respond.clone(),
        }
    }
}

impl<St, R: fmt::Debug> fmt::Debug for LockoutLayer<St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockoutLayer")
            .field("config", &self.config)
            .field("respond", &self.respond)
            .finish()
    }
}

impl<St: AttemptStore> LockoutLayer<St> {
    /// Seed 000's defaults: per account and per account+address, 5 failures
    /// in 300 s lock for 1800 s (doubling on each further lock, capped at
    /// 24 h; at most 100 consecutive failures); per address,
    /// [`default_ip_policy`]; an in-memory block list; no rate limit, no
    /// identifier source (accounts are then learnt from the outcomes inner
    /// layers report).
    pub fn new(store: St) -> Self {
        Self::shared(Arc::new(store))
    }

    /// Like [`new`](Self::new) with a store shared with other code.
    pub fn shared(store: Arc<St>) -> Self {
        let account = AttemptPolicy::default();
        let block_list = Arc::new(MemoryBlockList::default());
        Self {
            config: Config {
                store,
                block_list: BoxBlockListStore::new(Arc::clone(&block_list)),
                memory_block_list: Some(block_list),
                pair: Some(account.clone()),
                account,
                ip: Some(default_ip_policy()),
                identifier: None,
                grouping: IpGrouping::default(),
                rate: None,
                shared_rate: None,
                delay: None,
                captcha_unlock: false,
                fail_open: false,
                shadow: false,
                clock: Arc::new(SystemClock),
            },
            respond: DefaultRejection::new(),
        }
    }
}

impl<St, R> LockoutLayer<St, R> {
    /// Reads the submitted identifier from the request, so a locked account
    /// is refused **before** its credential is evaluated. Without it, the
    /// account is learnt only from the outcome an inner layer or handler
    /// reports, after the fact.
    pub fn with_identifier(mut self, source: IdentifierSource) -> Self {
        self.config.identifier = Some(source);
        self
    }

    /// Sets the per-account policy (default: 5 / 300 s / 1800 s). The
    /// account+address policy follows it unless set on its own afterwards.
    ///
    /// # Errors
    ///
    /// Zero limit, window or lock; `forget_after` shorter than the window
    /// or, with a consecutive-failure cap, not longer than `max_lock`.
    pub fn with_account_policy(mut self, policy: AttemptPolicy) -> Result<Self, ConfigError> {
        validate(&policy, "account policy")?;
        self.config.pair = Some(policy.clone());
        self.config.account = policy;
        Ok(self)
    }

    /// Sets the per account+address policy, or turns that counter off
    /// (`None`).
    ///
    /// # Errors
    ///
    /// As [`with_account_policy`](Self::with_account_policy).
    pub fn with_account_ip_policy(
        mut self,
        policy: Option<AttemptPolicy>,
    ) -> Result<Self, ConfigError> {
        if let Some(policy) = &policy {
            validate(policy, "account+IP policy")?;
        }
        self.config.pair = policy;
        Ok(self)
    }

    /// Sets the per-address policy (default [`default_ip_policy`]), or turns
    /// that counter off (`None`). A locked address gets `429 rate_limited`.
    ///
    /// # Errors
    ///
    /// As [`with_account_policy`](Self::with_account_policy).
    pub fn with_ip_policy(mut self, policy: Option<AttemptPolicy>) -> Result<Self, ConfigError> {
        if let Some(policy) = &policy {
            validate(policy, "IP policy")?;
        }
        self.config.ip = policy;
        Ok(self)
    }

    /// How addresses are grouped into counters and rate-limit cells
    /// (default: IPv4 /32, IPv6 /64).
    pub fn with_ip_grouping(mut self, grouping: IpGrouping) -> Self {
        self.config.grouping = grouping;
        self
    }

    /// Uses `block_list` instead of the in-memory default.
    pub fn with_block_list(mut self, block_list: impl BlockListStore) -> Self {
        self.config.block_list = BoxBlockListStore::new(block_list);
        self.config.memory_block_list = None;
        self
    }

    /// Limits every client address (grouped) to `rate`; over it,
    /// `429 rate_limited` with `Retry-After`. The limiter lives in this
    /// process (governor).
    pub fn with_rate_limit(mut self, rate: RateLimit) -> Self {
        self.config.rate = Some(Arc::new(RateLimiterState::new(
            rate,
            Arc::clone(&self.config.clock),
        )));
        self
    }

    /// Limits every client address (grouped) to `rate` across every
    /// instance sharing `store` (a distributed GCRA, e.g.
    /// `portcullis_redis::RedisRateLimitStore`; seed 003: "use Redis for
    /// distributed rate limiting"). Over it, `429 rate_limited` with
    /// `Retry-After`; when the store fails, the request fails closed with
    /// `503` (or passes, with [`insecure_fail_open`](Self::insecure_fail_open)). Checked after
    /// the in-process limit of [`with_rate_limit`](Self::with_rate_limit),
    /// which can stay in front as a cheap first line.
    pub fn with_shared_rate_limit(mut self, rate: RateLimit, store: impl RateLimitStore) -> Self {
        self.config.shared_rate = Some((rate.to_quota(), BoxRateLimitStore::new(store)));
        self
    }

    /// The first step of the escalation ladder: once the account (or the
    /// account+address pair) has `after` failures in its window, wait
    /// `base`, doubling with each further failure up to `max`, before the
    /// credential is checked. Needs a tokio runtime with time enabled.
    pub fn with_failure_delay(mut self, after: u32, base: Duration, max: Duration) -> Self {
        self.config.delay = Some(Delay {
            after: after.max(1),
            base,
            max: max.max(base),
        });
        self
    }

    /// Lets a request for a **time-locked** account through to an inner
    /// [`CaptchaLayer`](crate::captcha::CaptchaLayer), which then demands a
    /// solved CAPTCHA whatever the counts: a real user can still log in
    /// while an attacker keeps the account locked (SECURITY.md row 108).
    ///
    /// What still holds: the account+address lock (the attacking address
    /// stays locked out), the per-address lock and rate limit, and the
    /// consecutive-failure cap (a key locked "until unlocked" is never
    /// opened by a CAPTCHA). Failures through this path still count. If the
    /// response does not carry [`CaptchaSolved`](portcullis_core::CaptchaSolved)
    /// — no `CaptchaLayer` inside this layer — it is replaced by the lock
    /// response, so a misconfiguration never answers differently for a
    /// right and a wrong password.
    pub fn with_captcha_unlock(mut self) -> Self {
        self.config.captcha_unlock = true;
        self
    }

    /// **Insecure.** When the attempt store or block list cannot answer,
    /// let the request through instead of answering
    /// `503 upstream_unavailable`. Every request let through this way
    /// carries a critical `security.auth_failure` event with reason
    /// `upstream_unavailable` and detail `"lockout failed open"`. Without
    /// counters an attacker's guesses are unlimited for as long as the
    /// store is down.
    pub fn insecure_fail_open(mut self) -> Self {
        self.config.fail_open = true;
        self
    }

    /// Shadow mode: count, decide and report (events marked shadow) but
    /// reject nothing and delay nothing.
    pub fn shadow_mode(mut self) -> Self {
        self.config.shadow = true;
        self
    }

    /// Reads time from `clock` (lock ends, windows, the rate limiter).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.config.clock = clock;
        // The limiter keeps its own handle on the clock.
        if let Some(rate) = &self.config.rate {
            self.config.rate = Some(Arc::new(RateLimiterState::new(
                rate.rate(),
                Arc::clone(&self.config.clock),
            )));
        }
        self
    }

    /// Replaces the response sent when a request is rejected.
    pub fn with_rejection_response<R2>(self, respond: R2) -> LockoutLayer<St, R2> {
        LockoutLayer {
            config: self.config,
            respond,
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<St> {
        &self.config.store
    }

    /// The rate limiter's state, when a rate limit is set.
    #[must_use]
    pub fn rate_limiter(&self) -> Option<&RateLimiterState> {
        self.config.rate.as_deref()
    }
}

impl<St: AttemptStore, R> LockoutLayer<St, R> {
    /// The operator API (list, unlock, lock, block) over the same store,
    /// block list, policies and clock. Call it after configuring the layer.
    #[must_use]
    pub fn admin(&self) -> LockoutAdmin<St> {
        LockoutAdmin::new(self.config.clone())
    }
}

impl<S, St, R: Clone> Layer<S> for LockoutLayer<St, R> {
    type Service = Lockout<S, St, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Lockout {
            inner,
            config: Arc::new(self.config.clone()),
            respond: self.respond.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_and_is_capped() {
        let d = Delay {
            after: 2,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(d.for_failures(1), Duration::ZERO);
        assert_eq!(d.for_failures(2), Duration::from_millis(100));
        assert_eq!(d.for_failures(4), Duration::from_millis(400));
        assert_eq!(d.for_failures(40), Duration::from_secs(1));
    }

    #[test]
    fn policies_are_validated() {
        let layer = LockoutLayer::new(portcullis_core::MemoryAttemptStore::new(10));
        let bad = AttemptPolicy::new(5, Duration::from_secs(300), Duration::from_secs(1800))
            .with_forget_after(Duration::from_secs(3600));
        let err = layer.clone().with_account_policy(bad).unwrap_err();
        assert!(err.to_string().contains("forget_after"), "{err}");
        let ok = AttemptPolicy::new(5, Duration::from_secs(300), Duration::from_secs(1800))
            .with_forget_after(Duration::from_secs(3600))
            .with_max_consecutive(None);
        assert!(layer.with_account_policy(ok).is_ok());
    }
}
