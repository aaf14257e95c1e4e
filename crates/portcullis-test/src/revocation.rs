//! Cases for [`RevocationStore`]: the contract on its trait documentation.

use std::time::{Duration, SystemTime};

use portcullis_core::{RevocationStore, TokenRef};

use crate::{StoreFactory, build, in_parallel, secs};

fn token<'a>(
    id: Option<&'a str>,
    family: Option<&'a str>,
    subject: &'a str,
    issued_at: Option<SystemTime>,
) -> TokenRef<'a> {
    TokenRef {
        token_id: id,
        family,
        subject,
        issued_at,
    }
}

async fn revoked<S: RevocationStore>(store: &S, t: &TokenRef<'_>) -> bool {
    store
        .is_revoked(t)
        .await
        .unwrap_or_else(|e| panic!("is_revoked failed: {e}"))
}

/// 32 concurrent revocations of one id: exactly one gets `true` (refresh
/// rotation's reuse detection relies on it), and the id is then revoked.
pub async fn revoke_token_is_test_and_set<S: RevocationStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let exp = secs(&clock, 3600);
    let results = in_parallel(32, |_| {
        let store = store.clone();
        async move { store.revoke_token("tok-race", exp).await }
    })
    .await;
    let winners = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("revoke_token failed: {e}")))
        .filter(|won| *won)
        .count();
    assert_eq!(
        winners, 1,
        "exactly one concurrent revoke_token returns true"
    );
    let now = Some(secs(&clock, 0));
    assert!(revoked(&*store, &token(Some("tok-race"), None, "alice", now)).await);
    assert!(!revoked(&*store, &token(Some("tok-other"), None, "alice", now)).await);
    let again = store.revoke_token("tok-race", exp).await;
    assert_eq!(again.ok(), Some(false), "a second revocation reports false");
}

/// A fresh store revokes nothing: `Ok(false)`, never an error, whatever
/// the token carries.
pub async fn unknown_tokens_are_not_revoked<S: RevocationStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = Some(secs(&clock, 0));
    assert!(!revoked(&*store, &token(Some("jti-1"), Some("fam-1"), "alice", now)).await);
    assert!(!revoked(&*store, &token(None, None, "alice", None)).await);
}

/// Revoking a refresh family revokes every token in it, and nothing else.
pub async fn families_cover_their_members<S: RevocationStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = Some(secs(&clock, 0));
    let exp = secs(&clock, 86_400);
    store
        .revoke_family("fam-1", exp)
        .await
        .unwrap_or_else(|e| panic!("revoke_family failed: {e}"));
    // Revoking again is harmless.
    store
        .revoke_family("fam-1", secs(&clock, 60))
        .await
        .unwrap_or_else(|e| panic!("revoke_family failed: {e}"));
    assert!(revoked(&*store, &token(Some("a"), Some("fam-1"), "alice", now)).await);
    assert!(revoked(&*store, &token(Some("b"), Some("fam-1"), "bob", now)).await);
    assert!(!revoked(&*store, &token(Some("c"), Some("fam-2"), "alice", now)).await);
    assert!(!revoked(&*store, &token(Some("d"), None, "alice", now)).await);
}

/// "Log out everywhere": tokens issued at or before the watermark are
/// revoked, later ones are not, a token without `iat` is; an earlier
/// watermark never moves it back.
pub async fn subject_watermarks_only_move_forward<S: RevocationStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    let retain = secs(&clock, 86_400);
    let t = |s| Some(secs(&clock, s));
    store
        .revoke_subject("bob", secs(&clock, 100), retain)
        .await
        .unwrap_or_else(|e| panic!("revoke_subject failed: {e}"));
    store
        .revoke_subject("bob", secs(&clock, 50), retain)
        .await
        .unwrap_or_else(|e| panic!("revoke_subject failed: {e}"));
    assert!(revoked(&*store, &token(None, None, "bob", t(75))).await);
    assert!(
        revoked(&*store, &token(None, None, "bob", t(100))).await,
        "at the watermark"
    );
    assert!(!revoked(&*store, &token(None, None, "bob", t(101))).await);
    assert!(
        revoked(&*store, &token(None, None, "bob", None)).await,
        "no iat: cannot be shown newer"
    );
    assert!(!revoked(&*store, &token(None, None, "carol", None)).await);
    assert!(!revoked(&*store, &token(None, None, "bobby", t(10))).await);
}

/// Ids, families and subjects live in separate namespaces, even when they
/// are spelled alike or carry separator characters.
pub async fn namespaces_do_not_collide<S: RevocationStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let exp = secs(&clock, 3600);
    let now = Some(secs(&clock, 0));
    let odd = "x:y{z}|%2A*";
    assert_eq!(store.revoke_token(odd, exp).await.ok(), Some(true));
    store
        .revoke_family("fam:{1}", exp)
        .await
        .unwrap_or_else(|e| panic!("revoke_family failed: {e}"));
    assert!(revoked(&*store, &token(Some(odd), None, "s", now)).await);
    assert!(!revoked(&*store, &token(Some("x"), Some(odd), odd, now)).await);
    assert!(!revoked(&*store, &token(Some("x:y"), None, "s", now)).await);
    assert!(!revoked(&*store, &token(Some("fam:{1}"), None, "fam:{1}", now)).await);
    assert!(revoked(&*store, &token(Some("y"), Some("fam:{1}"), "s", now)).await);
}

/// A revocation holds until its expiry; the store's clock moving on (but
/// not past it) changes nothing.
pub async fn revocations_last_until_they_expire<S: RevocationStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let issued = Some(secs(&clock, 0));
    assert_eq!(
        store.revoke_token("short", secs(&clock, 60)).await.ok(),
        Some(true)
    );
    clock.advance(Duration::from_secs(30));
    assert!(revoked(&*store, &token(Some("short"), None, "alice", issued)).await);
    // A revocation of an already expired token is accepted (and may be
    // dropped at once: the token is refused for its expiry anyway).
    let past = store.revoke_token("gone", secs(&clock, 0) - Duration::from_secs(10));
    assert!(past.await.is_ok());
}

/// Ids of a few kilobytes and non-ASCII ids work as any other.
pub async fn long_and_unicode_ids_round_trip<S: RevocationStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let exp = secs(&clock, 3600);
    let now = Some(secs(&clock, 0));
    let long = "j".repeat(2048);
    for id in [long.as_str(), "ключ-🔑", "tab\tand space"] {
        assert_eq!(store.revoke_token(id, exp).await.ok(), Some(true));
        assert!(revoked(&*store, &token(Some(id), None, "s", now)).await);
    }
    assert!(!revoked(&*store, &token(Some(&long[1..]), None, "s", now)).await);
}
