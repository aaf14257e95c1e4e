//! What both backends share: pool settings and the store accessors.

use std::time::Duration;

/// Pool sizes and time budgets of a backend.
///
/// The defaults make a stopped or unreachable database an error within a
/// few seconds rather than a hang: waiting for a connection gives up after
/// `acquire_timeout` (2 s), and every store operation — waiting for the
/// pool, every statement and the commit — after `operation_timeout` (3 s),
/// answering [`StoreErrorKind::Timeout`](portcullis_core::StoreErrorKind::Timeout).
/// The layers fail closed (503) on it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolSettings {
    /// Most connections the pool opens (PostgreSQL), or the read pool
    /// (SQLite, whose writes go through one connection).
    pub max_connections: u32,
    /// How long waiting for a connection may take.
    pub acquire_timeout: Duration,
    /// How long one store operation may take in all. On PostgreSQL it is
    /// also the connections' `statement_timeout` and `lock_timeout`, so the
    /// server stops work the client gave up on.
    pub operation_timeout: Duration,
    /// Ping each connection before handing it out (off by default). The
    /// ping is a round trip per operation — it tripled the time of a
    /// revocation check on PostgreSQL over loopback — and only helps after
    /// the server restarted: without it, the first operation on each
    /// broken idle connection fails (closed, 503) and the pool replaces the
    /// connection.
    pub test_before_acquire: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(3),
            test_before_acquire: false,
        }
    }
}

impl PoolSettings {
    /// The defaults: 8 connections, 2 s to acquire one, 3 s per operation.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the most connections (at least one).
    #[must_use]
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Sets how long waiting for a connection may take.
    #[must_use]
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Sets how long one store operation may take.
    #[must_use]
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Pings each connection before handing it out (see
    /// [`test_before_acquire`](Self::test_before_acquire)).
    #[must_use]
    pub fn with_test_before_acquire(mut self, test: bool) -> Self {
        self.test_before_acquire = test;
        self
    }
}

/// The store accessors, maintenance methods and migrations of a backend
/// type holding a `db: Db` field; written once, expanded in each backend.
macro_rules! backend_methods {
    () => {
        crate::backend::store_accessors! {
            /// The [`RevocationStore`](portcullis_core::RevocationStore) on
            /// this database (table `revoked_tokens`). It reads "now" from
            /// the system clock until given another with
            /// [`with_clock`](crate::SqlRevocationStore::with_clock).
            revocations -> SqlRevocationStore;
            /// The [`ApiKeyStore`](portcullis_core::ApiKeyStore) on this
            /// database (table `api_keys`).
            api_keys -> SqlApiKeyStore;
            /// The [`AttemptStore`](portcullis_core::AttemptStore) on this
            /// database (tables `login_attempt_state` and `login_attempts`).
            attempts -> SqlAttemptStore;
            /// The [`BlockListStore`](portcullis_core::BlockListStore) on
            /// this database (table `ip_blocks`).
            block_list -> SqlBlockList;
            /// The [`CsrfTokenStore`](portcullis_core::CsrfTokenStore) on
            /// this database (table `csrf_tokens`).
            csrf_tokens -> SqlCsrfTokenStore;
            /// The [`AuditSink`](portcullis_core::AuditSink) on this
            /// database (table `audit_logs`).
            audit -> SqlAuditSink;
        }

        /// Deletes what seed 003's schedule says is no longer needed at
        /// `now`, in batches, and reports how many rows went: revocations
        /// whose tokens expired over 30 days ago, login history older than
        /// 7 days, expired CSRF tokens, attempt counters past their
        /// `keep_until` with no lock in force, and ended IP blocks.
        ///
        /// Running it more often than the seed's monthly / weekly / daily
        /// schedule is harmless: each rule only deletes what has aged out.
        ///
        /// # Errors
        ///
        /// When the database fails or a batch times out; batches already
        /// deleted stay deleted.
        pub async fn cleanup(
            &self,
            now: std::time::SystemTime,
        ) -> Result<crate::CleanupReport, portcullis_core::StoreError> {
            crate::cleanup::cleanup(&self.db, now).await
        }

        /// Runs [`cleanup`](Self::cleanup) every `every` (at least a second)
        /// on the current tokio runtime, the first time right away, until
        /// the returned task is aborted. Counts are logged at debug level
        /// under the `portcullis_sqlx::cleanup` target, failures as
        /// warnings (with the error kind only); a failed run is retried at
        /// the next tick.
        ///
        /// # Panics
        ///
        /// When called outside a tokio runtime.
        #[must_use = "dropping the handle does not stop the task; keep it to abort the task"]
        pub fn spawn_cleanup(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
            crate::cleanup::spawn(self.db.clone(), every)
        }

        /// Applies the embedded migrations that are missing and returns how
        /// many were applied. Opening a backend already does this; calling
        /// it again is harmless.
        ///
        /// # Errors
        ///
        /// When the database fails or a migration does not apply (nothing
        /// is applied then: all run in one transaction).
        pub async fn migrate(&self) -> Result<usize, portcullis_core::StoreError> {
            self.db
                .run(
                    "could not apply migrations",
                    crate::migrate::migrate(&self.db),
                )
                .await
        }
    };
}

/// One cheap accessor per store: a handle sharing the backend's pools.
macro_rules! store_accessors {
    ($($(#[doc = $doc:literal])* $method:ident -> $store:ident;)*) => {
        $(
            $(#[doc = $doc])*
            #[must_use]
            pub fn $method(&self) -> crate::$store {
                crate::$store::new(self.db.clone())
            }
        )*
    };
}

pub(crate) use {backend_methods, store_accessors};
