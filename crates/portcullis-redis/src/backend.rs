//! The connection, its timeouts, key naming and error mapping.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::{SharedClock, StoreError, StoreErrorKind, SystemClock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::{
    RedisApiKeyStore, RedisAttemptStore, RedisAuditSink, RedisBlockList, RedisCsrfTokenStore,
    RedisRateLimitStore, RedisRevocationStore,
};

/// Longest key prefix accepted.
pub const MAX_PREFIX_LEN: usize = 64;

/// How to reach Redis and how long to wait for it; builds a
/// [`RedisBackend`].
///
/// Defaults: connection timeout 1 s, response timeout 1 s, at most 2 s per
/// store operation (every round trip and retry included), one reconnection
/// retry per attempt. A stopped or blocked server thus turns into
/// [`StoreErrorKind::Unavailable`] or [`StoreErrorKind::Timeout`] within
/// about two seconds, never a hang.
///
/// ```no_run
/// use portcullis_redis::RedisBackend;
/// use std::time::Duration;
///
/// # async fn run() -> Result<(), portcullis_core::StoreError> {
/// let backend = RedisBackend::builder("redis://127.0.0.1:6379", "myapp")
///     .operation_timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisBackendBuilder {
    url: String,
    prefix: String,
    connection_timeout: Duration,
    response_timeout: Duration,
    operation_timeout: Duration,
    reconnect_retries: usize,
}

impl fmt::Debug for RedisBackendBuilder {
    // The URL may hold a password: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("prefix", &self.prefix)
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("reconnect_retries", &self.reconnect_retries)
            .finish_non_exhaustive()
    }
}

impl RedisBackendBuilder {
    /// How long one connection attempt may take (default 1 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long the server may take to answer one command (default 1 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The most one store operation may take, all round trips, retries and
    /// reconnection waits included (default 2 s); past it the operation
    /// fails with [`StoreErrorKind::Timeout`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// How many times a (re)connection is retried, with a short exponential
    /// back-off, before the waiting operations fail (default 1).
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    fn parts(&self) -> Result<(redis::Client, ConnectionManagerConfig), StoreError> {
        validate_prefix(&self.prefix)?;
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            StoreError::new(StoreErrorKind::Other, "invalid Redis URL").with_source(e)
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.reconnect_retries)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        Ok((client, config))
    }

    fn finish(&self, manager: ConnectionManager) -> RedisBackend {
        RedisBackend {
            inner: Arc::new(Shared {
                manager,
                prefix: self.prefix.clone(),
                operation_timeout: self.operation_timeout,
                stripes: (0..STRIPES)
                    .map(|_| tokio::sync::Mutex::new(KeyCache::default()))
                    .collect(),
                hasher: RandomState::new(),
            }),
        }
    }

    /// Connects, waiting for the first connection (at most the operation
    /// timeout).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Other`] for an invalid URL or prefix (see
    /// [`RedisBackend::connect`]); [`StoreErrorKind::Unavailable`] or
    /// [`StoreErrorKind::Timeout`] when the server cannot be reached.
    pub async fn connect(self) -> Result<RedisBackend, StoreError> {
        let (client, config) = self.parts()?;
        let manager = tokio::time::timeout(
            self.operation_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| timeout_error())?
        .map_err(map_error)?;
        Ok(self.finish(manager))
    }

    /// Builds the backend without connecting: the first operation connects.
    /// Useful when the application must start while Redis is down (its
    /// operations fail closed until Redis is back).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Other`] for an invalid URL or prefix.
    pub fn connect_lazy(self) -> Result<RedisBackend, StoreError> {
        let (client, config) = self.parts()?;
        let manager = ConnectionManager::new_lazy_with_config(client, config).map_err(map_error)?;
        Ok(self.finish(manager))
    }
}

/// One Redis connection (multiplexed, reconnecting) and a key prefix, from
/// which every store is made.
///
/// Cheap to clone; clones and the stores made from it share the
/// connection. See the [crate docs](crate) for the key layout.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Shared>,
}

struct Shared {
    manager: ConnectionManager,
    prefix: String,
    operation_timeout: Duration,
    /// Striped locks serialising read-modify-write updates of one key
    /// within this process, each guarding a small cache of last-known
    /// values (see [`RedisBackend::key_slot`]).
    stripes: Box<[tokio::sync::Mutex<KeyCache>]>,
    hasher: RandomState,
}

/// Lock stripes per backend.
const STRIPES: usize = 256;

/// Most values remembered per stripe (16 384 keys per backend).
const STRIPE_CACHE: usize = 64;

/// The last value this process wrote or read for some keys (`None`: the
/// key was absent). Only ever used optimistically: every update built on
/// it goes through a compare-and-set that checks it.
#[derive(Debug, Default)]
pub(crate) struct KeyCache(HashMap<String, Option<String>>);

impl KeyCache {
    pub(crate) fn get(&self, key: &str) -> Option<&Option<String>> {
        self.0.get(key)
    }

    /// Remembers `value` for `key`, forgetting the whole stripe when full.
    pub(crate) fn remember(&mut self, key: &str, value: Option<String>) {
        if self.0.len() >= STRIPE_CACHE && !self.0.contains_key(key) {
            self.0.clear();
        }
        self.0.insert(key.to_owned(), value);
    }

    pub(crate) fn forget(&mut self, key: &str) {
        self.0.remove(key);
    }
}

impl fmt::Debug for RedisBackend {
    // Not the manager's Debug: it prints the connection info.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.inner.prefix)
            .field("operation_timeout", &self.inner.operation_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A builder for `url` (`redis://[[user]:password@]host:port[/db]`, or
    /// `redis+unix:///path`) whose keys all start with `prefix:`. TLS
    /// (`rediss://`) needs one of the `redis` crate's TLS features, which
    /// this crate does not enable.
    pub fn builder(url: impl Into<String>, prefix: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder {
            url: url.into(),
            prefix: prefix.into(),
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_secs(2),
            reconnect_retries: 1,
        }
    }

    /// Connects to `url` with the default timeouts; every key starts with
    /// `prefix:`.
    ///
    /// The prefix is 1 to [`MAX_PREFIX_LEN`] characters among ASCII letters,
    /// digits, `_`, `-` and `.`, so that no prefix can contain a hash tag,
    /// a separator or a `SCAN` pattern character.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Other`] for an invalid URL or prefix;
    /// [`StoreErrorKind::Unavailable`] or [`StoreErrorKind::Timeout`] when
    /// the server cannot be reached.
    pub async fn connect(
        url: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Result<Self, StoreError> {
        Self::builder(url, prefix).connect().await
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The revocation store.
    #[must_use]
    pub fn revocations(&self) -> RedisRevocationStore {
        RedisRevocationStore::new(self.clone(), system_clock())
    }

    /// The API-key store.
    #[must_use]
    pub fn api_keys(&self) -> RedisApiKeyStore {
        RedisApiKeyStore::new(self.clone(), system_clock())
    }

    /// The failed-attempt store.
    #[must_use]
    pub fn attempts(&self) -> RedisAttemptStore {
        RedisAttemptStore::new(self.clone())
    }

    /// The IP block list.
    #[must_use]
    pub fn block_list(&self) -> RedisBlockList {
        RedisBlockList::new(self.clone())
    }

    /// The synchronizer CSRF token store.
    #[must_use]
    pub fn csrf_tokens(&self) -> RedisCsrfTokenStore {
        RedisCsrfTokenStore::new(self.clone(), system_clock())
    }

    /// The audit sink (a capped stream).
    #[must_use]
    pub fn audit(&self) -> RedisAuditSink {
        RedisAuditSink::new(self.clone())
    }

    /// The shared GCRA rate-limit store.
    #[must_use]
    pub fn rate_limit(&self) -> RedisRateLimitStore {
        RedisRateLimitStore::new(self.clone())
    }

    /// Checks that the server answers (`PING`).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`] or [`StoreErrorKind::Timeout`] when
    /// it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let reply: String = self.query(&redis::cmd("PING")).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(corrupt("unexpected reply to PING"))
        }
    }

    /// A connection handle (a cheap clone of the manager).
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.inner.manager.clone()
    }

    /// Runs `op` under the operation timeout and maps its errors.
    pub(crate) async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        tokio::time::timeout(self.inner.operation_timeout, op)
            .await
            .map_err(|_| timeout_error())?
    }

    /// One command under the operation timeout.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        self.run(async move { cmd.query_async(&mut conn).await.map_err(map_error) })
            .await
    }

    /// One pipeline under the operation timeout.
    pub(crate) async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        self.run(async move { pipe.query_async(&mut conn).await.map_err(map_error) })
            .await
    }

    /// One script invocation under the operation timeout.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        self.run(async move { invocation.invoke_async(&mut conn).await.map_err(map_error) })
            .await
    }

    /// The in-process lock (and last-value cache) for read-modify-write
    /// updates of `key`.
    ///
    /// Compare-and-set stays the cross-process guarantee; the lock only
    /// keeps this process's writers to one key from racing each other, so
    /// that a burst of updates to one key costs one round of retries per
    /// *instance*, not per request.
    pub(crate) fn key_slot(&self, key: &str) -> &tokio::sync::Mutex<KeyCache> {
        let hash = self.inner.hasher.hash_one(key);
        let index = usize::try_from(hash % STRIPES as u64).unwrap_or(0);
        &self.inner.stripes[index]
    }

    /// `prefix:kind:{tag}` with `tag` escaped.
    pub(crate) fn tagged_key(&self, kind: &str, tag: &str) -> String {
        let mut key = String::with_capacity(self.inner.prefix.len() + kind.len() + tag.len() + 4);
        key.push_str(&self.inner.prefix);
        key.push(':');
        key.push_str(kind);
        key.push_str(":{");
        escape_into(tag, &mut key);
        key.push('}');
        key
    }

    /// `prefix:rest` (for keys without an attacker-chosen part).
    pub(crate) fn plain_key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.inner.prefix)
    }
}

fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(
            StoreErrorKind::Other,
            "invalid Redis key prefix: use 1-64 ASCII letters, digits, '_', '-' or '.'",
        ))
    }
}

/// Appends `id` with `%`, `{`, `}`, `:` and control bytes percent-encoded:
/// an injective encoding whose output holds no hash-tag brace and no
/// separator.
pub(crate) fn escape_into(id: &str, out: &mut String) {
    for c in id.chars() {
        match c {
            '%' | '{' | '}' | ':' | '\u{0}'..='\u{1f}' | '\u{7f}' => {
                let b = c as u32;
                out.push('%');
                out.push(hex_digit(b >> 4));
                out.push(hex_digit(b & 0xf));
            }
            _ => out.push(c),
        }
    }
}

/// Reverses [`escape_into`]; `None` when `text` is not its output.
pub(crate) fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = from_hex(*bytes.get(i + 1)?)?;
            let lo = from_hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_digit(v: u32) -> char {
    char::from_digit(v & 0xf, 16)
        .unwrap_or('0')
        .to_ascii_uppercase()
}

fn from_hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// Parses [`to_hex`]'s output.
pub(crate) fn from_hex_str(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(from_hex(pair[0])? << 4 | from_hex(pair[1])?))
        .collect()
}

/// Milliseconds since the epoch, saturating (0 before 1970), capped at
/// 2^53 so that Lua's doubles hold it exactly.
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .min(MAX_EXACT)
}

/// The largest integer a Lua number (an IEEE double) holds exactly.
pub(crate) const MAX_EXACT: u64 = (1 << 53) - 1;

/// The time `ms` milliseconds after the epoch.
pub(crate) fn time_of_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub(crate) fn corrupt(message: &'static str) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, message)
}

fn timeout_error() -> StoreError {
    StoreError::new(StoreErrorKind::Timeout, "Redis did not answer in time")
}

/// Maps a client error to a [`StoreError`], keeping it as the source —
/// except for replies that could not be decoded: the client's message for
/// those quotes the reply (a stored value, which may hold a session id or
/// a digest), so it is dropped.
///
/// Other Redis errors carry no argument values (keys and values are never
/// part of their text), so keeping them as the source leaks nothing.
pub(crate) fn map_error(error: RedisError) -> StoreError {
    if matches!(
        error.kind(),
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType
    ) && !error.is_io_error()
    {
        return corrupt("unexpected reply from Redis");
    }
    let (kind, message) = if error.is_timeout() {
        (StoreErrorKind::Timeout, "Redis did not answer in time")
    } else if error.is_io_error() || error.is_connection_dropped() {
        (StoreErrorKind::Unavailable, "Redis is unreachable")
    } else {
        match error.kind() {
            ErrorKind::Server(ServerErrorKind::ResponseError | ServerErrorKind::ExecAbort)
            | ErrorKind::Extension => (StoreErrorKind::Unavailable, "Redis refused the operation"),
            _ => (StoreErrorKind::Unavailable, "Redis is unavailable"),
        }
    };
    StoreError::new(kind, message).with_source(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_injective_and_brace_free() {
        let ids = [
            "", "a", "a:b", "a%3Ab", "{x}", "%", "%%", "a}b{c", "ü:{", "\n", "%7B",
        ];
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let mut out = String::new();
            escape_into(id, &mut out);
            assert!(!out.contains(['{', '}', ':']), "{out}");
            assert_eq!(unescape(&out).as_deref(), Some(id));
            assert!(seen.insert(out), "collision for {id:?}");
        }
    }

    #[test]
    fn prefixes_are_restricted() {
        assert!(validate_prefix("pc_abc-1.x").is_ok());
        for bad in ["", "a:b", "a{b}", "a*", "a b", &"x".repeat(65)] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_map_to_store_error_kinds() {
        use std::io;
        let io = |kind| map_error(RedisError::from(io::Error::from(kind))).kind();
        assert_eq!(io(io::ErrorKind::TimedOut), StoreErrorKind::Timeout);
        assert_eq!(
            io(io::ErrorKind::ConnectionRefused),
            StoreErrorKind::Unavailable
        );
        assert_eq!(io(io::ErrorKind::BrokenPipe), StoreErrorKind::Unavailable);
        let general = |kind| map_error(RedisError::from((kind, "detail"))).kind();
        assert_eq!(general(ErrorKind::Parse), StoreErrorKind::Corrupt);
        assert_eq!(
            general(ErrorKind::UnexpectedReturnType),
            StoreErrorKind::Corrupt
        );
        assert_eq!(
            general(ErrorKind::AuthenticationFailed),
            StoreErrorKind::Unavailable
        );
        let corrupt = map_error(RedisError::from((ErrorKind::Parse, "value was secret")));
        assert!(std::error::Error::source(&corrupt).is_none());
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex_str("0001abff"), Some(bytes.to_vec()));
        assert_eq!(from_hex_str("0g"), None);
        assert_eq!(from_hex_str("abc"), None);
    }
}
