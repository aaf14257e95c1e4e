//! Behaviour beyond the conformance kit, on both engines: seed 003's
//! cleanup schedule, corrupt rows, odd identifiers, the login history and
//! the CSRF per-session bound.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use portcullis_core::{
    ApiKeyDigest, ApiKeyInfo, ApiKeyRecord, ApiKeyStore, AttemptKey, AttemptKeyKind, AttemptPolicy,
    AttemptStore, AuditRecord, AuditSink, BlockEntry, BlockListStore, CsrfTokenDigest,
    CsrfTokenRecord, CsrfTokenStore, EventKind, FakeClock, Lock, ResetScope, RevocationStore,
    StoreError, StoreErrorKind, TokenRef,
};
use portcullis_sqlx::sqlx;

const DAY: Duration = Duration::from_secs(24 * 3600);
const HOUR: Duration = Duration::from_secs(3600);

/// A fixed "now" for the cleanup tests, on a whole second.
fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn token(id: &str) -> TokenRef<'_> {
    TokenRef {
        token_id: Some(id),
        family: None,
        subject: "user123",
        issued_at: None,
    }
}

fn kind(result: Result<impl std::fmt::Debug, StoreError>) -> StoreErrorKind {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind(),
    }
}

on_both_engines!(cleanup_follows_the_seed_schedule, |backend| {
    let now = t0();
    let earlier = Arc::new(FakeClock::at_unix(1_800_000_000 - 60 * 24 * 3600));

    // Revocations: kept until 30 days after their tokens expire.
    let revocations = backend.revocations().with_clock(earlier.clone());
    for (id, exp) in [
        ("old", now - 31 * DAY),
        ("recent", now - 29 * DAY),
        ("live", now + HOUR),
    ] {
        assert!(revocations.revoke_token(id, exp).await.unwrap());
    }

    // Login history: kept 7 days. Attempt state: kept until `keep_until`
    // (48 h after the last failure by default) unless locked.
    let attempts = backend.attempts();
    let policy = AttemptPolicy::default();
    let key = |name: &str| AttemptKey::Account(name.into());
    attempts
        .record_failure(&key("eight-days"), &policy, false, now - 8 * DAY)
        .await
        .unwrap();
    attempts
        .record_failure(&key("six-days"), &policy, false, now - 6 * DAY)
        .await
        .unwrap();
    attempts
        .record_failure(&key("an-hour"), &policy, false, now - HOUR)
        .await
        .unwrap();
    attempts
        .lock(&key("locked"), Lock::Until(now + HOUR), now - 3 * DAY)
        .await
        .unwrap();

    // CSRF tokens: kept until they expire.
    let csrf = backend.csrf_tokens().with_clock(earlier.clone());
    let expired = CsrfTokenDigest::from_bytes([1; 32]);
    let live = CsrfTokenDigest::from_bytes([2; 32]);
    csrf.issue(CsrfTokenRecord::new(
        "s",
        expired,
        now - Duration::from_secs(1),
    ))
    .await
    .unwrap();
    csrf.issue(CsrfTokenRecord::new("s", live, now + HOUR))
        .await
        .unwrap();

    // IP blocks: kept until they end.
    let blocks = backend.block_list();
    let net = |text: &str| text.parse::<IpNet>().unwrap();
    for (network, until) in [
        ("203.0.113.1/32", Some(now - Duration::from_secs(1))),
        ("203.0.113.2/32", Some(now + HOUR)),
        ("198.51.100.0/24", None),
    ] {
        blocks
            .block(BlockEntry::new(net(network), until, "test", now - DAY))
            .await
            .unwrap();
    }

    let report = backend.cleanup(now).await.unwrap();
    assert_eq!(report.revocations, 1, "{report:?}");
    assert_eq!(report.login_attempts, 1, "{report:?}");
    assert_eq!(report.csrf_tokens, 1, "{report:?}");
    assert_eq!(report.attempt_states, 2, "{report:?}");
    assert_eq!(report.block_entries, 1, "{report:?}");
    assert_eq!(report.total(), 6);

    assert!(!revocations.is_revoked(&token("old")).await.unwrap());
    assert!(revocations.is_revoked(&token("recent")).await.unwrap());
    assert!(revocations.is_revoked(&token("live")).await.unwrap());
    let history = attempts.recent_login_attempts(100).await.unwrap();
    let accounts: Vec<&str> = history.iter().map(|a| a.account.as_str()).collect();
    assert_eq!(accounts, ["an-hour", "six-days"]);
    let window = Duration::from_secs(300);
    for gone in ["eight-days", "six-days"] {
        assert!(
            attempts
                .status(&key(gone), window, now)
                .await
                .unwrap()
                .is_none()
        );
    }
    for kept in ["an-hour", "locked"] {
        assert!(
            attempts
                .status(&key(kept), window, now)
                .await
                .unwrap()
                .is_some()
        );
    }
    let listed = blocks.list(now).await.unwrap();
    assert_eq!(listed.len(), 2);

    let again = backend.cleanup(now).await.unwrap();
    assert_eq!(again.total(), 0, "{again:?}");
});

on_both_engines!(a_corrupt_attempt_state_is_an_error_not_a_panic, |backend| {
    let attempts = backend.attempts();
    let policy = AttemptPolicy::default();
    let key = AttemptKey::Account("alice".into());
    let now = SystemTime::now();
    attempts
        .record_failure(&key, &policy, false, now)
        .await
        .unwrap();
    sqlx::query("UPDATE login_attempt_state SET state = '1;x;secret-looking;0;0;0;0;'")
        .execute(backend.pool())
        .await
        .unwrap();

    let err = attempts
        .record_failure(&key, &policy, false, now)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert!(!format!("{err} {err:?}").contains("secret-looking"));
    assert_eq!(
        kind(attempts.begin(&key, &policy, true, now).await),
        StoreErrorKind::Corrupt
    );
    assert_eq!(
        kind(attempts.begin(&key, &policy, false, now).await),
        StoreErrorKind::Corrupt
    );
    assert_eq!(
        kind(attempts.status(&key, Duration::from_secs(60), now).await),
        StoreErrorKind::Corrupt
    );
    assert_eq!(
        kind(
            attempts
                .record_success(&key, ResetScope::All, false, now)
                .await
        ),
        StoreErrorKind::Corrupt
    );
    assert_eq!(
        kind(
            attempts
                .hottest(AttemptKeyKind::Account, Duration::from_secs(60), now, 10)
                .await
        ),
        StoreErrorKind::Corrupt
    );
    // Unlocking is how an operator clears it.
    assert_eq!(attempts.unlock(&key, now).await.unwrap(), None);
    assert!(
        attempts
            .status(&key, Duration::from_secs(60), now)
            .await
            .unwrap()
            .is_none()
    );
    attempts
        .record_failure(&key, &policy, false, now)
        .await
        .unwrap();

    // A malformed key in a listing.
    sqlx::query(
        "INSERT INTO login_attempt_state (attempt_key, kind, state, lock_until, keep_until, \
         failures, last_failure_at) VALUES ('zz', 'ip', '1;0;0;0;0;0;0;', 9223372036854775807, NULL, 0, 0)",
    )
    .execute(backend.pool())
    .await
    .unwrap();
    assert_eq!(
        kind(attempts.locked(AttemptKeyKind::Ip, now, 10).await),
        StoreErrorKind::Corrupt
    );
});

on_both_engines!(other_corrupt_rows_are_errors_too, |backend| {
    let now = SystemTime::now();
    let keys = backend.api_keys();
    let info = ApiKeyInfo::new("k1", "user123", "ci", now).with_scopes(["a:read"]);
    keys.create(ApiKeyRecord::new(info, ApiKeyDigest::from_bytes([9; 32])))
        .await
        .unwrap();
    sqlx::query("UPDATE api_keys SET scopes = 'not json'")
        .execute(backend.pool())
        .await
        .unwrap();
    assert_eq!(kind(keys.lookup("k1").await), StoreErrorKind::Corrupt);
    sqlx::query("UPDATE api_keys SET scopes = '[]', digest = $1")
        .bind(vec![1u8; 31])
        .execute(backend.pool())
        .await
        .unwrap();
    assert_eq!(kind(keys.lookup("k1").await), StoreErrorKind::Corrupt);

    sqlx::query(
        "INSERT INTO ip_blocks (network, blocked_until, reason, created_at) \
         VALUES ('not-a-network', NULL, 'x', 0)",
    )
    .execute(backend.pool())
    .await
    .unwrap();
    assert_eq!(
        kind(backend.block_list().list(now).await),
        StoreErrorKind::Corrupt
    );

    sqlx::query(
        "INSERT INTO audit_logs (action, details, created_at) VALUES ('security.x', '{oops', 0)",
    )
    .execute(backend.pool())
    .await
    .unwrap();
    assert_eq!(
        kind(backend.audit().recent_json(10).await),
        StoreErrorKind::Corrupt
    );
});

on_both_engines!(odd_accounts_round_trip_through_every_column, |backend| {
    let attempts = backend.attempts();
    let policy = AttemptPolicy::new(1, Duration::from_secs(300), Duration::from_secs(600));
    let now = SystemTime::now();
    let odd = "nul\0and\\back\\0slash' OR 1=1; --";
    let keys = [
        AttemptKey::Account(odd.into()),
        AttemptKey::AccountIp(odd.into(), "2001:db8::1".parse().unwrap()),
        AttemptKey::Account("nul\\0and\\back\\0slash' OR 1=1; --".into()),
    ];
    for key in &keys {
        let record = attempts
            .record_failure(key, &policy, false, now)
            .await
            .unwrap();
        assert!(record.newly_locked);
    }
    let mut locked: Vec<AttemptKey> = attempts
        .locked(AttemptKeyKind::Account, now, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    locked.sort_by_key(AttemptKey::storage_key);
    let mut expected = vec![keys[0].clone(), keys[2].clone()];
    expected.sort_by_key(AttemptKey::storage_key);
    assert_eq!(locked, expected, "distinct accounts stay distinct");
    let pair = attempts
        .locked(AttemptKeyKind::AccountIp, now, 10)
        .await
        .unwrap();
    assert_eq!(pair.len(), 1);
    assert_eq!(pair[0].key, keys[1]);

    let history = attempts.recent_login_attempts(10).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[1].account, odd);
    assert_eq!(history[1].kind, AttemptKeyKind::AccountIp);
    assert_eq!(history[1].ip_address, Some("2001:db8::1".parse().unwrap()));
    assert!(!history[1].success);
    assert!(!format!("{:?}", history[1]).contains("nul"));
});

on_both_engines!(login_history_records_failures_and_successes, |backend| {
    let attempts = backend.attempts();
    let policy = AttemptPolicy::default();
    let now = SystemTime::now();
    let ip = "203.0.113.9".parse().unwrap();
    let keys = [
        AttemptKey::Account("bob@example.com".into()),
        AttemptKey::Ip(ip),
        AttemptKey::AccountIp("bob@example.com".into(), ip),
    ];
    for key in &keys {
        attempts
            .record_failure(key, &policy, false, now)
            .await
            .unwrap();
    }
    for key in &keys {
        attempts
            .record_success(key, ResetScope::All, false, now + Duration::from_secs(1))
            .await
            .unwrap();
    }
    let history = attempts.recent_login_attempts(4).await.unwrap();
    assert_eq!(history.len(), 4, "the limit applies");
    assert!(history[..3].iter().all(|a| a.success));
    assert!(!history[3].success);
    assert_eq!(history[0].kind, AttemptKeyKind::AccountIp);
    assert_eq!(history[1].kind, AttemptKeyKind::Ip);
    assert_eq!(history[1].account, "");
    assert_eq!(history[1].ip_address, Some(ip));
    assert_eq!(history[2].account, "bob@example.com");
    assert_eq!(history[2].ip_address, None);
    assert_eq!(
        history[0]
            .at
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
        (now + Duration::from_secs(1))
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    // A success on a key with no state records history but creates no state.
    let fresh = AttemptKey::Account("carol".into());
    attempts
        .record_success(&fresh, ResetScope::All, false, now)
        .await
        .unwrap();
    assert!(
        attempts
            .status(&fresh, Duration::from_secs(60), now)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        attempts.recent_login_attempts(1).await.unwrap()[0].account,
        "carol"
    );
});

on_both_engines!(a_session_keeps_only_its_newest_csrf_tokens, |backend| {
    let clock = Arc::new(FakeClock::at_unix(1_800_000_000));
    let csrf = backend
        .csrf_tokens()
        .with_clock(clock.clone())
        .with_per_session_limit(3);
    let digests: Vec<CsrfTokenDigest> = (0..5u8)
        .map(|i| CsrfTokenDigest::from_bytes([i; 32]))
        .collect();
    let expires = t0() + HOUR;
    for digest in &digests {
        csrf.issue(CsrfTokenRecord::new("session-a", *digest, expires))
            .await
            .unwrap();
        clock.advance(Duration::from_millis(5));
    }
    csrf.issue(CsrfTokenRecord::new(
        "session-b",
        CsrfTokenDigest::from_bytes([9; 32]),
        expires,
    ))
    .await
    .unwrap();
    let mut live = Vec::new();
    for digest in &digests {
        live.push(csrf.validate("session-a", digest).await.unwrap());
    }
    assert_eq!(live, [false, false, true, true, true]);
    assert!(
        csrf.validate("session-b", &CsrfTokenDigest::from_bytes([9; 32]))
            .await
            .unwrap(),
        "another session's tokens are not pruned"
    );
    assert_eq!(csrf.revoke_session("session-a").await.unwrap(), 3);
});

on_both_engines!(audit_rows_carry_query_columns, |backend| {
    let sink = backend.audit();
    let mut record = AuditRecord::new(EventKind::AuthFailure, SystemTime::now(), "trace-1");
    record.user_id = Some("user\0id".into());
    record.ip_address = Some("203.0.113.5".parse().unwrap());
    record.user_agent = Some("curl/8".into());
    sink.write_batch(&[record.clone()]).await.unwrap();
    let row: (String, Option<String>, Option<String>) =
        sqlx::query_as("SELECT action, user_id, ip_address FROM audit_logs")
            .fetch_one(backend.pool())
            .await
            .unwrap();
    assert_eq!(row.0, "security.auth_failure");
    assert_eq!(
        row.1.as_deref(),
        Some("userid"),
        "NUL is dropped from the copy"
    );
    assert_eq!(row.2.as_deref(), Some("203.0.113.5"));
    let stored = sink.recent_json(10).await.unwrap();
    assert_eq!(stored, [record.to_json()], "details keep the exact record");
});

on_both_engines!(spawned_cleanup_runs_periodically, |backend| {
    let past = Arc::new(FakeClock::at_unix(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 3600,
    ));
    let csrf = backend.csrf_tokens().with_clock(past);
    let digest = CsrfTokenDigest::from_bytes([3; 32]);
    csrf.issue(CsrfTokenRecord::new(
        "s",
        digest,
        SystemTime::now() - Duration::from_secs(60),
    ))
    .await
    .unwrap();
    let count = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM csrf_tokens")
            .fetch_one(backend.pool())
            .await
            .unwrap();
        n
    };
    assert_eq!(count().await, 1);
    let task = backend.spawn_cleanup(Duration::from_secs(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "cleanup never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
});

on_both_engines!(large_audit_batches_land_whole_and_in_order, |backend| {
    let sink = backend.audit();
    let start = SystemTime::now();
    let batch: Vec<AuditRecord> = (0..1000u64)
        .map(|i| {
            AuditRecord::new(
                EventKind::AuthFailure,
                start + Duration::from_millis(i),
                format!("trace-{i}"),
            )
        })
        .collect();
    sink.write_batch(&batch).await.unwrap();
    let stored = sink.recent_json(5000).await.unwrap();
    let expected: Vec<_> = batch.iter().map(AuditRecord::to_json).collect();
    assert_eq!(stored, expected);
    let latest = sink.recent_json(2).await.unwrap();
    assert_eq!(latest, expected[998..]);
});

on_both_engines!(hottest_agrees_with_memory_across_many_pages, |backend| {
    use portcullis_core::MemoryAttemptStore;
    let sql = backend.attempts();
    let memory = MemoryAttemptStore::new(10_000);
    let policy = AttemptPolicy::new(1000, Duration::from_secs(300), Duration::from_secs(600));
    let now = t0();
    // 600 keys, more than two pages of candidates, with failures spread
    // over the last 250 s: a 60 s window counts fewer than are remembered.
    for i in 0..600u64 {
        let key = AttemptKey::Ip(std::net::IpAddr::from([
            10,
            0,
            (i / 256) as u8,
            (i % 256) as u8,
        ]));
        for j in 0..(i % 5 + 1) {
            let at = now - Duration::from_secs(((i * 7 + j * 61) % 250) + 1);
            let at = at.min(now);
            sql.record_failure(&key, &policy, false, at).await.unwrap();
            memory
                .record_failure(&key, &policy, false, at)
                .await
                .unwrap();
        }
    }
    for (window, limit) in [(60, 10), (300, 5), (1, 3), (120, 1000)] {
        let window = Duration::from_secs(window);
        let expected = memory
            .hottest(AttemptKeyKind::Ip, window, now, limit)
            .await
            .unwrap();
        let got = sql
            .hottest(AttemptKeyKind::Ip, window, now, limit)
            .await
            .unwrap();
        let first_difference = got.iter().zip(&expected).position(|(a, b)| a != b);
        assert!(
            got.len() == expected.len() && first_difference.is_none(),
            "window {window:?}, limit {limit}: {} keys, expected {}; first difference at {first_difference:?}",
            got.len(),
            expected.len(),
        );
    }
    assert!(
        sql.hottest(AttemptKeyKind::Account, Duration::from_secs(300), now, 10)
            .await
            .unwrap()
            .is_empty()
    );
});
