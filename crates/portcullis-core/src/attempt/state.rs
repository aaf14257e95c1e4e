//! The per-key state machine every [`AttemptStore`](super::AttemptStore)
//! backend shares.
//!
//! The memory store keeps an [`AttemptState`] per key in a map; the SQL
//! stores load it from a row inside a transaction that holds the row lock;
//! the Redis store compares and sets the [encoded](AttemptState::encode)
//! form. One implementation of the rules — sliding log, reservations,
//! growing locks, the consecutive cap — means backends cannot drift apart.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smallvec::SmallVec;

use super::{Admission, AttemptPolicy, AttemptStatus, FailureRecord, Lock, ResetScope};
use crate::{StoreError, StoreErrorKind};

/// Seconds since the Unix epoch; enough until 2106.
pub(crate) type Secs = u32;

/// `lock_until` value for [`Lock::UntilUnlocked`].
const FOREVER: Secs = Secs::MAX;

/// The most failure times a decoded state may hold: a policy limit above
/// this is unreasonable, and a longer log means the stored value is corrupt.
pub const MAX_LOG: usize = 10_000;

/// Seconds since the epoch, saturating (0 before 1970, just below
/// "forever" after 2106).
#[must_use]
pub fn epoch_secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| Secs::try_from(d.as_secs()).unwrap_or(FOREVER - 1))
}

/// Whole seconds, rounded up: a window of 1.5 s covers two one-second ticks.
#[must_use]
pub fn duration_secs(d: Duration) -> u32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Secs::try_from(s).unwrap_or(FOREVER - 1)
}

fn time_of(s: Secs) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::from(s))
}

/// Failure times, ascending. The first few stay inline: most states hold
/// one or a handful (the policy's limit is usually single digits), and a
/// store applying an operation should not allocate for them.
type Log = SmallVec<[Secs; 4]>;

/// Everything a store remembers about one [`AttemptKey`](super::AttemptKey).
///
/// Methods mirror [`AttemptStore`](super::AttemptStore)'s, minus the key:
/// a backend finds the state, applies the method, and writes the state back
/// (or deletes it when [`is_blank`](Self::is_blank)) in one atomic step.
/// Times have one-second resolution.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptState {
    /// Failure times, ascending, at most `limit` of them.
    log: Log,
    consecutive: u32,
    locks: u32,
    in_flight: u32,
    in_flight_until: Secs,
    /// 0: no lock; [`FOREVER`]: until unlocked.
    lock_until: Secs,
    /// When nothing about this state matters any more.
    keep_until: Secs,
}

impl AttemptState {
    /// The lock in force at `now`.
    #[must_use]
    pub fn lock_at(&self, now: SystemTime) -> Option<Lock> {
        self.lock_secs(epoch_secs(now))
    }

    fn lock_secs(&self, now: Secs) -> Option<Lock> {
        match self.lock_until {
            0 => None,
            FOREVER => Some(Lock::UntilUnlocked),
            until if until > now => Some(Lock::Until(time_of(until))),
            _ => None,
        }
    }

    /// Clears what has run out by `now`: an ended lock, expired
    /// reservations, and — once [`keep_until`](Self::keep_until) has
    /// passed with nothing in force — everything.
    pub fn refresh(&mut self, now: SystemTime) {
        self.refresh_secs(epoch_secs(now));
    }

    fn refresh_secs(&mut self, now: Secs) {
        if self.lock_until != 0 && self.lock_until != FOREVER && self.lock_until <= now {
            self.lock_until = 0;
        }
        if self.in_flight_until <= now {
            self.in_flight = 0;
        }
        if self.is_idle(now) && self.keep_until <= now {
            *self = Self::default();
        }
    }

    fn failures_secs(&self, window: Secs, now: Secs) -> u32 {
        let from = now.saturating_sub(window);
        let n = self.log.iter().filter(|&&t| t > from).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Failures within `window` before `now`.
    #[must_use]
    pub fn failures(&self, window: Duration, now: SystemTime) -> u32 {
        self.failures_secs(duration_secs(window), epoch_secs(now))
    }

    /// Consecutive failures.
    #[must_use]
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }

    fn end_reservation(&mut self, reserved: bool) {
        if reserved {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
    }

    fn touch(&mut self, until: Secs) {
        self.keep_until = self.keep_until.max(until);
    }

    fn is_idle(&self, now: Secs) -> bool {
        self.lock_secs(now).is_none() && (self.in_flight == 0 || self.in_flight_until <= now)
    }

    /// Whether no lock and no live reservation is in force at `now`: the
    /// state may be evicted under memory pressure.
    #[must_use]
    pub fn is_idle_at(&self, now: SystemTime) -> bool {
        self.is_idle(epoch_secs(now))
    }

    /// Whether nothing about this state matters at `now` (no lock, no live
    /// reservation, past [`keep_until`](Self::keep_until)): it may be evicted.
    #[must_use]
    pub fn is_stale(&self, now: SystemTime) -> bool {
        let now = epoch_secs(now);
        self.is_idle(now) && self.keep_until <= now
    }

    /// Whether the state holds nothing at all at `now`: a backend deletes
    /// it instead of storing it.
    #[must_use]
    pub fn is_blank(&self, now: SystemTime) -> bool {
        let now = epoch_secs(now);
        self.is_idle(now) && self.log.is_empty() && self.consecutive == 0 && self.locks == 0
    }

    /// Until when this state must be kept (a backend's TTL or cleanup
    /// bound); `None` while it is locked until unlocked.
    #[must_use]
    pub fn keep_until(&self) -> Option<SystemTime> {
        (self.lock_until != FOREVER).then(|| time_of(self.keep_until.max(self.in_flight_until)))
    }

    /// How eviction ranks idle states: fewest remembered failures first.
    #[must_use]
    pub fn weight(&self) -> (usize, u32) {
        (self.log.len(), self.consecutive)
    }

    /// [`AttemptStore::begin`](super::AttemptStore::begin) on this key.
    pub fn begin(&mut self, policy: &AttemptPolicy, reserve: bool, now: SystemTime) -> Admission {
        let now = epoch_secs(now);
        self.refresh_secs(now);
        if let Some(lock) = self.lock_secs(now) {
            return Admission::Locked(lock);
        }
        let failures = self.failures_secs(duration_secs(policy.window), now);
        if !reserve {
            return Admission::Admitted {
                failures,
                consecutive: self.consecutive,
            };
        }
        let over_cap = policy
            .max_consecutive
            .is_some_and(|cap| self.consecutive.saturating_add(self.in_flight) >= cap);
        if failures.saturating_add(self.in_flight) >= policy.limit || over_cap {
            return Admission::Busy;
        }
        self.in_flight = self.in_flight.saturating_add(1);
        self.in_flight_until = now.saturating_add(duration_secs(policy.reservation_ttl));
        self.touch(self.in_flight_until);
        Admission::Admitted {
            failures,
            consecutive: self.consecutive,
        }
    }

    /// [`AttemptStore::record_failure`](super::AttemptStore::record_failure)
    /// on this key.
    pub fn record_failure(
        &mut self,
        policy: &AttemptPolicy,
        reserved: bool,
        now: SystemTime,
    ) -> FailureRecord {
        let now = epoch_secs(now);
        self.refresh_secs(now);
        self.end_reservation(reserved);
        let from = now.saturating_sub(duration_secs(policy.window));
        self.log.retain(|t| *t > from);
        // Instances' clocks differ by a little: keep the log sorted even when
        // this failure is "earlier" than the last one recorded.
        let at = self.log.partition_point(|&t| t <= now);
        self.log.insert(at, now);
        let limit = usize::try_from(policy.limit.max(1))
            .unwrap_or(usize::MAX)
            .min(MAX_LOG);
        if self.log.len() > limit {
            let excess = self.log.len() - limit;
            self.log.drain(..excess);
        }
        let failures = u32::try_from(self.log.len()).unwrap_or(u32::MAX);
        self.consecutive = self.consecutive.saturating_add(1);
        let was_locked = self.lock_secs(now).is_some();
        let mut newly_locked = false;
        if policy
            .max_consecutive
            .is_some_and(|cap| self.consecutive >= cap)
        {
            newly_locked = self.lock_until != FOREVER;
            self.lock_until = FOREVER;
        } else if !was_locked && failures >= policy.limit {
            self.locks = self.locks.saturating_add(1);
            let duration = policy.lock_duration(self.locks);
            self.lock_until = now.saturating_add(duration_secs(duration)).min(FOREVER - 1);
            self.log.clear();
            newly_locked = true;
        }
        self.touch(now.saturating_add(duration_secs(policy.forget_after)));
        if self.lock_until != FOREVER {
            self.touch(self.lock_until);
        }
        FailureRecord {
            failures,
            consecutive: self.consecutive,
            lock: self.lock_secs(now),
            newly_locked,
            locks: self.locks,
        }
    }

    /// [`AttemptStore::record_success`](super::AttemptStore::record_success)
    /// on this key.
    pub fn record_success(&mut self, scope: ResetScope, reserved: bool, now: SystemTime) {
        self.refresh_secs(epoch_secs(now));
        self.end_reservation(reserved);
        self.consecutive = 0;
        if scope == ResetScope::All {
            self.log.clear();
            self.locks = 0;
        }
    }

    /// [`AttemptStore::release`](super::AttemptStore::release) on this key.
    pub fn release(&mut self, now: SystemTime) {
        self.refresh_secs(epoch_secs(now));
        self.end_reservation(true);
    }

    /// [`AttemptStore::status`](super::AttemptStore::status) on this key.
    #[must_use]
    pub fn status(&self, window: Duration, now: SystemTime) -> AttemptStatus {
        let mut state = self.clone();
        let now = epoch_secs(now);
        state.refresh_secs(now);
        AttemptStatus {
            failures: state.failures_secs(duration_secs(window), now),
            consecutive: state.consecutive,
            locks: state.locks,
            lock: state.lock_secs(now),
            in_flight: state.in_flight,
        }
    }

    /// [`AttemptStore::lock`](super::AttemptStore::lock) on this key.
    pub fn lock(&mut self, lock: Lock, now: SystemTime) {
        self.refresh_secs(epoch_secs(now));
        self.lock_until = match lock {
            Lock::UntilUnlocked => FOREVER,
            Lock::Until(until) => epoch_secs(until).clamp(1, FOREVER - 1),
        };
        if self.lock_until != FOREVER {
            self.touch(self.lock_until);
        }
    }

    /// [`AttemptStore::unlock`](super::AttemptStore::unlock) on this key:
    /// forgets everything but live reservations.
    pub fn unlock(&mut self, now: SystemTime) -> Option<Lock> {
        let now = epoch_secs(now);
        self.refresh_secs(now);
        let was = self.lock_secs(now);
        *self = Self {
            in_flight: self.in_flight,
            in_flight_until: self.in_flight_until,
            keep_until: self.in_flight_until,
            ..Self::default()
        };
        was
    }

    /// Packs the state for the memory store's address map, unless it does
    /// not fit: more than one failure, one at second 0, or more than
    /// `u16::MAX` locks or reservations. The store keeps those whole.
    pub(crate) fn pack(&self) -> Option<PackedState> {
        let first = match self.log.as_slice() {
            [] => 0,
            &[only] if only != 0 => only,
            _ => return None,
        };
        Some(PackedState {
            consecutive: self.consecutive,
            locks: u16::try_from(self.locks).ok()?,
            in_flight: u16::try_from(self.in_flight).ok()?,
            in_flight_until: self.in_flight_until,
            lock_until: self.lock_until,
            keep_until: self.keep_until,
            first,
        })
    }

    /// The state [`pack`](Self::pack) packed.
    pub(crate) fn unpack(packed: PackedState) -> Self {
        Self {
            log: match packed.first {
                0 => Log::new(),
                first => smallvec::smallvec![first],
            },
            consecutive: packed.consecutive,
            locks: packed.locks.into(),
            in_flight: packed.in_flight.into(),
            in_flight_until: packed.in_flight_until,
            lock_until: packed.lock_until,
            keep_until: packed.keep_until,
        }
    }

    /// The lock's end as stored: `0` none, `u32::MAX` until unlocked, else
    /// seconds since the epoch. SQL backends keep it in its own column to
    /// list locked keys with an index.
    #[must_use]
    pub fn lock_until_secs(&self) -> u32 {
        self.lock_until
    }

    /// A compact text form, the same for every backend:
    /// `1;consecutive;locks;in_flight;in_flight_until;lock_until;keep_until;t1,t2,…`
    /// (all decimal seconds or counts), stable across versions: the
    /// leading `1` is the format version.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(48 + self.log.len() * 11);
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "1;{};{};{};{};{};{};",
            self.consecutive,
            self.locks,
            self.in_flight,
            self.in_flight_until,
            self.lock_until,
            self.keep_until
        );
        for (i, t) in self.log.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{t}");
        }
        out
    }

    /// Parses [`encode`](Self::encode)'s form.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Corrupt`] when `text` is not that form, holds more
    /// than [`MAX_LOG`] failure times, or its log is not ascending.
    pub fn decode(text: &str) -> Result<Self, StoreError> {
        let corrupt = || StoreError::new(StoreErrorKind::Corrupt, "attempt state is malformed");
        let mut parts = text.split(';');
        if parts.next() != Some("1") {
            return Err(corrupt());
        }
        let mut number = || -> Result<u32, StoreError> {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(corrupt)
        };
        let consecutive = number()?;
        let locks = number()?;
        let in_flight = number()?;
        let in_flight_until = number()?;
        let lock_until = number()?;
        let keep_until = number()?;
        let log_text = parts.next().ok_or_else(corrupt)?;
        if parts.next().is_some() {
            return Err(corrupt());
        }
        let mut log = Log::new();
        if !log_text.is_empty() {
            for t in log_text.split(',') {
                if log.len() >= MAX_LOG {
                    return Err(corrupt());
                }
                let t: Secs = t.parse().map_err(|_| corrupt())?;
                if log.last().is_some_and(|&last| last > t) {
                    return Err(corrupt());
                }
                log.push(t);
            }
        }
        Ok(Self {
            log,
            consecutive,
            locks,
            in_flight,
            in_flight_until,
            lock_until,
            keep_until,
        })
    }
}

/// [`AttemptState`] without a pointer, for the memory store's address map:
/// 24 bytes, 4-byte aligned, so an entry with its 16-byte key is 40 bytes.
/// It holds a log of at most one failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PackedState {
    consecutive: u32,
    locks: u16,
    in_flight: u16,
    in_flight_until: u32,
    lock_until: u32,
    keep_until: u32,
    /// The only failure time; 0 when the log is empty.
    first: Secs,
}

impl PackedState {
    /// Whether this entry may stand for a state kept whole elsewhere: the
    /// store writes such entries with an empty log.
    pub(crate) const fn may_be_spilled(&self) -> bool {
        self.first == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn encoding_round_trips() {
        let policy = AttemptPolicy::new(3, Duration::from_secs(60), Duration::from_secs(100));
        let mut state = AttemptState::default();
        assert_eq!(AttemptState::decode(&state.encode()).unwrap(), state);
        state.begin(&policy, true, at(0));
        state.record_failure(&policy, true, at(1));
        state.record_failure(&policy, false, at(2));
        let text = state.encode();
        assert_eq!(AttemptState::decode(&text).unwrap(), state);
        state.record_failure(&policy, false, at(3));
        assert!(state.lock_at(at(3)).is_some());
        assert_eq!(AttemptState::decode(&state.encode()).unwrap(), state);
    }

    #[test]
    fn packing_round_trips_what_fits_and_refuses_the_rest() {
        let round_trip = |state: &AttemptState| AttemptState::unpack(state.pack().unwrap());
        let policy = AttemptPolicy::new(3, Duration::from_secs(60), Duration::from_secs(100));
        let mut state = AttemptState::default();
        assert_eq!(round_trip(&state), state);
        state.begin(&policy, true, at(0));
        assert_eq!(round_trip(&state), state);
        state.record_failure(&policy, true, at(1));
        assert_eq!(round_trip(&state), state);
        state.record_failure(&policy, false, at(2));
        assert_eq!(state.pack(), None, "two failures do not fit");
        state.record_failure(&policy, false, at(3));
        assert!(state.lock_at(at(3)).is_some());
        assert_eq!(round_trip(&state), state, "locking cleared the log");
        // A failure at second 0 (a clock before 1970) cannot sit in `first`.
        let mut early = AttemptState::default();
        early.record_failure(&policy, false, UNIX_EPOCH);
        assert_eq!(early.pack(), None);
        let many = AttemptState {
            in_flight: u32::from(u16::MAX) + 1,
            ..AttemptState::default()
        };
        assert_eq!(many.pack(), None);
        assert_eq!(size_of::<PackedState>(), 24);
        assert_eq!(align_of::<PackedState>(), 4);
    }

    #[test]
    fn a_failure_from_a_clock_behind_keeps_the_log_sorted() {
        let policy = AttemptPolicy::new(10, Duration::from_secs(60), Duration::from_secs(100));
        let mut state = AttemptState::default();
        for t in [5, 3, 5, 4] {
            state.record_failure(&policy, false, at(t));
        }
        let decoded = AttemptState::decode(&state.encode()).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(decoded.failures(Duration::from_secs(60), at(5)), 4);
    }

    #[test]
    fn malformed_encodings_are_corrupt_not_panics() {
        let long = format!("1;0;0;0;0;0;0;{}", vec!["1"; MAX_LOG + 1].join(","));
        for text in [
            "",
            "2;0;0;0;0;0;0;",
            "1;0;0;0;0;0;0",
            "1;0;0;0;0;0;0;;",
            "1;x;0;0;0;0;0;",
            "1;0;0;0;0;0;0;5,4",
            "1;0;0;0;0;0;0;1,,2",
            "1;-1;0;0;0;0;0;",
            "1;99999999999;0;0;0;0;0;",
            long.as_str(),
        ] {
            let err = AttemptState::decode(text).unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{text:.40}");
        }
    }

    #[test]
    fn a_stale_state_is_forgotten_on_refresh() {
        let policy = AttemptPolicy::new(5, Duration::from_secs(60), Duration::from_secs(100))
            .with_forget_after(Duration::from_secs(600));
        let mut state = AttemptState::default();
        state.record_failure(&policy, false, at(0));
        assert_eq!(state.consecutive(), 1);
        state.refresh(at(599));
        assert_eq!(state.consecutive(), 1);
        state.refresh(at(600));
        assert_eq!(state, AttemptState::default());
        assert!(state.is_blank(at(600)));
    }
}
