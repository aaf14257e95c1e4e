//! The IP block list: addresses and networks refused outright, for a while.
//!
//! Seed 000's `BlockList.add_ip(ip_address, duration_seconds, reason)` as a
//! store: operators (or automation reacting to `security.brute_force_detected`)
//! add entries with an end time and a reason; the lockout layer refuses
//! matching requests with `403 ip_blocked` before anything else runs.
//!
//! # Implementing a store
//!
//! `block` is an upsert (`INSERT … ON CONFLICT (network) DO UPDATE`, Redis
//! `HSET` + `EXPIREAT`), `unblock` a delete, `find` one indexed lookup of the
//! address against the stored networks (PostgreSQL `inet >>=`, or a scan of
//! the few network entries plus an exact-address lookup). Expired entries
//! must never match and may be deleted by a cleanup job.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ipnet::IpNet;

use crate::{StoreError, StoreErrorKind};

/// Longest reason kept, in characters: reasons are operator text, shown in
/// listings and events, never in responses.
pub const MAX_BLOCK_REASON: usize = 256;

/// One block-list entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEntry {
    /// The blocked address (a /32 or /128) or network.
    pub network: IpNet,
    /// When the block ends; `None` for a block until removed.
    pub until: Option<SystemTime>,
    /// Why (operator text, at most [`MAX_BLOCK_REASON`] characters).
    pub reason: String,
    /// When the entry was added.
    pub created_at: SystemTime,
}

impl BlockEntry {
    /// A block of `network` until `until` for `reason`, created at `now`.
    /// The reason is truncated to [`MAX_BLOCK_REASON`] characters and
    /// control characters are dropped.
    pub fn new(
        network: impl Into<IpNet>,
        until: Option<SystemTime>,
        reason: &str,
        now: SystemTime,
    ) -> Self {
        Self {
            network: network.into().trunc(),
            until,
            reason: reason
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_BLOCK_REASON)
                .collect(),
            created_at: now,
        }
    }

    /// Whether the entry is in force at `now`.
    #[must_use]
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// Where the block list lives. See the [module docs](self).
pub trait BlockListStore: Send + Sync + 'static {
    /// Adds `entry`, replacing an entry for the same network.
    fn block(&self, entry: BlockEntry) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the entry for `network`; returns it if there was one.
    fn unblock(
        &self,
        network: IpNet,
    ) -> impl Future<Output = Result<Option<BlockEntry>, StoreError>> + Send;

    /// The entry in force at `now` that covers `ip`, if any (the most
    /// specific one when several do).
    fn find(
        &self,
        ip: IpAddr,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<BlockEntry>, StoreError>> + Send;

    /// Every entry in force at `now`.
    fn list(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<BlockEntry>, StoreError>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

trait DynBlockListStore: Send + Sync + 'static {
    fn block_boxed(&self, entry: BlockEntry) -> BoxFuture<'_, Result<(), StoreError>>;
    fn unblock_boxed(
        &self,
        network: IpNet,
    ) -> BoxFuture<'_, Result<Option<BlockEntry>, StoreError>>;
    fn find_boxed(
        &self,
        ip: IpAddr,
        now: SystemTime,
    ) -> BoxFuture<'_, Result<Option<BlockEntry>, StoreError>>;
    fn list_boxed(&self, now: SystemTime) -> BoxFuture<'_, Result<Vec<BlockEntry>, StoreError>>;
}

impl<T: BlockListStore> DynBlockListStore for T {
    fn block_boxed(&self, entry: BlockEntry) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.block(entry))
    }
    fn unblock_boxed(
        &self,
        network: IpNet,
    ) -> BoxFuture<'_, Result<Option<BlockEntry>, StoreError>> {
        Box::pin(self.unblock(network))
    }
    fn find_boxed(
        &self,
        ip: IpAddr,
        now: SystemTime,
    ) -> BoxFuture<'_, Result<Option<BlockEntry>, StoreError>> {
        Box::pin(self.find(ip, now))
    }
    fn list_boxed(&self, now: SystemTime) -> BoxFuture<'_, Result<Vec<BlockEntry>, StoreError>> {
        Box::pin(self.list(now))
    }
}

/// A type-erased [`BlockListStore`].
#[derive(Clone)]
pub struct BoxBlockListStore(Arc<dyn DynBlockListStore>);

impl BoxBlockListStore {
    /// Erases `store`'s type.
    pub fn new(store: impl BlockListStore) -> Self {
        Self(Arc::new(store))
    }
}

impl fmt::Debug for BoxBlockListStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxBlockListStore").finish_non_exhaustive()
    }
}

impl BlockListStore for BoxBlockListStore {
    async fn block(&self, entry: BlockEntry) -> Result<(), StoreError> {
        self.0.block_boxed(entry).await
    }
    async fn unblock(&self, network: IpNet) -> Result<Option<BlockEntry>, StoreError> {
        self.0.unblock_boxed(network).await
    }
    async fn find(&self, ip: IpAddr, now: SystemTime) -> Result<Option<BlockEntry>, StoreError> {
        self.0.find_boxed(ip, now).await
    }
    async fn list(&self, now: SystemTime) -> Result<Vec<BlockEntry>, StoreError> {
        self.0.list_boxed(now).await
    }
}

impl<T: BlockListStore> BlockListStore for Arc<T> {
    fn block(&self, entry: BlockEntry) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::block(self, entry)
    }
    fn unblock(
        &self,
        network: IpNet,
    ) -> impl Future<Output = Result<Option<BlockEntry>, StoreError>> + Send {
        T::unblock(self, network)
    }
    fn find(
        &self,
        ip: IpAddr,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<BlockEntry>, StoreError>> + Send {
        T::find(self, ip, now)
    }
    fn list(
        &self,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<BlockEntry>, StoreError>> + Send {
        T::list(self, now)
    }
}

/// A bounded in-memory [`BlockListStore`].
///
/// Single addresses are found with one hash lookup; networks (usually few)
/// by a scan. The lookup on every request is a read lock, one hash of the
/// address and, only while network entries exist, the scan. When full of
/// live entries, `block` fails with [`StoreErrorKind::CapacityExceeded`]
/// rather than forget a block.
pub struct MemoryBlockList {
    state: RwLock<Blocks>,
    capacity: usize,
}

#[derive(Default)]
struct Blocks {
    addresses: HashMap<IpAddr, BlockEntry>,
    networks: Vec<BlockEntry>,
}

impl Blocks {
    fn len(&self) -> usize {
        self.addresses.len() + self.networks.len()
    }

    fn purge(&mut self, now: SystemTime) {
        self.addresses.retain(|_, e| e.is_active(now));
        self.networks.retain(|e| e.is_active(now));
    }
}

fn single_address(net: &IpNet) -> Option<IpAddr> {
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

impl MemoryBlockList {
    /// A block list holding at most `capacity` entries.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            state: RwLock::new(Blocks::default()),
            capacity,
        }
    }

    /// [`find`](BlockListStore::find) without a future: the entry in force
    /// at `now` that covers `ip`, if any (the most specific one). The
    /// lockout middleware calls it on every request.
    #[must_use]
    pub fn find_now(&self, ip: IpAddr, now: SystemTime) -> Option<BlockEntry> {
        let ip = ip.to_canonical();
        let state = self.read();
        if let Some(entry) = state.addresses.get(&ip)
            && entry.is_active(now)
        {
            return Some(entry.clone());
        }
        state
            .networks
            .iter()
            .filter(|e| e.is_active(now) && e.network.contains(&ip))
            .max_by_key(|e| e.network.prefix_len())
            .cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Blocks> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Blocks> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for MemoryBlockList {
    /// Room for 100 000 entries.
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl fmt::Debug for MemoryBlockList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBlockList")
            .field("capacity", &self.capacity)
            .field("len", &self.read().len())
            .finish()
    }
}

impl BlockListStore for MemoryBlockList {
    async fn block(&self, entry: BlockEntry) -> Result<(), StoreError> {
        let mut state = self.write();
        let exists = match single_address(&entry.network) {
            Some(ip) => state.addresses.contains_key(&ip),
            None => state.networks.iter().any(|e| e.network == entry.network),
        };
        if !exists && state.len() >= self.capacity {
            state.purge(entry.created_at);
            if state.len() >= self.capacity {
                return Err(StoreError::new(
                    StoreErrorKind::CapacityExceeded,
                    "block list is full of live entries",
                ));
            }
        }
        match single_address(&entry.network) {
            Some(ip) => {
                state.addresses.insert(ip, entry);
            }
            None => {
                state.networks.retain(|e| e.network != entry.network);
                state.networks.push(entry);
            }
        }
        Ok(())
    }

    async fn unblock(&self, network: IpNet) -> Result<Option<BlockEntry>, StoreError> {
        let network = network.trunc();
        let mut state = self.write();
        Ok(match single_address(&network) {
            Some(ip) => state.addresses.remove(&ip),
            None => {
                let index = state.networks.iter().position(|e| e.network == network);
                index.map(|i| state.networks.remove(i))
            }
        })
    }

    async fn find(&self, ip: IpAddr, now: SystemTime) -> Result<Option<BlockEntry>, StoreError> {
        Ok(self.find_now(ip, now))
    }

    async fn list(&self, now: SystemTime) -> Result<Vec<BlockEntry>, StoreError> {
        let state = self.read();
        Ok(state
            .addresses
            .values()
            .chain(state.networks.iter())
            .filter(|e| e.is_active(now))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[tokio::test]
    async fn addresses_and_networks_with_durations() {
        let list = MemoryBlockList::new(10);
        let ip: IpAddr = "203.0.113.88".parse().unwrap();
        list.block(BlockEntry::new(
            ip,
            Some(at(86_400)),
            "Brute force attack detected",
            at(0),
        ))
        .await
        .unwrap();
        list.block(BlockEntry::new(
            "2001:db8::/32".parse::<IpNet>().unwrap(),
            None,
            "abuse\r\nnetwork",
            at(0),
        ))
        .await
        .unwrap();
        let hit = list.find(ip, at(10)).await.unwrap().unwrap();
        assert_eq!(hit.reason, "Brute force attack detected");
        assert!(
            list.find(ip, at(86_400)).await.unwrap().is_none(),
            "expired"
        );
        let v6 = list
            .find("2001:db8::7".parse().unwrap(), at(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v6.reason, "abusenetwork", "control characters dropped");
        // IPv4-mapped IPv6 is the IPv4 address.
        assert!(
            list.find("::ffff:203.0.113.88".parse().unwrap(), at(10))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(list.list(at(10)).await.unwrap().len(), 2);
        assert!(list.unblock(IpNet::from(ip)).await.unwrap().is_some());
        assert!(list.find(ip, at(10)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn full_list_refuses_rather_than_forgets() {
        let list = MemoryBlockList::new(1);
        list.block(BlockEntry::new(
            IpAddr::from([192, 0, 2, 1]),
            None,
            "a",
            at(0),
        ))
        .await
        .unwrap();
        let err = list
            .block(BlockEntry::new(
                IpAddr::from([192, 0, 2, 2]),
                None,
                "b",
                at(0),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::CapacityExceeded);
    }
}
