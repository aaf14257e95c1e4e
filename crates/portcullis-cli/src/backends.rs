//! Where a Portcullis deployment keeps its state, opened the same way by the
//! reference server and by the CLI, so that the CLI acts on what a running
//! server sees.
//!
//! - `PORTCULLIS_DATABASE_URL`: `sqlite://<path>` (default
//!   `sqlite://portcullis-demo.db`) or `postgres://…`. It holds API keys,
//!   the IP block list, CSRF tokens, audit records and the application's
//!   users; and, without Redis, revocations and failed-attempt counters.
//! - `PORTCULLIS_REDIS_URL` (optional): moves the counters (failed attempts,
//!   the shared rate limit) and revocations to Redis, under the key prefix
//!   `PORTCULLIS_REDIS_PREFIX` (default `portcullis`).

use std::fmt;

use portcullis::core::{
    BoxApiKeyStore, BoxAttemptStore, BoxAuditSink, BoxBlockListStore, BoxCsrfTokenStore,
    BoxRateLimitStore, BoxRevocationStore, StoreError,
};
use portcullis_redis::RedisBackend;
use portcullis_sqlx::{CleanupReport, PgBackend, SqliteBackend};

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://portcullis-demo.db";
/// The default Redis key prefix.
pub const DEFAULT_REDIS_PREFIX: &str = "portcullis";

/// The SQL database behind a deployment.
#[derive(Clone, Debug)]
pub enum Database {
    /// A SQLite file.
    Sqlite(SqliteBackend),
    /// A PostgreSQL database.
    Postgres(PgBackend),
}

/// Runs the same expression on either engine's backend.
macro_rules! on_engine {
    ($db:expr, $backend:ident => $body:expr) => {
        match $db {
            Database::Sqlite($backend) => $body,
            Database::Postgres($backend) => $body,
        }
    };
}

impl Database {
    /// Opens `url` (`sqlite://path`, `sqlite:path`, or `postgres://…` /
    /// `postgresql://…`) and applies the migrations.
    ///
    /// # Errors
    ///
    /// An unknown scheme, or the database cannot be opened.
    pub async fn open(url: &str) -> Result<Self, BackendError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(BackendError::Config("the SQLite URL has no path"));
            }
            return Ok(Self::Sqlite(SqliteBackend::open(path).await?));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(PgBackend::connect(url).await?));
        }
        Err(BackendError::Config(
            "the database URL must start with sqlite:// or postgres://",
        ))
    }

    /// `sqlite` or `postgres`.
    #[must_use]
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// The connection pool, for the application's own tables.
    #[must_use]
    pub fn any_pool(&self) -> Pool {
        match self {
            Self::Sqlite(db) => Pool::Sqlite(db.pool().clone()),
            Self::Postgres(db) => Pool::Postgres(db.pool().clone()),
        }
    }

    /// Seed 003's cleanup schedule at `now`.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn cleanup(&self, now: std::time::SystemTime) -> Result<CleanupReport, StoreError> {
        on_engine!(self, db => db.cleanup(now).await)
    }

    /// Whether the database answers (for health checks).
    pub async fn ping(&self) -> bool {
        match self {
            Self::Sqlite(db) => portcullis_sqlx::sqlx::query("SELECT 1")
                .execute(db.pool())
                .await
                .is_ok(),
            Self::Postgres(db) => portcullis_sqlx::sqlx::query("SELECT 1")
                .execute(db.pool())
                .await
                .is_ok(),
        }
    }
}

/// A pool of either engine.
#[derive(Clone, Debug)]
pub enum Pool {
    /// SQLite.
    Sqlite(portcullis_sqlx::sqlx::SqlitePool),
    /// PostgreSQL.
    Postgres(portcullis_sqlx::sqlx::PgPool),
}

/// Every store of a deployment, type-erased, wired as the module docs say.
#[derive(Clone)]
pub struct Backends {
    /// The SQL database.
    pub database: Database,
    /// Redis, when configured.
    pub redis: Option<RedisBackend>,
    /// Revocations (Redis when configured, else the database).
    pub revocations: BoxRevocationStore,
    /// Failed-attempt counters (Redis when configured, else the database).
    pub attempts: BoxAttemptStore,
    /// The shared per-address rate limit (Redis only).
    pub rate_limit: Option<BoxRateLimitStore>,
    /// API keys (the database).
    pub api_keys: BoxApiKeyStore,
    /// The IP block list (the database).
    pub block_list: BoxBlockListStore,
    /// Synchronizer CSRF tokens (the database).
    pub csrf_tokens: BoxCsrfTokenStore,
    /// Audit records (the database's `audit_logs`).
    pub audit: BoxAuditSink,
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends")
            .field("database", &self.database.engine())
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Backends {
    /// Opens the database at `database_url` and, if given, Redis at
    /// `redis_url` with key prefix `redis_prefix`.
    ///
    /// # Errors
    ///
    /// A URL is invalid or a backend cannot be reached.
    pub async fn open(
        database_url: &str,
        redis_url: Option<&str>,
        redis_prefix: &str,
    ) -> Result<Self, BackendError> {
        let database = Database::open(database_url).await?;
        let redis = match redis_url {
            Some(url) => Some(RedisBackend::connect(url, redis_prefix).await?),
            None => None,
        };
        let (api_keys, block_list, csrf_tokens, audit, db_revocations, db_attempts) = on_engine!(&database, db => (
            BoxApiKeyStore::new(db.api_keys()),
            BoxBlockListStore::new(db.block_list()),
            BoxCsrfTokenStore::new(db.csrf_tokens()),
            BoxAuditSink::new(db.audit()),
            BoxRevocationStore::new(db.revocations()),
            BoxAttemptStore::new(db.attempts()),
        ));
        let (revocations, attempts, rate_limit) = match &redis {
            Some(redis) => (
                BoxRevocationStore::new(redis.revocations()),
                BoxAttemptStore::new(redis.attempts()),
                Some(BoxRateLimitStore::new(redis.rate_limit())),
            ),
            None => (db_revocations, db_attempts, None),
        };
        Ok(Self {
            database,
            redis,
            revocations,
            attempts,
            rate_limit,
            api_keys,
            block_list,
            csrf_tokens,
            audit,
        })
    }

    /// Opens what the environment names: `PORTCULLIS_DATABASE_URL`
    /// (default [`DEFAULT_DATABASE_URL`]), `PORTCULLIS_REDIS_URL`,
    /// `PORTCULLIS_REDIS_PREFIX` (default [`DEFAULT_REDIS_PREFIX`]).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub async fn from_env() -> Result<Self, BackendError> {
        let database = env_or("PORTCULLIS_DATABASE_URL", DEFAULT_DATABASE_URL);
        let redis = std::env::var("PORTCULLIS_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let prefix = env_or("PORTCULLIS_REDIS_PREFIX", DEFAULT_REDIS_PREFIX);
        Self::open(&database, redis.as_deref(), &prefix).await
    }
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Why the backends could not be opened.
#[derive(Debug)]
pub enum BackendError {
    /// A URL or setting is invalid.
    Config(&'static str),
    /// A backend failed or could not be reached.
    Store(StoreError),
}

impl From<StoreError> for BackendError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(msg) => f.write_str(msg),
            Self::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(_) => None,
            Self::Store(e) => Some(e),
        }
    }
}
