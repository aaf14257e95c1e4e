//! [`AttemptStore`] on Redis: the shared [`AttemptState`] machine applied
//! with a compare-and-set script on its encoded text.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use portcullis_core::attempt::{pair_involves, sort_hottest, sort_locked, sort_pairs};
use portcullis_core::{
    Admission, AttemptKey, AttemptKeyKind, AttemptPolicy, AttemptState, AttemptStatus,
    AttemptStore, FailureRecord, Lock, LockedKey, ResetScope, StoreError, StoreErrorKind,
};
use redis::{Script, Value};

use crate::backend::{RedisBackend, corrupt, millis, unescape};

/// Compare-and-set on one key.
///
/// ARGV: `expected` (`0` absent, `1` present), expected text, `op` (`set`,
/// `del`, or `none` to only compare), new text, TTL in ms (`0`: no TTL).
/// Returns `{1}` when applied, `{0}` when the key is absent now,
/// `{0, current}` when it holds another value.
static COMPARE_AND_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
local matches
if ARGV[1] == '0' then matches = (cur == false) else matches = (cur == ARGV[2]) end
if not matches then
  if cur then return {0, cur} end
  return {0}
end
if ARGV[3] == 'none' then
  return {1}
elseif ARGV[3] == 'del' then
  redis.call('DEL', KEYS[1])
else
  local ttl = tonumber(ARGV[5])
  if ttl > 0 then
    redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
  else
    redis.call('SET', KEYS[1], ARGV[4])
  end
end
return {1}
",
    )
});

/// How many times a contended update is retried before giving up with
/// [`StoreErrorKind::Conflict`].
pub const MAX_CAS_ATTEMPTS: usize = 100;

/// Keys fetched per `SCAN` step of [`locked`](AttemptStore::locked) and
/// [`hottest`](AttemptStore::hottest).
const SCAN_COUNT: usize = 500;

/// Failed-attempt counters in Redis.
///
/// One string key per [`AttemptKey`]:
/// `prefix:at:<kind>:{<storage key>}` (kind `a`, `i` or `p`; the storage
/// key escaped) holding [`AttemptState::encode`]'s text, with a TTL until
/// [`AttemptState::keep_until`] (none while locked until unlocked).
///
/// Every write loads the state, applies the [`AttemptState`] method in Rust
/// and stores the result with a compare-and-set script that succeeds only
/// if the key still holds what was loaded; otherwise it retries from the
/// current value (after a short random back-off from the second retry
/// on), at most [`MAX_CAS_ATTEMPTS`] times ([`StoreErrorKind::Conflict`]
/// after that). So the lockout rules exist once, in `portcullis-core`, and
/// every update is atomic per key. Within one process, updates of one key
/// also take a striped async lock, so concurrent requests of one instance
/// queue instead of invalidating each other's compare-and-set: retries
/// only happen between instances. Under that lock the process remembers
/// the value it last wrote for the key (16 384 keys per backend at most)
/// and uses it instead of a `GET`; the compare-and-set checks it, so an
/// update is usually one round trip and a stale memory (another instance
/// wrote, or the TTL ran out) costs one retry, never a wrong answer.
///
/// [`locked`](AttemptStore::locked), [`hottest`](AttemptStore::hottest)
/// and [`pairs_of`](AttemptStore::pairs_of) are operator listings: they
/// `SCAN` every attempt key of the kind, which is O(keys) and covers a
/// single node only (on a cluster, run them per node).
#[derive(Clone)]
pub struct RedisAttemptStore {
    backend: RedisBackend,
}

impl fmt::Debug for RedisAttemptStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAttemptStore")
            .field("backend", &self.backend)
            .finish()
    }
}

fn kind_code(kind: AttemptKeyKind) -> &'static str {
    match kind {
        AttemptKeyKind::Account => "a",
        AttemptKeyKind::Ip => "i",
        AttemptKeyKind::AccountIp => "p",
    }
}

/// What an update does to the stored state.
enum Write {
    Keep,
    Set(String, u64),
    Delete,
}

impl RedisAttemptStore {
    pub(crate) fn new(backend: RedisBackend) -> Self {
        Self { backend }
    }

    fn key(&self, key: &AttemptKey) -> String {
        let kind = kind_code(key.kind());
        self.backend
            .tagged_key(&format!("at:{kind}"), &key.storage_key())
    }

    fn parse_key(&self, redis_key: &str, kind: AttemptKeyKind) -> Option<AttemptKey> {
        let head = format!("{}:at:{}:{{", self.backend.prefix(), kind_code(kind));
        let escaped = redis_key.strip_prefix(&head)?.strip_suffix('}')?;
        let key = AttemptKey::from_storage_key(&unescape(escaped)?)?;
        (key.kind() == kind).then_some(key)
    }

    async fn load(&self, key: &str) -> Result<Option<(String, AttemptState)>, StoreError> {
        let text: Option<String> = self.backend.query(redis::cmd("GET").arg(key)).await?;
        text.map(|t| {
            let state = AttemptState::decode(&t)?;
            Ok((t, state))
        })
        .transpose()
    }

    /// Loads the state of `key` (blank when absent), applies `op`, and
    /// stores the result atomically, retrying under contention. When the
    /// key is absent and `create` is false, `op` is not applied and `None`
    /// is returned.
    ///
    /// The value this process last saw for the key, when remembered,
    /// stands in for the `GET`: the compare-and-set verifies it (and an
    /// unchanged state is verified with a compare-only call), so a stale
    /// memory costs one retry, never a wrong answer. In the common case an
    /// update is one round trip.
    async fn update<R>(
        &self,
        key: &AttemptKey,
        now: SystemTime,
        create: bool,
        mut op: impl FnMut(&mut AttemptState) -> R,
    ) -> Result<Option<R>, StoreError> {
        let redis_key = self.key(key);
        self.backend
            .run(async {
                let mut slot = self.backend.key_slot(&redis_key).lock().await;
                let remembered = match slot.get(&redis_key) {
                    Some(Some(text)) => AttemptState::decode(text)
                        .ok()
                        .map(|state| Some((text.clone(), state))),
                    // "Absent" is only worth trusting where the
                    // compare-and-set will check it: when creating.
                    Some(None) if create => Some(None),
                    _ => None,
                };
                let (mut current, mut verified) = match remembered {
                    Some(current) => (current, false),
                    None => (self.load(&redis_key).await?, true),
                };
                for attempt in 0..MAX_CAS_ATTEMPTS {
                    if attempt > 0 {
                        backoff(attempt).await;
                    }
                    if current.is_none() && !create {
                        slot.remember(&redis_key, None);
                        return Ok(None);
                    }
                    let mut state = current.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
                    let out = op(&mut state);
                    let write = if state.is_blank(now) {
                        if current.is_none() {
                            Write::Keep
                        } else {
                            Write::Delete
                        }
                    } else {
                        let text = state.encode();
                        if current.as_ref().is_some_and(|(old, _)| *old == text) {
                            // Unchanged: the TTL in place already ends at
                            // the same `keep_until`.
                            Write::Keep
                        } else {
                            let ttl = ttl_ms(&state, now);
                            Write::Set(text, ttl)
                        }
                    };
                    let (op_name, new_text, ttl) = match &write {
                        Write::Keep if verified => return Ok(Some(out)),
                        Write::Keep => ("none", "", 0),
                        Write::Set(text, ttl) => ("set", text.as_str(), *ttl),
                        Write::Delete => ("del", "", 0),
                    };
                    let mut invocation = COMPARE_AND_SET.key(&redis_key);
                    match &current {
                        Some((old, _)) => invocation.arg("1").arg(old.as_str()),
                        None => invocation.arg("0").arg(""),
                    };
                    invocation.arg(op_name).arg(new_text).arg(ttl);
                    let reply: Vec<Value> =
                        match invocation.invoke_async(&mut self.backend.conn()).await {
                            Ok(reply) => reply,
                            Err(error) => {
                                // It may or may not have been applied.
                                slot.forget(&redis_key);
                                return Err(crate::backend::map_error(error));
                            }
                        };
                    match reply.as_slice() {
                        [Value::Int(1)] => {
                            let stored = match write {
                                Write::Keep => current.map(|(text, _)| text),
                                Write::Set(text, _) => Some(text),
                                Write::Delete => None,
                            };
                            slot.remember(&redis_key, stored);
                            return Ok(Some(out));
                        }
                        [Value::Int(0)] => current = None,
                        [Value::Int(0), value] => {
                            let text: String = redis::from_redis_value_ref(value)
                                .map_err(|_| corrupt("attempt state is not text"))?;
                            let state = AttemptState::decode(&text)?;
                            current = Some((text, state));
                        }
                        _ => return Err(corrupt("unexpected reply from the attempt script")),
                    }
                    verified = true;
                }
                slot.forget(&redis_key);
                Err(StoreError::new(
                    StoreErrorKind::Conflict,
                    "attempt counter is too contended",
                ))
            })
            .await
    }

    /// Deletes `key`'s state if (and only if) it still holds a value that
    /// does not decode.
    async fn clear_corrupt(&self, key: &AttemptKey) -> Result<(), StoreError> {
        let redis_key = self.key(key);
        let mut slot = self.backend.key_slot(&redis_key).lock().await;
        slot.forget(&redis_key);
        let text: Option<String> = self
            .backend
            .query(redis::cmd("GET").arg(&redis_key))
            .await?;
        let Some(text) = text.filter(|t| AttemptState::decode(t).is_err()) else {
            return Ok(());
        };
        let _: Vec<Value> = self
            .backend
            .invoke(
                COMPARE_AND_SET
                    .key(&redis_key)
                    .arg("1")
                    .arg(text)
                    .arg("del")
                    .arg("")
                    .arg(0),
            )
            .await?;
        Ok(())
    }

    async fn read(&self, key: &AttemptKey) -> Result<Option<AttemptState>, StoreError> {
        Ok(self.load(&self.key(key)).await?.map(|(_, s)| s))
    }

    /// Every state of `kind`, by `SCAN`.
    async fn scan(
        &self,
        kind: AttemptKeyKind,
    ) -> Result<Vec<(AttemptKey, AttemptState)>, StoreError> {
        let pattern = format!("{}:at:{}:{{*", self.backend.prefix(), kind_code(kind));
        let mut out = Vec::new();
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
                        .arg(SCAN_COUNT),
                )
                .await?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.get(key);
                }
                let values: Vec<Option<String>> = self.backend.query_pipe(&pipe).await?;
                for (key, value) in keys.iter().zip(values) {
                    // Deleted since the scan saw it.
                    let Some(value) = value else { continue };
                    let key = self
                        .parse_key(key, kind)
                        .ok_or_else(|| corrupt("attempt key is malformed"))?;
                    out.push((key, AttemptState::decode(&value)?));
                }
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}

/// Waits before retry `attempt` (1-based) of a contended update: the
/// first retry at once, then a random delay of up to 2^attempt ms (at most
/// 32 ms), so that many writers on one key spread out instead of retrying
/// in lockstep (each round lets one of them through).
async fn backoff(attempt: usize) {
    if attempt < 2 {
        return;
    }
    let cap_ms = 1u64 << attempt.min(5);
    // A fresh RandomState is randomly keyed: enough jitter, no RNG crate.
    let jitter = RandomState::new().hash_one(attempt) % (cap_ms * 1000);
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

/// The TTL for `state` at `now` in milliseconds; 0 for none (locked until
/// unlocked). At least one second, so a live state is never written with
/// a TTL that already ran out.
fn ttl_ms(state: &AttemptState, now: SystemTime) -> u64 {
    match state.keep_until() {
        None => 0,
        Some(until) => millis(until).saturating_sub(millis(now)).max(1000),
    }
}

impl AttemptStore for RedisAttemptStore {
    async fn begin(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserve: bool,
        now: SystemTime,
    ) -> Result<Admission, StoreError> {
        if !reserve {
            // A read: nothing to store.
            let mut state = self.read(key).await?.unwrap_or_default();
            return Ok(state.begin(policy, false, now));
        }
        self.update(key, now, true, |s| s.begin(policy, true, now))
            .await?
            .ok_or_else(|| corrupt("attempt update lost its result"))
    }

    async fn record_failure(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserved: bool,
        now: SystemTime,
    ) -> Result<FailureRecord, StoreError> {
        self.update(key, now, true, |s| s.record_failure(policy, reserved, now))
            .await?
            .ok_or_else(|| corrupt("attempt update lost its result"))
    }

    async fn record_success(
        &self,
        key: &AttemptKey,
        scope: ResetScope,
        reserved: bool,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.update(key, now, false, |s| s.record_success(scope, reserved, now))
            .await?;
        Ok(())
    }

    async fn release(&self, key: &AttemptKey, now: SystemTime) -> Result<(), StoreError> {
        self.update(key, now, false, |s| s.release(now)).await?;
        Ok(())
    }

    async fn status(
        &self,
        key: &AttemptKey,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptStatus>, StoreError> {
        Ok(self.read(key).await?.map(|s| s.status(window, now)))
    }

    async fn lock(&self, key: &AttemptKey, lock: Lock, now: SystemTime) -> Result<(), StoreError> {
        self.update(key, now, true, |s| s.lock(lock, now)).await?;
        Ok(())
    }

    async fn unlock(&self, key: &AttemptKey, now: SystemTime) -> Result<Option<Lock>, StoreError> {
        match self.update(key, now, false, |s| s.unlock(now)).await {
            Ok(lock) => Ok(lock.flatten()),
            // An operator's way out of a corrupt counter: unlock forgets
            // it (everything but live reservations would be forgotten
            // anyway, and those cannot be read back).
            Err(error) if error.kind() == StoreErrorKind::Corrupt => {
                self.clear_corrupt(key).await?;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    async fn locked(
        &self,
        kind: AttemptKeyKind,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<LockedKey>, StoreError> {
        let mut out: Vec<LockedKey> = self
            .scan(kind)
            .await?
            .into_iter()
            .filter_map(|(key, state)| state.lock_at(now).map(|lock| LockedKey { key, lock }))
            .collect();
        sort_locked(&mut out);
        out.truncate(limit);
        Ok(out)
    }

    async fn hottest(
        &self,
        kind: AttemptKeyKind,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(AttemptKey, u32)>, StoreError> {
        let mut out: Vec<(AttemptKey, u32)> = self
            .scan(kind)
            .await?
            .into_iter()
            .map(|(key, state)| {
                let n = state.failures(window, now);
                (key, n)
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        sort_hottest(&mut out);
        out.truncate(limit);
        Ok(out)
    }

    async fn pairs_of(
        &self,
        of: &AttemptKey,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(AttemptKey, AttemptStatus)>, StoreError> {
        if let AttemptKey::AccountIp(..) = of {
            return Ok(self
                .read(of)
                .await?
                .map(|state| (of.clone(), state.status(window, now)))
                .into_iter()
                .take(limit)
                .collect());
        }
        let mut out: Vec<(AttemptKey, AttemptStatus)> = self
            .scan(AttemptKeyKind::AccountIp)
            .await?
            .into_iter()
            .filter(|(key, _)| pair_involves(key, of))
            .map(|(key, state)| (key, state.status(window, now)))
            .collect();
        sort_pairs(&mut out);
        out.truncate(limit);
        Ok(out)
    }
}
