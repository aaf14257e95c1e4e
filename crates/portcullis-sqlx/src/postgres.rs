//! The PostgreSQL backend.

use std::fmt;

use portcullis_core::{StoreError, StoreErrorKind};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::PoolSettings;
use crate::backend::backend_methods;
use crate::engine::{Db, Pools};
use crate::error::from_sqlx;
use crate::migrate::migrate;

/// Every store in one PostgreSQL database (or schema: set `search_path`).
///
/// A pool of connections (8 by default) shared by every store made from
/// this backend; cloning is cheap. Each connection runs with
/// `statement_timeout` and `lock_timeout` set to the operation timeout (and
/// `idle_in_transaction_session_timeout` to twice that), so the server
/// abandons work the client has given up on.
///
/// ```no_run
/// use portcullis_core::{AttemptKey, AttemptPolicy, AttemptStore};
/// use portcullis_sqlx::PgBackend;
/// use std::time::SystemTime;
///
/// # async fn run() -> Result<(), portcullis_core::StoreError> {
/// let backend = PgBackend::connect("postgres://portcullis@127.0.0.1:5432/auth").await?;
/// let attempts = backend.attempts();
/// let key = AttemptKey::Account("alice".into());
/// attempts.record_failure(&key, &AttemptPolicy::default(), false, SystemTime::now()).await?;
/// let report = backend.cleanup(SystemTime::now()).await?;
/// let _removed = report.total();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PgBackend {
    db: Db,
    pool: PgPool,
}

impl fmt::Debug for PgBackend {
    // The connect options may hold a password: show none of them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgBackend")
            .field("timeout", &self.db.timeout)
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects to the database at `url` (`postgres://user@host:port/db`,
    /// with the usual libpq parameters) with the default [`PoolSettings`],
    /// and applies the embedded migrations.
    ///
    /// # Errors
    ///
    /// When the URL is invalid ([`StoreErrorKind::Other`]), the server
    /// cannot be reached in time ([`StoreErrorKind::Unavailable`] or
    /// [`StoreErrorKind::Timeout`]), or a migration fails.
    ///
    /// [`StoreErrorKind::Other`]: portcullis_core::StoreErrorKind::Other
    /// [`StoreErrorKind::Unavailable`]: portcullis_core::StoreErrorKind::Unavailable
    /// [`StoreErrorKind::Timeout`]: portcullis_core::StoreErrorKind::Timeout
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| from_sqlx(e, "invalid PostgreSQL connection URL"))?;
        Self::from_options(options).await
    }

    /// Connects with `options` and the default [`PoolSettings`], and
    /// applies the embedded migrations.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn from_options(options: PgConnectOptions) -> Result<Self, StoreError> {
        Self::from_options_with(options, PoolSettings::default()).await
    }

    /// Connects with `options` and `settings`, and applies the embedded
    /// migrations.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn from_options_with(
        options: PgConnectOptions,
        settings: PoolSettings,
    ) -> Result<Self, StoreError> {
        let timeout_ms = settings.operation_timeout.as_millis().max(1);
        let (statement, idle) = (timeout_ms.to_string(), (timeout_ms * 2).to_string());
        let options = options.options([
            ("statement_timeout", statement.as_str()),
            ("lock_timeout", statement.as_str()),
            // Our transactions never pause between statements; one left
            // open by an abandoned operation must not hold row locks.
            ("idle_in_transaction_session_timeout", idle.as_str()),
        ]);
        probe(&options, &settings).await?;
        let pool = PgPoolOptions::new()
            .test_before_acquire(settings.test_before_acquire)
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| from_sqlx(e, "could not connect to PostgreSQL"))?;
        let db = Db {
            pools: Pools::Postgres(pool.clone()),
            timeout: settings.operation_timeout,
        };
        db.run("could not apply migrations", migrate(&db)).await?;
        Ok(Self { db, pool })
    }

    /// The pool, for queries of your own.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    backend_methods!();
}

/// Opens and closes one connection, so that a server that refuses
/// connections is reported as such ([`StoreErrorKind::Unavailable`]) at
/// once: the pool would keep retrying until `acquire_timeout` and report
/// only that it timed out.
async fn probe(options: &PgConnectOptions, settings: &PoolSettings) -> Result<(), StoreError> {
    const MESSAGE: &str = "could not connect to PostgreSQL";
    match tokio::time::timeout(
        settings.acquire_timeout,
        PgConnection::connect_with(options),
    )
    .await
    {
        Ok(Ok(conn)) => {
            // Only the handshake mattered; a failed goodbye is harmless.
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(from_sqlx(e, MESSAGE)),
        Err(elapsed) => Err(StoreError::new(StoreErrorKind::Timeout, MESSAGE).with_source(elapsed)),
    }
}
