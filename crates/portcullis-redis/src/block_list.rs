//! [`BlockListStore`] on Redis: one hash, network text to entry.

use std::fmt;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::SystemTime;

use ipnet::IpNet;
use portcullis_core::{BlockEntry, BlockListStore, StoreError};
use redis::Script;

use crate::backend::{RedisBackend, corrupt, millis, time_of_millis};

/// HGET + HDEL of one field, atomically.
static TAKE_FIELD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
",
    )
});

/// Deletes entries whose end (the text before the first `;`) is at or
/// before ARGV[1]; returns how many.
static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  local untl = tonumber(string.match(all[i + 1], '^(%d+);'))
  if untl and untl <= now then
    redis.call('HDEL', KEYS[1], all[i])
    n = n + 1
  end
end
return n
",
    )
});

/// The IP block list in Redis.
///
/// One hash, `prefix:blocks`: field = the network in canonical text
/// (`IpNet::trunc()`, e.g. `10.0.0.0/8`, `192.0.2.7/32`), value =
/// `<until ms or ->;<created ms>;<reason>`. [`block`](BlockListStore::block)
/// is one `HSET` (an upsert); [`unblock`](BlockListStore::unblock) an
/// atomic get-and-delete script; [`find`](BlockListStore::find) one `HMGET`
/// of the 33 (IPv4) or 129 (IPv6) networks that can cover the address,
/// answering the most specific entry in force;
/// [`list`](BlockListStore::list) an `HGETALL`, filtered. Expired entries
/// never match; [`purge_expired`](Self::purge_expired) deletes them.
#[derive(Clone)]
pub struct RedisBlockList {
    backend: RedisBackend,
}

impl fmt::Debug for RedisBlockList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBlockList")
            .field("backend", &self.backend)
            .finish()
    }
}

fn encode(entry: &BlockEntry) -> String {
    let until = entry
        .until
        .map_or_else(|| "-".to_owned(), |u| millis(u).to_string());
    format!("{until};{};{}", millis(entry.created_at), entry.reason)
}

fn decode(network: &str, value: &str) -> Result<BlockEntry, StoreError> {
    let bad = || corrupt("block-list entry is malformed");
    let network: IpNet = network.parse().map_err(|_| bad())?;
    let mut parts = value.splitn(3, ';');
    let until = match parts.next().ok_or_else(bad)? {
        "-" => None,
        ms => Some(time_of_millis(ms.parse().map_err(|_| bad())?)),
    };
    let created: u64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let reason = parts.next().ok_or_else(bad)?;
    Ok(BlockEntry {
        network,
        until,
        reason: reason.to_owned(),
        created_at: time_of_millis(created),
    })
}

/// Every network that can contain `ip`, most specific first.
fn covering(ip: IpAddr) -> Vec<String> {
    let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
    (0..=max)
        .rev()
        .filter_map(|len| IpNet::new(ip, len).ok())
        .map(|net| net.trunc().to_string())
        .collect()
}

impl RedisBlockList {
    pub(crate) fn new(backend: RedisBackend) -> Self {
        Self { backend }
    }

    fn key(&self) -> String {
        self.backend.plain_key("blocks")
    }

    /// Deletes entries that ended at or before `now`; returns how many.
    /// O(entries), in one script.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::Unavailable`](portcullis_core::StoreErrorKind::Unavailable)
    /// or `Timeout` when Redis cannot answer.
    pub async fn purge_expired(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.backend
            .invoke(PURGE.key(self.key()).arg(millis(now)))
            .await
    }
}

impl BlockListStore for RedisBlockList {
    async fn block(&self, entry: BlockEntry) -> Result<(), StoreError> {
        // Canonical network, bounded reason without control characters,
        // whatever the caller built.
        let entry = BlockEntry::new(entry.network, entry.until, &entry.reason, entry.created_at);
        let _: i64 = self
            .backend
            .query(
                redis::cmd("HSET")
                    .arg(self.key())
                    .arg(entry.network.to_string())
                    .arg(encode(&entry)),
            )
            .await?;
        Ok(())
    }

    async fn unblock(&self, network: IpNet) -> Result<Option<BlockEntry>, StoreError> {
        let field = network.trunc().to_string();
        let value: Option<String> = self
            .backend
            .invoke(TAKE_FIELD.key(self.key()).arg(&field))
            .await?;
        value.map(|v| decode(&field, &v)).transpose()
    }

    async fn find(&self, ip: IpAddr, now: SystemTime) -> Result<Option<BlockEntry>, StoreError> {
        let fields = covering(ip.to_canonical());
        let values: Vec<Option<String>> = self
            .backend
            .query(redis::cmd("HMGET").arg(self.key()).arg(&fields))
            .await?;
        for (field, value) in fields.iter().zip(values) {
            if let Some(value) = value {
                let entry = decode(field, &value)?;
                if entry.is_active(now) {
                    return Ok(Some(entry));
                }
            }
        }
        Ok(None)
    }

    async fn list(&self, now: SystemTime) -> Result<Vec<BlockEntry>, StoreError> {
        let all: Vec<(String, String)> = self
            .backend
            .query(redis::cmd("HGETALL").arg(self.key()))
            .await?;
        let mut out = Vec::with_capacity(all.len());
        for (field, value) in all {
            let entry = decode(&field, &value)?;
            if entry.is_active(now) {
                out.push(entry);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn covering_networks_are_canonical() {
        let v4 = covering("192.0.2.7".parse().unwrap());
        assert_eq!(v4.len(), 33);
        assert_eq!(v4[0], "192.0.2.7/32");
        assert_eq!(v4[8], "192.0.2.0/24");
        assert_eq!(v4[32], "0.0.0.0/0");
        assert_eq!(covering("2001:db8::1".parse().unwrap()).len(), 129);
    }

    #[test]
    fn entries_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let entry = BlockEntry::new("10.1.2.3/8".parse::<IpNet>().unwrap(), Some(t), "a;b", t);
        let back = decode(&entry.network.to_string(), &encode(&entry)).unwrap();
        assert_eq!(back, entry);
        assert!(decode("10.0.0.0/8", "x;1;r").is_err());
        assert!(decode("nope", "-;1;r").is_err());
    }
}
