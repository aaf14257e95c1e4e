//! Seed 003's maintenance schedule: deleting rows nothing needs any more.

use std::time::{Duration, SystemTime};

use portcullis_core::StoreError;
use tokio::task::JoinHandle;

use crate::engine::{Arg, Db, millis};

/// Revocations are kept this long after the tokens they cover expire
/// (seed 003: "Remove expired revoked tokens (run monthly)", 30 days).
pub const REVOCATION_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Login history is kept this long (seed 003: "Remove old login attempts
/// (run weekly)", 7 days).
pub const LOGIN_HISTORY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Rows deleted per statement, so that a large backlog never holds the
/// write lock (SQLite) or a long transaction (PostgreSQL) for long.
const BATCH: i64 = 1000;

/// What one `cleanup(now)` run of a backend deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// `revoked_tokens` rows whose `expires_at` is more than
    /// [`REVOCATION_RETENTION`] past.
    pub revocations: u64,
    /// `login_attempts` history rows older than [`LOGIN_HISTORY_RETENTION`].
    pub login_attempts: u64,
    /// `csrf_tokens` rows past their expiry.
    pub csrf_tokens: u64,
    /// `login_attempt_state` rows past `keep_until` with no lock in force.
    pub attempt_states: u64,
    /// `ip_blocks` entries whose block has ended.
    pub block_entries: u64,
}

impl CleanupReport {
    /// Rows deleted in all.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.revocations
            + self.login_attempts
            + self.csrf_tokens
            + self.attempt_states
            + self.block_entries
    }
}

/// Each statement deletes at most [`BATCH`] rows matching its condition
/// (`$1` is the cut-off) by primary key, a form both engines accept.
const REVOCATIONS: &str = "DELETE FROM revoked_tokens WHERE id IN \
     (SELECT id FROM revoked_tokens WHERE expires_at < $1 LIMIT $2)";
const LOGIN_ATTEMPTS: &str = "DELETE FROM login_attempts WHERE id IN \
     (SELECT id FROM login_attempts WHERE created_at < $1 LIMIT $2)";
const CSRF_TOKENS: &str = "DELETE FROM csrf_tokens WHERE token IN \
     (SELECT token FROM csrf_tokens WHERE expires_at < $1 LIMIT $2)";
const ATTEMPT_STATES: &str = "DELETE FROM login_attempt_state WHERE attempt_key IN \
     (SELECT attempt_key FROM login_attempt_state \
      WHERE keep_until IS NOT NULL AND keep_until <= $1 AND lock_until <= $1 LIMIT $2)";
const BLOCK_ENTRIES: &str = "DELETE FROM ip_blocks WHERE network IN \
     (SELECT network FROM ip_blocks \
      WHERE blocked_until IS NOT NULL AND blocked_until <= $1 LIMIT $2)";

fn before(now: SystemTime, age: Duration) -> i64 {
    let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    millis(now).saturating_sub(age)
}

/// Deletes in batches until a batch comes back short.
async fn drain(db: &Db, sql: &'static str, cutoff: i64) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let deleted = db
            .run(
                "could not clean up expired rows",
                db.execute(sql, &[Arg::Int(cutoff), Arg::Int(BATCH)]),
            )
            .await?;
        total += deleted;
        if deleted < BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}

pub(crate) async fn cleanup(db: &Db, now: SystemTime) -> Result<CleanupReport, StoreError> {
    let at = millis(now);
    Ok(CleanupReport {
        revocations: drain(db, REVOCATIONS, before(now, REVOCATION_RETENTION)).await?,
        login_attempts: drain(db, LOGIN_ATTEMPTS, before(now, LOGIN_HISTORY_RETENTION)).await?,
        csrf_tokens: drain(db, CSRF_TOKENS, at).await?,
        attempt_states: drain(db, ATTEMPT_STATES, at).await?,
        block_entries: drain(db, BLOCK_ENTRIES, at).await?,
    })
}

/// Shortest period [`spawn`] accepts.
const MIN_PERIOD: Duration = Duration::from_secs(1);

pub(crate) fn spawn(db: Db, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every.max(MIN_PERIOD));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match cleanup(&db, SystemTime::now()).await {
                Ok(report) => tracing::debug!(
                    target: "portcullis_sqlx::cleanup",
                    revocations = report.revocations,
                    login_attempts = report.login_attempts,
                    csrf_tokens = report.csrf_tokens,
                    attempt_states = report.attempt_states,
                    block_entries = report.block_entries,
                    "cleanup deleted expired rows"
                ),
                Err(error) => tracing::warn!(
                    target: "portcullis_sqlx::cleanup",
                    kind = error.kind().as_str(),
                    "cleanup failed; retrying at the next interval"
                ),
            }
        }
    })
}
