//! [`BlockListStore`] on the `ip_blocks` table.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::SystemTime;

use ipnet::IpNet;
use portcullis_core::{BlockEntry, BlockListStore, StoreError};

use crate::engine::{Arg, Db, Row, millis, time};
use crate::error::{Result, corrupt};

const UPSERT: &str = "INSERT INTO ip_blocks (network, blocked_until, reason, created_at) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (network) DO UPDATE SET blocked_until = excluded.blocked_until, \
     reason = excluded.reason, created_at = excluded.created_at";

const DELETE: &str = "DELETE FROM ip_blocks WHERE network = $1 \
     RETURNING network, blocked_until, reason, created_at";

const LIST: &str = "SELECT network, blocked_until, reason, created_at FROM ip_blocks \
     WHERE blocked_until IS NULL OR blocked_until > $1 ORDER BY network";

/// `SELECT … WHERE network IN ($2, …, $n+1)` for the `n` prefixes of an
/// address, built once from placeholders only: no value is ever formatted
/// into it.
fn find_sql(prefixes: usize) -> String {
    let mut sql = String::from(
        "SELECT network, blocked_until, reason, created_at FROM ip_blocks \
         WHERE (blocked_until IS NULL OR blocked_until > $1) AND network IN (",
    );
    for i in 0..prefixes {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&(i + 2).to_string());
    }
    sql.push(')');
    sql
}

static FIND_V4: LazyLock<String> = LazyLock::new(|| find_sql(33));
static FIND_V6: LazyLock<String> = LazyLock::new(|| find_sql(129));

/// A [`BlockListStore`] in the `ip_blocks` table.
///
/// Networks are stored in canonical form (`IpNet::trunc`, e.g.
/// `203.0.113.0/24`; a single address as `/32` or `/128`) as the primary
/// key. [`find`](BlockListStore::find) is one indexed query: it asks for
/// every network that could cover the address — its 33 (IPv4) or 129
/// (IPv6) prefixes — and keeps the most specific entry in force.
#[derive(Clone)]
pub struct SqlBlockList {
    db: Db,
}

impl SqlBlockList {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }
}

store_handle!(SqlBlockList);

fn entry(row: &Row) -> Result<BlockEntry> {
    let network: IpNet = row
        .text(0)?
        .parse()
        .map_err(|_| corrupt("stored blocked network is malformed"))?;
    Ok(BlockEntry {
        network,
        until: row.opt_int(1)?.map(time),
        reason: row.text(2)?,
        created_at: time(row.int(3)?),
    })
}

/// Every network of which `ip` is a member, from the address itself
/// (`/32`, `/128`) to `/0`, in canonical text.
fn covering(ip: IpAddr) -> Vec<String> {
    let ip = ip.to_canonical();
    let max = match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    (0..=max)
        .rev()
        .filter_map(|len| IpNet::new(ip, len).ok())
        .map(|net| net.trunc().to_string())
        .collect()
}

impl BlockListStore for SqlBlockList {
    async fn block(&self, entry: BlockEntry) -> Result<(), StoreError> {
        let network = entry.network.trunc().to_string();
        let args = [
            Arg::Text(&network),
            Arg::OptInt(entry.until.map(millis)),
            Arg::Text(&entry.reason),
            Arg::Int(millis(entry.created_at)),
        ];
        self.db
            .run_execute("could not block the network", UPSERT, &args)
            .await?;
        Ok(())
    }

    async fn unblock(&self, network: IpNet) -> Result<Option<BlockEntry>, StoreError> {
        let network = network.trunc().to_string();
        self.db
            .run("could not unblock the network", async {
                let rows = self.db.write(DELETE, &[Arg::Text(&network)]).await?;
                rows.first().map(entry).transpose()
            })
            .await
    }

    async fn find(&self, ip: IpAddr, now: SystemTime) -> Result<Option<BlockEntry>, StoreError> {
        let prefixes = covering(ip);
        let sql = if prefixes.len() == 33 {
            FIND_V4.as_str()
        } else {
            FIND_V6.as_str()
        };
        let mut args = Vec::with_capacity(prefixes.len() + 1);
        args.push(Arg::Int(millis(now)));
        args.extend(prefixes.iter().map(|p| Arg::Text(p)));
        self.db
            .run("could not check the block list", async {
                let mut best: Option<BlockEntry> = None;
                for row in self.db.read(sql, &args).await? {
                    let found = entry(&row)?;
                    if best
                        .as_ref()
                        .is_none_or(|b| found.network.prefix_len() > b.network.prefix_len())
                    {
                        best = Some(found);
                    }
                }
                Ok(best)
            })
            .await
    }

    async fn list(&self, now: SystemTime) -> Result<Vec<BlockEntry>, StoreError> {
        self.db
            .run("could not list the block list", async {
                self.db
                    .read(LIST, &[Arg::Int(millis(now))])
                    .await?
                    .iter()
                    .map(entry)
                    .collect()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_lists_every_prefix_canonically() {
        let v4 = covering("203.0.113.77".parse().unwrap());
        assert_eq!(v4.len(), 33);
        assert_eq!(v4[0], "203.0.113.77/32");
        assert_eq!(v4[8], "203.0.113.0/24");
        assert_eq!(v4[32], "0.0.0.0/0");
        let mapped = covering("::ffff:203.0.113.77".parse().unwrap());
        assert_eq!(mapped, v4, "IPv4-mapped addresses match IPv4 entries");
        let v6 = covering("2001:db8::1".parse().unwrap());
        assert_eq!(v6.len(), 129);
        assert_eq!(v6[96], "2001:db8::/32");
        assert!(FIND_V6.ends_with("$130)"));
        assert!(FIND_V4.contains("$2, $3"));
    }
}
