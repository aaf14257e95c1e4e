//! [`AuditSink`] on Redis: a capped stream of JSON records.

use std::fmt;

use portcullis_core::{AuditRecord, AuditSink, StoreError};

use crate::backend::{RedisBackend, corrupt};

/// Records written per pipeline.
const CHUNK: usize = 500;

/// Most records [`RedisAuditSink::recent_json`] returns in one call.
pub const MAX_READ_BACK: usize = 10_000;

/// Audit records in a Redis stream.
///
/// One stream, `prefix:audit`; each entry has one field, `json`, holding
/// [`AuditRecord::to_json`]'s text. Each batch is written with
/// `XADD prefix:audit MAXLEN ~ <max_len> * json <record>` per record, in
/// one `MULTI` transaction per 500 records, so a batch's records are
/// consecutive and in order. `MAXLEN ~` keeps the stream near
/// [`max_len`](Self::with_max_len) entries (default 100 000), dropping the
/// oldest. Consumers read it with `XREAD`/`XRANGE` or consumer groups;
/// [`recent_json`](Self::recent_json) reads the newest records back.
#[derive(Clone)]
pub struct RedisAuditSink {
    backend: RedisBackend,
    max_len: usize,
}

impl fmt::Debug for RedisAuditSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAuditSink")
            .field("backend", &self.backend)
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl RedisAuditSink {
    /// Default cap on the stream's length.
    pub const DEFAULT_MAX_LEN: usize = 100_000;

    pub(crate) fn new(backend: RedisBackend) -> Self {
        Self {
            backend,
            max_len: Self::DEFAULT_MAX_LEN,
        }
    }

    /// Keeps about `max_len` records (at least 1); older ones are dropped.
    #[must_use]
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    fn key(&self) -> String {
        self.backend.plain_key("audit")
    }

    /// The newest `limit` records (at most [`MAX_READ_BACK`]) as JSON,
    /// oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`](portcullis_core::StoreErrorKind::Unavailable)
    /// or `Timeout` when Redis cannot answer;
    /// [`StoreErrorKind::Corrupt`](portcullis_core::StoreErrorKind::Corrupt)
    /// when an entry is not a JSON record.
    pub async fn recent_json(&self, limit: usize) -> Result<Vec<serde_json::Value>, StoreError> {
        let limit = limit.min(MAX_READ_BACK);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let entries: Vec<(String, Vec<String>)> = self
            .backend
            .query(
                redis::cmd("XREVRANGE")
                    .arg(self.key())
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(limit),
            )
            .await?;
        let mut out = Vec::with_capacity(entries.len());
        for (_, fields) in entries.into_iter().rev() {
            let json = match fields.as_slice() {
                [name, value] if name == "json" => value,
                _ => return Err(corrupt("audit stream entry is malformed")),
            };
            let value = serde_json::from_str(json)
                .map_err(|e| corrupt("audit stream entry is not JSON").with_source(e))?;
            out.push(value);
        }
        Ok(out)
    }
}

impl AuditSink for RedisAuditSink {
    async fn write_batch(&self, batch: &[AuditRecord]) -> Result<(), StoreError> {
        let key = self.key();
        for chunk in batch.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for record in chunk {
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.max_len)
                    .arg("*")
                    .arg("json")
                    .arg(record.to_json_line())
                    .ignore();
            }
            let () = self.backend.query_pipe(&pipe).await?;
        }
        Ok(())
    }
}
