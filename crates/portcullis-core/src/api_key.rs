//! API keys at rest: records holding a digest, never the key, and the
//! [`ApiKeyStore`] they live in.
//!
//! The layer (`portcullis::api_key`) parses a presented key, computes its
//! digest (SHA-256, or HMAC-SHA256 with a server-side pepper) and asks the
//! store for the record of the key's public id; it compares the digests in
//! constant time itself. Stores never see a plaintext key and never compare
//! secrets.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::{SharedClock, StoreError, StoreErrorKind, SystemClock};

/// Length of an [`ApiKeyDigest`] in bytes.
pub const API_KEY_DIGEST_LEN: usize = 32;

/// The digest of an API key (SHA-256 or HMAC-SHA256): what stores keep
/// instead of the key.
///
/// It has no `PartialEq`, so it cannot be compared with a timing-dependent
/// `==` by accident: the layer compares digests in constant time. `Debug`
/// never prints the bytes.
#[derive(Clone, Copy)]
pub struct ApiKeyDigest([u8; API_KEY_DIGEST_LEN]);

impl ApiKeyDigest {
    /// Wraps digest bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; API_KEY_DIGEST_LEN]) -> Self {
        Self(bytes)
    }

    /// Wraps digest bytes read from a backend; `None` unless exactly
    /// [`API_KEY_DIGEST_LEN`] bytes long.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The bytes, to write to a backend.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; API_KEY_DIGEST_LEN] {
        &self.0
    }
}

impl fmt::Debug for ApiKeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeyDigest(<redacted>)")
    }
}

/// What is known about an API key, without its secret: what `list` returns
/// and what operators see.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiKeyInfo {
    /// The public key id, embedded in the key itself (`pc_live_<id>_…`).
    pub key_id: String,
    /// Who the key acts for: the principal's subject.
    pub owner: String,
    /// A human label (`"ci-deploy"`, `"recovery-key"`).
    pub name: String,
    /// The scopes the key grants.
    pub scopes: Vec<String>,
    /// When the key was created.
    pub created_at: SystemTime,
    /// When the key stops being valid, if ever.
    pub expires_at: Option<SystemTime>,
    /// When the key was (or will be) revoked.
    pub revoked_at: Option<SystemTime>,
    /// When the key was last used, as recorded by debounced touches.
    pub last_used_at: Option<SystemTime>,
}

impl ApiKeyInfo {
    /// A key `key_id` of `owner` named `name`, created at `created_at`, with
    /// no scopes, no expiry, never revoked or used.
    pub fn new(
        key_id: impl Into<String>,
        owner: impl Into<String>,
        name: impl Into<String>,
        created_at: SystemTime,
    ) -> Self {
        Self {
            key_id: key_id.into(),
            owner: owner.into(),
            name: name.into(),
            scopes: Vec::new(),
            created_at,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        }
    }

    /// Sets the scopes.
    #[must_use]
    pub fn with_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the expiry.
    #[must_use]
    pub fn with_expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Whether the key is revoked at `now`.
    #[must_use]
    pub fn is_revoked_at(&self, now: SystemTime) -> bool {
        self.revoked_at.is_some_and(|at| at <= now)
    }

    /// Whether the key has expired at `now`.
    #[must_use]
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the key is usable at `now`: neither revoked nor expired.
    #[must_use]
    pub fn is_active_at(&self, now: SystemTime) -> bool {
        !self.is_revoked_at(now) && !self.is_expired_at(now)
    }
}

impl fmt::Debug for ApiKeyInfo {
    // Owners are sometimes email addresses: mask them, as `Principal` does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owner: &dyn fmt::Debug = if self.owner.contains('@') {
            &"<redacted email>"
        } else {
            &self.owner
        };
        f.debug_struct("ApiKeyInfo")
            .field("key_id", &self.key_id)
            .field("owner", owner)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("last_used_at", &self.last_used_at)
            .finish()
    }
}

/// A stored API key: its [`ApiKeyInfo`] and the digest of the key.
///
/// The plaintext key is never part of a record. `Debug` shows the info and
/// hides the digest.
#[derive(Clone)]
#[non_exhaustive]
pub struct ApiKeyRecord {
    /// Everything but the secret.
    pub info: ApiKeyInfo,
    /// The digest the presented key must match.
    pub digest: ApiKeyDigest,
}

impl ApiKeyRecord {
    /// A record for `info` whose key has `digest`.
    #[must_use]
    pub const fn new(info: ApiKeyInfo, digest: ApiKeyDigest) -> Self {
        Self { info, digest }
    }
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("info", &self.info)
            .field("digest", &self.digest)
            .finish()
    }
}

/// Which keys [`ApiKeyStore::list`] returns.
///
/// By default: every *active* key (not revoked, not expired), oldest first,
/// without limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiKeyFilter {
    /// Only keys of this owner.
    pub owner: Option<String>,
    /// Also revoked and expired keys.
    pub include_inactive: bool,
    /// At most this many keys.
    pub limit: Option<usize>,
}

impl ApiKeyFilter {
    /// Every active key.
    #[must_use]
    pub fn active() -> Self {
        Self::default()
    }

    /// Only keys of `owner`.
    #[must_use]
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Revoked and expired keys too.
    #[must_use]
    pub fn include_inactive(mut self) -> Self {
        self.include_inactive = true;
        self
    }

    /// At most `limit` keys.
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    fn matches(&self, info: &ApiKeyInfo, now: SystemTime) -> bool {
        self.owner.as_deref().is_none_or(|o| o == info.owner)
            && (self.include_inactive || info.is_active_at(now))
    }
}

/// Where API keys live.
///
/// # Contract for implementors
///
/// - **No plaintext, no comparisons.** Records hold an [`ApiKeyDigest`];
///   the layer compares it with the presented key's digest in constant
///   time. A store never needs, and must never log, a key.
/// - [`lookup`](Self::lookup) returns the record whose `key_id` is exactly
///   the one asked for, **including revoked and expired ones** (the layer
///   tells `api_key_revoked` and `api_key_expired` apart from an unknown
///   key), and `Ok(None)` for an unknown id.
/// - [`create`](Self::create) is atomic: a record whose `key_id` already
///   exists is refused with [`StoreErrorKind::Conflict`] and changes nothing.
/// - [`revoke`](Self::revoke) and [`expire`](Self::expire) only move a time
///   *earlier*: revoking at `t2` a key revoked at `t1 < t2` keeps `t1`;
///   expiring at a time later than the current expiry keeps the current one.
///   Both return the updated info, or `None` for an unknown id.
/// - [`touch`](Self::touch) sets `last_used_at` to the later of the stored
///   value and `at`; touching an unknown id is not an error. **The caller
///   debounces**: the layer touches a key at most once per configured
///   interval (default one minute) per process, so stores may write on every
///   call.
/// - [`list`](Self::list) returns infos, never digests, ordered by
///   `created_at` then `key_id`; "active" is judged by the store's clock.
/// - Errors are for backend failures only; the layer fails closed on them
///   (`503 upstream_unavailable`).
/// - Records may be cached by the layer for a short, configured time (the
///   revocation propagation bound); stores need not cache.
pub trait ApiKeyStore: Send + Sync + 'static {
    /// The record of key `key_id`, whatever its state.
    fn lookup(
        &self,
        key_id: &str,
    ) -> impl Future<Output = Result<Option<ApiKeyRecord>, StoreError>> + Send;

    /// Stores a new key.
    fn create(&self, record: ApiKeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes key `key_id` as of `at`.
    fn revoke(
        &self,
        key_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<Option<ApiKeyInfo>, StoreError>> + Send;

    /// Makes key `key_id` expire at `at` unless it expires earlier already
    /// (key rotation: the old key stays valid until a deadline).
    fn expire(
        &self,
        key_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<Option<ApiKeyInfo>, StoreError>> + Send;

    /// The keys matching `filter`, without their digests.
    fn list(
        &self,
        filter: &ApiKeyFilter,
    ) -> impl Future<Output = Result<Vec<ApiKeyInfo>, StoreError>> + Send;

    /// Records that key `key_id` was used at `at`.
    fn touch(
        &self,
        key_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

trait DynApiKeyStore: Send + Sync + 'static {
    fn lookup_boxed<'a>(
        &'a self,
        key_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, StoreError>>;
    fn create_boxed(&self, record: ApiKeyRecord) -> BoxFuture<'_, Result<(), StoreError>>;
    fn revoke_boxed<'a>(
        &'a self,
        key_id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<Option<ApiKeyInfo>, StoreError>>;
    fn expire_boxed<'a>(
        &'a self,
        key_id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<Option<ApiKeyInfo>, StoreError>>;
    fn list_boxed<'a>(
        &'a self,
        filter: &'a ApiKeyFilter,
    ) -> BoxFuture<'a, Result<Vec<ApiKeyInfo>, StoreError>>;
    fn touch_boxed<'a>(
        &'a self,
        key_id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<T: ApiKeyStore> DynApiKeyStore for T {
    fn lookup_boxed<'a>(
        &'a self,
        key_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, StoreError>> {
        Box::pin(self.lookup(key_id))
    }
    fn create_boxed(&self, record: ApiKeyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.create(record))
    }
    fn revoke_boxed<'a>(
        &'a self,
        key_id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<Option<ApiKeyInfo>, StoreError>> {
        Box::pin(self.revoke(key_id, at))
    }
    fn expire_boxed<'a>(
        &'a self,
        key_id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<Option<ApiKeyInfo>, StoreError>> {
        Box::pin(self.expire(key_id, at))
    }
    fn list_boxed<'a>(
        &'a self,
        filter: &'a ApiKeyFilter,
    ) -> BoxFuture<'a, Result<Vec<ApiKeyInfo>, StoreError>> {
        Box::pin(self.list(filter))
    }
    fn touch_boxed<'a>(
        &'a self,
        key_id: &'a str,
        at: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.touch(key_id, at))
    }
}

/// A type-erased [`ApiKeyStore`], for choosing a backend at run time.
#[derive(Clone)]
pub struct BoxApiKeyStore(Arc<dyn DynApiKeyStore>);

impl BoxApiKeyStore {
    /// Erases `store`'s type.
    pub fn new(store: impl ApiKeyStore) -> Self {
        Self(Arc::new(store))
    }
}

impl fmt::Debug for BoxApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxApiKeyStore").finish_non_exhaustive()
    }
}

impl ApiKeyStore for BoxApiKeyStore {
    async fn lookup(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.0.lookup_boxed(key_id).await
    }
    async fn create(&self, record: ApiKeyRecord) -> Result<(), StoreError> {
        self.0.create_boxed(record).await
    }
    async fn revoke(&self, key_id: &str, at: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        self.0.revoke_boxed(key_id, at).await
    }
    async fn expire(&self, key_id: &str, at: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        self.0.expire_boxed(key_id, at).await
    }
    async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.0.list_boxed(filter).await
    }
    async fn touch(&self, key_id: &str, at: SystemTime) -> Result<(), StoreError> {
        self.0.touch_boxed(key_id, at).await
    }
}

impl<T: ApiKeyStore> ApiKeyStore for Arc<T> {
    fn lookup(
        &self,
        key_id: &str,
    ) -> impl Future<Output = Result<Option<ApiKeyRecord>, StoreError>> + Send {
        T::lookup(self, key_id)
    }
    fn create(&self, record: ApiKeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::create(self, record)
    }
    fn revoke(
        &self,
        key_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<Option<ApiKeyInfo>, StoreError>> + Send {
        T::revoke(self, key_id, at)
    }
    fn expire(
        &self,
        key_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<Option<ApiKeyInfo>, StoreError>> + Send {
        T::expire(self, key_id, at)
    }
    fn list(
        &self,
        filter: &ApiKeyFilter,
    ) -> impl Future<Output = Result<Vec<ApiKeyInfo>, StoreError>> + Send {
        T::list(self, filter)
    }
    fn touch(
        &self,
        key_id: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::touch(self, key_id, at)
    }
}

/// A bounded in-memory [`ApiKeyStore`] for a single process (tests, the
/// demo, small deployments).
///
/// It holds at most `capacity` keys. When it is full, creating a key first
/// drops keys that are revoked or expired; if every key is still active,
/// the new key is refused with [`StoreErrorKind::CapacityExceeded`] rather
/// than evicting one (silently dropping a key would lock its owner out).
///
/// ```
/// use portcullis_core::{ApiKeyDigest, ApiKeyFilter, ApiKeyInfo, ApiKeyRecord, ApiKeyStore, MemoryApiKeyStore};
/// use std::time::SystemTime;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryApiKeyStore::new(1_000);
/// let info = ApiKeyInfo::new("k1", "user123", "recovery-key", SystemTime::now());
/// store.create(ApiKeyRecord::new(info, ApiKeyDigest::from_bytes([7; 32]))).await.unwrap();
/// assert_eq!(store.list(&ApiKeyFilter::active()).await.unwrap().len(), 1);
/// store.revoke("k1", SystemTime::now()).await.unwrap();
/// assert!(store.list(&ApiKeyFilter::active()).await.unwrap().is_empty());
/// assert!(store.lookup("k1").await.unwrap().unwrap().info.revoked_at.is_some());
/// # });
/// ```
pub struct MemoryApiKeyStore {
    keys: RwLock<HashMap<Box<str>, ApiKeyRecord>>,
    capacity: usize,
    clock: SharedClock,
}

impl MemoryApiKeyStore {
    /// A store for at most `capacity` keys.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self::with_clock(capacity, Arc::new(SystemClock))
    }

    /// A store that judges "active" with `clock`.
    #[must_use]
    pub fn with_clock(capacity: usize, clock: SharedClock) -> Self {
        Self {
            keys: RwLock::new(HashMap::new()),
            capacity,
            clock,
        }
    }

    /// Number of keys held, active or not.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the store holds no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every record, digests included, in no particular order:
    /// for tests and audits of what is at rest.
    #[must_use]
    pub fn records(&self) -> Vec<ApiKeyRecord> {
        self.read().values().cloned().collect()
    }

    /// Drops keys that were revoked or expired before `before`; returns how
    /// many were dropped.
    pub fn purge_inactive(&self, before: SystemTime) -> usize {
        let mut keys = self.write();
        let len = keys.len();
        keys.retain(|_, r| r.info.is_active_at(before));
        len - keys.len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, ApiKeyRecord>> {
        // Every write below leaves the map consistent before it can panic,
        // so poisoning is ignored.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<str>, ApiKeyRecord>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, key_id: &str, change: impl FnOnce(&mut ApiKeyInfo)) -> Option<ApiKeyInfo> {
        let mut keys = self.write();
        let record = keys.get_mut(key_id)?;
        change(&mut record.info);
        Some(record.info.clone())
    }
}

impl fmt::Debug for MemoryApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryApiKeyStore")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryApiKeyStore {
    /// Room for one hundred thousand keys.
    fn default() -> Self {
        Self::new(100_000)
    }
}

fn earlier(current: Option<SystemTime>, at: SystemTime) -> Option<SystemTime> {
    Some(current.map_or(at, |c| c.min(at)))
}

impl ApiKeyStore for MemoryApiKeyStore {
    async fn lookup(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.read().get(key_id).cloned())
    }

    async fn create(&self, record: ApiKeyRecord) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut keys = self.write();
        if keys.contains_key(record.info.key_id.as_str()) {
            return Err(StoreError::new(
                StoreErrorKind::Conflict,
                "an API key with this id exists",
            ));
        }
        if keys.len() >= self.capacity {
            keys.retain(|_, r| r.info.is_active_at(now));
        }
        if keys.len() >= self.capacity {
            return Err(StoreError::new(
                StoreErrorKind::CapacityExceeded,
                "API key store is full of active keys",
            ));
        }
        keys.insert(record.info.key_id.as_str().into(), record);
        Ok(())
    }

    async fn revoke(&self, key_id: &str, at: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        Ok(self.update(key_id, |info| {
            info.revoked_at = earlier(info.revoked_at, at);
        }))
    }

    async fn expire(&self, key_id: &str, at: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        Ok(self.update(key_id, |info| {
            info.expires_at = earlier(info.expires_at, at);
        }))
    }

    async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let now = self.clock.now();
        let mut found: Vec<ApiKeyInfo> = self
            .read()
            .values()
            .filter(|r| filter.matches(&r.info, now))
            .map(|r| r.info.clone())
            .collect();
        found.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.key_id.cmp(&b.key_id))
        });
        if let Some(limit) = filter.limit {
            found.truncate(limit);
        }
        Ok(found)
    }

    async fn touch(&self, key_id: &str, at: SystemTime) -> Result<(), StoreError> {
        self.update(key_id, |info| {
            info.last_used_at = Some(info.last_used_at.map_or(at, |last| last.max(at)));
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, FakeClock};
    use std::time::Duration;

    fn record(id: &str, owner: &str, created: SystemTime) -> ApiKeyRecord {
        ApiKeyRecord::new(
            ApiKeyInfo::new(id, owner, "name", created).with_scopes(["a:read"]),
            ApiKeyDigest::from_bytes([1; API_KEY_DIGEST_LEN]),
        )
    }

    #[tokio::test]
    async fn create_is_atomic_and_refuses_duplicates() {
        let store = MemoryApiKeyStore::new(10);
        let now = SystemTime::now();
        store.create(record("k1", "u", now)).await.unwrap();
        let err = store.create(record("k1", "v", now)).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Conflict);
        assert_eq!(
            store.lookup("k1").await.unwrap().unwrap().info.owner,
            "u",
            "the existing record is untouched"
        );
        assert!(store.lookup("k2").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn revoke_and_expire_only_move_earlier() {
        let clock = FakeClock::at_unix(1_000_000);
        let store = MemoryApiKeyStore::with_clock(10, Arc::new(clock.clone()));
        let now = clock.now();
        store.create(record("k1", "u", now)).await.unwrap();
        let t1 = now + Duration::from_secs(10);
        let t2 = now + Duration::from_secs(20);
        assert_eq!(
            store.revoke("k1", t1).await.unwrap().unwrap().revoked_at,
            Some(t1)
        );
        assert_eq!(
            store.revoke("k1", t2).await.unwrap().unwrap().revoked_at,
            Some(t1)
        );
        assert_eq!(
            store.expire("k1", t2).await.unwrap().unwrap().expires_at,
            Some(t2)
        );
        assert_eq!(
            store.expire("k1", t1).await.unwrap().unwrap().expires_at,
            Some(t1)
        );
        assert!(store.revoke("nope", t1).await.unwrap().is_none());
        assert!(store.expire("nope", t1).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn list_filters_orders_and_never_returns_digests() {
        let clock = FakeClock::at_unix(1_000_000);
        let store = MemoryApiKeyStore::with_clock(10, Arc::new(clock.clone()));
        let t0 = clock.now();
        store.create(record("b", "u1", t0)).await.unwrap();
        store.create(record("a", "u1", t0)).await.unwrap();
        store
            .create(record("c", "u2", t0 + Duration::from_secs(1)))
            .await
            .unwrap();
        store.revoke("c", t0).await.unwrap();
        let ids = |v: Vec<ApiKeyInfo>| v.into_iter().map(|i| i.key_id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.list(&ApiKeyFilter::active()).await.unwrap()),
            ["a", "b"]
        );
        assert_eq!(
            ids(store
                .list(&ApiKeyFilter::active().include_inactive())
                .await
                .unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            ids(store
                .list(&ApiKeyFilter::active().owner("u2").include_inactive())
                .await
                .unwrap()),
            ["c"]
        );
        assert_eq!(
            ids(store.list(&ApiKeyFilter::active().limit(1)).await.unwrap()),
            ["a"]
        );
    }

    #[tokio::test]
    async fn touch_keeps_the_latest_time() {
        let store = MemoryApiKeyStore::new(10);
        let now = SystemTime::now();
        store.create(record("k", "u", now)).await.unwrap();
        let later = now + Duration::from_secs(60);
        store.touch("k", later).await.unwrap();
        store.touch("k", now).await.unwrap();
        store.touch("unknown", now).await.unwrap();
        let info = store.lookup("k").await.unwrap().unwrap().info;
        assert_eq!(info.last_used_at, Some(later));
    }

    #[tokio::test]
    async fn capacity_drops_inactive_keys_first_then_refuses() {
        let clock = FakeClock::at_unix(1_000_000);
        let store = MemoryApiKeyStore::with_clock(2, Arc::new(clock.clone()));
        let now = clock.now();
        store.create(record("a", "u", now)).await.unwrap();
        store.create(record("b", "u", now)).await.unwrap();
        let err = store.create(record("c", "u", now)).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::CapacityExceeded);
        store.revoke("a", now).await.unwrap();
        store.create(record("c", "u", now)).await.unwrap();
        assert!(store.lookup("a").await.unwrap().is_none());
        assert_eq!(store.len(), 2);
        store.revoke("b", now).await.unwrap();
        assert_eq!(store.purge_inactive(now + Duration::from_secs(1)), 1);
    }

    #[tokio::test]
    async fn debug_hides_digests_and_email_owners() {
        let r = record("k", "alice@example.com", SystemTime::now());
        let shown = format!("{r:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("alice"), "{shown}");
        assert!(!shown.contains("[1, 1"), "{shown}");
        let boxed = BoxApiKeyStore::new(MemoryApiKeyStore::new(1));
        boxed.create(r).await.unwrap();
        assert!(boxed.lookup("k").await.unwrap().is_some());
    }
}
