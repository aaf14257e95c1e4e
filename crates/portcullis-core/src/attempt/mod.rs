//! Failed-attempt counters: what brute-force defence remembers.
//!
//! An [`AttemptStore`] keeps one counter per [`AttemptKey`] — an account
//! (the canonicalised identifier a client submitted, whether or not such an
//! account exists), a client address, or the pair of both — and answers in
//! **atomic domain operations**, never get-then-set:
//!
//! - [`begin`](AttemptStore::begin) checks the lock and the failures in the
//!   sliding window and, in the same step, *reserves* an in-flight attempt,
//!   so that concurrent guesses cannot all slip past the limit before the
//!   first failure is recorded (200 parallel wrong passwords against a limit
//!   of 5: at most 5 are admitted);
//! - [`record_failure`](AttemptStore::record_failure) turns a reservation
//!   into a failure, and locks the key when the window is full;
//! - [`record_success`](AttemptStore::record_success) and
//!   [`release`](AttemptStore::release) end a reservation;
//! - [`lock`](AttemptStore::lock), [`unlock`](AttemptStore::unlock),
//!   [`status`](AttemptStore::status), [`locked`](AttemptStore::locked) and
//!   [`hottest`](AttemptStore::hottest) serve operators.
//!
//! The policy (limit, window, lock durations) travels with each call, so a
//! store holds no configuration and one store serves several layers.
//!
//! # Windows
//!
//! Counting is an **exact sliding log**: a key remembers the times of its
//! last `limit` failures (one-second resolution), and the count is the
//! number of them inside `(now - window, now]`. There is no fixed window
//! boundary, so no "double burst" across one: at most `limit` failures are
//! ever accepted in any interval of length `window`. The log never needs
//! more than `limit` entries, because the `limit`-th failure locks the key
//! and clears the log.
//!
//! # Implementing a store
//!
//! Every operation is one atomic step on one key. The rules live in one
//! place, [`AttemptState`]: a backend loads the key's state, applies the
//! matching method and writes the state back (or deletes it when
//! [`is_blank`](AttemptState::is_blank)) without letting another writer in
//! between:
//!
//! - the memory store applies it under the key's shard mutex;
//! - SQL backends inside a transaction holding the row (`SELECT … FOR
//!   UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), storing the
//!   [encoded](AttemptState::encode) state and the lock end in columns;
//! - Redis with a compare-and-set script on the encoded value, retried a
//!   bounded number of times under contention.
//!
//! Reservations carry a deadline ([`AttemptPolicy::reservation_ttl`]): a
//! reservation whose request vanished (process crash) stops counting after
//! it, so a crash cannot lock an account forever. A state may be dropped
//! once nothing about it matters any more ([`AttemptState::keep_until`]:
//! no lock in force, no live reservation, the last failure older than
//! [`AttemptPolicy::forget_after`]); a lock is never dropped before it
//! ends. The conformance kit `portcullis-test` checks every backend
//! against these rules.
//!
//! - Errors are for backend failures only; the layers fail closed on them.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::StoreError;

mod memory;
mod state;
pub use memory::MemoryAttemptStore;
pub use state::{AttemptState, MAX_LOG, duration_secs, epoch_secs};

/// Which counter an attempt is counted on.
///
/// The account part is the **canonicalised** identifier (the lockout layer
/// trims, NFKC-normalises and lowercases it), so `Alice`, ` alice ` and
/// `ＡＬＩＣＥ` share one counter. `Debug` never prints it: identifiers are
/// often email addresses.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum AttemptKey {
    /// Failures for one account, from any address.
    Account(Arc<str>),
    /// Failures from one client address (IPv6 usually masked to its /64),
    /// on any account.
    Ip(IpAddr),
    /// Failures for one account from one address.
    AccountIp(Arc<str>, IpAddr),
}

/// The three kinds of [`AttemptKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptKeyKind {
    /// [`AttemptKey::Account`].
    Account,
    /// [`AttemptKey::Ip`].
    Ip,
    /// [`AttemptKey::AccountIp`].
    AccountIp,
}

impl AttemptKeyKind {
    /// Stable lowercase name (`account`, `ip`, `account_ip`); a bounded label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Ip => "ip",
            Self::AccountIp => "account_ip",
        }
    }
}

impl AttemptKey {
    /// The kind of counter.
    #[must_use]
    pub fn kind(&self) -> AttemptKeyKind {
        match self {
            Self::Account(_) => AttemptKeyKind::Account,
            Self::Ip(_) => AttemptKeyKind::Ip,
            Self::AccountIp(..) => AttemptKeyKind::AccountIp,
        }
    }

    /// The account, for account and account+IP keys.
    #[must_use]
    pub fn account(&self) -> Option<&str> {
        match self {
            Self::Account(account) | Self::AccountIp(account, _) => Some(account),
            Self::Ip(_) => None,
        }
    }

    /// The address, for IP and account+IP keys.
    #[must_use]
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Self::Ip(ip) | Self::AccountIp(_, ip) => Some(*ip),
            Self::Account(_) => None,
        }
    }

    /// A flat string for backends keyed by strings (SQL primary key, Redis
    /// key suffix): `a:<account>`, `i:<ip>`, `p:<ip>|<account>`. The account
    /// comes last so that no account text can make two keys collide.
    #[must_use]
    pub fn storage_key(&self) -> String {
        match self {
            Self::Account(account) => format!("a:{account}"),
            Self::Ip(ip) => format!("i:{ip}"),
            Self::AccountIp(account, ip) => format!("p:{ip}|{account}"),
        }
    }

    /// Parses a [`storage_key`](Self::storage_key) back.
    #[must_use]
    pub fn from_storage_key(key: &str) -> Option<Self> {
        if let Some(account) = key.strip_prefix("a:") {
            return Some(Self::Account(account.into()));
        }
        if let Some(ip) = key.strip_prefix("i:") {
            return ip.parse().ok().map(Self::Ip);
        }
        let rest = key.strip_prefix("p:")?;
        let (ip, account) = rest.split_once('|')?;
        Some(Self::AccountIp(account.into(), ip.parse().ok()?))
    }
}

impl fmt::Debug for AttemptKey {
    // Identifiers are often email addresses: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account(_) => f.write_str("Account(<redacted>)"),
            Self::Ip(ip) => write!(f, "Ip({ip})"),
            Self::AccountIp(_, ip) => write!(f, "AccountIp(<redacted>, {ip})"),
        }
    }
}

/// A lock on a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// Locked until this time.
    Until(SystemTime),
    /// Locked until an operator unlocks it (the consecutive-failure cap was
    /// reached, or an operator locked it without an end).
    UntilUnlocked,
}

impl Lock {
    /// Whether the lock is in force at `now`.
    #[must_use]
    pub fn is_active(self, now: SystemTime) -> bool {
        match self {
            Self::Until(until) => until > now,
            Self::UntilUnlocked => true,
        }
    }

    /// How long until the lock ends, `None` for [`Lock::UntilUnlocked`].
    #[must_use]
    pub fn remaining(self, now: SystemTime) -> Option<Duration> {
        match self {
            Self::Until(until) => Some(until.duration_since(now).unwrap_or_default()),
            Self::UntilUnlocked => None,
        }
    }
}

/// Limits for one kind of key: how many failures in which window, and how
/// long the locks last.
///
/// Defaults (seed 000): 5 failures in 300 s lock for 1800 s; each further
/// lock of the same key doubles, capped at 24 h; at most 100 consecutive
/// failures (NIST SP 800-63B §5.2.2), after which the key stays locked
/// until an operator unlocks it; counters are forgotten 48 h after the last
/// failure.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptPolicy {
    /// Failures in the window that lock the key (at least 1).
    pub limit: u32,
    /// The sliding window.
    pub window: Duration,
    /// Duration of the first lock.
    pub lock: Duration,
    /// Each further lock of the same key lasts this many times the previous
    /// one (1 = constant).
    pub growth: u32,
    /// The longest lock growth can reach.
    pub max_lock: Duration,
    /// Consecutive failures (not reset by a lock ending, only by a success
    /// or an operator) after which the key is locked until unlocked; `None`
    /// for no cap.
    pub max_consecutive: Option<u32>,
    /// How long a counter is remembered after its last failure (the
    /// "failure reset time"): consecutive failures further apart than this
    /// are not consecutive.
    pub forget_after: Duration,
    /// How long a reservation counts if its request never reports back.
    pub reservation_ttl: Duration,
}

impl Default for AttemptPolicy {
    fn default() -> Self {
        Self {
            limit: 5,
            window: Duration::from_secs(300),
            lock: Duration::from_secs(1800),
            growth: 2,
            max_lock: Duration::from_secs(24 * 3600),
            max_consecutive: Some(100),
            forget_after: Duration::from_secs(48 * 3600),
            reservation_ttl: Duration::from_secs(60),
        }
    }
}

impl AttemptPolicy {
    /// `limit` failures within `window` lock the key for `lock`; other
    /// settings as in [`Default`].
    #[must_use]
    pub fn new(limit: u32, window: Duration, lock: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            lock,
            max_lock: lock.max(Self::default().max_lock),
            ..Self::default()
        }
    }

    /// Sets lock growth: each further lock lasts `factor` times the previous
    /// one, up to `max_lock`.
    #[must_use]
    pub fn with_growth(mut self, factor: u32, max_lock: Duration) -> Self {
        self.growth = factor.max(1);
        self.max_lock = max_lock.max(self.lock);
        self
    }

    /// Sets the consecutive-failure cap (`None`: no cap).
    #[must_use]
    pub fn with_max_consecutive(mut self, cap: Option<u32>) -> Self {
        self.max_consecutive = cap.map(|c| c.max(1));
        self
    }

    /// Sets how long a counter is remembered after its last failure.
    #[must_use]
    pub fn with_forget_after(mut self, after: Duration) -> Self {
        self.forget_after = after;
        self
    }

    /// Sets how long an unreported reservation counts.
    #[must_use]
    pub fn with_reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }

    /// The duration of the `nth` lock of a key (1-based): `lock ×
    /// growth^(nth-1)`, capped at `max_lock`.
    #[must_use]
    pub fn lock_duration(&self, nth: u32) -> Duration {
        let factor = self
            .growth
            .checked_pow(nth.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.lock
            .checked_mul(factor)
            .unwrap_or(self.max_lock)
            .min(self.max_lock)
    }
}

/// The answer of [`AttemptStore::begin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The attempt may go ahead (reserved, when a reservation was asked
    /// for). `failures` is the count in the window before this attempt.
    Admitted {
        /// Failures in the window.
        failures: u32,
        /// Consecutive failures.
        consecutive: u32,
    },
    /// The key is locked.
    Locked(Lock),
    /// Not locked, but recorded failures plus attempts in flight already
    /// reach the limit: admitting one more could exceed it.
    Busy,
}

/// What [`AttemptStore::record_failure`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureRecord {
    /// Failures in the window, this one included (the log is cleared when
    /// the key locks; this is the count that locked it).
    pub failures: u32,
    /// Consecutive failures, this one included.
    pub consecutive: u32,
    /// The lock in force after this failure, if any.
    pub lock: Option<Lock>,
    /// Whether this failure locked the key.
    pub newly_locked: bool,
    /// How many times the key has been locked (drives growth).
    pub locks: u32,
}

/// What a success resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetScope {
    /// Everything: failures, consecutive count, lock count (used for the
    /// account+IP counter: NIST says to disregard prior failures from the
    /// same address after a success).
    All,
    /// Only the consecutive count; failures in the window stay (used for
    /// the account counter, so a user logging in between an attacker's
    /// guesses from elsewhere gives the attacker no fresh attempts).
    Consecutive,
}

/// The state of one key, for operators and for the CAPTCHA threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptStatus {
    /// Failures in the window.
    pub failures: u32,
    /// Consecutive failures.
    pub consecutive: u32,
    /// How many times the key has been locked.
    pub locks: u32,
    /// The lock in force, if any.
    pub lock: Option<Lock>,
    /// Attempts reserved and not yet reported.
    pub in_flight: u32,
}

/// A locked key, as listed by [`AttemptStore::locked`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockedKey {
    /// The key.
    pub key: AttemptKey,
    /// Its lock.
    pub lock: Lock,
}

/// Where failed-attempt counters live.
///
/// See the [module docs](self) for the contract; in short: every method is
/// one atomic step on one key, the policy comes with each call, and errors
/// mean the backend could not answer (callers fail closed).
pub trait AttemptStore: Send + Sync + 'static {
    /// Atomically: if `key` is locked, answer [`Admission::Locked`]; else,
    /// when `reserve` is set, if failures in the window plus attempts in
    /// flight reach `policy.limit` (or consecutive failures plus attempts in
    /// flight reach the cap), answer [`Admission::Busy`]; otherwise count
    /// one more attempt in flight (when `reserve`) and answer
    /// [`Admission::Admitted`]. An expired lock is cleared.
    fn begin(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserve: bool,
        now: SystemTime,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send;

    /// Atomically records one failure (ending a reservation when
    /// `reserved`), trims the log to the window, and locks the key when the
    /// count reaches `policy.limit` (for `policy.lock_duration(n)` for the
    /// key's `n`-th lock, clearing the log) or the consecutive count reaches
    /// the cap (until unlocked).
    fn record_failure(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserved: bool,
        now: SystemTime,
    ) -> impl Future<Output = Result<FailureRecord, StoreError>> + Send;

    /// Records a success: ends a reservation when `reserved` and resets
    /// what `scope` says. A lock in force is left alone.
    fn record_success(
        &self,
        key: &AttemptKey,
        scope: ResetScope,
        reserved: bool,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Ends a reservation without counting anything (the request had no
    /// authentication outcome, or was dropped).
    fn release(
        &self,
        key: &AttemptKey,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The state of `key`, counting failures within `window`; `None` when
    /// the store has nothing on it.
    fn status(
        &self,
        key: &AttemptKey,
        window: Duration,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<AttemptStatus>, StoreError>> + Send;

    /// Locks `key` (an operator's decision), replacing any lock in force.
    fn lock(
        &self,
        key: &AttemptKey,
        lock: Lock,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Unlocks `key` and forgets its failures, consecutive count and lock
    /// count. Returns the lock that was in force, if any.
    fn unlock(
        &self,
        key: &AttemptKey,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<Lock>, StoreError>> + Send;

    /// Keys of `kind` locked at `now`, at most `limit`, in the order of
    /// [`sort_locked`]: "until unlocked" first, then soonest-ending last.
    fn locked(
        &self,
        kind: AttemptKeyKind,
        now: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LockedKey>, StoreError>> + Send;

    /// Keys of `kind` with the most failures within `window`, most first,
    /// at most `limit` (seed 000's "find the brute-forcing IP"); ties in
    /// the order of [`sort_hottest`].
    fn hottest(
        &self,
        kind: AttemptKeyKind,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(AttemptKey, u32)>, StoreError>> + Send;

    /// The account+address keys that involve `of`, with their state
    /// (failures counted within `window`): for [`AttemptKey::Account`]
    /// every `AccountIp` key of that account, for [`AttemptKey::Ip`] every
    /// `AccountIp` key of that address, for an `AccountIp` key that key
    /// alone. At most `limit`, sorted by [`storage_key`](AttemptKey::storage_key)
    /// (which ones are kept when more match is up to the backend).
    ///
    /// Operators need it: the lockout layer locks an account both on its
    /// own counter and on the account's counter from the guessing address,
    /// so unlocking an account (or an address) must find those too. It may
    /// be O(keys of the kind) (an operator listing, like
    /// [`locked`](Self::locked)).
    fn pairs_of(
        &self,
        of: &AttemptKey,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(AttemptKey, AttemptStatus)>, StoreError>> + Send;
}

/// Whether `pair` is one of the keys [`AttemptStore::pairs_of`] lists for
/// `of`: backends that filter candidates themselves use it for the exact
/// decision.
#[must_use]
pub fn pair_involves(pair: &AttemptKey, of: &AttemptKey) -> bool {
    match (pair, of) {
        (AttemptKey::AccountIp(account, _), AttemptKey::Account(wanted)) => account == wanted,
        (AttemptKey::AccountIp(_, ip), AttemptKey::Ip(wanted)) => ip == wanted,
        (AttemptKey::AccountIp(..), AttemptKey::AccountIp(..)) => pair == of,
        _ => false,
    }
}

/// The order [`AttemptStore::pairs_of`] promises: by storage key.
pub fn sort_pairs(pairs: &mut [(AttemptKey, AttemptStatus)]) {
    pairs.sort_by_cached_key(|(k, _)| k.storage_key());
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

trait DynAttemptStore: Send + Sync + 'static {
    fn begin_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        policy: &'a AttemptPolicy,
        reserve: bool,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Admission, StoreError>>;
    fn record_failure_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        policy: &'a AttemptPolicy,
        reserved: bool,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<FailureRecord, StoreError>>;
    fn record_success_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        scope: ResetScope,
        reserved: bool,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn release_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn status_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        window: Duration,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Option<AttemptStatus>, StoreError>>;
    fn lock_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        lock: Lock,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn unlock_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Option<Lock>, StoreError>>;
    fn locked_boxed(
        &self,
        kind: AttemptKeyKind,
        now: SystemTime,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LockedKey>, StoreError>>;
    fn hottest_boxed(
        &self,
        kind: AttemptKeyKind,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(AttemptKey, u32)>, StoreError>>;
    fn pairs_of_boxed<'a>(
        &'a self,
        of: &'a AttemptKey,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(AttemptKey, AttemptStatus)>, StoreError>>;
}

impl<T: AttemptStore> DynAttemptStore for T {
    fn begin_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        policy: &'a AttemptPolicy,
        reserve: bool,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Admission, StoreError>> {
        Box::pin(self.begin(key, policy, reserve, now))
    }
    fn record_failure_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        policy: &'a AttemptPolicy,
        reserved: bool,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<FailureRecord, StoreError>> {
        Box::pin(self.record_failure(key, policy, reserved, now))
    }
    fn record_success_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        scope: ResetScope,
        reserved: bool,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.record_success(key, scope, reserved, now))
    }
    fn release_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.release(key, now))
    }
    fn status_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        window: Duration,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Option<AttemptStatus>, StoreError>> {
        Box::pin(self.status(key, window, now))
    }
    fn lock_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        lock: Lock,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.lock(key, lock, now))
    }
    fn unlock_boxed<'a>(
        &'a self,
        key: &'a AttemptKey,
        now: SystemTime,
    ) -> BoxFuture<'a, Result<Option<Lock>, StoreError>> {
        Box::pin(self.unlock(key, now))
    }
    fn locked_boxed(
        &self,
        kind: AttemptKeyKind,
        now: SystemTime,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LockedKey>, StoreError>> {
        Box::pin(self.locked(kind, now, limit))
    }
    fn hottest_boxed(
        &self,
        kind: AttemptKeyKind,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<(AttemptKey, u32)>, StoreError>> {
        Box::pin(self.hottest(kind, window, now, limit))
    }
    fn pairs_of_boxed<'a>(
        &'a self,
        of: &'a AttemptKey,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(AttemptKey, AttemptStatus)>, StoreError>> {
        Box::pin(self.pairs_of(of, window, now, limit))
    }
}

/// A type-erased [`AttemptStore`], for choosing a backend at run time.
#[derive(Clone)]
pub struct BoxAttemptStore(Arc<dyn DynAttemptStore>);

impl BoxAttemptStore {
    /// Erases `store`'s type.
    pub fn new(store: impl AttemptStore) -> Self {
        Self(Arc::new(store))
    }
}

impl fmt::Debug for BoxAttemptStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxAttemptStore").finish_non_exhaustive()
    }
}

impl AttemptStore for BoxAttemptStore {
    async fn begin(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserve: bool,
        now: SystemTime,
    ) -> Result<Admission, StoreError> {
        self.0.begin_boxed(key, policy, reserve, now).await
    }
    async fn record_failure(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserved: bool,
        now: SystemTime,
    ) -> Result<FailureRecord, StoreError> {
        self.0
            .record_failure_boxed(key, policy, reserved, now)
            .await
    }
    async fn record_success(
        &self,
        key: &AttemptKey,
        scope: ResetScope,
        reserved: bool,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.0.record_success_boxed(key, scope, reserved, now).await
    }
    async fn release(&self, key: &AttemptKey, now: SystemTime) -> Result<(), StoreError> {
        self.0.release_boxed(key, now).await
    }
    async fn status(
        &self,
        key: &AttemptKey,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptStatus>, StoreError> {
        self.0.status_boxed(key, window, now).await
    }
    async fn lock(&self, key: &AttemptKey, lock: Lock, now: SystemTime) -> Result<(), StoreError> {
        self.0.lock_boxed(key, lock, now).await
    }
    async fn unlock(&self, key: &AttemptKey, now: SystemTime) -> Result<Option<Lock>, StoreError> {
        self.0.unlock_boxed(key, now).await
    }
    async fn locked(
        &self,
        kind: AttemptKeyKind,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<LockedKey>, StoreError> {
        self.0.locked_boxed(kind, now, limit).await
    }
    async fn hottest(
        &self,
        kind: AttemptKeyKind,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(AttemptKey, u32)>, StoreError> {
        self.0.hottest_boxed(kind, window, now, limit).await
    }
    async fn pairs_of(
        &self,
        of: &AttemptKey,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(AttemptKey, AttemptStatus)>, StoreError> {
        self.0.pairs_of_boxed(of, window, now, limit).await
    }
}

impl<T: AttemptStore> AttemptStore for Arc<T> {
    fn begin(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserve: bool,
        now: SystemTime,
    ) -> impl Future<Output = Result<Admission, StoreError>> + Send {
        T::begin(self, key, policy, reserve, now)
    }
    fn record_failure(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserved: bool,
        now: SystemTime,
    ) -> impl Future<Output = Result<FailureRecord, StoreError>> + Send {
        T::record_failure(self, key, policy, reserved, now)
    }
    fn record_success(
        &self,
        key: &AttemptKey,
        scope: ResetScope,
        reserved: bool,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::record_success(self, key, scope, reserved, now)
    }
    fn release(
        &self,
        key: &AttemptKey,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::release(self, key, now)
    }
    fn status(
        &self,
        key: &AttemptKey,
        window: Duration,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<AttemptStatus>, StoreError>> + Send {
        T::status(self, key, window, now)
    }
    fn lock(
        &self,
        key: &AttemptKey,
        lock: Lock,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::lock(self, key, lock, now)
    }
    fn unlock(
        &self,
        key: &AttemptKey,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<Lock>, StoreError>> + Send {
        T::unlock(self, key, now)
    }
    fn locked(
        &self,
        kind: AttemptKeyKind,
        now: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<LockedKey>, StoreError>> + Send {
        T::locked(self, kind, now, limit)
    }
    fn hottest(
        &self,
        kind: AttemptKeyKind,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(AttemptKey, u32)>, StoreError>> + Send {
        T::hottest(self, kind, window, now, limit)
    }
    fn pairs_of(
        &self,
        of: &AttemptKey,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(AttemptKey, AttemptStatus)>, StoreError>> + Send {
        T::pairs_of(self, of, window, now, limit)
    }
}

/// What an outer lockout layer tells inner layers about a request, as a
/// **request** extension: the failure counts it saw, so the CAPTCHA layer
/// decides on the same numbers without asking the store again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptCounts {
    /// Failures in the window for the submitted account, if one was found.
    pub account: Option<u32>,
    /// Failures in the window from the client address, if known.
    pub ip: Option<u32>,
    /// The account is locked and the request was let through only so that
    /// a solved CAPTCHA can prove a human is trying (see the lockout
    /// layer's CAPTCHA unlock). An inner CAPTCHA layer must then require a
    /// token whatever the counts; the lockout layer refuses the response
    /// unless it carries [`CaptchaSolved`].
    pub captcha_unlock: bool,
}

/// Put in **response** extensions by a CAPTCHA layer that verified a token
/// for the request; the lockout layer's CAPTCHA unlock requires it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptchaSolved;

/// The order [`AttemptStore::locked`] promises: "until unlocked" first,
/// then the latest end; ties by storage key, so every backend agrees.
pub fn sort_locked(locked: &mut [LockedKey]) {
    locked.sort_by_cached_key(|l| {
        let end = match l.lock {
            Lock::UntilUnlocked => u32::MAX,
            Lock::Until(until) => epoch_secs(until),
        };
        (std::cmp::Reverse(end), l.key.storage_key())
    });
}

/// The order [`AttemptStore::hottest`] promises: most failures first; ties
/// by storage key.
pub fn sort_hottest(hot: &mut [(AttemptKey, u32)]) {
    hot.sort_by_cached_key(|(k, n)| (std::cmp::Reverse(*n), k.storage_key()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreErrorKind;
    use std::time::UNIX_EPOCH;

    const T0: u64 = 1_700_000_000;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + s)
    }

    fn policy(limit: u32) -> AttemptPolicy {
        AttemptPolicy::new(limit, Duration::from_secs(300), Duration::from_secs(1800))
    }

    fn alice() -> AttemptKey {
        AttemptKey::Account("alice".into())
    }

    async fn fail(
        store: &MemoryAttemptStore,
        key: &AttemptKey,
        p: &AttemptPolicy,
        t: u64,
    ) -> FailureRecord {
        store.record_failure(key, p, false, at(t)).await.unwrap()
    }

    #[tokio::test]
    async fn sliding_log_has_no_double_burst_at_a_window_boundary() {
        let store = MemoryAttemptStore::new(100);
        let p = policy(5);
        let key = alice();
        // Four failures at the very end of one "fixed" window...
        for _ in 0..4 {
            assert!(!fail(&store, &key, &p, 299).await.newly_locked);
        }
        // ...and the next one just after the boundary still locks: the
        // window slides, it never restarts.
        let record = fail(&store, &key, &p, 301).await;
        assert!(record.newly_locked);
        assert_eq!(record.failures, 5);
        assert_eq!(record.lock, Some(Lock::Until(at(301 + 1800))));
    }

    #[tokio::test]
    async fn failures_older_than_the_window_do_not_count() {
        let store = MemoryAttemptStore::new(100);
        let p = policy(3);
        let key = alice();
        fail(&store, &key, &p, 0).await;
        fail(&store, &key, &p, 1).await;
        let r = fail(&store, &key, &p, 300).await;
        assert_eq!(r.failures, 2, "the failure at 0 left the window");
        assert!(!r.newly_locked);
    }

    #[tokio::test]
    async fn reservations_count_towards_the_limit() {
        let store = MemoryAttemptStore::new(100);
        let p = policy(2);
        let key = alice();
        let now = at(0);
        assert!(matches!(
            store.begin(&key, &p, true, now).await.unwrap(),
            Admission::Admitted { .. }
        ));
        assert!(matches!(
            store.begin(&key, &p, true, now).await.unwrap(),
            Admission::Admitted { .. }
        ));
        assert_eq!(
            store.begin(&key, &p, true, now).await.unwrap(),
            Admission::Busy
        );
        store.release(&key, now).await.unwrap();
        assert!(matches!(
            store.begin(&key, &p, true, now).await.unwrap(),
            Admission::Admitted { .. }
        ));
        // A reservation whose request vanished stops counting after its TTL.
        let later = now + p.reservation_ttl + Duration::from_secs(1);
        assert!(matches!(
            store.begin(&key, &p, true, later).await.unwrap(),
            Admission::Admitted { .. }
        ));
    }

    #[tokio::test]
    async fn locks_grow_and_are_capped() {
        let store = MemoryAttemptStore::new(100);
        let p = AttemptPolicy::new(1, Duration::from_secs(60), Duration::from_secs(100))
            .with_growth(3, Duration::from_secs(500))
            .with_max_consecutive(None);
        let key = alice();
        let mut t = 0;
        let mut durations = Vec::new();
        for _ in 0..4 {
            let r = fail(&store, &key, &p, t).await;
            let Some(Lock::Until(until)) = r.lock else {
                panic!("locked")
            };
            let d = until.duration_since(at(t)).unwrap().as_secs();
            durations.push(d);
            t += d;
        }
        assert_eq!(durations, [100, 300, 500, 500]);
    }

    #[tokio::test]
    async fn consecutive_cap_locks_until_unlocked() {
        let store = MemoryAttemptStore::new(100);
        let p = AttemptPolicy::new(1000, Duration::from_secs(60), Duration::from_secs(100))
            .with_max_consecutive(Some(3));
        let key = alice();
        fail(&store, &key, &p, 0).await;
        fail(&store, &key, &p, 1).await;
        let r = fail(&store, &key, &p, 2).await;
        assert!(r.newly_locked);
        assert_eq!(r.lock, Some(Lock::UntilUnlocked));
        assert_eq!(
            store.begin(&key, &p, true, at(1_000_000)).await.unwrap(),
            Admission::Locked(Lock::UntilUnlocked)
        );
        assert_eq!(
            store.unlock(&key, at(10)).await.unwrap(),
            Some(Lock::UntilUnlocked)
        );
        assert!(matches!(
            store.begin(&key, &p, true, at(11)).await.unwrap(),
            Admission::Admitted { failures: 0, .. }
        ));
    }

    #[tokio::test]
    async fn success_scopes() {
        let store = MemoryAttemptStore::new(100);
        let p = policy(5);
        let pair = AttemptKey::AccountIp("alice".into(), "192.0.2.1".parse().unwrap());
        let account = alice();
        for t in 0..3 {
            fail(&store, &pair, &p, t).await;
            fail(&store, &account, &p, t).await;
        }
        store
            .record_success(&pair, ResetScope::All, false, at(4))
            .await
            .unwrap();
        store
            .record_success(&account, ResetScope::Consecutive, false, at(4))
            .await
            .unwrap();
        assert!(
            store
                .status(&pair, p.window, at(5))
                .await
                .unwrap()
                .is_none()
        );
        let s = store
            .status(&account, p.window, at(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((s.failures, s.consecutive), (3, 0));
    }

    #[tokio::test]
    async fn full_store_evicts_idle_counters_but_never_locks() {
        let store = MemoryAttemptStore::new(4);
        let p = policy(1);
        let locked = AttemptKey::Account("locked".into());
        fail(&store, &locked, &p, 0).await; // locks
        for i in 0..10 {
            let key = AttemptKey::Ip(IpAddr::from([192, 0, 2, i]));
            store.begin(&key, &policy(5), false, at(1)).await.unwrap();
            store
                .record_failure(&key, &policy(5), false, at(1))
                .await
                .unwrap();
        }
        assert!(matches!(
            store.begin(&locked, &p, true, at(2)).await.unwrap(),
            Admission::Locked(_)
        ));
        assert!(store.len() <= 4, "bounded: {}", store.len());
    }

    #[tokio::test]
    async fn the_bound_is_exact_for_every_capacity() {
        // 50 000 used to round up per shard to 64 × 782 = 50 048 keys.
        for capacity in [1, 63, 64, 65, 1000, 4097, 50_000] {
            let store = MemoryAttemptStore::new(capacity);
            assert_eq!(store.capacity(), capacity);
            let p = policy(5);
            for i in 0..u32::try_from(capacity * 2 + 100).unwrap() {
                let key = AttemptKey::Ip(IpAddr::from(i.to_be_bytes()));
                store.record_failure(&key, &p, false, at(0)).await.unwrap();
                if i % 4096 == 0 {
                    assert!(store.len() <= capacity, "{} > {capacity}", store.len());
                }
            }
            assert!(store.len() <= capacity, "{} > {capacity}", store.len());
            assert!(store.len() > capacity * 9 / 10, "the store fills up");
        }
    }

    #[tokio::test]
    async fn pairs_of_an_account_or_an_address() {
        let store = MemoryAttemptStore::new(100);
        let p = policy(5);
        let a = |ip: &str| AttemptKey::AccountIp("alice".into(), ip.parse().unwrap());
        let b = |ip: &str| AttemptKey::AccountIp("x|alice".into(), ip.parse().unwrap());
        for key in [a("192.0.2.1"), a("192.0.2.2"), b("192.0.2.1"), alice()] {
            fail(&store, &key, &p, 0).await;
        }
        let of_alice = store.pairs_of(&alice(), p.window, at(1), 10).await.unwrap();
        let keys: Vec<_> = of_alice.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(keys, [a("192.0.2.1"), a("192.0.2.2")]);
        assert_eq!(of_alice[0].1.failures, 1);
        let ip = AttemptKey::Ip("192.0.2.1".parse().unwrap());
        let of_ip = store.pairs_of(&ip, p.window, at(1), 10).await.unwrap();
        assert_eq!(of_ip.len(), 2);
        assert_eq!(
            store.pairs_of(&ip, p.window, at(1), 1).await.unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn a_full_store_of_locks_fails_closed() {
        let store = MemoryAttemptStore::new(1);
        let p = policy(1);
        fail(&store, &AttemptKey::Account("a".into()), &p, 0).await;
        let err = store
            .record_failure(&AttemptKey::Account("b".into()), &p, false, at(1))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::CapacityExceeded);
    }

    #[tokio::test]
    async fn listings() {
        let store = MemoryAttemptStore::new(100);
        let p = policy(2);
        for (ip, n) in [([198, 51, 100, 1], 1), ([203, 0, 113, 88], 2)] {
            for _ in 0..n {
                let key = AttemptKey::Ip(IpAddr::from(ip));
                store
                    .record_failure(&key, &policy(10), false, at(0))
                    .await
                    .unwrap();
            }
        }
        fail(&store, &alice(), &p, 0).await;
        fail(&store, &alice(), &p, 0).await;
        let hot = store
            .hottest(AttemptKeyKind::Ip, p.window, at(1), 10)
            .await
            .unwrap();
        assert_eq!(hot[0], (AttemptKey::Ip("203.0.113.88".parse().unwrap()), 2));
        assert_eq!(hot.len(), 2);
        let locked = store
            .locked(AttemptKeyKind::Account, at(1), 10)
            .await
            .unwrap();
        assert_eq!(locked.len(), 1);
        assert_eq!(locked[0].key, alice());
    }

    #[test]
    fn storage_keys_round_trip_and_debug_hides_accounts() {
        for key in [
            alice(),
            AttemptKey::Ip("2001:db8::".parse().unwrap()),
            AttemptKey::AccountIp("a|b:c".into(), "192.0.2.1".parse().unwrap()),
        ] {
            assert_eq!(
                AttemptKey::from_storage_key(&key.storage_key()),
                Some(key.clone())
            );
            assert!(!format!("{key:?}").contains("alice"));
        }
    }

    #[tokio::test]
    async fn concurrent_reservations_never_exceed_the_limit() {
        let store = Arc::new(MemoryAttemptStore::new(100));
        let p = policy(5);
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let store = Arc::clone(&store);
                let p = p.clone();
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    rt.block_on(store.begin(&alice(), &p, true, at(0))).unwrap()
                })
            })
            .collect();
        let admitted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|a| matches!(a, Admission::Admitted { .. }))
            .count();
        assert_eq!(admitted, 5);
    }
}
