//! The SQLite backend.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use portcullis_core::StoreError;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::PoolSettings;
use crate::backend::backend_methods;
use crate::engine::{Db, Pools};
use crate::error::from_sqlx;
use crate::migrate::migrate;

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Every store in one SQLite database file.
///
/// Writes (and every read-modify-write transaction, begun with `BEGIN
/// IMMEDIATE`) go through a single connection, so writers of this process
/// queue in the pool instead of spinning on `SQLITE_BUSY`; reads use a
/// separate pool and run beside the writer (WAL). Other processes opening
/// the same file are serialised by SQLite's write lock, waited for up to
/// `busy_timeout` (2 s).
///
/// The file holds what seed 003's tables hold — submitted account
/// identifiers, session ids of CSRF tokens, audit records — and is created
/// with the process's umask: keep its directory readable by the server
/// only.
///
/// Cloning is cheap: clones share the pools.
///
/// ```
/// use portcullis_core::{RevocationStore, TokenRef};
/// use portcullis_sqlx::SqliteBackend;
/// use std::time::{Duration, SystemTime};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = std::env::temp_dir().join(format!("portcullis-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let backend = SqliteBackend::open(dir.join("auth.db")).await?;
/// let revocations = backend.revocations();
/// let exp = SystemTime::now() + Duration::from_secs(900);
/// assert!(revocations.revoke_token("jti-1", exp).await?);
/// assert!(!revocations.revoke_token("jti-1", exp).await?, "already revoked");
/// let token = TokenRef { token_id: Some("jti-1"), family: None, subject: "user123", issued_at: None };
/// assert!(revocations.is_revoked(&token).await?);
/// # backend.close().await;
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<_, portcullis_core::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SqliteBackend {
    db: Db,
    writer: SqlitePool,
    reader: SqlitePool,
}

impl fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("timeout", &self.db.timeout)
            .finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// Opens (creating if missing) the database file at `path` with
    /// [`connect_options`](Self::connect_options) and the default
    /// [`PoolSettings`], and applies the embedded migrations.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or created, or a migration fails.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(Self::connect_options(path), PoolSettings::default()).await
    }

    /// The options [`open`](Self::open) uses: create the file if missing,
    /// WAL journal, `busy_timeout` of 2 s, `synchronous = NORMAL` (durable
    /// across a process crash; a power cut may lose the last commits) and
    /// foreign keys on. Adjust them and pass them to
    /// [`open_with`](Self::open_with).
    #[must_use]
    pub fn connect_options(path: impl AsRef<Path>) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
    }

    /// Opens a database with `options` and `settings`, and applies the
    /// embedded migrations.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened, or a migration fails.
    pub async fn open_with(
        options: SqliteConnectOptions,
        settings: PoolSettings,
    ) -> Result<Self, StoreError> {
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(settings.test_before_acquire)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(|e| from_sqlx(e, "could not open the SQLite database"))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .test_before_acquire(settings.test_before_acquire)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Self::start(writer, reader, settings).await
    }

    /// A private in-memory database (for tests and demos): one connection,
    /// kept open for as long as the backend lives. Everything is lost when
    /// the last clone is dropped.
    ///
    /// # Errors
    ///
    /// When SQLite cannot allocate the database or a migration fails.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let settings = PoolSettings::default();
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| from_sqlx(e, "could not open an in-memory SQLite database"))?
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| from_sqlx(e, "could not open an in-memory SQLite database"))?;
        Self::start(pool.clone(), pool, settings).await
    }

    async fn start(
        writer: SqlitePool,
        reader: SqlitePool,
        settings: PoolSettings,
    ) -> Result<Self, StoreError> {
        let db = Db {
            pools: Pools::Sqlite {
                writer: writer.clone(),
                reader: reader.clone(),
            },
            timeout: settings.operation_timeout,
        };
        db.run("could not apply migrations", migrate(&db)).await?;
        Ok(Self { db, writer, reader })
    }

    /// The pool writes go through (one connection), for queries of your
    /// own. Hold its connection briefly: every store write waits for it.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    backend_methods!();
}
