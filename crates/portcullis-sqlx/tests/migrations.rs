//! The embedded migrations: idempotent, safe when several processes start
//! at once, and they create seed 003's tables and indexes.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

#[macro_use]
mod common;

use std::time::{Duration, SystemTime};

use portcullis_core::{RevocationStore, TokenRef};
use portcullis_sqlx::sqlx;

/// Seed 003's indexes, which must exist under their seed names.
const SEED_INDEXES: [&str; 4] = [
    "idx_revoked_tokens_hash",
    "idx_revoked_tokens_user",
    "idx_csrf_tokens_user",
    "idx_login_attempts_email",
];

const TABLES: [&str; 7] = [
    "revoked_tokens",
    "api_keys",
    "csrf_tokens",
    "login_attempts",
    "login_attempt_state",
    "audit_logs",
    "ip_blocks",
];

fn token(id: &str) -> TokenRef<'_> {
    TokenRef {
        token_id: Some(id),
        family: None,
        subject: "u",
        issued_at: None,
    }
}

/// Rows in `portcullis_migrations`, through the pool `$pool`.
macro_rules! migrations_applied {
    ($pool:expr) => {{
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM portcullis_migrations")
            .fetch_one($pool)
            .await
            .unwrap();
        count
    }};
}

/// Runs `open` `n` times at once; every one must succeed.
async fn all_at_once<B, F>(n: usize, open: impl Fn() -> F) -> Vec<B>
where
    B: Send + 'static,
    F: std::future::Future<Output = Result<B, portcullis_core::StoreError>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(open())).collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap().unwrap());
    }
    out
}

fn soon() -> SystemTime {
    SystemTime::now() + Duration::from_secs(600)
}

on_both_engines!(migrating_again_does_nothing, |backend| {
    assert_eq!(backend.migrate().await.unwrap(), 0);
    assert_eq!(migrations_applied!(backend.pool()), 1);
    let (version, name): (i64, String) =
        sqlx::query_as("SELECT version, name FROM portcullis_migrations")
            .fetch_one(backend.pool())
            .await
            .unwrap();
    assert_eq!((version, name.as_str()), (1, "initial"));
    for table in TABLES {
        // Table names are constants of this test, not input.
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let (rows,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(backend.pool())
            .await
            .unwrap();
        assert_eq!(rows, 0, "{table} starts empty");
    }
});

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use portcullis_sqlx::SqliteBackend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopening_keeps_data_and_applies_nothing() {
        let path = common::sqlite_path();
        let first = SqliteBackend::open(&path).await.unwrap();
        assert!(first.revocations().revoke_token("a", soon()).await.unwrap());
        first.close().await;
        let second = SqliteBackend::open(&path).await.unwrap();
        assert_eq!(second.migrate().await.unwrap(), 0);
        assert!(second.revocations().is_revoked(&token("a")).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_opens_of_a_fresh_file_all_succeed() {
        let path = common::sqlite_path();
        let backends = all_at_once(4, || SqliteBackend::open(path.clone())).await;
        assert_eq!(migrations_applied!(backends[0].pool()), 1, "applied once");
    }

    #[tokio::test]
    async fn the_seed_indexes_exist() {
        let backend = common::sqlite().await;
        let names: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'index'")
                .fetch_all(backend.pool())
                .await
                .unwrap();
        for index in SEED_INDEXES {
            assert!(names.iter().any(|(n,)| n == index), "{index}: {names:?}");
        }
    }

    #[tokio::test]
    async fn in_memory_databases_work_and_are_private() {
        let a = SqliteBackend::in_memory().await.unwrap();
        let b = SqliteBackend::in_memory().await.unwrap();
        assert!(a.revocations().revoke_token("x", soon()).await.unwrap());
        assert!(a.revocations().is_revoked(&token("x")).await.unwrap());
        assert!(!b.revocations().is_revoked(&token("x")).await.unwrap());
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use portcullis_sqlx::PgBackend;

    fn skip(case: &str) -> bool {
        portcullis_test::backend_url(common::POSTGRES_URL, case).is_none()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconnecting_keeps_data_and_applies_nothing() {
        if skip("migrations::postgres::reconnecting_keeps_data_and_applies_nothing") {
            return;
        }
        let (options, _) = common::pg_schema().await;
        let first = PgBackend::from_options(options.clone()).await.unwrap();
        assert!(first.revocations().revoke_token("a", soon()).await.unwrap());
        first.close().await;
        let second = PgBackend::from_options(options).await.unwrap();
        assert_eq!(second.migrate().await.unwrap(), 0);
        assert!(second.revocations().is_revoked(&token("a")).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_connects_to_a_fresh_schema_all_succeed() {
        if skip("migrations::postgres::concurrent_connects_to_a_fresh_schema_all_succeed") {
            return;
        }
        let (options, _) = common::pg_schema().await;
        let backends = all_at_once(4, || PgBackend::from_options(options.clone())).await;
        assert_eq!(migrations_applied!(backends[0].pool()), 1, "applied once");
    }

    #[tokio::test]
    async fn the_seed_indexes_exist_in_the_schema() {
        if skip("migrations::postgres::the_seed_indexes_exist_in_the_schema") {
            return;
        }
        let (options, schema) = common::pg_schema().await;
        let backend = PgBackend::from_options(options).await.unwrap();
        let names: Vec<(String,)> =
            sqlx::query_as("SELECT indexname::TEXT FROM pg_indexes WHERE schemaname = $1")
                .bind(&schema)
                .fetch_all(backend.pool())
                .await
                .unwrap();
        for index in SEED_INDEXES {
            assert!(names.iter().any(|(n,)| n == index), "{index}: {names:?}");
        }
        let (tables,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = $1",
        )
        .bind(&schema)
        .fetch_one(backend.pool())
        .await
        .unwrap();
        assert_eq!(
            tables, 8,
            "seven tables and portcullis_migrations, all in the schema"
        );
    }
}
