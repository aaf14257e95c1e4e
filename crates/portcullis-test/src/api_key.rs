//! Cases for [`ApiKeyStore`]: the contract on its trait documentation.

use std::time::SystemTime;

use portcullis_core::{
    API_KEY_DIGEST_LEN, ApiKeyDigest, ApiKeyFilter, ApiKeyInfo, ApiKeyRecord, ApiKeyStore,
    StoreErrorKind,
};

use crate::{StoreFactory, build, in_parallel, secs};

/// A digest derived from `seed`, recognisable in output.
fn digest(seed: u8) -> ApiKeyDigest {
    let mut bytes = [0u8; API_KEY_DIGEST_LEN];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed
            .wrapping_mul(31)
            .wrapping_add(u8::try_from(i).unwrap_or(0));
    }
    ApiKeyDigest::from_bytes(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn record(id: &str, owner: &str, created_at: SystemTime, seed: u8) -> ApiKeyRecord {
    let mut info = ApiKeyInfo::new(id, owner, format!("{id}-name"), created_at);
    info.scopes = vec!["read:orders".into(), "admin".into(), "b:a".into()];
    ApiKeyRecord::new(info, digest(seed))
}

async fn create<S: ApiKeyStore>(store: &S, r: ApiKeyRecord) {
    store
        .create(r)
        .await
        .unwrap_or_else(|e| panic!("create failed: {e}"));
}

async fn info<S: ApiKeyStore>(store: &S, id: &str) -> ApiKeyInfo {
    match store.lookup(id).await {
        Ok(Some(r)) => r.info,
        Ok(None) => panic!("lookup: key vanished"),
        Err(e) => panic!("lookup failed: {e}"),
    }
}

/// Every field comes back as stored, scopes in order, the digest intact.
pub async fn create_then_lookup_round_trips<S: ApiKeyStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let mut r = record("k1", "svc@example.com", secs(&clock, 0), 1);
    r.info.expires_at = Some(secs(&clock, 7200));
    let expected = r.info.clone();
    create(&*store, r).await;
    let got = match store.lookup("k1").await {
        Ok(Some(got)) => got,
        other => panic!("lookup of a created key: {:?}", other.map(|o| o.is_some())),
    };
    assert_eq!(got.info, expected);
    assert_eq!(got.digest.as_bytes(), digest(1).as_bytes());
}

/// Unknown ids are `Ok(None)` (not errors) for lookup, revoke and expire;
/// touching one is a no-op.
pub async fn unknown_ids_are_none<S: ApiKeyStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    assert!(matches!(store.lookup("nope").await, Ok(None)));
    assert!(matches!(store.revoke("nope", now).await, Ok(None)));
    assert!(matches!(store.expire("nope", now).await, Ok(None)));
    assert!(store.touch("nope", now).await.is_ok());
    assert!(
        matches!(store.lookup("nope").await, Ok(None)),
        "touch created nothing"
    );
}

/// 16 concurrent creates of one id: exactly one succeeds, the others get
/// `Conflict`, and the winner's record is untouched.
pub async fn create_refuses_an_existing_id_with_one_winner<S: ApiKeyStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    let created = secs(&clock, 0);
    let results = in_parallel(16, |i| {
        let store = store.clone();
        let owner = format!("owner-{i}");
        let seed = u8::try_from(i).unwrap_or(0);
        async move {
            store
                .create(record("dup", &owner, created, seed))
                .await
                .map(|()| owner)
        }
    })
    .await;
    let mut winners = Vec::new();
    for result in results {
        match result {
            Ok(owner) => winners.push(owner),
            Err(e) => assert_eq!(e.kind(), StoreErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create of an id succeeds");
    assert_eq!(info(&*store, "dup").await.owner, winners[0]);
}

/// Revocation and expiry only ever move earlier.
pub async fn revoke_and_expire_only_move_earlier<S: ApiKeyStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let t = |s| secs(&clock, s);
    let mut r = record("k", "o", t(0), 2);
    r.info.expires_at = Some(t(500));
    create(&*store, r).await;
    let revoke = |at| {
        let store = store.clone();
        async move {
            match store.revoke("k", at).await {
                Ok(Some(info)) => info.revoked_at,
                other => panic!("revoke: {:?}", other.map(|o| o.is_some())),
            }
        }
    };
    assert_eq!(revoke(t(200)).await, Some(t(200)));
    assert_eq!(revoke(t(100)).await, Some(t(100)), "earlier wins");
    assert_eq!(revoke(t(300)).await, Some(t(100)), "later is ignored");
    let expire = |at| {
        let store = store.clone();
        async move {
            match store.expire("k", at).await {
                Ok(Some(info)) => info.expires_at,
                other => panic!("expire: {:?}", other.map(|o| o.is_some())),
            }
        }
    };
    assert_eq!(expire(t(600)).await, Some(t(500)), "later is ignored");
    assert_eq!(expire(t(400)).await, Some(t(400)));
    let stored = info(&*store, "k").await;
    assert_eq!(
        (stored.revoked_at, stored.expires_at),
        (Some(t(100)), Some(t(400)))
    );
}

/// `touch` keeps the latest time it was given.
pub async fn touch_keeps_the_latest_use<S: ApiKeyStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let t = |s| secs(&clock, s);
    create(&*store, record("k", "o", t(0), 3)).await;
    for at in [t(20), t(10)] {
        store
            .touch("k", at)
            .await
            .unwrap_or_else(|e| panic!("touch failed: {e}"));
    }
    assert_eq!(info(&*store, "k").await.last_used_at, Some(t(20)));
}

fn ids(infos: &[ApiKeyInfo]) -> Vec<&str> {
    infos.iter().map(|i| i.key_id.as_str()).collect()
}

async fn list<S: ApiKeyStore>(store: &S, filter: &ApiKeyFilter) -> Vec<ApiKeyInfo> {
    store
        .list(filter)
        .await
        .unwrap_or_else(|e| panic!("list failed: {e}"))
}

/// Listings are ordered by creation time, then id; they filter by owner,
/// hide inactive keys unless asked, and honour the limit.
pub async fn list_orders_filters_and_limits<S: ApiKeyStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let t = |s| secs(&clock, s);
    create(&*store, record("c", "alice", t(0), 4)).await;
    create(&*store, record("b", "alice", t(5), 5)).await;
    create(&*store, record("a", "alice", t(5), 6)).await;
    create(&*store, record("z", "bob", t(1), 7)).await;
    let mut revoked = record("r", "alice", t(2), 8);
    revoked.info.revoked_at = Some(t(0));
    create(&*store, revoked).await;

    let all = ApiKeyFilter::active().include_inactive();
    assert_eq!(ids(&list(&*store, &all).await), ["c", "z", "r", "a", "b"]);
    let active = ApiKeyFilter::active();
    assert_eq!(ids(&list(&*store, &active).await), ["c", "z", "a", "b"]);
    let alice = ApiKeyFilter::active().owner("alice").limit(2);
    assert_eq!(ids(&list(&*store, &alice).await), ["c", "a"]);
    let none = ApiKeyFilter::active().owner("nobody");
    assert!(list(&*store, &none).await.is_empty());
}

/// "Active" follows the store's clock: a key whose expiry or scheduled
/// revocation passes drops out of the default listing.
pub async fn list_judges_activity_by_the_store_clock<S: ApiKeyStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    let t = |s| secs(&clock, s);
    let mut expiring = record("expiring", "o", t(0), 9);
    expiring.info.expires_at = Some(t(60));
    create(&*store, expiring).await;
    let mut retiring = record("retiring", "o", t(1), 10);
    retiring.info.revoked_at = Some(t(120));
    create(&*store, retiring).await;
    create(&*store, record("forever", "o", t(2), 11)).await;
    let active = ApiKeyFilter::active();
    assert_eq!(
        ids(&list(&*store, &active).await),
        ["expiring", "retiring", "forever"]
    );
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(ids(&list(&*store, &active).await), ["retiring", "forever"]);
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(ids(&list(&*store, &active).await), ["forever"]);
}

/// Neither the store's nor a record's `Debug` shows digest bytes.
pub async fn debug_never_shows_digests<S: ApiKeyStore + std::fmt::Debug>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    create(&*store, record("k", "o", secs(&clock, 0), 12)).await;
    let secret = hex(digest(12).as_bytes());
    let looked_up = store.lookup("k").await;
    for shown in [format!("{store:?}"), format!("{looked_up:?}")] {
        assert!(!shown.contains(&secret), "Debug shows a digest: {shown}");
        assert!(!shown.contains(&secret.to_uppercase()));
    }
}
