//! [`AuditSink`] on the `audit_logs` table.

use std::borrow::Cow;
use std::sync::LazyLock;

use portcullis_core::{AuditRecord, AuditSink, StoreError};
use serde_json::Value;

use crate::engine::{Arg, Db, millis};
use crate::error::corrupt;

/// Most records one `INSERT` carries (six parameters each).
const ROWS_PER_INSERT: usize = 64;

/// `INSERT … VALUES (…), (…)` for 1 to [`ROWS_PER_INSERT`] rows, built once
/// from placeholders only.
static INSERTS: LazyLock<Vec<String>> = LazyLock::new(|| {
    (1..=ROWS_PER_INSERT)
        .map(|rows| {
            let mut sql = String::from(
                "INSERT INTO audit_logs \
                 (user_id, action, details, ip_address, user_agent, created_at) VALUES ",
            );
            for row in 0..rows {
                if row > 0 {
                    sql.push_str(", ");
                }
                let first = row * 6 + 1;
                let params: Vec<String> = (first..first + 6).map(|n| format!("${n}")).collect();
                sql.push('(');
                sql.push_str(&params.join(", "));
                sql.push(')');
            }
            sql
        })
        .collect()
});

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
                for chunk in batch.chunks(ROWS_PER_INSERT) {
                    let rows: Vec<Columns<'_>> = chunk.iter().map(Columns::of).collect();
                    let args: Vec<Arg<'_>> = rows.iter().flat_map(Columns::args).collect();
                    let sql = INSERTS[chunk.len() - 1].as_str();
                    tx.execute(sql, &args).await?;
                }
                tx.commit().await?;
                Ok(())
            })
            .await
    }
}

/// The column values of one record.
struct Columns<'a> {
    user_id: Option<Cow<'a, str>>,
    action: &'static str,
    details: String,
    ip_address: Option<String>,
    user_agent: Option<Cow<'a, str>>,
    created_at: i64,
}

impl<'a> Columns<'a> {
    fn of(record: &'a AuditRecord) -> Self {
        Self {
            user_id: column(record.user_id.as_deref()),
            action: record.event.name(),
            details: record.to_json_line(),
            ip_address: record.ip_address.map(|ip| ip.to_string()),
            user_agent: column(record.user_agent.as_deref()),
            created_at: millis(record.timestamp),
        }
    }

    fn args(&self) -> [Arg<'_>; 6] {
        [
            Arg::OptText(self.user_id.as_deref()),
            Arg::Text(self.action),
            Arg::Text(&self.details),
            Arg::OptText(self.ip_address.as_deref()),
            Arg::OptText(self.user_agent.as_deref()),
            Arg::Int(self.created_at),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_inserts_number_every_parameter() {
        assert!(INSERTS[0].ends_with("VALUES ($1, $2, $3, $4, $5, $6)"));
        assert!(INSERTS[1].ends_with("($7, $8, $9, $10, $11, $12)"));
        assert!(INSERTS[ROWS_PER_INSERT - 1].ends_with("$384)"));
    }
}
