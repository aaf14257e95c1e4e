//! [`AuditSink`] on the `audit_logs` table.

use std::borrow::Cow;

use portcullis_core::{AuditRecord, AuditSink, StoreError};
use serde_json::Value;

use crate::engine::{Arg, Db, millis};
use crate::error::corrupt;

const INSERT: &str = "INSERT INTO audit_logs \
     (user_id, action, details, ip_address, user_agent, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";

const RECENT: &str = "SELECT details FROM audit_logs ORDER BY id DESC LIMIT $1";

/// An [`AuditSink`] writing to seed 003's `audit_logs` table.
///
/// One row per record: `action` is the event name
/// (`security.auth_failure`), `details` the record's JSON
/// ([`AuditRecord::to_json`], seed 000's shape), `user_id`, `ip_address`
/// and `user_agent` copied out of it for queries, `created_at` the record's
/// timestamp. A batch is written in one transaction: all of it or nothing.
#[derive(Clone)]
pub struct SqlAuditSink {
    db: Db,
}

impl SqlAuditSink {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    /// The JSON of the latest `limit` records, oldest first.
    ///
    /// # Errors
    ///
    /// When the database cannot be read, or a stored record is not JSON
    /// ([`StoreErrorKind::Corrupt`](portcullis_core::StoreErrorKind::Corrupt)).
    pub async fn recent_json(&self, limit: usize) -> Result<Vec<Value>, StoreError> {
        let args = [Arg::Int(crate::engine::limit(limit))];
        self.db
            .run("could not read the audit log", async {
                let mut out = Vec::new();
                for row in self.db.read(RECENT, &args).await? {
                    let value = serde_json::from_str(&row.text(0)?)
                        .map_err(|_| corrupt("stored audit record is not JSON"))?;
                    out.push(value);
                }
                out.reverse();
                Ok(out)
            })
            .await
    }
}

/// A copy of `text` for a query column, without NUL (which PostgreSQL text
/// cannot hold); `details` keeps the exact record.
fn column(text: Option<&str>) -> Option<Cow<'_, str>> {
    text.map(|t| {
        if t.contains('\0') {
            Cow::Owned(t.replace('\0', ""))
        } else {
            Cow::Borrowed(t)
        }
    })
}

store_handle!(SqlAuditSink);

impl AuditSink for SqlAuditSink {
    async fn write_batch(&self, batch: &[AuditRecord]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.db
            .run("could not write audit records", async {
                let mut tx = self.db.begin().await?;
                for record in batch {
                    let details = record.to_json_line();
                    let ip = record.ip_address.map(|ip| ip.to_string());
                    let user_id = column(record.user_id.as_deref());
                    let user_agent = column(record.user_agent.as_deref());
                    tx.execute(
                        INSERT,
                        &[
                            Arg::OptText(user_id.as_deref()),
                            Arg::Text(record.event.name()),
                            Arg::Text(&details),
                            Arg::OptText(ip.as_deref()),
                            Arg::OptText(user_agent.as_deref()),
                            Arg::Int(millis(record.timestamp)),
                        ],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            })
            .await
    }
}
