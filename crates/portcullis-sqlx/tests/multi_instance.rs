//! Two backends on one database, as two server processes would be: their
//! concurrent writes to one key still count exactly and have one winner.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod common;

use std::time::{Duration, SystemTime};

use portcullis_core::{AttemptKey, AttemptPolicy, AttemptStore, RevocationStore};
use portcullis_sqlx::{SqlAttemptStore, SqlRevocationStore};

/// 40 failures on one key and 40 revocations of one id from each of two
/// instances at once: 80 failures counted, one revocation winner.
async fn two_instances_agree(
    a: (SqlAttemptStore, SqlRevocationStore),
    b: (SqlAttemptStore, SqlRevocationStore),
) {
    let policy = AttemptPolicy::new(1000, Duration::from_secs(300), Duration::from_secs(600));
    let key = AttemptKey::Account("shared".into());
    let now = SystemTime::now();
    let exp = now + Duration::from_secs(600);
    let mut tasks = Vec::new();
    for (attempts, revocations) in [a.clone(), b] {
        for _ in 0..40 {
            let (attempts, revocations) = (attempts.clone(), revocations.clone());
            let (policy, key) = (policy.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                attempts
                    .record_failure(&key, &policy, false, now)
                    .await
                    .unwrap();
                revocations.revoke_token("jti-shared", exp).await.unwrap()
            }));
        }
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1, "exactly one instance revoked the token");
    let status =
        a.0.status(&key, Duration::from_secs(300), now)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(status.failures, 80);
    assert_eq!(status.consecutive, 80);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sqlite_instances_on_one_file() {
    use portcullis_sqlx::SqliteBackend;
    let path = common::sqlite_path();
    let a = SqliteBackend::open(&path).await.unwrap();
    let b = SqliteBackend::open(&path).await.unwrap();
    two_instances_agree(
        (a.attempts(), a.revocations()),
        (b.attempts(), b.revocations()),
    )
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_postgres_instances_on_one_schema() {
    use portcullis_sqlx::PgBackend;
    if portcullis_test::backend_url(common::POSTGRES_URL, "two_postgres_instances_on_one_schema")
        .is_none()
    {
        return;
    }
    let (options, _) = common::pg_schema().await;
    let a = PgBackend::from_options(options.clone()).await.unwrap();
    let b = PgBackend::from_options(options).await.unwrap();
    two_instances_agree(
        (a.attempts(), a.revocations()),
        (b.attempts(), b.revocations()),
    )
    .await;
}
