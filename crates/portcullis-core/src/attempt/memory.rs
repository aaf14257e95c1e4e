//! [`MemoryAttemptStore`]: the embedded attempt store.
//!
//! Address keys are what a flood creates by the hundred thousand, so they
//! are stored apart from account keys and packed: a 16-byte address and
//! 24 bytes of counters ([`PackedState`]), no pointer, 40 bytes a map
//! entry. A state that does not pack (more than one failure in its log) is
//! kept whole in a side map. Account and account+address keys keep their
//! [`AttemptState`] as it is.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::state::PackedState;
use super::{
    Admission, AttemptKey, AttemptKeyKind, AttemptPolicy, AttemptState, AttemptStatus,
    AttemptStore, FailureRecord, Lock, LockedKey, ResetScope, pair_involves, sort_hottest,
    sort_locked, sort_pairs,
};
use crate::{StoreError, StoreErrorKind};

/// A bounded in-memory [`AttemptStore`] for a single process.
///
/// Sharded maps behind short mutexes; every operation holds one shard lock
/// for a few hundred nanoseconds and never across an `.await`. An address
/// key with at most one remembered failure costs 40 bytes in its map (plus
/// the map's slack); with more, its whole state is kept beside, as an
/// account key's is: the key, about 48 bytes of counters and log (four
/// failures inline, more on the heap). See
/// `docs/benchmarks.md` for measured figures. IPv4-mapped IPv6 addresses
/// count as the IPv4 address, as the lockout layer keys them.
///
/// When the store is full it first drops entries nothing depends on any
/// more (no lock, no reservation, last failure older than
/// [`AttemptPolicy::forget_after`]); if still full, it evicts the unlocked,
/// idle entry with the fewest failures among a small sample. Locks and live
/// reservations are never evicted; a store full of them refuses new keys
/// with [`StoreErrorKind::CapacityExceeded`], which the layers answer with
/// 503 (fail closed).
///
/// ```
/// use portcullis_core::{Admission, AttemptKey, AttemptPolicy, AttemptStore, MemoryAttemptStore};
/// use std::time::{Duration, SystemTime};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryAttemptStore::new(10_000);
/// let policy = AttemptPolicy::new(2, Duration::from_secs(300), Duration::from_secs(1800));
/// let key = AttemptKey::Account("alice".into());
/// let now = SystemTime::now();
/// for _ in 0..2 {
///     assert!(matches!(store.begin(&key, &policy, true, now).await?, Admission::Admitted { .. }));
///     store.record_failure(&key, &policy, true, now).await?;
/// }
/// assert!(matches!(store.begin(&key, &policy, true, now).await?, Admission::Locked(_)));
/// # Ok::<_, portcullis_core::StoreError>(())
/// # }).unwrap();
/// ```
pub struct MemoryAttemptStore {
    /// Each shard with its own bound: the bounds add up to the capacity.
    shards: Box<[(Mutex<Shard>, usize)]>,
    hasher: RandomState,
}

/// An address as a map key: IPv6 octets, IPv4 as its mapped form.
type IpBits = [u8; 16];

fn ip_bits(ip: IpAddr) -> IpBits {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn ip_of(bits: IpBits) -> IpAddr {
    Ipv6Addr::from(bits).to_canonical()
}

/// Where a key lives in a shard.
#[derive(Hash)]
enum Slot<'a> {
    Ip(IpBits),
    Other(&'a AttemptKey),
}

impl<'a> Slot<'a> {
    fn of(key: &'a AttemptKey) -> Self {
        match key {
            AttemptKey::Ip(ip) => Self::Ip(ip_bits(*ip)),
            other => Self::Other(other),
        }
    }
}

#[derive(Default)]
struct Shard {
    /// Address keys, packed.
    ips: HashMap<IpBits, PackedState>,
    /// Address keys whose state does not pack, whole; their entry in
    /// `ips` is a blank with an empty log.
    spilled: HashMap<IpBits, AttemptState>,
    /// Account and account+address keys.
    others: HashMap<AttemptKey, AttemptState>,
}

impl Shard {
    fn len(&self) -> usize {
        self.ips.len() + self.others.len()
    }

    fn contains(&self, slot: &Slot<'_>) -> bool {
        match slot {
            Slot::Ip(bits) => self.ips.contains_key(bits),
            Slot::Other(key) => self.others.contains_key(*key),
        }
    }

    fn unpack(&self, bits: &IpBits, packed: PackedState) -> AttemptState {
        unpack(&self.spilled, bits, packed)
    }

    fn get(&self, slot: &Slot<'_>) -> Option<AttemptState> {
        match slot {
            Slot::Ip(bits) => self.ips.get(bits).map(|p| self.unpack(bits, *p)),
            Slot::Other(key) => self.others.get(*key).cloned(),
        }
    }

    /// Applies `op` to the slot's state (a blank one when absent and
    /// `insert`), then stores the result, or removes it when blank.
    fn apply<R>(
        &mut self,
        slot: &Slot<'_>,
        insert: bool,
        now: SystemTime,
        op: impl FnOnce(&mut AttemptState) -> R,
    ) -> Option<R> {
        match slot {
            Slot::Other(key) => {
                let state = if insert {
                    self.others.entry((*key).clone()).or_default()
                } else {
                    self.others.get_mut(*key)?
                };
                let out = op(state);
                if state.is_blank(now) {
                    self.others.remove(*key);
                }
                Some(out)
            }
            Slot::Ip(bits) => {
                let mut state = match self.ips.get(bits) {
                    Some(packed) => self.unpack(bits, *packed),
                    None if insert => AttemptState::default(),
                    None => return None,
                };
                let out = op(&mut state);
                if state.is_blank(now) {
                    self.ips.remove(bits);
                    self.unspill(bits);
                } else if let Some(packed) = state.pack() {
                    self.ips.insert(*bits, packed);
                    self.unspill(bits);
                } else {
                    self.ips.insert(*bits, PackedState::default());
                    self.spilled.insert(*bits, state);
                }
                Some(out)
            }
        }
    }

    fn unspill(&mut self, bits: &IpBits) {
        if !self.spilled.is_empty() {
            self.spilled.remove(bits);
        }
    }

    /// Every key with its state.
    fn for_each(&self, mut f: impl FnMut(&AttemptKey, &AttemptState)) {
        for (bits, packed) in &self.ips {
            f(&AttemptKey::Ip(ip_of(*bits)), &self.unpack(bits, *packed));
        }
        for (key, state) in &self.others {
            f(key, state);
        }
    }

    /// Drops every entry nothing depends on any more at `now`.
    fn retain(&mut self, now: SystemTime) {
        let spilled = &self.spilled;
        self.ips
            .retain(|bits, packed| !unpack(spilled, bits, *packed).is_stale(now));
        let ips = &self.ips;
        self.spilled.retain(|bits, _| ips.contains_key(bits));
        self.others.retain(|_, state| !state.is_stale(now));
    }

    fn make_room(&mut self, bound: usize, now: SystemTime) -> Result<(), StoreError> {
        self.retain(now);
        if self.len() < bound {
            return Ok(());
        }
        // Evict the idle entry with the fewest failures in a sample.
        let ips = self
            .ips
            .iter()
            .map(|(bits, packed)| (Slot::Ip(*bits), self.unpack(bits, *packed)));
        let others = self
            .others
            .iter()
            .map(|(key, state)| (Slot::Other(key), state.clone()));
        let victim = ips
            .chain(others)
            .filter(|(_, state)| state.is_idle_at(now))
            .take(32)
            .min_by_key(|(_, state)| state.weight())
            .map(|(slot, _)| match slot {
                Slot::Ip(bits) => Err(bits),
                Slot::Other(key) => Ok(key.clone()),
            });
        match victim {
            Some(Err(bits)) => {
                self.ips.remove(&bits);
                self.unspill(&bits);
                Ok(())
            }
            Some(Ok(key)) => {
                self.others.remove(&key);
                Ok(())
            }
            None => Err(StoreError::new(
                StoreErrorKind::CapacityExceeded,
                "attempt store is full of locked or in-flight keys",
            )),
        }
    }
}

/// An address key's state: its packed entry, or the whole state kept
/// beside it.
fn unpack(
    spilled: &HashMap<IpBits, AttemptState>,
    bits: &IpBits,
    packed: PackedState,
) -> AttemptState {
    if packed.may_be_spilled()
        && let Some(state) = spilled.get(bits)
    {
        return state.clone();
    }
    AttemptState::unpack(packed)
}

impl MemoryAttemptStore {
    /// A store holding at most `capacity` keys (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // Shards of at least 64 keys, so that eviction has room to choose.
        let shards = (capacity / 64).clamp(1, 64);
        // The first `capacity % shards` shards hold one key more, so the
        // bounds add up to `capacity` exactly (rounding every shard up
        // would overshoot: 64 × 782 = 50 048 for 50 000).
        let (base, extra) = (capacity / shards, capacity % shards);
        Self {
            shards: (0..shards)
                .map(|i| (Mutex::default(), base + usize::from(i < extra)))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    /// The most keys the store holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(|(_, bound)| bound).sum()
    }

    /// Number of keys held (including stale ones not yet dropped).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|(s, _)| lock(s).len()).sum()
    }

    /// Whether the store holds no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry nothing depends on any more at `now`.
    pub fn purge(&self, now: SystemTime) {
        for (shard, _) in &self.shards {
            lock(shard).retain(now);
        }
    }

    /// The slot's shard, locked, and how many keys it may hold.
    fn shard(&self, slot: &Slot<'_>) -> (MutexGuard<'_, Shard>, usize) {
        let hash = self.hasher.hash_one(slot);
        let index = usize::try_from(hash % self.shards.len() as u64).unwrap_or(0);
        let (shard, bound) = &self.shards[index];
        (lock(shard), *bound)
    }

    /// Applies `op` to the state of `key` under its shard lock, inserting a
    /// blank state if absent (and there is room) and dropping it again when
    /// the operation leaves it blank.
    fn update<R>(
        &self,
        key: &AttemptKey,
        now: SystemTime,
        op: impl FnOnce(&mut AttemptState) -> R,
    ) -> Result<R, StoreError> {
        let slot = Slot::of(key);
        let (mut shard, bound) = self.shard(&slot);
        if !shard.contains(&slot) && shard.len() >= bound {
            shard.make_room(bound, now)?;
        }
        shard.apply(&slot, true, now, op).ok_or_else(|| {
            // `apply` with `insert` always finds or makes the state.
            StoreError::new(StoreErrorKind::Other, "attempt state vanished")
        })
    }

    /// Like [`update`](Self::update) for operations that do nothing to an
    /// absent key: never inserts.
    fn update_existing<R>(
        &self,
        key: &AttemptKey,
        now: SystemTime,
        op: impl FnOnce(&mut AttemptState) -> R,
    ) -> Option<R> {
        let slot = Slot::of(key);
        self.shard(&slot).0.apply(&slot, false, now, op)
    }

    /// Every key with its state, shard by shard.
    fn collect<T>(&self, mut f: impl FnMut(&AttemptKey, &AttemptState) -> Option<T>) -> Vec<T> {
        let mut out = Vec::new();
        for (shard, _) in &self.shards {
            lock(shard).for_each(|key, state| out.extend(f(key, state)));
        }
        out
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update below leaves the entry consistent between statements, so
    // a panic elsewhere while holding the lock cannot corrupt it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for MemoryAttemptStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryAttemptStore")
            .field("shards", &self.shards.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryAttemptStore {
    /// Room for about 100 000 keys.
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl AttemptStore for MemoryAttemptStore {
    async fn begin(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserve: bool,
        now: SystemTime,
    ) -> Result<Admission, StoreError> {
        if !reserve {
            // A read: never inserts.
            return Ok(self
                .update_existing(key, now, |s| s.begin(policy, false, now))
                .unwrap_or(Admission::Admitted {
                    failures: 0,
                    consecutive: 0,
                }));
        }
        self.update(key, now, |s| s.begin(policy, true, now))
    }

    async fn record_failure(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserved: bool,
        now: SystemTime,
    ) -> Result<FailureRecord, StoreError> {
        self.update(key, now, |s| s.record_failure(policy, reserved, now))
    }

    async fn record_success(
        &self,
        key: &AttemptKey,
        scope: ResetScope,
        reserved: bool,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.update_existing(key, now, |s| s.record_success(scope, reserved, now));
        Ok(())
    }

    async fn release(&self, key: &AttemptKey, now: SystemTime) -> Result<(), StoreError> {
        self.update_existing(key, now, |s| s.release(now));
        Ok(())
    }

    async fn status(
        &self,
        key: &AttemptKey,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptStatus>, StoreError> {
        let slot = Slot::of(key);
        let state = self.shard(&slot).0.get(&slot);
        Ok(state.map(|s| s.status(window, now)))
    }

    async fn lock(&self, key: &AttemptKey, lock: Lock, now: SystemTime) -> Result<(), StoreError> {
        self.update(key, now, |s| s.lock(lock, now))
    }

    async fn unlock(&self, key: &AttemptKey, now: SystemTime) -> Result<Option<Lock>, StoreError> {
        Ok(self.update_existing(key, now, |s| s.unlock(now)).flatten())
    }

    async fn locked(
        &self,
        kind: AttemptKeyKind,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<LockedKey>, StoreError> {
        let mut out = self.collect(|key, state| {
            if key.kind() != kind {
                return None;
            }
            state.lock_at(now).map(|lock| LockedKey {
                key: key.clone(),
                lock,
            })
        });
        sort_locked(&mut out);
        out.truncate(limit);
        Ok(out)
    }

    async fn hottest(
        &self,
        kind: AttemptKeyKind,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(AttemptKey, u32)>, StoreError> {
        let mut out = self.collect(|key, state| {
            let failures = state.failures(window, now);
            (key.kind() == kind && failures > 0).then(|| (key.clone(), failures))
        });
        sort_hottest(&mut out);
        out.truncate(limit);
        Ok(out)
    }

    async fn pairs_of(
        &self,
        of: &AttemptKey,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(AttemptKey, AttemptStatus)>, StoreError> {
        let mut out = self.collect(|key, state| {
            pair_involves(key, of).then(|| (key.clone(), state.status(window, now)))
        });
        sort_pairs(&mut out);
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::UNIX_EPOCH;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn poll<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn address_keys_are_packed_and_kept_whole_beside_only_when_they_do_not_fit() {
        let store = MemoryAttemptStore::new(64);
        let policy = AttemptPolicy::new(5, Duration::from_secs(300), Duration::from_secs(1800));
        let ip = AttemptKey::Ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)));
        let shard = |store: &MemoryAttemptStore| {
            let (shard, _) = store.shard(&Slot::of(&ip));
            (shard.ips.len(), shard.spilled.len(), shard.others.len())
        };
        poll(store.record_failure(&ip, &policy, false, at(0))).unwrap();
        assert_eq!(shard(&store), (1, 0, 0));
        poll(store.record_failure(&ip, &policy, false, at(1))).unwrap();
        assert_eq!(shard(&store), (1, 1, 0));
        let status = poll(store.status(&ip, policy.window, at(1)))
            .unwrap()
            .unwrap();
        assert_eq!((status.failures, status.consecutive), (2, 2));
        // Three more lock it and clear the log: nothing is left beside.
        for t in 2..5 {
            poll(store.record_failure(&ip, &policy, false, at(t))).unwrap();
        }
        assert_eq!(shard(&store), (1, 0, 0));
        assert!(matches!(
            poll(store.begin(&ip, &policy, true, at(5))).unwrap(),
            Admission::Locked(_)
        ));
        let locked = poll(store.locked(AttemptKeyKind::Ip, at(5), 10)).unwrap();
        assert_eq!(locked.len(), 1);
        assert_eq!(locked[0].key, ip);
        assert!(poll(store.unlock(&ip, at(6))).unwrap().is_some());
        assert_eq!(shard(&store), (0, 0, 0));
        assert!(store.is_empty());
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_ipv4_address() {
        let store = MemoryAttemptStore::new(64);
        let policy = AttemptPolicy::new(5, Duration::from_secs(300), Duration::from_secs(1800));
        let v4 = Ipv4Addr::new(198, 51, 100, 1);
        let mapped = AttemptKey::Ip(IpAddr::V6(v4.to_ipv6_mapped()));
        poll(store.record_failure(&mapped, &policy, false, at(0))).unwrap();
        let plain = AttemptKey::Ip(IpAddr::V4(v4));
        let status = poll(store.status(&plain, policy.window, at(0)))
            .unwrap()
            .unwrap();
        assert_eq!(status.failures, 1);
        let hot = poll(store.hottest(AttemptKeyKind::Ip, policy.window, at(0), 10)).unwrap();
        assert_eq!(hot, vec![(plain, 1)]);
        // A real IPv6 address stays IPv6.
        let v6 = AttemptKey::Ip("2001:db8::1".parse().unwrap());
        poll(store.record_failure(&v6, &policy, false, at(0))).unwrap();
        let hot = poll(store.hottest(AttemptKeyKind::Ip, policy.window, at(0), 10)).unwrap();
        assert!(hot.iter().any(|(key, _)| *key == v6));
    }

    #[test]
    fn eviction_chooses_among_address_and_account_keys() {
        let store = MemoryAttemptStore::new(2);
        let policy = AttemptPolicy::new(5, Duration::from_secs(300), Duration::from_secs(1800));
        let ip = AttemptKey::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let account = AttemptKey::Account("alice".into());
        poll(store.record_failure(&ip, &policy, false, at(0))).unwrap();
        poll(store.record_failure(&ip, &policy, false, at(1))).unwrap();
        poll(store.record_failure(&account, &policy, false, at(1))).unwrap();
        // Full: the next key evicts the one with the fewest failures.
        let other = AttemptKey::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
        poll(store.record_failure(&other, &policy, false, at(2))).unwrap();
        assert_eq!(store.len(), 2);
        assert!(
            poll(store.status(&account, policy.window, at(2)))
                .unwrap()
                .is_none()
        );
        let status = poll(store.status(&ip, policy.window, at(2)))
            .unwrap()
            .unwrap();
        assert_eq!(status.failures, 2, "the state kept beside survived");
    }

    #[test]
    fn an_address_entry_is_40_bytes() {
        assert_eq!(size_of::<(IpBits, PackedState)>(), 40);
    }
}
