//! Fresh, isolated backends for the integration tests: a SQLite file in a
//! unique temporary directory, or a unique PostgreSQL schema.
#![allow(
    dead_code,
    unused_macros,
    clippy::unwrap_used,
    clippy::missing_panics_doc
)]

use std::path::PathBuf;

use portcullis_test as kit;

/// The environment variable naming the PostgreSQL test server.
pub(crate) const POSTGRES_URL: &str = "PORTCULLIS_TEST_POSTGRES_URL";

/// Prefix of every name these tests create.
const PREFIX: &str = "pcsqlx";

/// A fresh directory under the system temp dir.
pub(crate) fn temp_dir() -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_stale_temp_dirs);
    let dir = std::env::temp_dir().join(kit::unique_name(PREFIX));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether a name made by `kit::unique_name(PREFIX)` is over an hour old.
fn is_stale(name: &str) -> bool {
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .saturating_sub(3600 * 1_000_000_000);
    // pcsqlx_<pid>_<nanos hex>_<n>
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.split('_').nth(2))
        .and_then(|hex| u128::from_str_radix(hex, 16).ok())
        .is_some_and(|nanos| nanos < hour_ago)
}

/// Removes the directories of earlier runs, so the temp dir does not fill.
fn remove_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(is_stale) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh SQLite database file path (not created yet).
pub(crate) fn sqlite_path() -> PathBuf {
    temp_dir().join("store.db")
}

/// A backend on a fresh SQLite file.
#[cfg(feature = "sqlite")]
pub(crate) async fn sqlite() -> portcullis_sqlx::SqliteBackend {
    portcullis_sqlx::SqliteBackend::open(sqlite_path())
        .await
        .unwrap()
}

/// Connect options for the PostgreSQL test server with `search_path` set to
/// a fresh schema (created here), and the schema's name.
#[cfg(feature = "postgres")]
pub(crate) async fn pg_schema() -> (portcullis_sqlx::sqlx::postgres::PgConnectOptions, String) {
    use portcullis_sqlx::sqlx::{self, Connection};
    let url = std::env::var(POSTGRES_URL).unwrap();
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let schema = kit::unique_name(PREFIX);
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    // The name is letters, digits and `_` (kit::unique_name): safe to quote.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut conn)
        .await
        .unwrap();
    drop_stale_schemas(&mut conn).await;
    conn.close().await.unwrap();
    (options.options([("search_path", schema.as_str())]), schema)
}

/// A backend in a fresh PostgreSQL schema.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres() -> portcullis_sqlx::PgBackend {
    let (options, _) = pg_schema().await;
    portcullis_sqlx::PgBackend::from_options(options)
        .await
        .unwrap()
}

/// Drops schemas earlier test runs left behind (older than an hour), so the
/// test database does not grow without bound.
#[cfg(feature = "postgres")]
async fn drop_stale_schemas(conn: &mut portcullis_sqlx::sqlx::PgConnection) {
    use portcullis_sqlx::sqlx::{self, Row};
    let rows =
        sqlx::query("SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 'pcsqlx\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    for row in rows {
        let name: String = row.get(0);
        if is_stale(&name) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

/// Defines module `$name` with one `#[tokio::test]` per engine, each
/// running `$body` with `$backend` bound to a fresh backend of that engine
/// (the PostgreSQL one skips visibly without a server, fails in CI).
macro_rules! on_both_engines {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[cfg(feature = "sqlite")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $backend = crate::common::sqlite().await;
                $body
            }

            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let case = concat!(stringify!($name), "::postgres");
                if portcullis_test::backend_url(crate::common::POSTGRES_URL, case).is_none() {
                    return;
                }
                let $backend = crate::common::postgres().await;
                $body
            }
        }
    };
}
