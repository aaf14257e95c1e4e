//! Cases for [`CsrfTokenStore`]: the contract on its trait documentation.

use std::time::{Duration, SystemTime};

use portcullis_core::{
    CSRF_TOKEN_DIGEST_LEN, CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore, StoreErrorKind,
};

use crate::{StoreFactory, build, in_parallel, secs};

fn digest(seed: u8) -> CsrfTokenDigest {
    let mut bytes = [0u8; CSRF_TOKEN_DIGEST_LEN];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed
            .wrapping_mul(13)
            .wrapping_add(u8::try_from(i).unwrap_or(0));
    }
    CsrfTokenDigest::from_bytes(bytes)
}

async fn issue<S: CsrfTokenStore>(store: &S, session: &str, seed: u8, expires_at: SystemTime) {
    store
        .issue(CsrfTokenRecord::new(session, digest(seed), expires_at))
        .await
        .unwrap_or_else(|e| panic!("issue failed: {e}"));
}

async fn valid<S: CsrfTokenStore>(store: &S, session: &str, seed: u8) -> bool {
    store
        .validate(session, &digest(seed))
        .await
        .unwrap_or_else(|e| panic!("validate failed: {e}"))
}

/// A token validates for its session only; unknown digests are `false`.
pub async fn tokens_validate_for_their_session_only<S: CsrfTokenStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    issue(&*store, "session-a", 1, secs(&clock, 3600)).await;
    assert!(valid(&*store, "session-a", 1).await);
    assert!(!valid(&*store, "session-b", 1).await);
    assert!(!valid(&*store, "session-a", 2).await);
    assert!(!valid(&*store, "session-a:", 1).await);
    // Validation does not use the token up.
    assert!(valid(&*store, "session-a", 1).await);
}

/// Issuing a digest that another session holds is a `Conflict` and leaves
/// the first session's token alone.
pub async fn a_digest_of_another_session_is_a_conflict<S: CsrfTokenStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    issue(&*store, "session-a", 3, secs(&clock, 3600)).await;
    let err = store
        .issue(CsrfTokenRecord::new(
            "session-b",
            digest(3),
            secs(&clock, 7200),
        ))
        .await
        .err()
        .map(|e| e.kind());
    assert_eq!(err, Some(StoreErrorKind::Conflict));
    assert!(valid(&*store, "session-a", 3).await);
    assert!(!valid(&*store, "session-b", 3).await);
}

/// Issuing the same token again for its session moves the expiry later.
pub async fn reissue_extends_the_expiry<S: CsrfTokenStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    issue(&*store, "s", 4, secs(&clock, 10)).await;
    issue(&*store, "s", 4, secs(&clock, 100)).await;
    clock.advance(Duration::from_secs(50));
    assert!(valid(&*store, "s", 4).await);
}

/// 32 concurrent consumes of one token: exactly one wins; it is gone after.
pub async fn consume_has_exactly_one_winner<S: CsrfTokenStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    issue(&*store, "s", 5, secs(&clock, 3600)).await;
    assert_eq!(store.consume("other", &digest(5)).await.ok(), Some(false));
    let results = in_parallel(32, |_| {
        let store = store.clone();
        async move { store.consume("s", &digest(5)).await }
    })
    .await;
    let winners = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("consume failed: {e}")))
        .filter(|won| *won)
        .count();
    assert_eq!(winners, 1);
    assert!(!valid(&*store, "s", 5).await);
}

/// Past its expiry (by the store's clock) a token neither validates nor
/// consumes, whether or not it was purged; `purge_expired` counts what it
/// removes and keeps live tokens.
pub async fn expired_tokens_never_validate_and_are_purged<S: CsrfTokenStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    issue(&*store, "s", 6, secs(&clock, 10)).await;
    issue(&*store, "s", 7, secs(&clock, 10)).await;
    issue(&*store, "s", 8, secs(&clock, 3600)).await;
    clock.advance(Duration::from_secs(10));
    assert!(!valid(&*store, "s", 6).await, "expiry is exclusive");
    assert_eq!(store.consume("s", &digest(7)).await.ok(), Some(false));
    let purged = store
        .purge_expired()
        .await
        .unwrap_or_else(|e| panic!("purge_expired failed: {e}"));
    assert_eq!(purged, 2, "purge removes the expired tokens, and only them");
    assert!(valid(&*store, "s", 8).await);
    assert!(!valid(&*store, "s", 6).await);
    assert_eq!(
        store.purge_expired().await.ok(),
        Some(0),
        "nothing left to purge"
    );
}

/// `revoke_session` drops that session's tokens only and says how many.
pub async fn revoke_session_counts_what_it_drops<S: CsrfTokenStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let exp = secs(&clock, 3600);
    for seed in [10, 11, 12] {
        issue(&*store, "s1", seed, exp).await;
    }
    issue(&*store, "s2", 13, exp).await;
    assert_eq!(store.revoke_session("s1").await.ok(), Some(3));
    assert_eq!(store.revoke_session("s1").await.ok(), Some(0));
    assert!(!valid(&*store, "s1", 10).await);
    assert!(valid(&*store, "s2", 13).await);
}

/// The store's `Debug` shows neither session ids nor digests.
pub async fn debug_never_shows_sessions_or_digests<S: CsrfTokenStore + std::fmt::Debug>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    issue(&*store, "sess-9f1c2e", 14, secs(&clock, 3600)).await;
    let hex: String = digest(14)
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let shown = format!("{store:?}");
    assert!(
        !shown.contains("sess-9f1c2e"),
        "Debug shows a session: {shown}"
    );
    assert!(
        !shown.to_lowercase().contains(&hex),
        "Debug shows a digest: {shown}"
    );
}
