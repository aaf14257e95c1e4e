//! Audit records and the sinks that keep them.
//!
//! An [`AuditRecord`] is one security event in the shape of seed 000's
//! structured logs: `timestamp` (UTC, RFC 3339), `level`, `event`,
//! `message`, a `context` object and a `trace_id`, so the runbooks' `jq`
//! queries work unchanged:
//!
//! ```text
//! jq -r 'select(.event == "security.auth_failure") | .context.failure_reason'
//! ```
//!
//! The audit layer builds records from what layers attached to responses and
//! hands them, in batches, to an [`AuditSink`]. Records hold only redacted
//! values: the layer that builds them truncates and masks before a record
//! exists, so a sink can write every field it is given.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::{AuthMethod, EventKind, EventLevel, FailureReason, StoreError};

/// One audit event, already redacted.
///
/// Fields are public so sinks can map them to columns; build one with
/// [`AuditRecord::new`] and set what applies.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AuditRecord {
    /// When the decision was taken.
    pub timestamp: SystemTime,
    /// How loud the event is.
    pub level: EventLevel,
    /// Which event.
    pub event: EventKind,
    /// A fixed, human-readable sentence (`Authentication failed`).
    pub message: Cow<'static, str>,
    /// The request's trace id (W3C `traceparent`, a request id, or generated).
    pub trace_id: Arc<str>,
    /// The verified subject or the submitted identifier, masked when it
    /// looks like an email address.
    pub user_id: Option<Arc<str>>,
    /// The client address as resolved by the client-IP layer.
    pub ip_address: Option<IpAddr>,
    /// Why the request was refused, if it was.
    pub failure_reason: Option<FailureReason>,
    /// How the caller tried to authenticate.
    pub auth_method: Option<AuthMethod>,
    /// Which layer decided (`jwt`, `api_key`, `csrf`, `lockout`, …).
    pub layer: Option<&'static str>,
    /// At most the first six characters of the presented credential; for
    /// an API key, its labels and public key id (`pc_live_3kq9x0c1v2b7`).
    pub token_prefix: Option<Box<str>>,
    /// The request path, truncated; never the query string.
    pub endpoint: Option<Box<str>>,
    /// The request method.
    pub http_method: Option<Box<str>>,
    /// The `User-Agent`, truncated.
    pub user_agent: Option<Box<str>>,
    /// The response status.
    pub status: Option<u16>,
    /// A count that explains the event (failures in the window, …).
    pub count: Option<u32>,
    /// When a lock or block ends.
    pub until: Option<SystemTime>,
    /// A short fixed note from the layer.
    pub detail: Option<Cow<'static, str>>,
    /// Decided in shadow mode: reported, not enforced.
    pub shadow: bool,
    /// Decided by a fallback authenticator.
    pub fallback: bool,
}

impl AuditRecord {
    /// A record of `event` at `timestamp`, at the event's default level.
    #[must_use]
    pub fn new(event: EventKind, timestamp: SystemTime, trace_id: impl Into<Arc<str>>) -> Self {
        Self {
            timestamp,
            level: event.level(),
            event,
            message: Cow::Borrowed(default_message(event)),
            trace_id: trace_id.into(),
            user_id: None,
            ip_address: None,
            failure_reason: None,
            auth_method: None,
            layer: None,
            token_prefix: None,
            endpoint: None,
            http_method: None,
            user_agent: None,
            status: None,
            count: None,
            until: None,
            detail: None,
            shadow: false,
            fallback: false,
        }
    }

    /// The record as seed 000's JSON object.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut context = Map::new();
        context.insert(
            "user_id".into(),
            self.user_id.as_deref().map_or(Value::Null, Value::from),
        );
        context.insert(
            "ip_address".into(),
            self.ip_address
                .map_or(Value::Null, |ip| Value::from(ip.to_string())),
        );
        context.insert(
            "failure_reason".into(),
            self.failure_reason
                .map_or(Value::Null, |reason| Value::from(reason.as_str())),
        );
        let mut optional = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                context.insert(key.into(), value);
            }
        };
        optional("auth_method", self.auth_method.map(|m| m.as_str().into()));
        optional("layer", self.layer.map(Value::from));
        optional(
            "token_prefix",
            self.token_prefix.as_deref().map(Value::from),
        );
        optional("endpoint", self.endpoint.as_deref().map(Value::from));
        optional("http_method", self.http_method.as_deref().map(Value::from));
        optional("user_agent", self.user_agent.as_deref().map(Value::from));
        optional("status", self.status.map(Value::from));
        optional("count", self.count.map(Value::from));
        optional("until", self.until.map(|t| Value::from(rfc3339(t))));
        optional("detail", self.detail.as_deref().map(Value::from));
        if self.shadow {
            context.insert("shadow".into(), Value::Bool(true));
        }
        if self.fallback {
            context.insert("fallback".into(), Value::Bool(true));
        }

        let mut record = Map::new();
        record.insert("timestamp".into(), rfc3339(self.timestamp).into());
        record.insert("level".into(), self.level.as_str().into());
        record.insert("event".into(), self.event.name().into());
        record.insert("message".into(), Value::from(&*self.message));
        record.insert("context".into(), Value::Object(context));
        record.insert("trace_id".into(), Value::from(&*self.trace_id));
        Value::Object(record)
    }

    /// The record as one line of JSON, without the trailing newline.
    #[must_use]
    pub fn to_json_line(&self) -> String {
        // Written directly, keys in the order `to_json` prints them (sorted),
        // without building the `Value` tree: this runs once per record on the
        // audit consumer.
        let mut out = String::with_capacity(384);
        out.push_str("{\"context\":{");
        let mut first = true;
        let mut key = |out: &mut String, name: &str| {
            if !first {
                out.push(',');
            }
            first = false;
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
        };
        if let Some(method) = self.auth_method {
            key(&mut out, "auth_method");
            json_str(&mut out, method.as_str());
        }
        if let Some(count) = self.count {
            key(&mut out, "count");
            push_u64(&mut out, u64::from(count));
        }
        if let Some(detail) = &self.detail {
            key(&mut out, "detail");
            json_str(&mut out, detail);
        }
        if let Some(endpoint) = &self.endpoint {
            key(&mut out, "endpoint");
            json_str(&mut out, endpoint);
        }
        key(&mut out, "failure_reason");
        match self.failure_reason {
            Some(reason) => json_str(&mut out, reason.as_str()),
            None => out.push_str("null"),
        }
        if self.fallback {
            key(&mut out, "fallback");
            out.push_str("true");
        }
        if let Some(method) = &self.http_method {
            key(&mut out, "http_method");
            json_str(&mut out, method);
        }
        key(&mut out, "ip_address");
        match self.ip_address {
            Some(ip) => {
                use fmt::Write as _;
                out.push('"');
                let _ = write!(out, "{ip}");
                out.push('"');
            }
            None => out.push_str("null"),
        }
        if let Some(layer) = self.layer {
            key(&mut out, "layer");
            json_str(&mut out, layer);
        }
        if self.shadow {
            key(&mut out, "shadow");
            out.push_str("true");
        }
        if let Some(status) = self.status {
            key(&mut out, "status");
            push_u64(&mut out, u64::from(status));
        }
        if let Some(prefix) = &self.token_prefix {
            key(&mut out, "token_prefix");
            json_str(&mut out, prefix);
        }
        if let Some(until) = self.until {
            key(&mut out, "until");
            out.push('"');
            push_rfc3339(&mut out, until);
            out.push('"');
        }
        if let Some(agent) = &self.user_agent {
            key(&mut out, "user_agent");
            json_str(&mut out, agent);
        }
        key(&mut out, "user_id");
        match &self.user_id {
            Some(user) => json_str(&mut out, user),
            None => out.push_str("null"),
        }
        out.push_str("},\"event\":");
        json_str(&mut out, self.event.name());
        out.push_str(",\"level\":");
        json_str(&mut out, self.level.as_str());
        out.push_str(",\"message\":");
        json_str(&mut out, &self.message);
        out.push_str(",\"timestamp\":\"");
        push_rfc3339(&mut out, self.timestamp);
        out.push_str("\",\"trace_id\":");
        json_str(&mut out, &self.trace_id);
        out.push('}');
        out
    }
}

/// Appends `n` in decimal.
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        // A digit: `n % 10` is below 10.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[at..]).unwrap_or_default());
}

/// Appends `value` as a JSON string (quoted, escaped as serde_json does).
fn json_str(out: &mut String, value: &str) {
    // No early exit: the check vectorises, and nearly every value passes.
    let plain = value.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.push('"');
        out.push_str(value);
        out.push('"');
    } else {
        // Rare (control characters, quotes): serde_json's escaping.
        out.push_str(&Value::from(value).to_string());
    }
}

/// The sentence used when a layer gives none.
const fn default_message(event: EventKind) -> &'static str {
    match event {
        EventKind::AuthSuccess => "Authentication succeeded",
        EventKind::AuthFailure => "Authentication failed",
        EventKind::TokenExpired => "Token expired",
        EventKind::BruteForceDetected => "Possible brute force attack detected",
        EventKind::AccountLocked => "Account locked",
        EventKind::AccountUnlocked => "Account unlocked",
        EventKind::IpBlocked => "Request from a blocked IP address",
        EventKind::CsrfViolation => "CSRF check failed",
        EventKind::CaptchaChallenge => "CAPTCHA challenge",
        EventKind::TokenRevoked => "Token revoked",
        EventKind::ApiKeyCreated => "API key created",
        EventKind::ApiKeyRevoked => "API key revoked",
        EventKind::CircuitStateChanged => "Circuit breaker changed state",
    }
}

/// Formats `time` as RFC 3339 UTC with milliseconds
/// (`2025-12-29T14:20:35.123Z`). Times before the epoch print as the epoch.
#[must_use]
pub fn rfc3339(time: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339(&mut out, time);
    out
}

/// Appends [`rfc3339`]`(time)` to `out`, digits by hand (no `format!`).
fn push_rfc3339(out: &mut String, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let millis = u64::from(since.subsec_millis());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    if year > 9999 {
        use fmt::Write as _;
        let _ = write!(
            out,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        );
        return;
    }
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            // A digit: `value % 10` is below 10.
            buf[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, (rem / 60) % 60);
    put(17, 2, rem % 60);
    put(20, 3, millis);
    // ASCII digits and separators only.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// The era arithmetic of Howard Hinnant's `civil_from_days`, restricted to
/// dates on or after the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Where audit records go.
///
/// The audit layer calls [`write_batch`](Self::write_batch) from a
/// background task with every record gathered since the last call, never
/// from the request path: a slow sink delays the batch, not the request. An
/// error is counted and the batch is dropped; sinks that must not lose
/// records retry inside `write_batch`.
pub trait AuditSink: Send + Sync + 'static {
    /// Stores or forwards `batch`, oldest first.
    fn write_batch(
        &self,
        batch: &[AuditRecord],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

trait DynAuditSink: Send + Sync + 'static {
    fn write_batch_boxed<'a>(
        &'a self,
        batch: &'a [AuditRecord],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<S: AuditSink> DynAuditSink for S {
    fn write_batch_boxed<'a>(
        &'a self,
        batch: &'a [AuditRecord],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.write_batch(batch))
    }
}

/// A type-erased, cheaply cloned [`AuditSink`].
#[derive(Clone)]
pub struct BoxAuditSink(Arc<dyn DynAuditSink>);

impl BoxAuditSink {
    /// Erases `sink`'s type.
    pub fn new(sink: impl AuditSink) -> Self {
        Self(Arc::new(sink))
    }
}

impl fmt::Debug for BoxAuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxAuditSink").finish_non_exhaustive()
    }
}

impl AuditSink for BoxAuditSink {
    async fn write_batch(&self, batch: &[AuditRecord]) -> Result<(), StoreError> {
        self.0.write_batch_boxed(batch).await
    }
}

/// Fans a batch out to several sinks; every sink sees every batch, and the
/// first error is returned after all have been tried.
#[derive(Clone, Debug, Default)]
pub struct FanOutSink(Vec<BoxAuditSink>);

impl FanOutSink {
    /// A sink writing to each of `sinks`.
    #[must_use]
    pub fn new(sinks: Vec<BoxAuditSink>) -> Self {
        Self(sinks)
    }
}

impl AuditSink for FanOutSink {
    async fn write_batch(&self, batch: &[AuditRecord]) -> Result<(), StoreError> {
        let mut first_error = None;
        for sink in &self.0 {
            if let Err(error) = sink.write_batch(batch).await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Keeps the most recent records in memory, up to a capacity; older ones
/// are dropped first. For tests, the reference server and `/admin` views.
#[derive(Clone)]
pub struct MemoryAuditSink {
    inner: Arc<Mutex<Ring>>,
}

struct Ring {
    records: VecDeque<AuditRecord>,
    capacity: usize,
    evicted: u64,
}

impl MemoryAuditSink {
    /// A sink keeping at most `capacity` records (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Arc::new(Mutex::new(Ring {
                records: VecDeque::with_capacity(capacity.min(1024)),
                capacity,
                evicted: 0,
            })),
        }
    }

    /// A copy of the records kept, oldest first.
    #[must_use]
    pub fn records(&self) -> Vec<AuditRecord> {
        self.lock().records.iter().cloned().collect()
    }

    /// How many records are kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no record is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many records were dropped to stay within capacity.
    #[must_use]
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// Removes every record.
    pub fn clear(&self) {
        self.lock().records.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring inconsistent:
        // every mutation is a single push or pop.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryAuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.lock();
        f.debug_struct("MemoryAuditSink")
            .field("len", &ring.records.len())
            .field("capacity", &ring.capacity)
            .field("evicted", &ring.evicted)
            .finish()
    }
}

impl AuditSink for MemoryAuditSink {
    async fn write_batch(&self, batch: &[AuditRecord]) -> Result<(), StoreError> {
        let mut ring = self.lock();
        for record in batch {
            if ring.records.len() == ring.capacity {
                ring.records.pop_front();
                ring.evicted += 1;
            }
            ring.records.push_back(record.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2025-12-29T14:20:35.123Z, the timestamp in seed 000's example.
        let t = UNIX_EPOCH + Duration::from_millis(1_767_018_035_123);
        assert_eq!(rfc3339(t), "2025-12-29T14:20:35.123Z");
        // A leap day and the end of a century year that is a leap year.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_107_542_399);
        assert_eq!(rfc3339(t), "2100-02-28T23:59:59.000Z");
    }

    #[test]
    fn rfc3339_after_year_9999_keeps_every_digit() {
        let t = UNIX_EPOCH + Duration::from_secs(253_402_300_800); // 10000-01-01
        assert_eq!(rfc3339(t), "10000-01-01T00:00:00.000Z");
    }

    #[test]
    fn json_line_is_the_json_value_printed() {
        let t = UNIX_EPOCH + Duration::from_millis(1_767_018_035_123);
        let bare = AuditRecord::new(EventKind::AuthSuccess, t, "trace_1");
        let mut full = AuditRecord::new(EventKind::AccountLocked, t, "tr\"ace");
        full.user_id = Some("user \"42\"\n".into());
        full.ip_address = Some("2001:db8::1".parse().unwrap());
        full.failure_reason = Some(FailureReason::AccountLocked);
        full.auth_method = Some(AuthMethod::Password);
        full.layer = Some("lockout");
        full.token_prefix = Some("pc_live_abc".into());
        full.endpoint = Some("/api/auth/login".into());
        full.http_method = Some("POST".into());
        full.user_agent = Some("curl/8.0 \u{1b}[31m \\ é".into());
        full.status = Some(429);
        full.count = Some(5);
        full.until = Some(t + Duration::from_secs(1800));
        full.detail = Some(Cow::Borrowed("account and account+address"));
        full.shadow = true;
        full.fallback = true;
        full.message = Cow::Owned("Account \"locked\"\t".into());
        for record in [bare, full] {
            assert_eq!(record.to_json_line(), record.to_json().to_string());
            assert!(serde_json::from_str::<Value>(&record.to_json_line()).is_ok());
        }
    }

    #[test]
    fn json_str_escapes_every_character_as_serde_json_does() {
        let mut values: Vec<String> = (0u8..0x80)
            .map(|b| format!("ab{}cd", char::from(b)))
            .collect();
        values.extend(["", "é\u{7f}\u{2028}€", "\"", "\\", "plain/path?q=1"].map(String::from));
        for value in values {
            let mut out = String::new();
            json_str(&mut out, &value);
            assert_eq!(out, Value::from(value.as_str()).to_string(), "{value:?}");
        }
    }

    #[test]
    fn json_has_seed_000_shape() {
        let mut record = AuditRecord::new(
            EventKind::AuthFailure,
            UNIX_EPOCH + Duration::from_millis(1_767_018_035_123),
            "trace_auth123",
        );
        record.ip_address = Some("198.51.100.75".parse().unwrap());
        record.failure_reason = Some(FailureReason::InvalidToken);
        record.token_prefix = Some("eyJhbG".into());
        record.endpoint = Some("/graphql".into());
        record.user_agent = Some("Mozilla/5.0".into());
        let json = record.to_json();
        assert_eq!(json["timestamp"], "2025-12-29T14:20:35.123Z");
        assert_eq!(json["level"], "WARNING");
        assert_eq!(json["event"], "security.auth_failure");
        assert_eq!(json["message"], "Authentication failed");
        assert_eq!(json["context"]["user_id"], Value::Null);
        assert_eq!(json["context"]["ip_address"], "198.51.100.75");
        assert_eq!(json["context"]["failure_reason"], "invalid_token");
        assert_eq!(json["context"]["token_prefix"], "eyJhbG");
        assert_eq!(json["context"]["endpoint"], "/graphql");
        assert_eq!(json["context"]["user_agent"], "Mozilla/5.0");
        assert_eq!(json["trace_id"], "trace_auth123");
        assert!(json["context"].get("shadow").is_none());
        let line = record.to_json_line();
        assert!(!line.contains('\n'));
    }

    #[tokio::test]
    async fn memory_sink_keeps_the_newest_records() {
        let sink = MemoryAuditSink::new(2);
        let batch: Vec<_> = (0..3)
            .map(|i| AuditRecord::new(EventKind::AuthSuccess, UNIX_EPOCH, format!("t{i}")))
            .collect();
        sink.write_batch(&batch).await.unwrap();
        let kept: Vec<_> = sink
            .records()
            .iter()
            .map(|r| r.trace_id.to_string())
            .collect();
        assert_eq!(kept, ["t1", "t2"]);
        assert_eq!(sink.evicted(), 1);
    }

    #[tokio::test]
    async fn fan_out_reaches_every_sink() {
        let a = MemoryAuditSink::new(8);
        let b = MemoryAuditSink::new(8);
        let fan = FanOutSink::new(vec![
            BoxAuditSink::new(a.clone()),
            BoxAuditSink::new(b.clone()),
        ]);
        let record = AuditRecord::new(EventKind::AuthSuccess, UNIX_EPOCH, "t");
        fan.write_batch(std::slice::from_ref(&record))
            .await
            .unwrap();
        assert_eq!((a.len(), b.len()), (1, 1));
    }
}
