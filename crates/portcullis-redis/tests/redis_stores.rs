//! Redis-specific behaviour beyond the conformance kit: the local
//! revocation cache's staleness bound, TTLs, hostile ids, corrupt values,
//! redaction, limits. Needs `PORTCULLIS_TEST_REDIS_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use portcullis_core::{
    ApiKeyStore, AttemptKey, AttemptPolicy, AttemptStore, AuditRecord, AuditSink, BlockEntry,
    BlockListStore, Clock, CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore, EventKind, FakeClock,
    Lock, RateLimitStore, RateQuota, RevocationStore, SharedClock, StoreErrorKind, TokenRef,
};
use portcullis_redis::redis::{self, aio::MultiplexedConnection};
use portcullis_redis::{CachedRevocationStore, RedisBackend};
use portcullis_test as kit;

const VAR: &str = "PORTCULLIS_TEST_REDIS_URL";

/// A backend on a fresh prefix and a raw connection, or `None` (skipped)
/// without the variable.
async fn setup(case: &str) -> Option<(RedisBackend, MultiplexedConnection, String)> {
    let url = kit::backend_url(VAR, case)?;
    let prefix = kit::unique_name("pc");
    let backend = RedisBackend::connect(url.clone(), prefix.clone())
        .await
        .unwrap();
    let raw = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    Some((backend, raw, prefix))
}

async fn pttl(raw: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(raw).await.unwrap()
}

async fn set(raw: &mut MultiplexedConnection, key: &str, value: &str) {
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(raw)
        .await
        .unwrap();
}

async fn keys(raw: &mut MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(raw)
        .await
        .unwrap();
    keys.sort();
    keys
}

async fn delete_all(raw: &mut MultiplexedConnection, prefix: &str) {
    for key in keys(raw, prefix).await {
        let _: i64 = redis::cmd("DEL").arg(key).query_async(raw).await.unwrap();
    }
}

fn token(id: &str) -> TokenRef<'_> {
    TokenRef {
        token_id: Some(id),
        family: None,
        subject: "user-1",
        issued_at: Some(SystemTime::now()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_store_sees_remote_revocations_within_max_staleness() {
    let Some((backend, mut raw, prefix)) = setup("cached_remote").await else {
        return;
    };
    let bound = Duration::from_millis(500);
    // One fixed token (`iat` is part of the cached question).
    let remote = token("jti-remote");
    let cached = CachedRevocationStore::new(backend.revocations()).with_max_staleness(bound);
    // A second instance on the same Redis and prefix.
    let url = std::env::var(VAR).unwrap();
    let other = RedisBackend::connect(url, prefix.clone())
        .await
        .unwrap()
        .revocations();

    assert!(!cached.is_revoked(&remote).await.unwrap());
    let cached_at = Instant::now();
    assert!(
        other
            .revoke_token("jti-remote", SystemTime::now() + Duration::from_secs(60))
            .await
            .unwrap()
    );
    // Poll: while the negative entry is fresh the cache answers from it
    // (not revoked); after at most `bound` the revocation shows.
    let mut polls = Vec::new();
    let seen_after = loop {
        let revoked = cached.is_revoked(&remote).await.unwrap();
        let at = cached_at.elapsed();
        polls.push((at, revoked));
        if revoked {
            break at;
        }
        assert!(
            at < bound + Duration::from_secs(1),
            "revocation not seen within max_staleness: {polls:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let early = bound * 8 / 10;
    assert!(
        polls.iter().all(|&(at, revoked)| at >= early || !revoked),
        "seen before the negative entry expired: {polls:?}"
    );
    assert!(
        polls.iter().any(|&(at, revoked)| at < early && !revoked) || polls[0].0 >= early,
        "the fresh negative entry answered: {polls:?}"
    );
    assert!(
        seen_after <= bound + Duration::from_millis(300),
        "{seen_after:?}: {polls:?}"
    );
    // Positive answers stay, even once Redis forgets the entry.
    delete_all(&mut raw, &prefix).await;
    assert!(cached.is_revoked(&remote).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_store_sees_local_revocations_at_once() {
    let Some((backend, mut raw, prefix)) = setup("cached_local").await else {
        return;
    };
    let cached = CachedRevocationStore::new(backend.revocations())
        .with_max_staleness(Duration::from_secs(60));
    let t = TokenRef {
        token_id: Some("jti-local"),
        family: Some("fam-local"),
        subject: "user-local",
        issued_at: Some(SystemTime::now() - Duration::from_secs(5)),
    };
    assert!(!cached.is_revoked(&t).await.unwrap());
    cached
        .revoke_family("fam-local", SystemTime::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert!(cached.is_revoked(&t).await.unwrap());

    let u = TokenRef {
        subject: "user-2",
        token_id: Some("jti-2"),
        family: None,
        ..t
    };
    assert!(!cached.is_revoked(&u).await.unwrap());
    cached
        .revoke_subject(
            "user-2",
            SystemTime::now(),
            SystemTime::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(cached.is_revoked(&u).await.unwrap());
    delete_all(&mut raw, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_follow_the_remaining_life() {
    let Some((backend, mut raw, prefix)) = setup("ttls").await else {
        return;
    };
    let now = SystemTime::now();
    let revocations = backend.revocations();
    assert!(
        revocations
            .revoke_token("t1", now + Duration::from_secs(60))
            .await
            .unwrap()
    );
    let ttl = pttl(&mut raw, &format!("{prefix}:rt:{{t1}}")).await;
    assert!((55_000..=60_000).contains(&ttl), "{ttl}");
    // Already expired: revoked by this call, but nothing to store.
    assert!(
        revocations
            .revoke_token("t0", now - Duration::from_secs(1))
            .await
            .unwrap()
    );
    assert_eq!(pttl(&mut raw, &format!("{prefix}:rt:{{t0}}")).await, -2);
    revocations
        .revoke_subject("u", now, now + Duration::from_secs(120))
        .await
        .unwrap();
    let ttl = pttl(&mut raw, &format!("{prefix}:rs:{{u}}")).await;
    assert!((115_000..=120_000).contains(&ttl), "{ttl}");

    // Attempt states live until keep_until; a lock until unlocked has no TTL.
    let attempts = backend.attempts();
    let policy = AttemptPolicy::new(3, Duration::from_secs(60), Duration::from_secs(600))
        .with_forget_after(Duration::from_secs(3600));
    let key = AttemptKey::Account("alice".into());
    attempts
        .record_failure(&key, &policy, false, now)
        .await
        .unwrap();
    let redis_key = format!("{prefix}:at:a:{{a%3Aalice}}");
    let ttl = pttl(&mut raw, &redis_key).await;
    assert!((3_590_000..=3_601_000).contains(&ttl), "{ttl}");
    attempts.lock(&key, Lock::UntilUnlocked, now).await.unwrap();
    assert_eq!(pttl(&mut raw, &redis_key).await, -1);
    assert_eq!(
        attempts.unlock(&key, now).await.unwrap(),
        Some(Lock::UntilUnlocked)
    );
    assert_eq!(
        pttl(&mut raw, &redis_key).await,
        -2,
        "a blank state is deleted"
    );

    // GCRA: PX = TAT - now.
    let quota = RateQuota::new(Duration::from_secs(10), 3);
    backend.rate_limit().check("k", &quota, now).await.unwrap();
    let ttl = pttl(&mut raw, &format!("{prefix}:rl:{{k}}")).await;
    assert!((9_000..=10_000).contains(&ttl), "{ttl}");

    // CSRF: the token lives its remaining life, the index at least as long.
    let digest = CsrfTokenDigest::from_bytes([0xab; 32]);
    backend
        .csrf_tokens()
        .issue(CsrfTokenRecord::new(
            "s",
            digest,
            now + Duration::from_secs(300),
        ))
        .await
        .unwrap();
    let token_key = format!("{prefix}:ct:{{{}}}", "ab".repeat(32));
    let ttl = pttl(&mut raw, &token_key).await;
    assert!((295_000..=300_000).contains(&ttl), "{ttl}");
    assert!(pttl(&mut raw, &format!("{prefix}:cs:{{s}}")).await >= ttl - 1000);
    delete_all(&mut raw, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_cannot_reach_other_keys() {
    let Some((backend, mut raw, prefix)) = setup("hostile_ids").await else {
        return;
    };
    let exp = SystemTime::now() + Duration::from_secs(60);
    let revocations = backend.revocations();
    // An id that would spell another token's key (and a hash tag) if
    // pasted in unescaped.
    let hostile = "x}:rt:{victim";
    assert!(revocations.revoke_token(hostile, exp).await.unwrap());
    assert!(revocations.is_revoked(&token(hostile)).await.unwrap());
    assert!(!revocations.is_revoked(&token("victim")).await.unwrap());
    assert!(!revocations.is_revoked(&token("x")).await.unwrap());
    backend
        .rate_limit()
        .check(
            "{a}",
            &RateQuota::new(Duration::from_secs(1), 1),
            SystemTime::now(),
        )
        .await
        .unwrap();
    for key in keys(&mut raw, &prefix).await {
        let rest = key.strip_prefix(&format!("{prefix}:")).unwrap();
        assert_eq!(rest.matches('{').count(), 1, "{key}");
        assert_eq!(rest.matches('}').count(), 1, "{key}");
        assert!(rest.ends_with('}'), "{key}");
    }
    delete_all(&mut raw, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_values_are_corrupt_errors_not_panics() {
    let Some((backend, mut raw, prefix)) = setup("corrupt").await else {
        return;
    };
    let now = SystemTime::now();
    let corrupt = StoreErrorKind::Corrupt;

    set(&mut raw, &format!("{prefix}:rt:{{bad}}"), "not-a-number").await;
    let err = backend.revocations().is_revoked(&token("bad")).await;
    assert_eq!(err.unwrap_err().kind(), corrupt);
    set(&mut raw, &format!("{prefix}:rs:{{user-1}}"), "1:2:3").await;
    let err = backend.revocations().is_revoked(&token("fine")).await;
    assert_eq!(err.unwrap_err().kind(), corrupt);
    let err = backend
        .revocations()
        .revoke_subject("user-1", now, now + Duration::from_secs(9))
        .await;
    assert_eq!(err.unwrap_err().kind(), corrupt);

    set(&mut raw, &format!("{prefix}:at:a:{{a%3Aeve}}"), "1;x").await;
    let key = AttemptKey::Account("eve".into());
    let attempts = backend.attempts();
    let err = attempts
        .record_failure(&key, &AttemptPolicy::default(), false, now)
        .await;
    assert_eq!(err.unwrap_err().kind(), corrupt);
    let err = attempts
        .hottest(
            portcullis_core::AttemptKeyKind::Account,
            Duration::from_secs(60),
            now,
            10,
        )
        .await;
    assert_eq!(err.unwrap_err().kind(), corrupt);

    // An operator's unlock clears a corrupt counter.
    assert_eq!(attempts.unlock(&key, now).await.unwrap(), None);
    assert!(
        attempts
            .status(&key, Duration::from_secs(60), now)
            .await
            .unwrap()
            .is_none()
    );

    set(&mut raw, &format!("{prefix}:rl:{{k}}"), "soon").await;
    let err = backend
        .rate_limit()
        .check("k", &RateQuota::new(Duration::from_secs(1), 1), now)
        .await;
    assert_eq!(err.unwrap_err().kind(), corrupt);

    let digest = CsrfTokenDigest::from_bytes([7; 32]);
    set(
        &mut raw,
        &format!("{prefix}:ct:{{{}}}", "07".repeat(32)),
        "garbage",
    )
    .await;
    let err = backend.csrf_tokens().validate("s", &digest).await;
    assert_eq!(err.unwrap_err().kind(), corrupt);
    let err = backend.csrf_tokens().consume("s", &digest).await;
    assert_eq!(err.unwrap_err().kind(), corrupt);

    let () = redis::cmd("HSET")
        .arg(format!("{prefix}:blocks"))
        .arg("192.0.2.1/32")
        .arg("x;y;z")
        .query_async(&mut raw)
        .await
        .unwrap();
    let err = backend
        .block_list()
        .find("192.0.2.1".parse().unwrap(), now)
        .await;
    assert_eq!(err.unwrap_err().kind(), corrupt);

    let () = redis::cmd("HSET")
        .arg(format!("{prefix}:ak:{{k}}:r:key1"))
        .arg("owner")
        .arg("o")
        .query_async(&mut raw)
        .await
        .unwrap();
    let err = backend.api_keys().lookup("key1").await;
    assert_eq!(err.unwrap_err().kind(), corrupt);

    // An undecodable reply is Corrupt, and the error does not quote it.
    let () = redis::cmd("SET")
        .arg(format!("{prefix}:ct:{{{}}}", "07".repeat(32)))
        .arg(b"\xff1:secret-session".as_slice())
        .query_async(&mut raw)
        .await
        .unwrap();
    let err = backend
        .csrf_tokens()
        .validate("s", &digest)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), corrupt);
    let shown = format!("{err:?} {err}");
    assert!(!shown.contains("secret"), "{shown}");

    // A key of the wrong type is a refusal, not a panic.
    let () = redis::cmd("HSET")
        .arg(format!("{prefix}:rt:{{hash}}"))
        .arg("f")
        .arg("v")
        .query_async(&mut raw)
        .await
        .unwrap();
    let err = backend.revocations().is_revoked(&token("hash")).await;
    assert!(err.is_err());
    delete_all(&mut raw, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_sessions_are_bounded_and_revocable() {
    let Some((backend, mut raw, prefix)) = setup("csrf_limits").await else {
        return;
    };
    let clock = Arc::new(FakeClock::at_unix(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    ));
    let shared: SharedClock = clock.clone();
    let store = backend
        .csrf_tokens()
        .with_clock(shared)
        .with_per_session_limit(2);
    let digests: Vec<_> = (1..=3u8)
        .map(|i| CsrfTokenDigest::from_bytes([i; 32]))
        .collect();
    for (i, d) in digests.iter().enumerate() {
        let exp = clock.now() + Duration::from_secs(100 + 10 * i as u64);
        store
            .issue(CsrfTokenRecord::new("s", *d, exp))
            .await
            .unwrap();
    }
    assert!(
        !store.validate("s", &digests[0]).await.unwrap(),
        "oldest dropped"
    );
    assert!(store.validate("s", &digests[1]).await.unwrap());
    assert!(store.validate("s", &digests[2]).await.unwrap());
    let err = store
        .issue(CsrfTokenRecord::new(
            "other",
            digests[1],
            clock.now() + Duration::from_secs(50),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    assert!(store.validate("s", &digests[1]).await.unwrap(), "untouched");
    assert_eq!(store.revoke_session("other").await.unwrap(), 0);
    assert_eq!(store.revoke_session("s").await.unwrap(), 2);
    assert!(!store.validate("s", &digests[2]).await.unwrap());

    // Expiry by the store's clock, and purge.
    store
        .issue(CsrfTokenRecord::new(
            "t",
            digests[0],
            clock.now() + Duration::from_secs(5),
        ))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(6));
    assert!(!store.validate("t", &digests[0]).await.unwrap());
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    delete_all(&mut raw, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_stream_is_capped_and_block_list_purged() {
    let Some((backend, mut raw, prefix)) = setup("audit_cap").await else {
        return;
    };
    let sink = backend.audit().with_max_len(10);
    let now = SystemTime::now();
    let batch: Vec<_> = (0..1200)
        .map(|i| AuditRecord::new(EventKind::AuthFailure, now, format!("trace-{i}")))
        .collect();
    sink.write_batch(&batch).await.unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg(format!("{prefix}:audit"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(len < 1200, "MAXLEN ~ trims: {len}");
    let recent = sink.recent_json(3).await.unwrap();
    let traces: Vec<_> = recent.iter().map(|r| r["trace_id"].clone()).collect();
    assert_eq!(traces, ["trace-1197", "trace-1198", "trace-1199"]);

    let blocks = backend.block_list();
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
    blocks
        .block(BlockEntry::new(
            net("10.0.0.0/8"),
            Some(now + Duration::from_secs(5)),
            "a",
            now,
        ))
        .await
        .unwrap();
    blocks
        .block(BlockEntry::new(net("10.1.0.0/16"), None, "b", now))
        .await
        .unwrap();
    let found = blocks
        .find("10.1.2.3".parse().unwrap(), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.reason, "b", "most specific first");
    let later = now + Duration::from_secs(10);
    assert_eq!(blocks.purge_expired(later).await.unwrap(), 1);
    assert_eq!(blocks.list(now).await.unwrap().len(), 1);
    delete_all(&mut raw, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_listing_pages_through_the_index() {
    let Some((backend, mut raw, prefix)) = setup("api_key_pages").await else {
        return;
    };
    let store = backend.api_keys();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for i in 0..450u64 {
        let owner = if i % 3 == 0 { "ops" } else { "dev" };
        let info = portcullis_core::ApiKeyInfo::new(
            format!("k{i:04}"),
            owner,
            "n",
            t0 + Duration::from_secs(i),
        );
        store
            .create(portcullis_core::ApiKeyRecord::new(
                info,
                portcullis_core::ApiKeyDigest::from_bytes([1; 32]),
            ))
            .await
            .unwrap();
    }
    let filter = portcullis_core::ApiKeyFilter::active().owner("ops");
    let all = store.list(&filter).await.unwrap();
    assert_eq!(all.len(), 150);
    assert!(all.windows(2).all(|w| w[0].created_at < w[1].created_at));
    let some = store.list(&filter.limit(70)).await.unwrap();
    assert_eq!(some.len(), 70);
    assert_eq!(some[69].key_id, "k0207");
    delete_all(&mut raw, &prefix).await;
}

#[tokio::test]
async fn debug_and_errors_hide_the_url_password() {
    let builder = RedisBackend::builder("redis://:hunter2secret@127.0.0.1:1/0", "pc");
    assert!(!format!("{builder:?}").contains("hunter2"));
    let backend = builder.connect_lazy().unwrap();
    assert!(!format!("{backend:?}").contains("hunter2"));
    assert!(!format!("{:?}", backend.revocations()).contains("hunter2"));
    let err = backend.ping().await.unwrap_err();
    assert!(!format!("{err:?} {err}").contains("hunter2"), "{err:?}");

    for bad in ["", "a:b", "a{b}", "a*b"] {
        let err = RedisBackend::builder("redis://127.0.0.1:1", bad)
            .connect_lazy()
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Other);
    }
    let err = RedisBackend::builder("not a url", "pc")
        .connect_lazy()
        .unwrap_err();
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_times_and_quotas_do_not_break_the_scripts() {
    let Some((backend, mut raw, prefix)) = setup("extremes").await else {
        return;
    };
    let now = SystemTime::now();
    let far = now + Duration::from_secs(10_000 * 365 * 24 * 3600);
    let revocations = backend.revocations();
    assert!(revocations.revoke_token("far", far).await.unwrap());
    assert!(!revocations.revoke_token("far", far).await.unwrap());
    assert!(revocations.is_revoked(&token("far")).await.unwrap());
    revocations.revoke_family("far", far).await.unwrap();
    revocations.revoke_subject("far", now, far).await.unwrap();
    revocations.revoke_subject("far", far, far).await.unwrap();

    let huge = RateQuota::new(Duration::from_secs(u64::MAX / 4), u32::MAX);
    let limiter = backend.rate_limit();
    assert_eq!(
        limiter.check("huge", &huge, now).await.unwrap(),
        portcullis_core::RateDecision::Allowed
    );
    let tiny = RateQuota::new(Duration::ZERO, 0);
    for _ in 0..3 {
        limiter.check("tiny", &tiny, now).await.unwrap();
    }
    let epoch = SystemTime::UNIX_EPOCH;
    limiter.check("epoch", &tiny, epoch).await.unwrap();

    let attempts = backend.attempts();
    let key = AttemptKey::Ip("192.0.2.9".parse().unwrap());
    attempts.lock(&key, Lock::Until(far), now).await.unwrap();
    assert!(
        attempts
            .status(&key, Duration::from_secs(60), now)
            .await
            .unwrap()
            .unwrap()
            .lock
            .is_some()
    );
    delete_all(&mut raw, &prefix).await;
}

/// SECURITY.md's lockout atomicity check at k = 1000 across replicas: four
/// instances (four backends, as four processes would have) record 1000
/// concurrent failures on one account; every one is counted exactly once
/// and none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_failures_from_four_instances_count_exactly() {
    let Some((_, mut raw, prefix)) = setup("burst").await else {
        return;
    };
    let url = std::env::var(VAR).unwrap();
    let mut stores = Vec::new();
    for _ in 0..4 {
        let backend = RedisBackend::connect(url.clone(), prefix.clone())
            .await
            .unwrap();
        stores.push(Arc::new(backend.attempts()));
    }
    let policy = Arc::new(
        AttemptPolicy::new(100_000, Duration::from_secs(300), Duration::from_secs(1800))
            .with_max_consecutive(None),
    );
    let key = AttemptKey::Account("burst".into());
    let now = SystemTime::now();
    let handles: Vec<_> = (0..1000)
        .map(|i| {
            let (store, policy, key) =
                (Arc::clone(&stores[i % 4]), Arc::clone(&policy), key.clone());
            tokio::spawn(async move { store.record_failure(&key, &policy, false, now).await })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    let status = stores[0]
        .status(&key, Duration::from_secs(300), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.consecutive, 1000);
    delete_all(&mut raw, &prefix).await;
}

/// Each instance remembers the attempt states it last wrote; changes made
/// meanwhile by another instance must still be seen (the compare-and-set
/// catches the stale memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_updates_see_other_instances_changes() {
    let Some((a, mut raw, prefix)) = setup("stale_memory").await else {
        return;
    };
    let url = std::env::var(VAR).unwrap();
    let b = RedisBackend::connect(url, prefix.clone()).await.unwrap();
    let (a, b) = (a.attempts(), b.attempts());
    let policy = AttemptPolicy::new(10, Duration::from_secs(300), Duration::from_secs(600));
    let key = AttemptKey::Account("shared".into());
    let now = SystemTime::now();

    a.record_failure(&key, &policy, false, now).await.unwrap();
    a.record_failure(&key, &policy, false, now).await.unwrap();
    b.record_success(&key, portcullis_core::ResetScope::Consecutive, false, now)
        .await
        .unwrap();
    let record = a.record_failure(&key, &policy, false, now).await.unwrap();
    assert_eq!(record.consecutive, 1, "b's reset is seen");
    assert_eq!(record.failures, 3);

    // a locks; b unlocks (the key is deleted); a must admit again.
    a.lock(&key, Lock::UntilUnlocked, now).await.unwrap();
    assert!(matches!(
        a.begin(&key, &policy, false, now).await.unwrap(),
        portcullis_core::Admission::Locked(_)
    ));
    assert_eq!(
        b.unlock(&key, now).await.unwrap(),
        Some(Lock::UntilUnlocked)
    );
    assert!(matches!(
        a.begin(&key, &policy, true, now).await.unwrap(),
        portcullis_core::Admission::Admitted { failures: 0, .. }
    ));

    // b fills the window while a still remembers a reservation only.
    for _ in 0..10 {
        b.record_failure(&key, &policy, false, now).await.unwrap();
    }
    assert!(matches!(
        a.begin(&key, &policy, true, now).await.unwrap(),
        portcullis_core::Admission::Locked(_)
    ));
    // Deleted behind a's back (as a TTL would): a success is a no-op, and
    // a new failure starts from nothing.
    delete_all(&mut raw, &prefix).await;
    a.record_success(&key, portcullis_core::ResetScope::All, true, now)
        .await
        .unwrap();
    assert!(
        b.status(&key, Duration::from_secs(300), now)
            .await
            .unwrap()
            .is_none()
    );
    let record = a.record_failure(&key, &policy, false, now).await.unwrap();
    assert_eq!((record.failures, record.consecutive), (1, 1));
    delete_all(&mut raw, &prefix).await;
}
