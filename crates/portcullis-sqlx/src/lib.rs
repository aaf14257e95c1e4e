//! SQLite and PostgreSQL stores for [Portcullis](https://docs.rs/portcullis),
//! on [`sqlx`].
//!
//! One backend per database — [`SqliteBackend`] (a file, the embedded
//! default) or [`PgBackend`] (shared by several instances) — hands out one
//! store per Portcullis store trait, all sharing its pool:
//!
//! | method | store | trait | tables |
//! | --- | --- | --- | --- |
//! | `revocations()` | [`SqlRevocationStore`] | [`RevocationStore`](portcullis_core::RevocationStore) | `revoked_tokens` |
//! | `api_keys()` | [`SqlApiKeyStore`] | [`ApiKeyStore`](portcullis_core::ApiKeyStore) | `api_keys` |
//! | `attempts()` | [`SqlAttemptStore`] | [`AttemptStore`](portcullis_core::AttemptStore) | `login_attempt_state`, `login_attempts` |
//! | `block_list()` | [`SqlBlockList`] | [`BlockListStore`](portcullis_core::BlockListStore) | `ip_blocks` |
//! | `csrf_tokens()` | [`SqlCsrfTokenStore`] | [`CsrfTokenStore`](portcullis_core::CsrfTokenStore) | `csrf_tokens` |
//! | `audit()` | [`SqlAuditSink`] | [`AuditSink`](portcullis_core::AuditSink) | `audit_logs` |
//!
//! Rate limiting has no SQL store: seed 003 puts it in Redis
//! (`portcullis-redis`).
//!
//! Opening a backend applies the embedded migrations (see
//! [Migrations](#migrations)); `cleanup(now)` runs seed 003's maintenance
//! schedule and `spawn_cleanup(every)` runs it periodically.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # fn main() {
//! use portcullis_core::{CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore};
//! use portcullis_sqlx::SqliteBackend;
//! use std::time::{Duration, SystemTime};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let path = std::env::temp_dir().join(format!("portcullis-lib-doc-{}.db", std::process::id()));
//! let backend = SqliteBackend::open(&path).await?;
//!
//! let csrf = backend.csrf_tokens();
//! let digest = CsrfTokenDigest::from_bytes([7; 32]);
//! let expires = SystemTime::now() + Duration::from_secs(3600);
//! csrf.issue(CsrfTokenRecord::new("session-1", digest, expires)).await?;
//! assert!(csrf.consume("session-1", &digest).await?);
//! assert!(!csrf.consume("session-1", &digest).await?, "single use");
//!
//! // Seed 003's maintenance, e.g. from a daily job or `spawn_cleanup`.
//! let report = backend.cleanup(SystemTime::now()).await?;
//! assert_eq!(report.csrf_tokens, 0);
//! # backend.close().await;
//! # for suffix in ["", "-wal", "-shm"] {
//! #     let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
//! # }
//! # Ok::<_, portcullis_core::StoreError>(())
//! # }).unwrap();
//! # }
//! # #[cfg(not(feature = "sqlite"))]
//! # fn main() {}
//! ```
//!
//! With PostgreSQL (`postgres` feature), in a schema of its own:
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn run() -> Result<(), portcullis_core::StoreError> {
//! use portcullis_sqlx::PgBackend;
//! use portcullis_sqlx::sqlx::postgres::PgConnectOptions;
//!
//! let options: PgConnectOptions = "postgres://portcullis@db.internal/app".parse().unwrap();
//! let backend = PgBackend::from_options(options.options([("search_path", "auth")])).await?;
//! let revocations = backend.revocations();
//! let handle = backend.spawn_cleanup(std::time::Duration::from_secs(3600));
//! # drop((revocations, handle));
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `sqlite` | yes | [`SqliteBackend`], with a bundled libsqlite3 |
//! | `postgres` | no | [`PgBackend`] |
//!
//! With neither feature the crate is empty.
//!
//! # Failures
//!
//! Every store operation runs within the backend's operation timeout
//! ([`PoolSettings`], 3 s by default; waiting for a connection gives up
//! after 2 s), so a stopped, unreachable or blocked database answers with a
//! [`StoreError`](portcullis_core::StoreError) in seconds instead of
//! hanging; the layers fail closed (503) on it. Driver errors map to kinds:
//!
//! | driver error | [`StoreErrorKind`](portcullis_core::StoreErrorKind) |
//! | --- | --- |
//! | pool timed out, operation timed out, `statement_timeout` / `lock_timeout` (57014, 55P03), `SQLITE_BUSY` | `Timeout` |
//! | I/O, connection refused, closed pool, PostgreSQL classes 08, 53, 57, 40 | `Unavailable` |
//! | unique violation; an id taken by `create` / another session's CSRF digest | `Conflict` |
//! | an undecodable row or stored value (attempt state, scopes, network, JSON) | `Corrupt` |
//! | `SQLITE_FULL`, PostgreSQL 53100 | `CapacityExceeded` |
//!
//! Errors carry fixed messages and keep the driver error as their source,
//! redacted: no bound value, no PostgreSQL error detail (which quotes key
//! values), no connection URL. Statements are `&'static str` with bound
//! parameters only.
//!
//! # Schema
//!
//! Seed 003's tables, adapted to the store traits. **Every time is a
//! `BIGINT` of milliseconds since the Unix epoch (UTC).** The `users` and
//! `user_sessions` tables are the application's, not ours.
//!
//! - **`revoked_tokens`** `(id PK, token_hash, user_id, token_type, reason,
//!   revoked_by, ip_address, user_agent, issued_before, expires_at,
//!   revoked_at)`: one row per revoked token id (`token_type = 'token'`,
//!   `token_hash` = the id), refresh family (`'family'`) or subject
//!   watermark (`'all'`, `user_id` = the subject, `issued_before` = the
//!   watermark). `id` is `token_type:value`. Indexes
//!   `idx_revoked_tokens_hash (token_hash)`, `idx_revoked_tokens_user
//!   (user_id)`, and `expires_at` for cleanup.
//! - **`api_keys`** `(key_id PK, owner, name, scopes, digest, created_at,
//!   expires_at, revoked_at, last_used_at)`: `digest` is the 32-byte key
//!   digest (never the key), `scopes` a JSON array. Indexes on `(owner,
//!   created_at, key_id)` and `(created_at, key_id)`.
//! - **`csrf_tokens`** `(token PK, user_id, expires_at, created_at)`:
//!   `token` is the lowercase hex SHA-256 of the token (it is also the
//!   seed's `id`), `user_id` the session. No foreign key: sessions are
//!   opaque ids. Index `idx_csrf_tokens_user (user_id)`, and `expires_at`.
//! - **`login_attempts`** `(id PK, email, ip_address, success,
//!   attempt_type, created_at)`: the seed's history, one row per
//!   `record_failure` / `record_success` and counter; `email` is the
//!   account part of the key (or empty), `attempt_type` the key kind
//!   (`account`, `ip`, `account_ip`). Index `idx_login_attempts_email
//!   (email)`, and `created_at`.
//! - **`login_attempt_state`** `(attempt_key PK, kind, state, lock_until,
//!   keep_until, failures, last_failure_at)`: the lockout counter of each
//!   key, `state` in [`AttemptState::encode`](portcullis_core::AttemptState::encode)
//!   form, `lock_until` 0 (none) or the lock's end (`i64::MAX`: until
//!   unlocked), `keep_until` when the row may go (NULL while locked until
//!   unlocked), `failures` the failure times remembered. `attempt_key` is
//!   [`AttemptKey::storage_key`](portcullis_core::AttemptKey::storage_key)
//!   with `\` and NUL escaped as `\\` and `\0`. Indexes on `(kind,
//!   lock_until)` for `locked`, `(kind, failures, attempt_key)` for
//!   `hottest`, and `keep_until` for cleanup.
//! - **`audit_logs`** `(id PK, user_id, action, details, ip_address,
//!   user_agent, created_at)`: `action` is the event name, `details` the
//!   record's JSON ([`AuditRecord::to_json`](portcullis_core::AuditRecord::to_json)).
//!   `id` increases with insertion. Indexes on `created_at` and `(action,
//!   created_at)`.
//! - **`ip_blocks`** `(network PK, blocked_until, reason, created_at)`:
//!   the canonical network (`203.0.113.7/32`, `2001:db8::/32`);
//!   `blocked_until` NULL for a block until removed.
//!
//! On PostgreSQL the text columns that listings order by are `COLLATE
//! "C"`, so orders are byte-wise, as on SQLite and in memory.
//!
//! ## Migrations
//!
//! The SQL lives in `migrations/sqlite/` and `migrations/postgres/`,
//! embedded in the binary. Missing migrations are applied in one
//! transaction and recorded in `portcullis_migrations(version, name,
//! applied_at)`; applying them again does nothing. Two processes starting
//! at once are serialised — PostgreSQL by `pg_advisory_xact_lock` keyed by
//! the current schema, SQLite by `BEGIN IMMEDIATE` — and both succeed.
//!
//! ## Cleanup
//!
//! `cleanup(now)` implements seed 003's "Database Cleanup" and reports the
//! counts in a [`CleanupReport`]: revocations whose `expires_at` is more
//! than 30 days past, login history older than 7 days, expired CSRF
//! tokens, attempt states past `keep_until` with no lock in force, and
//! ended IP blocks. Deletes go in batches of 1 000 rows so that a backlog
//! never blocks the stores for long.
#![cfg_attr(
    not(feature = "sqlite"),
    doc = "\n\n[`SqliteBackend`]: https://docs.rs/portcullis-sqlx/latest/portcullis_sqlx/struct.SqliteBackend.html"
)]
#![cfg_attr(
    not(feature = "postgres"),
    doc = "\n\n[`PgBackend`]: https://docs.rs/portcullis-sqlx/latest/portcullis_sqlx/struct.PgBackend.html"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Without an engine feature the crate is empty (so that `cargo hack
// --each-feature` and `--no-default-features` builds pass): everything
// below needs an engine.

/// Puts every item given under `cfg(any(feature = "sqlite", feature =
/// "postgres"))`.
macro_rules! with_an_engine {
    ($($item:item)*) => {
        $(
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            $item
        )*
    };
}

with_an_engine! {
/// `Debug` without fields for a store handle (it holds only pools and a
/// clock), and for stores that judge "now" themselves a `with_clock`
/// builder.
macro_rules! store_handle {
    ($name:ident) => {
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
    ($name:ident, clock: $doc:literal) => {
        store_handle!($name);

        impl $name {
            #[doc = $doc]
            #[must_use]
            pub fn with_clock(mut self, clock: portcullis_core::SharedClock) -> Self {
                self.clock = clock;
                self
            }
        }
    };
}

mod api_key;
mod attempt;
mod audit;
mod backend;
mod block_list;
mod cleanup;
mod csrf;
mod engine;
mod error;
mod migrate;
#[cfg(feature = "postgres")]
mod postgres;
mod revocation;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use api_key::SqlApiKeyStore;
pub use attempt::{HOTTEST_SCAN_LIMIT, LoginAttempt, SqlAttemptStore};
pub use audit::SqlAuditSink;
pub use backend::PoolSettings;
pub use block_list::SqlBlockList;
pub use cleanup::{CleanupReport, LOGIN_HISTORY_RETENTION, REVOCATION_RETENTION};
pub use csrf::SqlCsrfTokenStore;
#[cfg(feature = "postgres")]
pub use postgres::PgBackend;
pub use revocation::SqlRevocationStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteBackend;
}

/// The driver, re-exported for its connect options and pool types.
pub use sqlx;
