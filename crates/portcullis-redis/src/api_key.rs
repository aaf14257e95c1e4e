//! [`ApiKeyStore`] on Redis: a hash per key and a sorted-set index, under
//! one hash tag.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;
use std::time::SystemTime;

use portcullis_core::{
    API_KEY_DIGEST_LEN, ApiKeyDigest, ApiKeyFilter, ApiKeyInfo, ApiKeyRecord, ApiKeyStore,
    SharedClock, StoreError, StoreErrorKind,
};
use redis::Script;

use crate::backend::{
    RedisBackend, corrupt, escape_into, from_hex_str, millis, time_of_millis, to_hex,
};

/// Creates a record unless one exists: KEYS record, index; ARGV id,
/// created ms, then field/value pairs. Returns 1 when created.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
",
    )
});

/// Moves time field ARGV[1] of an existing record to ARGV[2] if that is
/// earlier (ARGV[3] = `min`) or later (`max`) than the stored one, or if
/// none is stored. Returns the record, or nil when there is none.
static MOVE_TIME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local at = tonumber(ARGV[2])
local move = (cur == nil)
if ARGV[3] == 'min' then move = move or at < cur else move = move or at > cur end
if move then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return redis.call('HGETALL', KEYS[1])
",
    )
});

/// Index entries read per step of `list`.
const LIST_BATCH: isize = 200;

/// API keys in Redis.
///
/// Keys, all under the hash tag `{k}` so that `create` is one script on
/// one slot:
///
/// - `prefix:ak:{k}:r:<key id>` (escaped): a hash with fields `owner`,
///   `name`, `scopes` (a JSON array), `digest` (hex), `created`, and when
///   set `expires`, `revoked`, `used` (milliseconds since the epoch);
/// - `prefix:ak:{k}:idx`: a sorted set of key ids scored by `created`,
///   which orders [`list`](ApiKeyStore::list) by creation time, then id.
///
/// [`create`](ApiKeyStore::create) refuses an existing id with
/// [`StoreErrorKind::Conflict`] atomically; [`revoke`](ApiKeyStore::revoke)
/// and [`expire`](ApiKeyStore::expire) only move a time earlier and
/// [`touch`](ApiKeyStore::touch) only later, each in one script. `list`
/// walks the index in batches of 200 and stops at the filter's limit;
/// "active" is judged with the store's clock. Records carry no TTL: keys
/// stay until deleted by an operator.
#[derive(Clone)]
pub struct RedisApiKeyStore {
    backend: RedisBackend,
    clock: SharedClock,
}

impl fmt::Debug for RedisApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisApiKeyStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl RedisApiKeyStore {
    pub(crate) fn new(backend: RedisBackend, clock: SharedClock) -> Self {
        Self { backend, clock }
    }

    /// Judges "active" in `list` with `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn record_key(&self, key_id: &str) -> String {
        let mut key = self.backend.plain_key("ak:{k}:r:");
        escape_into(key_id, &mut key);
        key
    }

    fn index_key(&self) -> String {
        self.backend.plain_key("ak:{k}:idx")
    }

    async fn move_time(
        &self,
        key_id: &str,
        field: &str,
        at: SystemTime,
        direction: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let fields: Option<HashMap<String, String>> = self
            .backend
            .invoke(
                MOVE_TIME
                    .key(self.record_key(key_id))
                    .arg(field)
                    .arg(millis(at))
                    .arg(direction),
            )
            .await?;
        fields.map(|f| decode(key_id, &f)).transpose()
    }
}

fn bad() -> StoreError {
    corrupt("API key record is malformed")
}

fn time_field(
    fields: &HashMap<String, String>,
    name: &str,
) -> Result<Option<SystemTime>, StoreError> {
    fields
        .get(name)
        .map(|v| v.parse().map(time_of_millis).map_err(|_| bad()))
        .transpose()
}

fn decode(key_id: &str, fields: &HashMap<String, String>) -> Result<ApiKeyRecord, StoreError> {
    let text = |name: &str| fields.get(name).ok_or_else(bad);
    let scopes: Vec<String> = serde_json::from_str(text("scopes")?).map_err(|_| bad())?;
    let digest = from_hex_str(text("digest")?)
        .filter(|d| d.len() == API_KEY_DIGEST_LEN)
        .and_then(|d| ApiKeyDigest::from_slice(&d))
        .ok_or_else(bad)?;
    let created = time_field(fields, "created")?.ok_or_else(bad)?;
    let mut info = ApiKeyInfo::new(
        key_id,
        text("owner")?.as_str(),
        text("name")?.as_str(),
        created,
    )
    .with_scopes(scopes);
    info.expires_at = time_field(fields, "expires")?;
    info.revoked_at = time_field(fields, "revoked")?;
    info.last_used_at = time_field(fields, "used")?;
    Ok(ApiKeyRecord::new(info, digest))
}

fn encode(record: &ApiKeyRecord) -> Vec<(&'static str, String)> {
    let info = &record.info;
    let mut fields = vec![
        ("owner", info.owner.clone()),
        ("name", info.name.clone()),
        (
            "scopes",
            serde_json::Value::from(info.scopes.clone()).to_string(),
        ),
        ("digest", to_hex(record.digest.as_bytes())),
        ("created", millis(info.created_at).to_string()),
    ];
    let mut optional = |name, at: Option<SystemTime>| {
        if let Some(at) = at {
            fields.push((name, millis(at).to_string()));
        }
    };
    optional("expires", info.expires_at);
    optional("revoked", info.revoked_at);
    optional("used", info.last_used_at);
    fields
}

impl ApiKeyStore for RedisApiKeyStore {
    async fn lookup(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let fields: HashMap<String, String> = self
            .backend
            .query(redis::cmd("HGETALL").arg(self.record_key(key_id)))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        decode(key_id, &fields).map(Some)
    }

    async fn create(&self, record: ApiKeyRecord) -> Result<(), StoreError> {
        let mut invocation = CREATE.key(self.record_key(&record.info.key_id));
        invocation
            .key(self.index_key())
            .arg(&record.info.key_id)
            .arg(millis(record.info.created_at));
        for (name, value) in encode(&record) {
            invocation.arg(name).arg(value);
        }
        let created: i64 = self.backend.invoke(&invocation).await?;
        if created == 1 {
            Ok(())
        } else {
            Err(StoreError::new(
                StoreErrorKind::Conflict,
                "an API key with this id exists",
            ))
        }
    }

    async fn revoke(&self, key_id: &str, at: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        Ok(self
            .move_time(key_id, "revoked", at, "min")
            .await?
            .map(|r| r.info))
    }

    async fn expire(&self, key_id: &str, at: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        Ok(self
            .move_time(key_id, "expires", at, "min")
            .await?
            .map(|r| r.info))
    }

    async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let now = self.clock.now();
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        let mut start: isize = 0;
        while out.len() < limit {
            let ids: Vec<String> = self
                .backend
                .query(
                    redis::cmd("ZRANGE")
                        .arg(self.index_key())
                        .arg(start)
                        .arg(start + LIST_BATCH - 1),
                )
                .await?;
            if ids.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HGETALL").arg(self.record_key(id));
            }
            let records: Vec<HashMap<String, String>> = self.backend.query_pipe(&pipe).await?;
            for (id, fields) in ids.iter().zip(records) {
                if fields.is_empty() {
                    // Deleted by hand since it was indexed.
                    continue;
                }
                let info = decode(id, &fields)?.info;
                let matches = filter.owner.as_deref().is_none_or(|o| o == info.owner)
                    && (filter.include_inactive || info.is_active_at(now));
                if matches && out.len() < limit {
                    out.push(info);
                }
            }
            if ids.len() < usize::try_from(LIST_BATCH).unwrap_or(usize::MAX) {
                break;
            }
            start += LIST_BATCH;
        }
        Ok(out)
    }

    async fn touch(&self, key_id: &str, at: SystemTime) -> Result<(), StoreError> {
        self.move_time(key_id, "used", at, "max").await?;
        Ok(())
    }
}
