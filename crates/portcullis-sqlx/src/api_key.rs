//! [`ApiKeyStore`] on the `api_keys` table.

use std::sync::Arc;
use std::time::SystemTime;

use portcullis_core::{
    ApiKeyDigest, ApiKeyFilter, ApiKeyInfo, ApiKeyRecord, ApiKeyStore, SharedClock, StoreError,
    StoreErrorKind, SystemClock,
};

use crate::engine::{Arg, Db, Row, limit, millis, time};
use crate::error::{Result, corrupt};

const LOOKUP: &str = "SELECT key_id, owner, name, scopes, created_at, expires_at, revoked_at, \
     last_used_at, digest FROM api_keys WHERE key_id = $1";

const CREATE: &str = "INSERT INTO api_keys \
     (key_id, owner, name, scopes, created_at, expires_at, revoked_at, last_used_at, digest) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (key_id) DO NOTHING";

const REVOKE: &str = "UPDATE api_keys \
     SET revoked_at = CASE WHEN revoked_at IS NULL OR revoked_at > $2 THEN $2 ELSE revoked_at END \
     WHERE key_id = $1 \
     RETURNING key_id, owner, name, scopes, created_at, expires_at, revoked_at, last_used_at";

const EXPIRE: &str = "UPDATE api_keys \
     SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > $2 THEN $2 ELSE expires_at END \
     WHERE key_id = $1 \
     RETURNING key_id, owner, name, scopes, created_at, expires_at, revoked_at, last_used_at";

const TOUCH: &str = "UPDATE api_keys \
     SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $2 THEN $2 \
         ELSE last_used_at END \
     WHERE key_id = $1";

/// `$1`: include inactive keys; `$2`: now; `$3`: limit.
const LIST: &str = "SELECT key_id, owner, name, scopes, created_at, expires_at, revoked_at, \
     last_used_at FROM api_keys \
     WHERE ($1 OR ((revoked_at IS NULL OR revoked_at > $2) AND (expires_at IS NULL OR expires_at > $2))) \
     ORDER BY created_at, key_id LIMIT $3";

/// Like [`LIST`], for one owner (`$4`), on the owner index.
const LIST_OWNER: &str = "SELECT key_id, owner, name, scopes, created_at, expires_at, revoked_at, \
     last_used_at FROM api_keys \
     WHERE owner = $4 \
     AND ($1 OR ((revoked_at IS NULL OR revoked_at > $2) AND (expires_at IS NULL OR expires_at > $2))) \
     ORDER BY created_at, key_id LIMIT $3";

/// An [`ApiKeyStore`] in the `api_keys` table.
///
/// Rows hold the key's 32-byte digest, never the key; scopes are a JSON
/// array. `create` is `INSERT … ON CONFLICT DO NOTHING` (a taken id is
/// [`StoreErrorKind::Conflict`] and changes nothing); `revoke`, `expire`
/// and `touch` are single `UPDATE`s that only move times the allowed way;
/// `list` uses the `(created_at, key_id)` or `(owner, created_at, key_id)`
/// index and judges "active" by the store's clock.
#[derive(Clone)]
pub struct SqlApiKeyStore {
    db: Db,
    clock: SharedClock,
}

impl SqlApiKeyStore {
    pub(crate) fn new(db: Db) -> Self {
        Self {
            db,
            clock: Arc::new(SystemClock),
        }
    }

    /// `UPDATE … RETURNING` the info of `key_id`, with `at` as `$2`.
    async fn update(
        &self,
        message: &'static str,
        sql: &'static str,
        key_id: &str,
        at: SystemTime,
    ) -> Result<Option<ApiKeyInfo>, StoreError> {
        let args = [Arg::Text(key_id), Arg::Int(millis(at))];
        self.db
            .run(message, async {
                let rows = self.db.write(sql, &args).await?;
                rows.first().map(info).transpose()
            })
            .await
    }
}

store_handle!(SqlApiKeyStore, clock: "Judges \"active\" in `list` with `clock` instead of the system clock.");

fn opt_millis(t: Option<SystemTime>) -> Arg<'static> {
    Arg::OptInt(t.map(millis))
}

/// Reads the info columns, in the order every statement here selects them:
/// `key_id, owner, name, scopes, created_at, expires_at, revoked_at,
/// last_used_at`.
fn info(row: &Row) -> Result<ApiKeyInfo> {
    let scopes: Vec<String> = serde_json::from_str(&row.text(3)?)
        .map_err(|_| corrupt("stored API key scopes are not a JSON array of strings"))?;
    let mut info = ApiKeyInfo::new(row.text(0)?, row.text(1)?, row.text(2)?, time(row.int(4)?))
        .with_scopes(scopes);
    info.expires_at = row.opt_int(5)?.map(time);
    info.revoked_at = row.opt_int(6)?.map(time);
    info.last_used_at = row.opt_int(7)?.map(time);
    Ok(info)
}

impl ApiKeyStore for SqlApiKeyStore {
    async fn lookup(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.db
            .run("could not look up the API key", async {
                let rows = self.db.read(LOOKUP, &[Arg::Text(key_id)]).await?;
                let Some(row) = rows.first() else {
                    return Ok(None);
                };
                let digest = ApiKeyDigest::from_slice(&row.bytes(8)?)
                    .ok_or_else(|| corrupt("stored API key digest has the wrong length"))?;
                Ok(Some(ApiKeyRecord::new(info(row)?, digest)))
            })
            .await
    }

    async fn create(&self, record: ApiKeyRecord) -> Result<(), StoreError> {
        let info = &record.info;
        // Serialising a list of strings cannot fail.
        let scopes = serde_json::to_string(&info.scopes).unwrap_or_else(|_| "[]".to_owned());
        let args = [
            Arg::Text(&info.key_id),
            Arg::Text(&info.owner),
            Arg::Text(&info.name),
            Arg::Text(&scopes),
            Arg::Int(millis(info.created_at)),
            opt_millis(info.expires_at),
            opt_millis(info.revoked_at),
            opt_millis(info.last_used_at),
            Arg::Bytes(record.digest.as_bytes()),
        ];
        let inserted = self
            .db
            .run(
                "could not create the API key",
                self.db.execute(CREATE, &args),
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::new(
                StoreErrorKind::Conflict,
                "an API key with this id exists",
            ));
        }
        Ok(())
    }

    async fn revoke(&self, key_id: &str, at: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        self.update("could not revoke the API key", REVOKE, key_id, at)
            .await
    }

    async fn expire(&self, key_id: &str, at: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        self.update("could not expire the API key", EXPIRE, key_id, at)
            .await
    }

    async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let mut args = vec![
            Arg::Bool(filter.include_inactive),
            Arg::Int(millis(self.clock.now())),
            Arg::Int(filter.limit.map_or(i64::MAX, limit)),
        ];
        let sql = match &filter.owner {
            Some(owner) => {
                args.push(Arg::Text(owner));
                LIST_OWNER
            }
            None => LIST,
        };
        self.db
            .run("could not list API keys", async {
                self.db.read(sql, &args).await?.iter().map(info).collect()
            })
            .await
    }

    async fn touch(&self, key_id: &str, at: SystemTime) -> Result<(), StoreError> {
        let args = [Arg::Text(key_id), Arg::Int(millis(at))];
        self.db
            .run_execute("could not record the API key's use", TOUCH, &args)
            .await?;
        Ok(())
    }
}
