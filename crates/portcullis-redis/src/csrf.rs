//! [`CsrfTokenStore`] on Redis: one key per token digest and a per-session
//! index.

use std::fmt;
use std::sync::LazyLock;

use portcullis_core::{
    CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore, SharedClock, StoreError, StoreErrorKind,
};
use redis::Script;

use crate::backend::{RedisBackend, corrupt, millis, to_hex};

/// Adds a digest to a session's index (a sorted set scored by expiry),
/// drops members expired by ARGV[3], keeps at most ARGV[5] members and
/// returns the ones it dropped for that (oldest expiry first), and makes
/// the index live at least ARGV[4] ms.
static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not cur) or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
local limit = tonumber(ARGV[5])
local n = redis.call('ZCARD', KEYS[1])
local evicted = {}
if n > limit then
  local excess = n - limit
  local oldest = redis.call('ZRANGE', KEYS[1], 0, excess)
  for _, member in ipairs(oldest) do
    if #evicted < excess and member ~= ARGV[1] then
      redis.call('ZREM', KEYS[1], member)
      table.insert(evicted, member)
    end
  end
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return evicted
",
    )
});

/// Records a token: ARGV session, value (`expiry_ms:session`), expiry ms,
/// TTL ms. Returns 1 when recorded or extended, 0 when the digest belongs
/// to another session, -1 when the stored value is malformed.
static ISSUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local exp, sess = string.match(cur, '^(%d+):(.*)$')
  if not exp then return -1 end
  if sess ~= ARGV[1] then return 0 end
  if tonumber(exp) >= tonumber(ARGV[3]) then return 1 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
return 1
",
    )
});

/// Deletes a token if it belongs to session ARGV[1] and, unless ARGV[2] is
/// empty, has not expired by ARGV[2]. Returns 1 when deleted.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local exp, sess = string.match(cur, '^(%d+):(.*)$')
if not exp then return -1 end
if sess ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and tonumber(exp) <= tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
    )
});

/// Deletes a token whose expiry is at or before ARGV[1]. Returns 1 when
/// deleted.
static PURGE_ONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local exp = tonumber(string.match(cur, '^(%d+):'))
if exp and exp <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
",
    )
});

/// Index members read per step of `revoke_session`.
const INDEX_BATCH: isize = 1000;
/// Steps of `revoke_session` before it stops (bounded work per call).
const MAX_INDEX_BATCHES: usize = 100;

/// Synchronizer CSRF tokens in Redis.
///
/// Keys (see the [crate docs](crate)):
///
/// - `prefix:ct:{<hex digest>}`: `<expiry ms>:<session>`, with a TTL of the
///   remaining life. Keyed by digest, so a digest already issued for
///   another session is refused with [`StoreErrorKind::Conflict`].
/// - `prefix:cs:{<session>}` (escaped): a sorted set of the session's
///   digests scored by expiry, living at least as long as its newest token.
///
/// Atomicity: [`issue`](CsrfTokenStore::issue), [`consume`](CsrfTokenStore::consume)
/// and every deletion are single-key scripts; `consume` compares the
/// session and deletes in one step, so exactly one concurrent caller wins.
/// `validate`, `consume` and `purge_expired` judge expiry with the store's
/// clock, so a key Redis still holds never validates after its expiry.
///
/// The index and a token live in different hash slots, so they are kept
/// consistent by ordering rather than a transaction: `issue` adds the
/// digest to the index *before* storing the token, so every stored token
/// is in its session's index; deletions always check the token's session
/// first, so a stale index member (a consumed, expired or foreign digest)
/// never deletes anything it should not. `consume` removes its member
/// afterwards (best effort); stale members are also dropped when they
/// expire. A token issued concurrently with `revoke_session` for the same
/// session may survive it.
///
/// Each session keeps at most [`per_session`](Self::with_per_session_limit)
/// tokens (default 16, as the memory store): issuing one more drops the
/// session's token that expires first.
#[derive(Clone)]
pub struct RedisCsrfTokenStore {
    backend: RedisBackend,
    clock: SharedClock,
    per_session: usize,
}

impl fmt::Debug for RedisCsrfTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCsrfTokenStore")
            .field("backend", &self.backend)
            .field("per_session", &self.per_session)
            .finish_non_exhaustive()
    }
}

impl RedisCsrfTokenStore {
    /// Default most tokens one session may hold at once.
    pub const DEFAULT_PER_SESSION: usize = 16;

    pub(crate) fn new(backend: RedisBackend, clock: SharedClock) -> Self {
        Self {
            backend,
            clock,
            per_session: Self::DEFAULT_PER_SESSION,
        }
    }

    /// Judges "now" with `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps at most `limit` (at least 1) tokens per session.
    #[must_use]
    pub fn with_per_session_limit(mut self, limit: usize) -> Self {
        self.per_session = limit.max(1);
        self
    }

    fn token_key_hex(&self, hex: &str) -> String {
        self.backend.tagged_key("ct", hex)
    }

    fn token_key(&self, digest: &CsrfTokenDigest) -> String {
        self.token_key_hex(&to_hex(digest.as_bytes()))
    }

    fn index_key(&self, session: &str) -> String {
        self.backend.tagged_key("cs", session)
    }

    /// Deletes the token `hex` if it is `session`'s (and live at `now`,
    /// when given).
    async fn take(&self, session: &str, hex: &str, now: Option<u64>) -> Result<bool, StoreError> {
        let now = now.map(|n| n.to_string()).unwrap_or_default();
        let taken: i64 = self
            .backend
            .invoke(TAKE.key(self.token_key_hex(hex)).arg(session).arg(now))
            .await?;
        if taken < 0 {
            return Err(corrupt("CSRF token entry is malformed"));
        }
        Ok(taken == 1)
    }

    async fn forget(&self, session: &str, members: &[String]) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .backend
            .query(redis::cmd("ZREM").arg(self.index_key(session)).arg(members))
            .await?;
        Ok(())
    }
}

fn parse(value: &str) -> Result<(u64, &str), StoreError> {
    let (exp, session) = value
        .split_once(':')
        .ok_or_else(|| corrupt("CSRF token entry is malformed"))?;
    let exp = exp
        .parse()
        .map_err(|_| corrupt("CSRF token entry is malformed"))?;
    Ok((exp, session))
}

impl CsrfTokenStore for RedisCsrfTokenStore {
    async fn issue(&self, record: CsrfTokenRecord) -> Result<(), StoreError> {
        let now = millis(self.clock.now());
        let expires = millis(record.expires_at);
        if expires <= now {
            return Ok(());
        }
        let ttl = expires - now;
        let hex = to_hex(record.digest.as_bytes());
        let session = record.session.as_str();
        // Index first: every stored token is in its session's index.
        let evicted: Vec<String> = self
            .backend
            .invoke(
                INDEX_ADD
                    .key(self.index_key(session))
                    .arg(&hex)
                    .arg(expires)
                    .arg(now)
                    .arg(ttl)
                    .arg(self.per_session),
            )
            .await?;
        let outcome: i64 = self
            .backend
            .invoke(
                ISSUE
                    .key(self.token_key_hex(&hex))
                    .arg(session)
                    .arg(format!("{expires}:{session}"))
                    .arg(expires)
                    .arg(ttl),
            )
            .await?;
        for old in &evicted {
            self.take(session, old, None).await?;
        }
        match outcome {
            1 => Ok(()),
            0 => {
                self.forget(session, std::slice::from_ref(&hex)).await?;
                Err(StoreError::new(
                    StoreErrorKind::Conflict,
                    "CSRF token digest issued for another session",
                ))
            }
            _ => Err(corrupt("CSRF token entry is malformed")),
        }
    }

    async fn validate(&self, session: &str, digest: &CsrfTokenDigest) -> Result<bool, StoreError> {
        let now = millis(self.clock.now());
        let value: Option<String> = self
            .backend
            .query(redis::cmd("GET").arg(self.token_key(digest)))
            .await?;
        let Some(value) = value else {
            return Ok(false);
        };
        let (exp, owner) = parse(&value)?;
        Ok(owner == session && exp > now)
    }

    async fn consume(&self, session: &str, digest: &CsrfTokenDigest) -> Result<bool, StoreError> {
        let now = millis(self.clock.now());
        let hex = to_hex(digest.as_bytes());
        let taken = self.take(session, &hex, Some(now)).await?;
        if taken {
            // Tidying only: a stale member is harmless and expires anyway.
            if let Err(error) = self.forget(session, std::slice::from_ref(&hex)).await {
                tracing::debug!(
                    target: "portcullis_redis::csrf",
                    kind = error.kind().as_str(),
                    "could not drop a consumed token from its session index"
                );
            }
        }
        Ok(taken)
    }

    async fn revoke_session(&self, session: &str) -> Result<u64, StoreError> {
        let index = self.index_key(session);
        let mut dropped = 0;
        for _ in 0..MAX_INDEX_BATCHES {
            let members: Vec<String> = self
                .backend
                .query(redis::cmd("ZRANGE").arg(&index).arg(0).arg(INDEX_BATCH - 1))
                .await?;
            for hex in &members {
                if self.take(session, hex, None).await? {
                    dropped += 1;
                }
            }
            self.forget(session, &members).await?;
            if members.len() < usize::try_from(INDEX_BATCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        Ok(dropped)
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = millis(self.clock.now());
        let pattern = format!("{}:ct:{{*", self.backend.prefix());
        let mut purged = 0;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .backend
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500),
                )
                .await?;
            for key in &keys {
                let n: u64 = self.backend.invoke(PURGE_ONE.key(key).arg(now)).await?;
                purged += n;
            }
            if next == 0 {
                return Ok(purged);
            }
            cursor = next;
        }
    }
}
