//! Revoked tokens: by id, by refresh family, and per subject by time.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::{SharedClock, StoreError, StoreErrorKind, SystemClock};

/// The parts of a verified token a revocation check looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenRef<'a> {
    /// The token's `jti`, if it has one.
    pub token_id: Option<&'a str>,
    /// The refresh family the token belongs to, if any.
    pub family: Option<&'a str>,
    /// The token's subject.
    pub subject: &'a str,
    /// The token's `iat`, if it has one.
    pub issued_at: Option<SystemTime>,
}

/// Where revocations live.
///
/// # Contract for implementors
///
/// - [`revoke_token`](Self::revoke_token) is an atomic test-and-set: when
///   many callers revoke the same id at once, exactly one gets `true`.
///   Refresh-token rotation relies on this to detect reuse.
/// - A subject watermark only moves forward: revoking at `t1` after `t2 > t1`
///   keeps `t2`.
/// - [`is_revoked`](Self::is_revoked) answers `true` if the id is revoked, the
///   family is revoked, or the subject has a watermark and the token was
///   issued at or before it. A token without `iat` for a subject that has a
///   watermark counts as revoked: with no issue time it cannot be shown to
///   be newer.
/// - Entries may be dropped once their `expires_at` / `retain_until` has
///   passed (the tokens they cover are expired by then), never before.
/// - Errors are for backend failures only; callers fail closed on them.
pub trait RevocationStore: Send + Sync + 'static {
    /// Revokes the token with id `token_id` until `expires_at`.
    ///
    /// Returns `true` if this call revoked it, `false` if it already was.
    fn revoke_token(
        &self,
        token_id: &str,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Revokes every token of refresh family `family` until `expires_at`.
    fn revoke_family(
        &self,
        family: &str,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes every token of `subject` issued at or before `issued_before`,
    /// remembering it until `retain_until`.
    fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        retain_until: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether `token` is revoked.
    fn is_revoked(
        &self,
        token: &TokenRef<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

trait DynRevocationStore: Send + Sync + 'static {
    fn revoke_token_boxed<'a>(
        &'a self,
        id: &'a str,
        exp: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn revoke_family_boxed<'a>(
        &'a self,
        family: &'a str,
        exp: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn revoke_subject_boxed<'a>(
        &'a self,
        subject: &'a str,
        before: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn is_revoked_boxed<'a>(
        &'a self,
        token: &'a TokenRef<'a>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

impl<T: RevocationStore> DynRevocationStore for T {
    fn revoke_token_boxed<'a>(
        &'a self,
        id: &'a str,
        exp: SystemTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.revoke_token(id, exp))
    }
    fn revoke_family_boxed<'a>(
        &'a self,
        family: &'a str,
        exp: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.revoke_family(family, exp))
    }
    fn revoke_subject_boxed<'a>(
        &'a self,
        subject: &'a str,
        before: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.revoke_subject(subject, before, until))
    }
    fn is_revoked_boxed<'a>(
        &'a self,
        token: &'a TokenRef<'a>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.is_revoked(token))
    }
}

/// A type-erased [`RevocationStore`], for choosing a backend at run time.
#[derive(Clone)]
pub struct BoxRevocationStore(Arc<dyn DynRevocationStore>);

impl BoxRevocationStore {
    /// Erases `store`'s type.
    pub fn new(store: impl RevocationStore) -> Self {
        Self(Arc::new(store))
    }
}

impl fmt::Debug for BoxRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxRevocationStore").finish_non_exhaustive()
    }
}

impl RevocationStore for BoxRevocationStore {
    async fn revoke_token(
        &self,
        token_id: &str,
        expires_at: SystemTime,
    ) -> Result<bool, StoreError> {
        self.0.revoke_token_boxed(token_id, expires_at).await
    }
    async fn revoke_family(&self, family: &str, expires_at: SystemTime) -> Result<(), StoreError> {
        self.0.revoke_family_boxed(family, expires_at).await
    }
    async fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        retain_until: SystemTime,
    ) -> Result<(), StoreError> {
        self.0
            .revoke_subject_boxed(subject, issued_before, retain_until)
            .await
    }
    async fn is_revoked(&self, token: &TokenRef<'_>) -> Result<bool, StoreError> {
        // Re-borrow with one lifetime for the object-safe twin.
        let token = *token;
        self.0.is_revoked_boxed(&token).await
    }
}

impl<T: RevocationStore> RevocationStore for Arc<T> {
    fn revoke_token(
        &self,
        token_id: &str,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        T::revoke_token(self, token_id, expires_at)
    }
    fn revoke_family(
        &self,
        family: &str,
        expires_at: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::revoke_family(self, family, expires_at)
    }
    fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        retain_until: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::revoke_subject(self, subject, issued_before, retain_until)
    }
    fn is_revoked(
        &self,
        token: &TokenRef<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        T::is_revoked(self, token)
    }
}

/// A bounded in-memory [`RevocationStore`] for a single process.
///
/// Entries are dropped when the tokens they cover expire. When the store is
/// full of live entries a new revocation fails with
/// [`StoreErrorKind::CapacityExceeded`] rather than evicting an older one:
/// silently forgetting a revocation would un-revoke a token.
///
/// ```
/// use portcullis_core::{MemoryRevocationStore, RevocationStore, TokenRef};
/// use std::time::{Duration, SystemTime};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryRevocationStore::new(10_000);
/// let exp = SystemTime::now() + Duration::from_secs(900);
/// assert!(store.revoke_token("jti-1", exp).await.unwrap());
/// assert!(!store.revoke_token("jti-1", exp).await.unwrap()); // already revoked
/// let token = TokenRef { token_id: Some("jti-1"), family: None, subject: "u1", issued_at: None };
/// assert!(store.is_revoked(&token).await.unwrap());
/// # });
/// ```
pub struct MemoryRevocationStore {
    state: RwLock<State>,
    capacity: usize,
    clock: SharedClock,
}

#[derive(Default)]
struct State {
    tokens: HashMap<Box<str>, SystemTime>,
    families: HashMap<Box<str>, SystemTime>,
    // subject -> (watermark, retain until)
    subjects: HashMap<Box<str>, (SystemTime, SystemTime)>,
    earliest_expiry: Option<SystemTime>,
}

impl State {
    fn len(&self) -> usize {
        self.tokens.len() + self.families.len() + self.subjects.len()
    }

    fn note_expiry(&mut self, at: SystemTime) {
        self.earliest_expiry = Some(self.earliest_expiry.map_or(at, |e| e.min(at)));
    }

    fn purge(&mut self, now: SystemTime) {
        if self.earliest_expiry.is_none_or(|e| e > now) {
            return;
        }
        self.tokens.retain(|_, exp| *exp > now);
        self.families.retain(|_, exp| *exp > now);
        self.subjects.retain(|_, (_, until)| *until > now);
        self.earliest_expiry = self
            .tokens
            .values()
            .chain(self.families.values())
            .copied()
            .chain(self.subjects.values().map(|(_, until)| *until))
            .min();
    }
}

impl MemoryRevocationStore {
    /// A store that holds at most `capacity` live entries.
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
            clock,
        }
    }

    /// Number of live and not-yet-purged entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the store holds no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries whose tokens have expired.
    pub fn purge_expired(&self) {
        let now = self.clock.now();
        self.write().purge(now);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters here, so poisoning is ignored.
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn make_room(&self, state: &mut State, now: SystemTime) -> Result<(), StoreError> {
        if state.len() >= self.capacity {
            state.purge(now);
        }
        if state.len() >= self.capacity {
            return Err(StoreError::new(
                StoreErrorKind::CapacityExceeded,
                "revocation store is full of live entries",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for MemoryRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRevocationStore")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryRevocationStore {
    /// Room for one million live revocations.
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl RevocationStore for MemoryRevocationStore {
    async fn revoke_token(
        &self,
        token_id: &str,
        expires_at: SystemTime,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut state = self.write();
        if let Some(exp) = state.tokens.get_mut(token_id)
            && *exp > now
        {
            *exp = (*exp).max(expires_at);
            return Ok(false);
        }
        if expires_at <= now {
            // Already expired: nothing to remember, but the caller did revoke it.
            return Ok(!state.tokens.contains_key(token_id));
        }
        self.make_room(&mut state, now)?;
        state.tokens.insert(token_id.into(), expires_at);
        state.note_expiry(expires_at);
        Ok(true)
    }

    async fn revoke_family(&self, family: &str, expires_at: SystemTime) -> Result<(), StoreError> {
        let now = self.clock.now();
        if expires_at <= now {
            return Ok(());
        }
        let mut state = self.write();
        if let Some(exp) = state.families.get_mut(family) {
            *exp = (*exp).max(expires_at);
            return Ok(());
        }
        self.make_room(&mut state, now)?;
        state.families.insert(family.into(), expires_at);
        state.note_expiry(expires_at);
        Ok(())
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        retain_until: SystemTime,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut state = self.write();
        if let Some((mark, until)) = state.subjects.get_mut(subject) {
            *mark = (*mark).max(issued_before);
            *until = (*until).max(retain_until);
            return Ok(());
        }
        if retain_until <= now {
            return Ok(());
        }
        self.make_room(&mut state, now)?;
        state
            .subjects
            .insert(subject.into(), (issued_before, retain_until));
        state.note_expiry(retain_until);
        Ok(())
    }

    async fn is_revoked(&self, token: &TokenRef<'_>) -> Result<bool, StoreError> {
        let state = self.read();
        if let Some(id) = token.token_id
            && state.tokens.contains_key(id)
        {
            return Ok(true);
        }
        if let Some(family) = token.family
            && state.families.contains_key(family)
        {
            return Ok(true);
        }
        if let Some((mark, _)) = state.subjects.get(token.subject) {
            // Second resolution on `iat`: a token issued in the same second
            // as the watermark counts as revoked.
            return Ok(match token.issued_at {
                None => true,
                Some(iat) => truncate_to_second(iat) <= *mark,
            });
        }
        Ok(false)
    }
}

fn truncate_to_second(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, FakeClock};

    fn token<'a>(id: Option<&'a str>, subject: &'a str, iat: Option<SystemTime>) -> TokenRef<'a> {
        TokenRef {
            token_id: id,
            family: None,
            subject,
            issued_at: iat,
        }
    }

    #[tokio::test]
    async fn revoke_is_test_and_set() {
        let store = MemoryRevocationStore::new(10);
        let exp = SystemTime::now() + Duration::from_secs(60);
        assert!(store.revoke_token("a", exp).await.unwrap());
        assert!(!store.revoke_token("a", exp).await.unwrap());
        assert!(
            store
                .is_revoked(&token(Some("a"), "u", None))
                .await
                .unwrap()
        );
        assert!(
            !store
                .is_revoked(&token(Some("b"), "u", None))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn subject_watermark_covers_older_tokens_only() {
        let clock = FakeClock::at_unix(1_000_000);
        let store = MemoryRevocationStore::with_clock(10, Arc::new(clock.clone()));
        let now = clock.now();
        store
            .revoke_subject("u", now, now + Duration::from_secs(3600))
            .await
            .unwrap();
        let before = now - Duration::from_secs(1);
        let after = now + Duration::from_secs(1);
        assert!(
            store
                .is_revoked(&token(None, "u", Some(before)))
                .await
                .unwrap()
        );
        assert!(
            store
                .is_revoked(&token(None, "u", Some(now)))
                .await
                .unwrap()
        );
        assert!(
            !store
                .is_revoked(&token(None, "u", Some(after)))
                .await
                .unwrap()
        );
        assert!(
            store.is_revoked(&token(None, "u", None)).await.unwrap(),
            "no iat fails closed"
        );
        assert!(
            !store
                .is_revoked(&token(None, "other", Some(before)))
                .await
                .unwrap()
        );
        // The watermark never moves back.
        store.revoke_subject("u", before, now).await.unwrap();
        assert!(
            store
                .is_revoked(&token(None, "u", Some(now)))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn entries_expire_with_their_tokens_and_capacity_is_enforced() {
        let clock = FakeClock::at_unix(1_000_000);
        let store = MemoryRevocationStore::with_clock(2, Arc::new(clock.clone()));
        let soon = clock.now() + Duration::from_secs(10);
        store.revoke_token("a", soon).await.unwrap();
        store.revoke_family("f", soon).await.unwrap();
        let err = store.revoke_token("b", soon).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::CapacityExceeded);
        clock.advance(Duration::from_secs(11));
        assert!(
            store
                .revoke_token("b", clock.now() + Duration::from_secs(10))
                .await
                .unwrap()
        );
        assert_eq!(store.len(), 1, "expired entries were purged to make room");
    }

    #[tokio::test]
    async fn family_revocation_covers_members() {
        let store = MemoryRevocationStore::new(10);
        store
            .revoke_family("fam", SystemTime::now() + Duration::from_secs(60))
            .await
            .unwrap();
        let t = TokenRef {
            token_id: Some("x"),
            family: Some("fam"),
            subject: "u",
            issued_at: None,
        };
        assert!(store.is_revoked(&t).await.unwrap());
    }

    #[tokio::test]
    async fn concurrent_revocations_have_one_winner() {
        let store = Arc::new(MemoryRevocationStore::new(100));
        let exp = SystemTime::now() + Duration::from_secs(60);
        let mut handles = Vec::new();
        for _ in 0..50 {
            let s = Arc::clone(&store);
            handles.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(s.revoke_token("same", exp)).unwrap()
            }));
        }
        let winners = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn boxed_store_forwards() {
        let store = BoxRevocationStore::new(MemoryRevocationStore::new(10));
        assert!(
            store
                .revoke_token("a", SystemTime::now() + Duration::from_secs(5))
                .await
                .unwrap()
        );
        assert!(
            store
                .is_revoked(&token(Some("a"), "u", None))
                .await
                .unwrap()
        );
    }
}
