//! [`RevocationStore`] on Redis: one key per revoked token, family and
//! subject, each with a TTL of the remaining life.

use std::fmt;
use std::sync::LazyLock;
use std::time::SystemTime;

use portcullis_core::{RevocationStore, SharedClock, StoreError, TokenRef};
use redis::Script;

use crate::backend::{RedisBackend, corrupt, millis};

/// Test-and-set of a token id. Returns 1 when this call revoked it.
///
/// A key whose stored expiry has passed by `now` counts as absent (its TTL
/// is real time, `now` is the store's clock). An already revoked token
/// keeps the later expiry.
static REVOKE_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local exp = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur then
  local cur_exp = tonumber(cur)
  if cur_exp and cur_exp > now then
    if exp > cur_exp then
      redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    end
    return 0
  end
end
if ttl <= 0 then
  if cur then return 0 end
  return 1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// Revokes a family, keeping the later expiry.
static REVOKE_FAMILY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local exp = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
if ttl <= 0 then return 0 end
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur >= exp then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// Moves a subject's watermark and retention forward only. Value
/// `mark_ms:until_ms`. Returns -1 when the stored value is malformed.
static REVOKE_SUBJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local mark = tonumber(ARGV[1])
local untl = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cur = redis.call('GET', KEYS[1])
if cur then
  local m, u = string.match(cur, '^(%d+):(%d+)$')
  if not m then return -1 end
  mark = math.max(mark, tonumber(m))
  untl = math.max(untl, tonumber(u))
end
local ttl = untl - now
if ttl <= 0 then
  if cur then redis.call('DEL', KEYS[1]) end
  return 0
end
redis.call('SET', KEYS[1], string.format('%d:%d', mark, untl), 'PX', string.format('%d', ttl))
return 1
",
    )
});

/// Revocations in Redis.
///
/// Keys (see the [crate docs](crate)): `prefix:rt:{id}`, `prefix:rf:{family}`
/// and `prefix:rs:{subject}`, each holding the expiry in milliseconds (and
/// the watermark for subjects), with a Redis TTL of the remaining life.
/// Writes are single-key Lua scripts; [`is_revoked`](RevocationStore::is_revoked)
/// reads up to three keys in one pipeline (a read needs no cross-key
/// atomicity). Entries are judged against the store's clock as well, so an
/// entry past its expiry never counts even before Redis drops it.
#[derive(Clone)]
pub struct RedisRevocationStore {
    backend: RedisBackend,
    clock: SharedClock,
}

impl fmt::Debug for RedisRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocationStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Milliseconds from `now` to `at`, negative when `at` has passed.
fn remaining_ms(at: SystemTime, now: SystemTime) -> i64 {
    let at = i64::try_from(millis(at)).unwrap_or(i64::MAX);
    let now = i64::try_from(millis(now)).unwrap_or(i64::MAX);
    at.saturating_sub(now)
}

impl RedisRevocationStore {
    pub(crate) fn new(backend: RedisBackend, clock: SharedClock) -> Self {
        Self { backend, clock }
    }

    /// Judges "now" with `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    fn token_key(&self, id: &str) -> String {
        self.backend.tagged_key("rt", id)
    }

    fn family_key(&self, family: &str) -> String {
        self.backend.tagged_key("rf", family)
    }

    fn subject_key(&self, subject: &str) -> String {
        self.backend.tagged_key("rs", subject)
    }
}

fn parse_ms(value: &str) -> Result<u64, StoreError> {
    value
        .parse()
        .map_err(|_| corrupt("revocation entry is malformed"))
}

impl RevocationStore for RedisRevocationStore {
    async fn revoke_token(
        &self,
        token_id: &str,
        expires_at: SystemTime,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let won: i64 = self
            .backend
            .invoke(
                REVOKE_TOKEN
                    .key(self.token_key(token_id))
                    .arg(millis(expires_at))
                    .arg(remaining_ms(expires_at, now))
                    .arg(millis(now)),
            )
            .await?;
        Ok(won == 1)
    }

    async fn revoke_family(&self, family: &str, expires_at: SystemTime) -> Result<(), StoreError> {
        let now = self.clock.now();
        let _: i64 = self
            .backend
            .invoke(
                REVOKE_FAMILY
                    .key(self.family_key(family))
                    .arg(millis(expires_at))
                    .arg(remaining_ms(expires_at, now)),
            )
            .await?;
        Ok(())
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        retain_until: SystemTime,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let result: i64 = self
            .backend
            .invoke(
                REVOKE_SUBJECT
                    .key(self.subject_key(subject))
                    .arg(millis(issued_before))
                    .arg(millis(retain_until))
                    .arg(millis(now)),
            )
            .await?;
        if result < 0 {
            return Err(corrupt("subject revocation entry is malformed"));
        }
        Ok(())
    }

    async fn is_revoked(&self, token: &TokenRef<'_>) -> Result<bool, StoreError> {
        let now = millis(self.clock.now());
        let mut pipe = redis::pipe();
        pipe.get(self.subject_key(token.subject));
        if let Some(id) = token.token_id {
            pipe.get(self.token_key(id));
        }
        if let Some(family) = token.family {
            pipe.get(self.family_key(family));
        }
        let values: Vec<Option<String>> = self.backend.query_pipe(&pipe).await?;
        let mut values = values.into_iter();
        let subject = values.next().flatten();
        // Token and family entries: revoked while their expiry is ahead.
        for value in values.flatten() {
            if parse_ms(&value)? > now {
                return Ok(true);
            }
        }
        let Some(subject) = subject else {
            return Ok(false);
        };
        let (mark, until) = subject
            .split_once(':')
            .ok_or_else(|| corrupt("subject revocation entry is malformed"))?;
        let (mark, until) = (parse_ms(mark)?, parse_ms(until)?);
        if until <= now {
            return Ok(false);
        }
        Ok(match token.issued_at {
            // No issue time: it cannot be shown to be newer.
            None => true,
            // Second resolution on `iat`, as the memory store.
            Some(iat) => {
                let iat_secs = millis(iat) / 1000;
                iat_secs.saturating_mul(1000) <= mark
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn remaining_is_signed() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(remaining_ms(now + Duration::from_millis(1500), now), 1500);
        assert_eq!(remaining_ms(now - Duration::from_secs(1), now), -1000);
    }
}
