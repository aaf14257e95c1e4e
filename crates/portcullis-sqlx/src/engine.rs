//! The one place that knows which engine runs a statement.
//!
//! Stores are written once against [`Db`]: a statement (a `&'static str`;
//! values are always bound, never formatted in), its arguments as [`Arg`]s,
//! and rows read through [`Row`]'s typed getters. `Db` dispatches to the
//! SQLite or PostgreSQL pool. Most statements are the same text for both
//! engines (`$1` placeholders work in SQLite too); where they differ the
//! store picks by [`Db::dialect`].

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::{StoreError, StoreErrorKind};

use crate::error::Result;

/// A value bound to a statement parameter.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
    Bytes(&'a [u8]),
    Bool(bool),
}

/// Which SQL dialect a [`Db`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    #[cfg(feature = "sqlite")]
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
}

/// The pools of one backend.
#[derive(Clone)]
pub(crate) enum Pools {
    /// Writes and transactions go through a single connection, so that
    /// writers in this process queue in the pool instead of spinning on
    /// `SQLITE_BUSY`; reads use a separate pool (WAL lets them run beside
    /// the writer). For an in-memory database both are the same pool.
    #[cfg(feature = "sqlite")]
    Sqlite {
        writer: sqlx::SqlitePool,
        reader: sqlx::SqlitePool,
    },
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// A backend's pools and the time budget of one store operation.
#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) pools: Pools,
    pub(crate) timeout: Duration,
}

/// An open transaction. Dropping it rolls back.
pub(crate) enum Tx {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// A result row.
pub(crate) enum Row {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::sqlite::SqliteRow),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::postgres::PgRow),
}

/// Binds `args` in order; one copy per engine.
macro_rules! binder {
    ($name:ident, $db:ty) => {
        fn $name<'q>(
            mut query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            args: &[Arg<'_>],
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            for arg in args {
                query = match *arg {
                    Arg::Int(v) => query.bind(v),
                    Arg::OptInt(v) => query.bind(v),
                    Arg::Text(v) => query.bind(v),
                    Arg::OptText(v) => query.bind(v),
                    Arg::Bytes(v) => query.bind(v),
                    Arg::Bool(v) => query.bind(v),
                };
            }
            query
        }
    };
}

#[cfg(feature = "sqlite")]
binder!(bind_sqlite, sqlx::Sqlite);
#[cfg(feature = "postgres")]
binder!(bind_postgres, sqlx::Postgres);

/// Evaluates `$body` with `$q` bound to the query `$sql` with `$args` and
/// `$on` to the pool of a [`Pools`] (SQLite: the writer when `$writes`,
/// else the reader). The body is the same text for both engines.
macro_rules! on_pool {
    ($pools:expr, $writes:expr, $sql:expr, $args:expr, |$q:ident, $on:ident| $body:expr) => {
        match &$pools {
            #[cfg(feature = "sqlite")]
            Pools::Sqlite { writer, reader } => {
                let $on = if $writes { writer } else { reader };
                let $q = bind_sqlite(sqlx::query($sql), $args);
                $body
            }
            #[cfg(feature = "postgres")]
            Pools::Postgres($on) => {
                // One pool serves reads and writes.
                let _ = $writes;
                let $q = bind_postgres(sqlx::query($sql), $args);
                $body
            }
        }
    };
}

/// [`on_pool!`] for the connection of a [`Tx`].
macro_rules! on_tx {
    ($tx:expr, $sql:expr, $args:expr, |$q:ident, $on:ident| $body:expr) => {
        match $tx {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(tx) => {
                let $on = &mut **tx;
                let $q = bind_sqlite(sqlx::query($sql), $args);
                $body
            }
            #[cfg(feature = "postgres")]
            Tx::Postgres(tx) => {
                let $on = &mut **tx;
                let $q = bind_postgres(sqlx::query($sql), $args);
                $body
            }
        }
    };
}

#[cfg(feature = "sqlite")]
impl From<sqlx::sqlite::SqliteRow> for Row {
    fn from(row: sqlx::sqlite::SqliteRow) -> Self {
        Self::Sqlite(row)
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::postgres::PgRow> for Row {
    fn from(row: sqlx::postgres::PgRow) -> Self {
        Self::Postgres(row)
    }
}

impl Db {
    pub(crate) fn dialect(&self) -> Dialect {
        match self.pools {
            #[cfg(feature = "sqlite")]
            Pools::Sqlite { .. } => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Pools::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs `op` within the operation timeout, mapping failures to a
    /// [`StoreError`] with `message`.
    pub(crate) async fn run<T>(
        &self,
        message: &'static str,
        op: impl Future<Output = Result<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result.map_err(|e| e.into_store_error(message)),
            Err(elapsed) => {
                Err(StoreError::new(StoreErrorKind::Timeout, message).with_source(elapsed))
            }
        }
    }

    /// [`execute`](Self::execute) as a whole store operation: within the
    /// timeout, failures mapped with `message`.
    pub(crate) async fn run_execute(
        &self,
        message: &'static str,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<u64, StoreError> {
        self.run(message, self.execute(sql, args)).await
    }

    /// Executes a writing statement; returns the number of rows affected.
    pub(crate) async fn execute(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64> {
        Ok(on_pool!(self.pools, true, sql, args, |q, pool| q
            .execute(pool)
            .await?
            .rows_affected()))
    }

    /// Runs a reading statement.
    pub(crate) async fn read(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        self.fetch(sql, args, false).await
    }

    /// Runs a writing statement that returns rows (`RETURNING`).
    pub(crate) async fn write(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        self.fetch(sql, args, true).await
    }

    async fn fetch(&self, sql: &'static str, args: &[Arg<'_>], writes: bool) -> Result<Vec<Row>> {
        Ok(on_pool!(self.pools, writes, sql, args, |q, pool| q
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(Row::from)
            .collect()))
    }

    /// Starts a writing transaction: `BEGIN IMMEDIATE` on SQLite (the write
    /// lock is taken up front, so two read-modify-write transactions never
    /// interleave), `BEGIN` on PostgreSQL (rows are locked with `FOR UPDATE`).
    pub(crate) async fn begin(&self) -> Result<Tx> {
        let tx = match &self.pools {
            #[cfg(feature = "sqlite")]
            Pools::Sqlite { writer, .. } => Tx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?),
            #[cfg(feature = "postgres")]
            Pools::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        };
        Ok(tx)
    }
}

impl Tx {
    /// Executes a statement in the transaction; returns the rows affected.
    pub(crate) async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64> {
        Ok(on_tx!(self, sql, args, |q, conn| {
            q.execute(conn).await?.rows_affected()
        }))
    }

    /// Runs a statement that returns rows in the transaction.
    pub(crate) async fn fetch(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        Ok(on_tx!(self, sql, args, |q, conn| {
            q.fetch_all(conn)
                .await?
                .into_iter()
                .map(Row::from)
                .collect()
        }))
    }

    /// Runs a script of several statements (a migration) in the transaction.
    pub(crate) async fn script(&mut self, sql: &'static str) -> Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(tx) => {
                sqlx::raw_sql(sql).execute(&mut **tx).await?;
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(tx) => {
                sqlx::raw_sql(sql).execute(&mut **tx).await?;
            }
        }
        Ok(())
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(tx) => tx.commit().await?,
            #[cfg(feature = "postgres")]
            Self::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Typed getters, one per column type the schema uses.
macro_rules! getters {
    ($($name:ident -> $t:ty;)*) => {
        impl Row {
            $(
                pub(crate) fn $name(&self, index: usize) -> Result<$t> {
                    let value = match self {
                        #[cfg(feature = "sqlite")]
                        Self::Sqlite(row) => sqlx::Row::try_get(row, index)?,
                        #[cfg(feature = "postgres")]
                        Self::Postgres(row) => sqlx::Row::try_get(row, index)?,
                    };
                    Ok(value)
                }
            )*
        }
    };
}

getters! {
    int -> i64;
    opt_int -> Option<i64>;
    text -> String;
    bytes -> Vec<u8>;
    boolean -> bool;
}

/// Milliseconds since the Unix epoch (negative before it, saturating).
pub(crate) fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn time(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

/// Bounds a caller's `limit` for a `LIMIT` parameter.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        for ms in [0, 1, 1_700_000_000_123, -5_000] {
            assert_eq!(millis(time(ms)), ms);
        }
        assert_eq!(limit(usize::MAX), i64::MAX);
    }
}
