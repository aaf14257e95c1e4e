//! [`RevocationStore`] on the `revoked_tokens` table.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::{RevocationStore, SharedClock, StoreError, SystemClock, TokenRef};

use crate::engine::{Arg, Db, millis};

/// `token_type` of a revoked token id.
const TOKEN: &str = "token";
/// `token_type` of a revoked refresh family.
const FAMILY: &str = "family";
/// `token_type` of a subject watermark (seed 003's "revoke all of a user").
const ALL: &str = "all";

/// Extends a live revocation; touches nothing when the id is not revoked.
const EXTEND_LIVE: &str = "UPDATE revoked_tokens \
     SET expires_at = CASE WHEN expires_at < $2 THEN $2 ELSE expires_at END \
     WHERE id = $1 AND expires_at > $3";

/// Inserts a revocation, or replaces one that has expired; returns a row
/// only when this statement did either.
const INSERT_IF_ABSENT: &str = "INSERT INTO revoked_tokens \
     (id, token_hash, user_id, token_type, revoked_by, expires_at, revoked_at) \
     VALUES ($1, $2, '', 'token', 'system', $3, $4) \
     ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, revoked_at = excluded.revoked_at \
     WHERE revoked_tokens.expires_at <= $4 \
     RETURNING id";

/// Revokes a family, keeping the later expiry.
const UPSERT_FAMILY: &str = "INSERT INTO revoked_tokens \
     (id, token_hash, user_id, token_type, revoked_by, expires_at, revoked_at) \
     VALUES ($1, $2, '', 'family', 'system', $3, $4) \
     ON CONFLICT (id) DO UPDATE SET expires_at = CASE \
         WHEN revoked_tokens.expires_at < excluded.expires_at THEN excluded.expires_at \
         ELSE revoked_tokens.expires_at END";

/// Sets a subject watermark; the watermark and the retention only move
/// forward.
const UPSERT_SUBJECT: &str = "INSERT INTO revoked_tokens \
     (id, token_hash, user_id, token_type, revoked_by, issued_before, expires_at, revoked_at) \
     VALUES ($1, '', $2, 'all', 'system', $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET \
     issued_before = CASE WHEN revoked_tokens.issued_before < excluded.issued_before \
         THEN excluded.issued_before ELSE revoked_tokens.issued_before END, \
     expires_at = CASE WHEN revoked_tokens.expires_at < excluded.expires_at \
         THEN excluded.expires_at ELSE revoked_tokens.expires_at END, \
     revoked_at = excluded.revoked_at";

/// The rows that could revoke a token: its id, its family, its subject.
const CANDIDATES: &str = "SELECT token_type, issued_before FROM revoked_tokens \
     WHERE id IN ($1, $2, $3)";

/// A [`RevocationStore`] in the `revoked_tokens` table.
///
/// Each revocation is one row keyed by `id` = `token:<jti>`,
/// `family:<family>` or `all:<subject>` (`token_type` says which;
/// `token_hash` holds the id or family, `user_id` the subject). Rows are
/// kept until the backend's `cleanup(now)` removes them 30
/// days after their `expires_at`.
///
/// [`revoke_token`](RevocationStore::revoke_token) is an atomic
/// insert-if-absent: of many concurrent calls for one id, exactly one
/// returns `true`. [`is_revoked`](RevocationStore::is_revoked) is one
/// primary-key lookup of at most three rows.
#[derive(Clone)]
pub struct SqlRevocationStore {
    db: Db,
    clock: SharedClock,
}

impl SqlRevocationStore {
    pub(crate) fn new(db: Db) -> Self {
        Self {
            db,
            clock: Arc::new(SystemClock),
        }
    }
}

store_handle!(SqlRevocationStore, clock: "Reads \"now\" from `clock` instead of the system clock.");

fn row_id(kind: &str, value: &str) -> String {
    format!("{kind}:{value}")
}

/// `iat` truncated to the second, as the memory store compares it: a token
/// issued within the watermark's second counts as revoked.
fn issued_second(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => millis(UNIX_EPOCH + Duration::from_secs(d.as_secs())),
        Err(_) => millis(t),
    }
}

impl RevocationStore for SqlRevocationStore {
    async fn revoke_token(
        &self,
        token_id: &str,
        expires_at: SystemTime,
    ) -> Result<bool, StoreError> {
        let id = row_id(TOKEN, token_id);
        let now = millis(self.clock.now());
        let exp = millis(expires_at);
        self.db
            .run("could not revoke the token", async {
                let extended = self
                    .db
                    .execute(EXTEND_LIVE, &[Arg::Text(&id), Arg::Int(exp), Arg::Int(now)])
                    .await?;
                if extended > 0 {
                    return Ok(false);
                }
                let rows = self
                    .db
                    .write(
                        INSERT_IF_ABSENT,
                        &[
                            Arg::Text(&id),
                            Arg::Text(token_id),
                            Arg::Int(exp),
                            Arg::Int(now),
                        ],
                    )
                    .await?;
                Ok(!rows.is_empty())
            })
            .await
    }

    async fn revoke_family(&self, family: &str, expires_at: SystemTime) -> Result<(), StoreError> {
        let id = row_id(FAMILY, family);
        let args = [
            Arg::Text(&id),
            Arg::Text(family),
            Arg::Int(millis(expires_at)),
            Arg::Int(millis(self.clock.now())),
        ];
        self.db
            .run_execute("could not revoke the token family", UPSERT_FAMILY, &args)
            .await?;
        Ok(())
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        retain_until: SystemTime,
    ) -> Result<(), StoreError> {
        let id = row_id(ALL, subject);
        let args = [
            Arg::Text(&id),
            Arg::Text(subject),
            Arg::Int(millis(issued_before)),
            Arg::Int(millis(retain_until)),
            Arg::Int(millis(self.clock.now())),
        ];
        self.db
            .run_execute(
                "could not revoke the subject's tokens",
                UPSERT_SUBJECT,
                &args,
            )
            .await?;
        Ok(())
    }

    async fn is_revoked(&self, token: &TokenRef<'_>) -> Result<bool, StoreError> {
        let id = token.token_id.map(|id| row_id(TOKEN, id));
        let family = token.family.map(|f| row_id(FAMILY, f));
        let subject = row_id(ALL, token.subject);
        let args = [
            Arg::OptText(id.as_deref()),
            Arg::OptText(family.as_deref()),
            Arg::Text(&subject),
        ];
        self.db
            .run("could not check the revocation list", async {
                for row in self.db.read(CANDIDATES, &args).await? {
                    let kind = row.text(0)?;
                    if kind != ALL {
                        return Ok(true);
                    }
                    let revoked = match (token.issued_at, row.opt_int(1)?) {
                        (Some(iat), Some(mark)) => issued_second(iat) <= mark,
                        // No issue time: it cannot be shown to be newer (a
                        // watermark row always has its mark).
                        _ => true,
                    };
                    if revoked {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .await
    }
}
