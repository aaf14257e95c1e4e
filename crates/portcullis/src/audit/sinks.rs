//! Sinks shipped with the audit layer: `tracing` and JSON lines.
//!
//! [`MemoryAuditSink`](crate::core::MemoryAuditSink) (bounded, for tests
//! and admin views) and [`FanOutSink`](crate::core::FanOutSink) live in
//! core; database sinks live in the store crates.

use std::fmt;
use std::io::Write;
use std::sync::{Mutex, PoisonError};

use portcullis_core::audit::rfc3339;
use portcullis_core::{AuditRecord, AuditSink, EventLevel, StoreError, StoreErrorKind};

/// Emits each record as one `tracing` event with target
/// `portcullis::audit`, every context field a structured field, so an
/// application's JSON subscriber prints one line per event.
///
/// The levels map `INFO`/`WARNING`/`ERROR` to `INFO`/`WARN`/`ERROR`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink {
    _private: (),
}

impl TracingSink {
    /// A tracing sink.
    #[must_use]
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

macro_rules! audit_event {
    ($level:expr, $record:expr) => {{
        let r = $record;
        tracing::event!(
            target: "portcullis::audit",
            $level,
            event = r.event.name(),
            timestamp = %rfc3339(r.timestamp),
            user_id = r.user_id.as_deref(),
            ip_address = r.ip_address.map(tracing::field::display),
            failure_reason = r.failure_reason.map(|f| f.as_str()),
            auth_method = r.auth_method.map(|m| m.as_str()),
            layer = r.layer,
            token_prefix = r.token_prefix.as_deref(),
            endpoint = r.endpoint.as_deref(),
            http_method = r.http_method.as_deref(),
            user_agent = r.user_agent.as_deref(),
            status = r.status,
            count = r.count,
            detail = r.detail.as_deref(),
            shadow = r.shadow,
            fallback = r.fallback,
            trace_id = &*r.trace_id,
            "{}",
            r.message
        );
    }};
}

impl AuditSink for TracingSink {
    async fn write_batch(&self, batch: &[AuditRecord]) -> Result<(), StoreError> {
        for record in batch {
            match record.level {
                EventLevel::Info => audit_event!(tracing::Level::INFO, record),
                EventLevel::Warning => audit_event!(tracing::Level::WARN, record),
                EventLevel::Error => audit_event!(tracing::Level::ERROR, record),
            }
        }
        Ok(())
    }
}

/// Writes each record as one line of seed 000's JSON to any writer (a
/// file, stdout), so `jq` over the file answers the runbooks' questions.
///
/// Writes happen on the audit consumer task; for a slow device wrap the
/// writer in a `BufWriter` (the sink flushes after every batch).
pub struct JsonLinesSink<W> {
    writer: Mutex<W>,
}

impl<W: Write + Send + 'static> JsonLinesSink<W> {
    /// A sink writing to `writer`.
    pub fn new(writer: W) -> Self {
        Self {
            writer: Mutex::new(writer),
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.writer
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<W> fmt::Debug for JsonLinesSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink").finish_non_exhaustive()
    }
}

impl<W: Write + Send + 'static> AuditSink for JsonLinesSink<W> {
    async fn write_batch(&self, batch: &[AuditRecord]) -> Result<(), StoreError> {
        let mut out = String::with_capacity(batch.len() * 320);
        for record in batch {
            out.push_str(&record.to_json_line());
            out.push('\n');
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer
            .write_all(out.as_bytes())
            .and_then(|()| writer.flush())
            .map_err(|error| {
                StoreError::new(StoreErrorKind::Unavailable, "audit writer failed")
                    .with_source(error)
            })
    }
}
