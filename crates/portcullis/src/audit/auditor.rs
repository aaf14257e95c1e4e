//! The audit pipeline: a bounded queue in front of a sink, drained in
//! batches by one background task.
//!
//! Requests never wait for a sink. A record is pushed under a short lock;
//! the consumer is woken only when a batch fills up, otherwise it drains on
//! a timer. Waking a task per event was measured here to cost 25–45 % of
//! end-to-end throughput; batching makes the hand-off a `Vec::push`. When the
//! queue is full the record is dropped and counted, never blocked on.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use portcullis_core::{
    AuditRecord, AuditSink, BoxAuditSink, Clock, EventKind, SecurityEvent, SharedClock, SystemClock,
};
use tokio::sync::Notify;

use super::entry::RequestEntry;
use super::metrics::{AuditMetrics, CaptchaOutcome};
use super::redact::Pseudonymizer;
use super::sinks::TracingSink;
use super::top_k::TopOffenders;
use crate::ConfigError;

/// Handle to an audit pipeline; cheap to clone, shared by the
/// [`AuditLayer`](super::AuditLayer) and anything that reports events out of
/// band (operator actions, circuit-breaker transitions).
#[derive(Clone)]
pub struct Auditor {
    pub(crate) shared: Arc<Shared>,
}

/// A queued item: a record reported out of band, or an audited request
/// whose records the consumer builds.
// Entries stay inline: boxing would cost an allocation per audited request
// (freed on the consumer's thread), and the queue is bounded (10 000
// entries of at most 1 KiB by default).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Pending {
    Record(AuditRecord),
    Request(RequestEntry),
}

pub(crate) struct Shared {
    queue: Mutex<Vec<Pending>>,
    capacity: usize,
    batch_size: usize,
    wake: Arc<Notify>,
    write_lock: tokio::sync::Mutex<()>,
    sink: BoxAuditSink,
    dropped: AtomicU64,
    written: AtomicU64,
    trace_prefix: u64,
    trace_counter: AtomicU64,
    pub(crate) metrics: AuditMetrics,
    pub(crate) top: TopOffenders,
    top_k: usize,
    pub(crate) pseudonyms: Pseudonymizer,
    pub(crate) clock: SharedClock,
}

/// Builds an [`Auditor`].
#[must_use]
pub struct AuditorBuilder {
    sink: Option<BoxAuditSink>,
    capacity: usize,
    batch_size: usize,
    flush_interval: Duration,
    top_k: usize,
    top_capacity: usize,
    pseudonym_key: Option<Vec<u8>>,
    clock: SharedClock,
}

impl fmt::Debug for AuditorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditorBuilder")
            .field("sink", &self.sink)
            .field("capacity", &self.capacity)
            .field("batch_size", &self.batch_size)
            .field("flush_interval", &self.flush_interval)
            .field("top_k", &self.top_k)
            .field("top_capacity", &self.top_capacity)
            .field(
                "pseudonym_key",
                &self.pseudonym_key.as_ref().map(|_| "<set>"),
            )
            .finish_non_exhaustive()
    }
}

impl Default for AuditorBuilder {
    fn default() -> Self {
        Self {
            sink: None,
            capacity: 10_000,
            batch_size: 256,
            flush_interval: Duration::from_millis(200),
            top_k: 10,
            top_capacity: 256,
            pseudonym_key: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl AuditorBuilder {
    /// Where records go. The default is [`TracingSink`]: one `tracing` event
    /// per record, target `portcullis::audit`.
    pub fn sink(mut self, sink: impl AuditSink) -> Self {
        self.sink = Some(BoxAuditSink::new(sink));
        self
    }

    /// Most records waiting for the sink (default 10 000); beyond it new
    /// records are dropped and counted.
    pub fn capacity(mut self, records: usize) -> Self {
        self.capacity = records;
        self
    }

    /// Records that wake the consumer early (default 256).
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch_size = records;
        self
    }

    /// Longest a record waits before the consumer drains (default 200 ms).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// How many top offenders are exported as gauges (default 10) and how
    /// many counters the summary keeps per kind (default 256).
    pub fn top_offenders(mut self, exported: usize, tracked: usize) -> Self {
        self.top_k = exported;
        self.top_capacity = tracked;
        self
    }

    /// The key for email pseudonyms. Replicas that share it log one person
    /// under one pseudonym; without it a random per-process key is used.
    pub fn pseudonym_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.pseudonym_key = Some(key.into());
        self
    }

    /// The clock for timestamps (tests use [`FakeClock`](crate::FakeClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the auditor, registers its metrics with the current `metrics`
    /// recorder and spawns its consumer task.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] when called outside a Tokio runtime, when a
    /// size is zero, when the batch is larger than the queue, or when the
    /// pseudonym key is shorter than 16 bytes.
    pub fn build(self) -> Result<Auditor, ConfigError> {
        let invalid = |setting, reason| Err(ConfigError::Invalid { setting, reason });
        if self.capacity == 0 || self.batch_size == 0 || self.batch_size > self.capacity {
            return invalid(
                "audit capacity",
                "capacity and batch size must be positive and the batch no larger than the queue",
            );
        }
        if self.flush_interval.is_zero() {
            return invalid("audit flush interval", "must be positive");
        }
        if self.top_capacity < self.top_k {
            return invalid(
                "top offenders",
                "the summary must track at least as many keys as it exports",
            );
        }
        let pseudonyms = match &self.pseudonym_key {
            Some(key) if key.len() < 16 => {
                return invalid("audit pseudonym key", "must be at least 16 bytes");
            }
            Some(key) => Pseudonymizer::new(key),
            None => Pseudonymizer::random(),
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return invalid(
                "audit runtime",
                "Auditor::build must be called inside a Tokio runtime",
            );
        };
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::with_capacity(self.batch_size)),
            capacity: self.capacity,
            batch_size: self.batch_size,
            wake: wake.clone(),
            write_lock: tokio::sync::Mutex::new(()),
            sink: self
                .sink
                .unwrap_or_else(|| BoxAuditSink::new(TracingSink::new())),
            dropped: AtomicU64::new(0),
            written: AtomicU64::new(0),
            trace_prefix: random_u64(),
            trace_counter: AtomicU64::new(0),
            metrics: AuditMetrics::register(self.top_k),
            top: TopOffenders::new(self.top_capacity),
            top_k: self.top_k,
            pseudonyms,
            clock: self.clock,
        });
        runtime.spawn(consume(Arc::downgrade(&shared), wake, self.flush_interval));
        Ok(Auditor { shared })
    }
}

/// The consumer: drains on a full batch or on the timer, and stops once
/// every [`Auditor`] handle is gone.
async fn consume(shared: Weak<Shared>, wake: Arc<Notify>, interval: Duration) {
    loop {
        let _ = tokio::time::timeout(interval, wake.notified()).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.drain().await;
    }
}

fn random_u64() -> u64 {
    use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
    let mut bytes = [0_u8; 8];
    let _ = SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

impl Shared {
    /// Queues `item`, or drops and counts it when the queue is full.
    pub(crate) fn push(&self, item: Pending) {
        let len = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.len() >= self.capacity {
                drop(queue);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.dropped.increment(1);
                return;
            }
            queue.push(item);
            queue.len()
        };
        if len == self.batch_size {
            self.wake.notify_one();
        }
    }

    async fn drain(&self) {
        // Serialises writers so batches reach the sink in order.
        let _writing = self.write_lock.lock().await;
        let pending = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.is_empty() {
                return;
            }
            std::mem::replace(&mut *queue, Vec::with_capacity(self.batch_size))
        };
        let mut batch = Vec::with_capacity(pending.len());
        for item in pending {
            match item {
                Pending::Record(record) => batch.push(record),
                Pending::Request(entry) => entry.into_records(self, &mut batch),
            }
        }
        let mut counted = false;
        for record in &batch {
            if record.event == EventKind::AuthFailure && !record.shadow {
                let ip = record.ip_address.map(|ip| ip.to_string());
                self.top.record(ip.as_deref(), record.user_id.as_deref());
                counted = true;
            }
        }
        if counted {
            let ips: Vec<u64> = self
                .top
                .ips(self.top_k)
                .iter()
                .map(|o| o.failures)
                .collect();
            let accounts: Vec<u64> = self
                .top
                .accounts(self.top_k)
                .iter()
                .map(|o| o.failures)
                .collect();
            self.metrics.top_offenders(&ips, &accounts);
        }
        let n = batch.len() as u64;
        if self.sink.write_batch(&batch).await.is_ok() {
            self.written.fetch_add(n, Ordering::Relaxed);
        } else {
            self.dropped.fetch_add(n, Ordering::Relaxed);
            self.metrics.dropped.increment(n);
        }
    }

    /// A fresh W3C-shaped trace id (32 hex digits): a per-process random
    /// prefix and a counter, unique without a syscall per request.
    pub(crate) fn new_trace_id(&self) -> String {
        let n = self.trace_counter.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(32);
        push_hex(&mut id, self.trace_prefix);
        push_hex(&mut id, n);
        id
    }
}

/// Appends `word` as 16 lowercase hex digits.
fn push_hex(out: &mut String, word: u64) {
    for shift in (0..16).rev() {
        let nibble = (word >> (4 * shift)) & 0xf;
        out.push(char::from(
            b"0123456789abcdef"[usize::try_from(nibble).unwrap_or_default()],
        ));
    }
}

impl Auditor {
    /// A builder with the defaults.
    pub fn builder() -> AuditorBuilder {
        AuditorBuilder::default()
    }

    /// Reports an event that did not come with a response: an operator
    /// unlocking an account, a key created from the CLI, a breaker
    /// transition. The identifier is pseudonymized like any other.
    pub fn report(&self, event: &SecurityEvent) {
        let shared = &self.shared;
        let mut record = AuditRecord::new(event.kind(), shared.clock.now(), shared.new_trace_id());
        fill_from_event(&mut record, event, None, &shared.pseudonyms);
        count_event(shared, event);
        shared.push(Pending::Record(record));
    }

    /// Writes everything queued now, waiting for the sink. Call it before
    /// shutdown: records still queued when the last handle drops are lost.
    pub async fn flush(&self) {
        self.shared.drain().await;
    }

    /// Records dropped so far (queue full or sink error).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records handed to the sink successfully so far.
    #[must_use]
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// The top offenders by IP and account, counted from audit failures.
    #[must_use]
    pub fn top_offenders(&self) -> &TopOffenders {
        &self.shared.top
    }

    /// A transition listener for a [`CircuitBreakerLayer`] named `breaker`:
    /// it sets `portcullis_circuit_state{breaker}`, counts
    /// `portcullis_circuit_transitions_total{breaker,to}` and reports a
    /// `security.circuit_state_changed` event.
    ///
    /// [`CircuitBreakerLayer`]: crate::circuit_breaker::CircuitBreakerLayer
    #[cfg(feature = "circuit-breaker")]
    pub fn breaker_listener(
        &self,
        breaker: &str,
    ) -> impl Fn(&crate::circuit_breaker::Transition) + Send + Sync + 'static {
        use super::metrics::{circuit_state_value, names};
        use crate::circuit_breaker::State;

        let name = breaker.to_owned();
        let state = metrics::gauge!(names::CIRCUIT_STATE, "breaker" => name.clone());
        state.set(0.0);
        let to = [
            State::Closed,
            State::Open,
            State::HalfOpen,
            State::ForcedOpen,
            State::Disabled,
        ]
        .map(|s| {
            (
                s,
                metrics::counter!(
                    names::CIRCUIT_TRANSITIONS,
                    "breaker" => name.clone(),
                    "to" => s.as_str()
                ),
            )
        });
        let auditor = self.clone();
        move |transition| {
            state.set(circuit_state_value(transition.to()));
            if let Some((_, counter)) = to.iter().find(|(s, _)| *s == transition.to()) {
                counter.increment(1);
            }
            let detail = format!(
                "{}: {} -> {}",
                transition.name(),
                transition.from().as_str(),
                transition.to().as_str()
            );
            auditor.report(
                &SecurityEvent::new(EventKind::CircuitStateChanged)
                    .with_detail(super::redact::sanitize(&detail, 128).into_string()),
            );
        }
    }
}

impl fmt::Debug for Auditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auditor")
            .field("capacity", &self.shared.capacity)
            .field("batch_size", &self.shared.batch_size)
            .field("sink", &self.shared.sink)
            .field("dropped", &self.dropped())
            .field("written", &self.written())
            .finish_non_exhaustive()
    }
}

/// Copies an event's fields into a record, pseudonymizing the identifier.
pub(crate) fn fill_from_event(
    record: &mut AuditRecord,
    event: &SecurityEvent,
    request_ip: Option<IpAddr>,
    pseudonyms: &Pseudonymizer,
) {
    record.level = event.level();
    record.failure_reason = event.reason();
    record.user_id = event.identifier().map(|id| pseudonyms.identifier(id));
    record.ip_address = event.ip().or(request_ip);
    record.until = event.until();
    record.count = event.count();
    record.detail = event.detail().map(|d| d.to_owned().into());
    record.shadow = event.is_shadow();
    record.layer = layer_of_event(event.kind());
}

/// Counts the kind-specific metrics of an event.
pub(crate) fn count_event(shared: &Shared, event: &SecurityEvent) {
    if event.is_shadow() {
        if let Some(reason) = event.reason() {
            shared.metrics.shadow(reason);
        }
        return;
    }
    match event.kind() {
        EventKind::AccountLocked => shared.metrics.lockout(),
        EventKind::BruteForceDetected => shared.metrics.brute_force(),
        EventKind::IpBlocked => shared.metrics.ip_block(),
        EventKind::CaptchaChallenge => shared.metrics.captcha(match event.reason() {
            Some(portcullis_core::FailureReason::CaptchaRequired) => CaptchaOutcome::Required,
            Some(_) => CaptchaOutcome::Failed,
            None => CaptchaOutcome::Passed,
        }),
        _ => {}
    }
}

const fn layer_of_event(kind: EventKind) -> Option<&'static str> {
    match kind {
        EventKind::BruteForceDetected | EventKind::AccountLocked | EventKind::AccountUnlocked => {
            Some("lockout")
        }
        EventKind::IpBlocked => Some("block_list"),
        EventKind::CsrfViolation => Some("csrf"),
        EventKind::CaptchaChallenge => Some("captcha"),
        EventKind::CircuitStateChanged => Some("circuit_breaker"),
        EventKind::ApiKeyCreated | EventKind::ApiKeyRevoked => Some("api_key"),
        EventKind::TokenRevoked => Some("jwt"),
        _ => None,
    }
}
