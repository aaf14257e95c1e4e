//! Synchronizer CSRF tokens kept server-side: the [`CsrfTokenStore`].
//!
//! The CSRF layer (`portcullis::csrf`) always checks a signed double-submit
//! token, which needs no server state. Deployments that also want the
//! token to exist server-side (seed 003's `csrf_tokens` table: a token per
//! user with an expiry, cleaned up daily) plug a store in: the layer records
//! every token it issues for a session and accepts a token only while the
//! store still holds it.
//!
//! Stores never see a token: they keep a [`CsrfTokenDigest`] (SHA-256 of
//! the token, computed by the layer), so a leaked table cannot be replayed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::{SharedClock, StoreError, StoreErrorKind, SystemClock};

/// Length of a [`CsrfTokenDigest`] in bytes.
pub const CSRF_TOKEN_DIGEST_LEN: usize = 32;

/// The SHA-256 digest of a CSRF token: what stores keep instead of the
/// token.
///
/// Equality and hashing exist for map lookups by digest: a lookup's timing
/// can reveal at most bits of a SHA-256 digest of a 96-byte random token,
/// which does not help forge one. `Debug` never prints the bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CsrfTokenDigest([u8; CSRF_TOKEN_DIGEST_LEN]);

impl CsrfTokenDigest {
    /// Wraps digest bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; CSRF_TOKEN_DIGEST_LEN]) -> Self {
        Self(bytes)
    }

    /// Wraps digest bytes read from a backend; `None` unless exactly
    /// [`CSRF_TOKEN_DIGEST_LEN`] bytes long.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The bytes, to write to a backend.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; CSRF_TOKEN_DIGEST_LEN] {
        &self.0
    }
}

impl fmt::Debug for CsrfTokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfTokenDigest(<redacted>)")
    }
}

/// One issued token: whose session it belongs to and until when it is
/// valid.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CsrfTokenRecord {
    /// The session the token is bound to (seed 003's `user_id` column).
    pub session: String,
    /// The digest of the token.
    pub digest: CsrfTokenDigest,
    /// When the token stops being accepted.
    pub expires_at: SystemTime,
}

impl CsrfTokenRecord {
    /// A token of `session` with `digest`, valid until `expires_at`.
    pub fn new(
        session: impl Into<String>,
        digest: CsrfTokenDigest,
        expires_at: SystemTime,
    ) -> Self {
        Self {
            session: session.into(),
            digest,
            expires_at,
        }
    }
}

impl fmt::Debug for CsrfTokenRecord {
    // Session identifiers are bearer secrets: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfTokenRecord")
            .field("session", &"<redacted>")
            .field("digest", &self.digest)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Where synchronizer CSRF tokens live.
///
/// # Contract for implementors
///
/// - **Digests only.** Records hold a [`CsrfTokenDigest`]; a store never
///   sees, and must never log, a token or print a session id.
/// - [`issue`](Self::issue) records a token. Issuing a digest that already
///   exists for the same session only moves its expiry later; for another
///   session it is refused with [`StoreErrorKind::Conflict`].
/// - [`validate`](Self::validate) answers `true` only for a digest issued
///   for exactly `session` whose expiry is after the store's clock's now.
/// - [`consume`](Self::consume) is an atomic test-and-remove: it answers
///   like `validate` and removes the token, and when many callers consume
///   the same token at once exactly one gets `true` (single-use tokens rely
///   on it).
/// - [`revoke_session`](Self::revoke_session) drops every token of a session
///   (logout, login rotation) and returns how many it dropped.
/// - [`purge_expired`](Self::purge_expired) drops tokens whose expiry has
///   passed (seed 003's daily `DELETE FROM csrf_tokens WHERE expires_at <
///   now`) and returns how many; expired tokens never validate whether or
///   not they were purged.
/// - Errors are for backend failures only; the layer fails closed on them
///   (`503 upstream_unavailable`).
pub trait CsrfTokenStore: Send + Sync + 'static {
    /// Records a token issued for a session.
    fn issue(&self, record: CsrfTokenRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether `digest` is a live token of `session`.
    fn validate(
        &self,
        session: &str,
        digest: &CsrfTokenDigest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Like [`validate`](Self::validate), and removes the token.
    fn consume(
        &self,
        session: &str,
        digest: &CsrfTokenDigest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Drops every token of `session`.
    fn revoke_session(&self, session: &str)
    -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Drops expired tokens.
    fn purge_expired(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

trait DynCsrfTokenStore: Send + Sync + 'static {
    fn issue_boxed(&self, record: CsrfTokenRecord) -> BoxFuture<'_, Result<(), StoreError>>;
    fn validate_boxed<'a>(
        &'a self,
        session: &'a str,
        digest: &'a CsrfTokenDigest,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn consume_boxed<'a>(
        &'a self,
        session: &'a str,
        digest: &'a CsrfTokenDigest,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn revoke_session_boxed<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;
    fn purge_expired_boxed(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
}

impl<T: CsrfTokenStore> DynCsrfTokenStore for T {
    fn issue_boxed(&self, record: CsrfTokenRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.issue(record))
    }
    fn validate_boxed<'a>(
        &'a self,
        session: &'a str,
        digest: &'a CsrfTokenDigest,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.validate(session, digest))
    }
    fn consume_boxed<'a>(
        &'a self,
        session: &'a str,
        digest: &'a CsrfTokenDigest,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.consume(session, digest))
    }
    fn revoke_session_boxed<'a>(
        &'a self,
        session: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.revoke_session(session))
    }
    fn purge_expired_boxed(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.purge_expired())
    }
}

/// A type-erased [`CsrfTokenStore`], for choosing a backend at run time.
#[derive(Clone)]
pub struct BoxCsrfTokenStore(Arc<dyn DynCsrfTokenStore>);

impl BoxCsrfTokenStore {
    /// Erases `store`'s type.
    pub fn new(store: impl CsrfTokenStore) -> Self {
        Self(Arc::new(store))
    }
}

impl fmt::Debug for BoxCsrfTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxCsrfTokenStore").finish_non_exhaustive()
    }
}

impl CsrfTokenStore for BoxCsrfTokenStore {
    async fn issue(&self, record: CsrfTokenRecord) -> Result<(), StoreError> {
        self.0.issue_boxed(record).await
    }
    async fn validate(&self, session: &str, digest: &CsrfTokenDigest) -> Result<bool, StoreError> {
        self.0.validate_boxed(session, digest).await
    }
    async fn consume(&self, session: &str, digest: &CsrfTokenDigest) -> Result<bool, StoreError> {
        self.0.consume_boxed(session, digest).await
    }
    async fn revoke_session(&self, session: &str) -> Result<u64, StoreError> {
        self.0.revoke_session_boxed(session).await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.0.purge_expired_boxed().await
    }
}

impl<T: CsrfTokenStore> CsrfTokenStore for Arc<T> {
    fn issue(
        &self,
        record: CsrfTokenRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::issue(self, record)
    }
    fn validate(
        &self,
        session: &str,
        digest: &CsrfTokenDigest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        T::validate(self, session, digest)
    }
    fn consume(
        &self,
        session: &str,
        digest: &CsrfTokenDigest,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        T::consume(self, session, digest)
    }
    fn revoke_session(
        &self,
        session: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        T::revoke_session(self, session)
    }
    fn purge_expired(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        T::purge_expired(self)
    }
}

/// A bounded in-memory [`CsrfTokenStore`] for a single process.
///
/// It holds at most `capacity` tokens in all and at most
/// `per_session` tokens per session. A session that asks for more loses
/// its oldest token (it only hurts itself); when the whole store is full of
/// live tokens, issuing fails with [`StoreErrorKind::CapacityExceeded`]
/// after expired tokens were purged, and the layer answers 503 rather than
/// silently dropping another session's token.
///
/// ```
/// use portcullis_core::{CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore, MemoryCsrfTokenStore};
/// use std::time::{Duration, SystemTime};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryCsrfTokenStore::new(10_000);
/// let digest = CsrfTokenDigest::from_bytes([7; 32]);
/// let expires = SystemTime::now() + Duration::from_secs(3600);
/// store.issue(CsrfTokenRecord::new("session-1", digest, expires)).await.unwrap();
/// assert!(store.validate("session-1", &digest).await.unwrap());
/// assert!(!store.validate("session-2", &digest).await.unwrap());
/// assert!(store.consume("session-1", &digest).await.unwrap());
/// assert!(!store.consume("session-1", &digest).await.unwrap()); // single use
/// # });
/// ```
pub struct MemoryCsrfTokenStore {
    state: RwLock<State>,
    capacity: usize,
    per_session: usize,
    clock: SharedClock,
}

#[derive(Default)]
struct State {
    // digest -> (session, expires_at, issue sequence number)
    tokens: HashMap<CsrfTokenDigest, Entry>,
    sessions: HashMap<Box<str>, HashSet<CsrfTokenDigest>>,
    earliest_expiry: Option<SystemTime>,
    sequence: u64,
}

struct Entry {
    session: Box<str>,
    expires_at: SystemTime,
    sequence: u64,
}

impl State {
    fn remove(&mut self, digest: &CsrfTokenDigest) -> Option<Entry> {
        let entry = self.tokens.remove(digest)?;
        if let Some(set) = self.sessions.get_mut(&entry.session) {
            set.remove(digest);
            if set.is_empty() {
                self.sessions.remove(&entry.session);
            }
        }
        Some(entry)
    }

    fn purge(&mut self, now: SystemTime) -> u64 {
        if self.earliest_expiry.is_none_or(|e| e > now) {
            return 0;
        }
        let expired: Vec<CsrfTokenDigest> = self
            .tokens
            .iter()
            .filter(|(_, e)| e.expires_at <= now)
            .map(|(d, _)| *d)
            .collect();
        for digest in &expired {
            self.remove(digest);
        }
        self.earliest_expiry = self.tokens.values().map(|e| e.expires_at).min();
        expired.len() as u64
    }

    fn live(&self, session: &str, digest: &CsrfTokenDigest, now: SystemTime) -> bool {
        self.tokens
            .get(digest)
            .is_some_and(|e| &*e.session == session && e.expires_at > now)
    }
}

impl MemoryCsrfTokenStore {
    /// Default most tokens one session may hold at once.
    pub const DEFAULT_PER_SESSION: usize = 16;

    /// A store that holds at most `capacity` live tokens.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self::with_clock(capacity, Arc::new(SystemClock))
    }

    /// A store that reads time from `clock`.
    #[must_use]
    pub fn with_clock(capacity: usize, clock: SharedClock) -> Self {
        Self {
            state: RwLock::new(State::default()),
            capacity,
            per_session: Self::DEFAULT_PER_SESSION,
            clock,
        }
    }

    /// Keeps at most `limit` tokens per session (default
    /// [`DEFAULT_PER_SESSION`](Self::DEFAULT_PER_SESSION)); issuing one more
    /// drops that session's oldest.
    #[must_use]
    pub fn with_per_session_limit(mut self, limit: usize) -> Self {
        self.per_session = limit.max(1);
        self
    }

    /// Number of tokens held, expired but not yet purged included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().tokens.len()
    }

    /// Whether the store holds no tokens.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Every write leaves the maps consistent before anything can panic,
        // so poisoning is ignored.
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryCsrfTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCsrfTokenStore")
            .field("capacity", &self.capacity)
            .field("per_session", &self.per_session)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryCsrfTokenStore {
    /// Room for one million live tokens.
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl CsrfTokenStore for MemoryCsrfTokenStore {
    async fn issue(&self, record: CsrfTokenRecord) -> Result<(), StoreError> {
        let now = self.clock.now();
        if record.expires_at <= now {
            return Ok(());
        }
        let mut state = self.write();
        if let Some(entry) = state.tokens.get_mut(&record.digest) {
            if *entry.session != *record.session {
                return Err(StoreError::new(
                    StoreErrorKind::Conflict,
                    "CSRF token digest issued for another session",
                ));
            }
            entry.expires_at = entry.expires_at.max(record.expires_at);
            return Ok(());
        }
        // The session's own oldest token makes room first.
        let oldest = state.sessions.get(record.session.as_str()).and_then(|set| {
            (set.len() >= self.per_session)
                .then(|| {
                    set.iter()
                        .min_by_key(|d| state.tokens.get(*d).map_or(0, |e| e.sequence))
                        .copied()
                })
                .flatten()
        });
        if let Some(oldest) = oldest {
            state.remove(&oldest);
        }
        if state.tokens.len() >= self.capacity {
            state.purge(now);
        }
        if state.tokens.len() >= self.capacity {
            return Err(StoreError::new(
                StoreErrorKind::CapacityExceeded,
                "CSRF token store is full of live tokens",
            ));
        }
        state.sequence += 1;
        let sequence = state.sequence;
        let session: Box<str> = record.session.into();
        state
            .sessions
            .entry(session.clone())
            .or_default()
            .insert(record.digest);
        state.tokens.insert(
            record.digest,
            Entry {
                session,
                expires_at: record.expires_at,
                sequence,
            },
        );
        state.earliest_expiry = Some(
            state
                .earliest_expiry
                .map_or(record.expires_at, |e| e.min(record.expires_at)),
        );
        Ok(())
    }

    async fn validate(&self, session: &str, digest: &CsrfTokenDigest) -> Result<bool, StoreError> {
        let now = self.clock.now();
        Ok(self.read().live(session, digest, now))
    }

    async fn consume(&self, session: &str, digest: &CsrfTokenDigest) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut state = self.write();
        if !state.live(session, digest, now) {
            return Ok(false);
        }
        state.remove(digest);
        Ok(true)
    }

    async fn revoke_session(&self, session: &str) -> Result<u64, StoreError> {
        let mut state = self.write();
        let Some(digests) = state.sessions.remove(session) else {
            return Ok(0);
        };
        for digest in &digests {
            state.tokens.remove(digest);
        }
        Ok(digests.len() as u64)
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = self.clock.now();
        Ok(self.write().purge(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeClock;
    use std::time::Duration;

    fn digest(n: u8) -> CsrfTokenDigest {
        CsrfTokenDigest::from_bytes([n; 32])
    }

    fn store(capacity: usize) -> (MemoryCsrfTokenStore, FakeClock) {
        let clock = FakeClock::at_unix(1_000_000);
        (
            MemoryCsrfTokenStore::with_clock(capacity, Arc::new(clock.clone())),
            clock,
        )
    }

    fn in_secs(clock: &FakeClock, secs: u64) -> SystemTime {
        use crate::Clock as _;
        clock.now() + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn tokens_are_bound_to_their_session_and_expire() {
        let (store, clock) = store(10);
        store
            .issue(CsrfTokenRecord::new("s1", digest(1), in_secs(&clock, 60)))
            .await
            .unwrap();
        assert!(store.validate("s1", &digest(1)).await.unwrap());
        assert!(!store.validate("s2", &digest(1)).await.unwrap());
        assert!(!store.validate("s1", &digest(2)).await.unwrap());
        clock.advance(Duration::from_secs(60));
        assert!(
            !store.validate("s1", &digest(1)).await.unwrap(),
            "expired tokens never validate, purged or not"
        );
        assert_eq!(store.len(), 1);
        assert_eq!(store.purge_expired().await.unwrap(), 1);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn a_digest_cannot_move_to_another_session() {
        let (store, clock) = store(10);
        let rec = CsrfTokenRecord::new("s1", digest(1), in_secs(&clock, 60));
        store.issue(rec).await.unwrap();
        let err = store
            .issue(CsrfTokenRecord::new("s2", digest(1), in_secs(&clock, 60)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Conflict);
        assert!(!store.validate("s2", &digest(1)).await.unwrap());
    }

    #[tokio::test]
    async fn consume_is_single_use_with_one_winner() {
        let clock = FakeClock::at_unix(1_000_000);
        let store = Arc::new(MemoryCsrfTokenStore::with_clock(
            10,
            Arc::new(clock.clone()),
        ));
        store
            .issue(CsrfTokenRecord::new("s", digest(9), in_secs(&clock, 60)))
            .await
            .unwrap();
        let mut handles = Vec::new();
        for _ in 0..32 {
            let s = Arc::clone(&store);
            handles.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(s.consume("s", &digest(9))).unwrap()
            }));
        }
        let winners = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(winners, 1);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn revoke_session_drops_only_that_session() {
        let (store, clock) = store(10);
        for (s, n) in [("a", 1), ("a", 2), ("b", 3)] {
            store
                .issue(CsrfTokenRecord::new(s, digest(n), in_secs(&clock, 60)))
                .await
                .unwrap();
        }
        assert_eq!(store.revoke_session("a").await.unwrap(), 2);
        assert_eq!(store.revoke_session("a").await.unwrap(), 0);
        assert!(!store.validate("a", &digest(1)).await.unwrap());
        assert!(store.validate("b", &digest(3)).await.unwrap());
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn capacity_and_per_session_bounds() {
        let (store, clock) = store(3);
        let store = store.with_per_session_limit(2);
        for n in 1..=3 {
            store
                .issue(CsrfTokenRecord::new("a", digest(n), in_secs(&clock, 60)))
                .await
                .unwrap();
        }
        // The session's oldest token made room for its newest.
        assert!(!store.validate("a", &digest(1)).await.unwrap());
        assert!(store.validate("a", &digest(2)).await.unwrap());
        assert!(store.validate("a", &digest(3)).await.unwrap());
        store
            .issue(CsrfTokenRecord::new("b", digest(4), in_secs(&clock, 10)))
            .await
            .unwrap();
        let err = store
            .issue(CsrfTokenRecord::new("c", digest(5), in_secs(&clock, 60)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::CapacityExceeded);
        assert!(
            store.validate("b", &digest(4)).await.unwrap(),
            "never evicts another session"
        );
        clock.advance(Duration::from_secs(11));
        store
            .issue(CsrfTokenRecord::new("c", digest(5), in_secs(&clock, 60)))
            .await
            .unwrap();
        assert_eq!(store.len(), 3, "the expired token was purged to make room");
    }

    #[tokio::test]
    async fn boxed_store_forwards_and_debug_redacts() {
        let (inner, clock) = store(10);
        let store = BoxCsrfTokenStore::new(inner);
        let rec = CsrfTokenRecord::new("secret-session-id", digest(1), in_secs(&clock, 60));
        let printed = format!("{rec:?}");
        assert!(!printed.contains("secret-session-id"), "{printed}");
        assert!(!printed.contains("1, 1"), "{printed}");
        store.issue(rec).await.unwrap();
        assert!(
            store
                .validate("secret-session-id", &digest(1))
                .await
                .unwrap()
        );
        assert!(
            store
                .consume("secret-session-id", &digest(1))
                .await
                .unwrap()
        );
        assert_eq!(store.purge_expired().await.unwrap(), 0);
    }
}
