//! `LockoutAdmin`: what an operator does during a brute-force incident.
//!
//! Operations that change state return the [`SecurityEvent`] describing
//! them. They have no response of their own to travel on: an admin HTTP
//! handler attaches it to *its* response (`event.attach(&mut response)`) so
//! the audit layer records who unlocked or blocked what, exactly as it
//! records the layer's own events.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use portcullis_core::{
    AttemptKey, AttemptKeyKind, AttemptStatus, AttemptStore, BlockEntry, BlockListStore as _,
    EventKind, FailureReason, Lock, LockedKey, SecurityEvent, StoreError,
};

use super::key::canonical_identifier;
use super::layer::Config;

/// The operator API of a [`LockoutLayer`](super::LockoutLayer), from
/// [`LockoutLayer::admin`](super::LockoutLayer::admin).
///
/// Accounts are given as submitted; they are canonicalised the way the
/// layer does it, so `unlock("Alice")` unlocks the counter `alice` was
/// counted on.
pub struct LockoutAdmin<St> {
    config: Config<St>,
}

impl<St> Clone for LockoutAdmin<St> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<St> fmt::Debug for LockoutAdmin<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockoutAdmin")
            .field("config", &self.config)
            .finish()
    }
}

/// A hot address: failures from it within the per-address window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotIp {
    /// The address (IPv6: the /64 it stands for, as grouped by the layer).
    pub ip: IpAddr,
    /// Failures within the window.
    pub failures: u32,
}

fn account_key(account: &str) -> Option<AttemptKey> {
    canonical_identifier(account).map(AttemptKey::Account)
}

/// The most account+address counters one unlock or status looks at (an
/// account guessed from more addresses than this keeps the rest; run the
/// unlock again).
pub const MAX_PAIRS: usize = 10_000;

/// An account's counter from one address (IPv6: its /64), as
/// [`LockoutAdmin::account_pairs`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountAddress {
    /// The address (as grouped by the layer).
    pub ip: IpAddr,
    /// The counter's state.
    pub status: AttemptStatus,
}

/// What [`LockoutAdmin::unlock`] and [`LockoutAdmin::unlock_ip`] lifted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unlocked {
    /// The account's (or the address's) own lock was in force.
    pub own: bool,
    /// Account+address locks lifted.
    pub pairs: usize,
}

impl Unlocked {
    /// Whether any lock was lifted.
    #[must_use]
    pub fn any(&self) -> bool {
        self.own || self.pairs > 0
    }
}

impl<St: AttemptStore> LockoutAdmin<St> {
    pub(crate) fn new(config: Config<St>) -> Self {
        Self { config }
    }

    /// Accounts locked now, longest lock first, at most `limit`.
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn locked_accounts(&self, limit: usize) -> Result<Vec<LockedKey>, StoreError> {
        let now = self.config.clock.now();
        self.config
            .store
            .locked(AttemptKeyKind::Account, now, limit)
            .await
    }

    /// Account+address counters locked now (an account locked for one
    /// address only), longest lock first, at most `limit`.
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn locked_pairs(&self, limit: usize) -> Result<Vec<LockedKey>, StoreError> {
        let now = self.config.clock.now();
        self.config
            .store
            .locked(AttemptKeyKind::AccountIp, now, limit)
            .await
    }

    /// The counters of `account` from single addresses (the layer locks
    /// these too: a lock there refuses the account from that address with
    /// `429 account_locked`), at most [`MAX_PAIRS`], sorted by address.
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn account_pairs(&self, account: &str) -> Result<Vec<AccountAddress>, StoreError> {
        let Some(key) = account_key(account) else {
            return Ok(Vec::new());
        };
        let now = self.config.clock.now();
        let window = self.pair_window();
        let pairs = self
            .config
            .store
            .pairs_of(&key, window, now, MAX_PAIRS)
            .await?;
        let mut out: Vec<AccountAddress> = pairs
            .into_iter()
            .filter_map(|(key, status)| key.ip().map(|ip| AccountAddress { ip, status }))
            .collect();
        out.sort_by_key(|p| p.ip);
        Ok(out)
    }

    fn pair_window(&self) -> Duration {
        self.config
            .pair
            .as_ref()
            .map_or(self.config.account.window, |p| p.window)
    }

    /// Unlocks every account+address counter that involves `of` (an
    /// account or an address key); returns how many were locked.
    async fn unlock_pairs(&self, of: &AttemptKey, now: SystemTime) -> Result<usize, StoreError> {
        let pairs = self
            .config
            .store
            .pairs_of(of, self.pair_window(), now, MAX_PAIRS)
            .await?;
        let mut lifted = 0;
        for (pair, _) in pairs {
            if self.config.store.unlock(&pair, now).await?.is_some() {
                lifted += 1;
            }
        }
        Ok(lifted)
    }

    /// Addresses locked now after repeated failures, at most `limit` (the
    /// block list is [`blocked`](Self::blocked)).
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn locked_ips(&self, limit: usize) -> Result<Vec<LockedKey>, StoreError> {
        let now = self.config.clock.now();
        self.config
            .store
            .locked(AttemptKeyKind::Ip, now, limit)
            .await
    }

    /// The addresses with the most failures in the per-address window
    /// (seed 000: "find the brute-forcing IP"), most first.
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn hot_ips(&self, limit: usize) -> Result<Vec<HotIp>, StoreError> {
        let now = self.config.clock.now();
        let window = self
            .config
            .ip
            .as_ref()
            .map_or(self.config.account.window, |p| p.window);
        let hot = self
            .config
            .store
            .hottest(AttemptKeyKind::Ip, window, now, limit)
            .await?;
        Ok(hot
            .into_iter()
            .filter_map(|(key, failures)| key.ip().map(|ip| HotIp { ip, failures }))
            .collect())
    }

    /// The state of `account`'s counter; `None` if nothing is recorded.
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn account_status(&self, account: &str) -> Result<Option<AttemptStatus>, StoreError> {
        let Some(key) = account_key(account) else {
            return Ok(None);
        };
        let now = self.config.clock.now();
        self.config
            .store
            .status(&key, self.config.account.window, now)
            .await
    }

    /// Unlocks `account` and forgets its failures (seed 000: "locked
    /// accounts require admin unlock or automatic expiry"): the account's
    /// own counter **and** its counters from single addresses (the layer
    /// locks those too, and a lock left there keeps refusing the user on
    /// that address with `429 account_locked`).
    ///
    /// Returns the `security.account_unlocked` event when a lock was lifted
    /// (attach it to the admin endpoint's response; its count is the
    /// number of locks lifted), `None` when the account was not locked.
    /// [`unlock_report`](Self::unlock_report) says which locks.
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn unlock(&self, account: &str) -> Result<Option<SecurityEvent>, StoreError> {
        Ok(self.unlock_report(account).await?.1)
    }

    /// Like [`unlock`](Self::unlock), also saying what was lifted.
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn unlock_report(
        &self,
        account: &str,
    ) -> Result<(Unlocked, Option<SecurityEvent>), StoreError> {
        let Some(key) = account_key(account) else {
            return Ok((Unlocked::default(), None));
        };
        let now = self.config.clock.now();
        let own = self.config.store.unlock(&key, now).await?.is_some();
        let pairs = self.unlock_pairs(&key, now).await?;
        let unlocked = Unlocked { own, pairs };
        let event = unlocked.any().then(|| {
            SecurityEvent::new(EventKind::AccountUnlocked)
                .with_identifier(key.account().unwrap_or_default())
                .with_count(u32::try_from(pairs + usize::from(own)).unwrap_or(u32::MAX))
                .with_detail("unlocked by an operator")
        });
        Ok((unlocked, event))
    }

    /// Locks `account` for `duration` (`None`: until unlocked). Returns the
    /// `security.account_locked` event.
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn lock(
        &self,
        account: &str,
        duration: Option<Duration>,
    ) -> Result<Option<SecurityEvent>, StoreError> {
        let Some(key) = account_key(account) else {
            return Ok(None);
        };
        let now = self.config.clock.now();
        let lock = duration.map_or(Lock::UntilUnlocked, |d| Lock::Until(now + d));
        self.config.store.lock(&key, lock, now).await?;
        let mut event = SecurityEvent::new(EventKind::AccountLocked)
            .with_reason(FailureReason::AccountLocked)
            .with_identifier(key.account().unwrap_or_default())
            .with_detail("locked by an operator");
        if let Lock::Until(until) = lock {
            event = event.with_until(until);
        }
        Ok(Some(event))
    }

    /// Unlocks an address locked after repeated failures, and the
    /// accounts locked for that address only (their account+address
    /// counters); the accounts' own locks stay. Returns whether any lock
    /// was lifted; [`unlock_ip_report`](Self::unlock_ip_report) says which.
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn unlock_ip(&self, ip: IpAddr) -> Result<bool, StoreError> {
        Ok(self.unlock_ip_report(ip).await?.any())
    }

    /// Like [`unlock_ip`](Self::unlock_ip), saying what was lifted.
    ///
    /// # Errors
    ///
    /// The store could not answer.
    pub async fn unlock_ip_report(&self, ip: IpAddr) -> Result<Unlocked, StoreError> {
        let now = self.config.clock.now();
        let key = AttemptKey::Ip(self.config.grouping.key(ip));
        let own = self.config.store.unlock(&key, now).await?.is_some();
        let pairs = self.unlock_pairs(&key, now).await?;
        Ok(Unlocked { own, pairs })
    }

    /// Puts `network` (an address converts: `IpAddr` → /32 or /128) on the
    /// block list for `duration` (`None`: until removed), with `reason`
    /// (seed 000's `BlockList.add_ip(ip_address, duration_seconds, reason)`).
    /// Requests from it get `403 ip_blocked` until then. Returns the
    /// `security.ip_blocked` event.
    ///
    /// # Errors
    ///
    /// The block list could not answer or is full.
    pub async fn block(
        &self,
        network: impl Into<IpNet>,
        duration: Option<Duration>,
        reason: &str,
    ) -> Result<SecurityEvent, StoreError> {
        let now = self.config.clock.now();
        let entry = BlockEntry::new(network, duration.map(|d| now + d), reason, now);
        let network = entry.network;
        let until = entry.until;
        self.config.block_list.block(entry).await?;
        let mut event = SecurityEvent::new(EventKind::IpBlocked)
            .with_reason(FailureReason::IpBlocked)
            .with_ip(network.addr())
            .with_detail("added to the block list by an operator");
        if let Some(until) = until {
            event = event.with_until(until);
        }
        Ok(event)
    }

    /// Removes `network` from the block list; returns the entry removed.
    ///
    /// # Errors
    ///
    /// The block list could not answer.
    pub async fn unblock(
        &self,
        network: impl Into<IpNet>,
    ) -> Result<Option<BlockEntry>, StoreError> {
        self.config.block_list.unblock(network.into()).await
    }

    /// The block list entries in force.
    ///
    /// # Errors
    ///
    /// The block list could not answer.
    pub async fn blocked(&self) -> Result<Vec<BlockEntry>, StoreError> {
        let now = self.config.clock.now();
        self.config.block_list.list(now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockout::LockoutLayer;
    use portcullis_core::{FakeClock, MemoryAttemptStore};
    use std::sync::Arc;

    #[tokio::test]
    async fn admin_returns_events_and_canonicalises_accounts() {
        let clock = FakeClock::at_unix(1_700_000_000);
        let layer = LockoutLayer::new(MemoryAttemptStore::new(100)).with_clock(Arc::new(clock));
        let admin = layer.admin();
        let event = admin
            .lock("Alice", Some(Duration::from_secs(60)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event.kind(), EventKind::AccountLocked);
        assert_eq!(admin.locked_accounts(10).await.unwrap().len(), 1);
        let event = admin.unlock("  ALICE ").await.unwrap().unwrap();
        assert_eq!(event.kind(), EventKind::AccountUnlocked);
        assert_eq!(event.identifier(), Some("alice"));
        assert!(
            admin.unlock("alice").await.unwrap().is_none(),
            "not locked any more"
        );
        let ip: IpAddr = "203.0.113.88".parse().unwrap();
        let event = admin
            .block(
                ip,
                Some(Duration::from_secs(86_400)),
                "Brute force attack detected",
            )
            .await
            .unwrap();
        assert_eq!(event.kind(), EventKind::IpBlocked);
        assert_eq!(event.ip(), Some(ip));
        let listed = admin.blocked().await.unwrap();
        assert_eq!(listed[0].reason, "Brute force attack detected");
        assert!(admin.unblock(ip).await.unwrap().is_some());
    }
}
