//! [`RateLimitStore`] on Redis: the GCRA of
//! [`gcra_step`](portcullis_core::rate_limit::gcra_step) in a Lua script.

use std::fmt;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use portcullis_core::{RateDecision, RateLimitStore, RateQuota, StoreError};
use redis::Script;

use crate::backend::{RedisBackend, corrupt, millis};

/// One GCRA step, the same rule as `gcra_step`, in integer milliseconds.
///
/// ARGV: period, tolerance (`period × (burst − 1)`), now. Returns `{1, 0}`
/// when allowed (and stores the new TAT with `PX` = TAT − now, i.e.
/// `gcra_ttl`), `{0, retry_after_ms}` when limited (nothing written),
/// `{-1, 0}` when the stored TAT is not a number.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local period = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local tat = 0
if stored then
  tat = tonumber(stored)
  if not tat then return {-1, 0} end
end
if tat < now then tat = now end
local allow_at = tat - tolerance
if allow_at < 0 then allow_at = 0 end
if allow_at > now then return {0, allow_at - now} end
local new_tat = tat + period
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', new_tat - now))
return {1, 0}
",
    )
});

/// Longest period the script computes with exactly (about 35 000 years):
/// longer ones are treated as this long, so every intermediate value stays
/// below 2^53, where Lua's doubles are exact integers.
const MAX_PERIOD_MS: u64 = 1 << 50;
/// Largest tolerance passed to the script (see [`MAX_PERIOD_MS`]).
const MAX_TOLERANCE_MS: u64 = 1 << 51;

/// Shared GCRA rate limits in Redis.
///
/// One key per limited key, `prefix:rl:{key}` (escaped), holding the
/// theoretical arrival time in milliseconds with a TTL of
/// [`gcra_ttl`](portcullis_core::rate_limit::gcra_ttl). Each
/// [`check`](RateLimitStore::check) is one script on that key, so instances
/// sharing the server draw from one budget. The caller's `now` is used:
/// instances need clocks in step (NTP).
#[derive(Clone)]
pub struct RedisRateLimitStore {
    backend: RedisBackend,
}

impl fmt::Debug for RedisRateLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimitStore")
            .field("backend", &self.backend)
            .finish()
    }
}

impl RedisRateLimitStore {
    pub(crate) fn new(backend: RedisBackend) -> Self {
        Self { backend }
    }
}

/// The script's period and tolerance for `quota`, as `gcra_step` computes
/// them, capped (see [`MAX_PERIOD_MS`]).
fn script_params(quota: &RateQuota) -> (u64, u64) {
    let period = u64::try_from(quota.period.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_PERIOD_MS);
    let tolerance = period
        .saturating_mul(u64::from(quota.burst.max(1) - 1))
        .min(MAX_TOLERANCE_MS);
    (period, tolerance)
}

impl RateLimitStore for RedisRateLimitStore {
    async fn check(
        &self,
        key: &str,
        quota: &RateQuota,
        now: SystemTime,
    ) -> Result<RateDecision, StoreError> {
        let (period, tolerance) = script_params(quota);
        let (allowed, retry_ms): (i64, i64) = self
            .backend
            .invoke(
                GCRA.key(self.backend.tagged_key("rl", key))
                    .arg(period)
                    .arg(tolerance)
                    .arg(millis(now)),
            )
            .await?;
        match allowed {
            1 => Ok(RateDecision::Allowed),
            0 => Ok(RateDecision::Limited {
                retry_after: Duration::from_millis(u64::try_from(retry_ms).unwrap_or(0)),
            }),
            _ => Err(corrupt("rate-limit state is not a number")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_match_gcra_step() {
        let q = RateQuota::new(Duration::from_millis(100), 3);
        assert_eq!(script_params(&q), (100, 200));
        let q = RateQuota::new(Duration::ZERO, 0);
        assert_eq!(script_params(&q), (1, 0));
        let q = RateQuota::new(Duration::MAX, u32::MAX);
        assert_eq!(script_params(&q), (MAX_PERIOD_MS, MAX_TOLERANCE_MS));
    }
}
