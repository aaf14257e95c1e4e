//! The embedded migrations and their runner.
//!
//! Each engine has its own SQL files under `migrations/<engine>/`, embedded
//! with `include_str!`. [`migrate`] applies the missing ones in version
//! order, all in one transaction, and records each in
//! `portcullis_migrations(version, name, applied_at)`. Two processes
//! starting at once are serialised: PostgreSQL by a transaction-scoped
//! advisory lock keyed by the current schema, SQLite by `BEGIN IMMEDIATE`
//! (the write lock, waited for up to `busy_timeout`). The second process
//! then finds every migration applied and does nothing.

use std::time::SystemTime;

use crate::engine::{Arg, Db, Dialect, millis};
use crate::error::Result;

/// One schema change.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

#[cfg(feature = "sqlite")]
const SQLITE: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: include_str!("../migrations/sqlite/0001_initial.sql"),
}];

#[cfg(feature = "postgres")]
const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: include_str!("../migrations/postgres/0001_initial.sql"),
}];

/// The migrations of `dialect`, oldest first.
pub(crate) fn migrations(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        #[cfg(feature = "sqlite")]
        Dialect::Sqlite => SQLITE,
        #[cfg(feature = "postgres")]
        Dialect::Postgres => POSTGRES,
    }
}

/// Key of the advisory lock (`'pcls'`), paired with a hash of the schema
/// so that instances in different schemas do not wait for each other.
#[cfg(feature = "postgres")]
const PG_LOCK: &str =
    "SELECT pg_advisory_xact_lock(1885564019, hashtext(COALESCE(current_schema(), '')))";

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS portcullis_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

const APPLIED: &str = "SELECT version FROM portcullis_migrations ORDER BY version";

const RECORD: &str =
    "INSERT INTO portcullis_migrations (version, name, applied_at) VALUES ($1, $2, $3)";

/// Applies every missing migration; returns how many were applied.
pub(crate) async fn migrate(db: &Db) -> Result<usize> {
    let mut tx = db.begin().await?;
    #[cfg(feature = "postgres")]
    if db.dialect() == Dialect::Postgres {
        tx.fetch(PG_LOCK, &[]).await?;
    }
    tx.execute(CREATE_TABLE, &[]).await?;
    let mut applied = Vec::new();
    for row in tx.fetch(APPLIED, &[]).await? {
        applied.push(row.int(0)?);
    }
    let known = migrations(db.dialect());
    if let Some(newest) = applied.last()
        && known.last().is_none_or(|m| m.version < *newest)
    {
        tracing::warn!(
            target: "portcullis_sqlx::migrate",
            version = newest,
            "the database has migrations this version does not know; continuing"
        );
    }
    let now = millis(SystemTime::now());
    let mut count = 0;
    for migration in known {
        if applied.contains(&migration.version) {
            continue;
        }
        tx.script(migration.sql).await?;
        tx.execute(
            RECORD,
            &[
                Arg::Int(migration.version),
                Arg::Text(migration.name),
                Arg::Int(now),
            ],
        )
        .await?;
        count += 1;
    }
    tx.commit().await?;
    if count > 0 {
        tracing::info!(
            target: "portcullis_sqlx::migrate",
            applied = count,
            "applied schema migrations"
        );
    }
    Ok(count)
}
