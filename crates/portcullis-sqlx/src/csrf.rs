//! [`CsrfTokenStore`] on the `csrf_tokens` table.

use std::fmt::Write as _;
use std::sync::Arc;

use portcullis_core::{
    CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore, MemoryCsrfTokenStore, SharedClock,
    StoreError, StoreErrorKind, SystemClock,
};

use crate::engine::{Arg, Db, limit, millis};

/// Records a token. A digest already issued for the same session keeps
/// the later expiry; one of another session is only replaced once it has
/// expired (`$4` is now), otherwise nothing is written.
const UPSERT: &str = "INSERT INTO csrf_tokens (token, user_id, expires_at, created_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (token) DO UPDATE SET \
     expires_at = CASE WHEN csrf_tokens.user_id = excluded.user_id \
         AND csrf_tokens.expires_at > excluded.expires_at \
         THEN csrf_tokens.expires_at ELSE excluded.expires_at END, \
     created_at = CASE WHEN csrf_tokens.user_id = excluded.user_id \
         THEN csrf_tokens.created_at ELSE excluded.created_at END, \
     user_id = excluded.user_id \
     WHERE csrf_tokens.user_id = excluded.user_id OR csrf_tokens.expires_at <= $4";

/// Keeps the session's newest `$2` tokens.
const PRUNE_SESSION: &str = "DELETE FROM csrf_tokens WHERE user_id = $1 AND token NOT IN \
     (SELECT token FROM csrf_tokens WHERE user_id = $1 \
      ORDER BY created_at DESC, token DESC LIMIT $2)";

const VALIDATE: &str =
    "SELECT token FROM csrf_tokens WHERE token = $1 AND user_id = $2 AND expires_at > $3";

const CONSUME: &str =
    "DELETE FROM csrf_tokens WHERE token = $1 AND user_id = $2 AND expires_at > $3";

const REVOKE_SESSION: &str = "DELETE FROM csrf_tokens WHERE user_id = $1";

const PURGE: &str = "DELETE FROM csrf_tokens WHERE expires_at <= $1";

/// A [`CsrfTokenStore`] in seed 003's `csrf_tokens` table.
///
/// `token` holds the lowercase hex SHA-256 digest of the token (never the
/// token), `user_id` the session it is bound to. `consume` is a single
/// `DELETE … WHERE` that only one of many concurrent callers can win. A
/// session keeps at most [`with_per_session_limit`](Self::with_per_session_limit)
/// tokens (default 16): issuing one more drops its oldest, so a client
/// asking for tokens in a loop cannot grow the table.
#[derive(Clone)]
pub struct SqlCsrfTokenStore {
    db: Db,
    clock: SharedClock,
    per_session: usize,
}

impl SqlCsrfTokenStore {
    pub(crate) fn new(db: Db) -> Self {
        Self {
            db,
            clock: Arc::new(SystemClock),
            per_session: MemoryCsrfTokenStore::DEFAULT_PER_SESSION,
        }
    }

    /// Keeps at most `limit` tokens per session (at least one).
    #[must_use]
    pub fn with_per_session_limit(mut self, limit: usize) -> Self {
        self.per_session = limit.max(1);
        self
    }

    /// Whether `digest` is a live token of `session`; removes it when
    /// `consume` (a single `DELETE`, so one concurrent caller wins).
    async fn live(
        &self,
        session: &str,
        digest: &CsrfTokenDigest,
        consume: bool,
    ) -> Result<bool, StoreError> {
        let token = hex(digest);
        let args = [
            Arg::Text(&token),
            Arg::Text(session),
            Arg::Int(millis(self.clock.now())),
        ];
        self.db
            .run("could not check the CSRF token", async {
                Ok(if consume {
                    self.db.execute(CONSUME, &args).await? > 0
                } else {
                    !self.db.read(VALIDATE, &args).await?.is_empty()
                })
            })
            .await
    }
}

store_handle!(SqlCsrfTokenStore, clock: "Judges expiry with `clock` instead of the system clock.");

fn hex(digest: &CsrfTokenDigest) -> String {
    let mut out = String::with_capacity(64);
    for byte in digest.as_bytes() {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

impl CsrfTokenStore for SqlCsrfTokenStore {
    async fn issue(&self, record: CsrfTokenRecord) -> Result<(), StoreError> {
        let now = millis(self.clock.now());
        let expires_at = millis(record.expires_at);
        if expires_at <= now {
            return Ok(());
        }
        let token = hex(&record.digest);
        let issued = self
            .db
            .run("could not record the CSRF token", async {
                let mut tx = self.db.begin().await?;
                let args = [
                    Arg::Text(&token),
                    Arg::Text(&record.session),
                    Arg::Int(expires_at),
                    Arg::Int(now),
                ];
                if tx.execute(UPSERT, &args).await? == 0 {
                    return Ok(false);
                }
                let prune = [
                    Arg::Text(&record.session),
                    Arg::Int(limit(self.per_session)),
                ];
                tx.execute(PRUNE_SESSION, &prune).await?;
                tx.commit().await?;
                Ok(true)
            })
            .await?;
        if issued {
            Ok(())
        } else {
            Err(StoreError::new(
                StoreErrorKind::Conflict,
                "CSRF token digest issued for another session",
            ))
        }
    }

    async fn validate(&self, session: &str, digest: &CsrfTokenDigest) -> Result<bool, StoreError> {
        self.live(session, digest, false).await
    }

    async fn consume(&self, session: &str, digest: &CsrfTokenDigest) -> Result<bool, StoreError> {
        self.live(session, digest, true).await
    }

    async fn revoke_session(&self, session: &str) -> Result<u64, StoreError> {
        self.db
            .run_execute(
                "could not revoke the session's CSRF tokens",
                REVOKE_SESSION,
                &[Arg::Text(session)],
            )
            .await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = millis(self.clock.now());
        self.db
            .run_execute(
                "could not purge expired CSRF tokens",
                PURGE,
                &[Arg::Int(now)],
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_stored_as_lowercase_hex() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x0f;
        let text = hex(&CsrfTokenDigest::from_bytes(bytes));
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("ab00"));
        assert!(text.ends_with("0f"));
    }
}
