//! Cases for [`RateLimitStore`]: one atomic GCRA step per check, agreeing
//! with [`gcra_step`].

use std::time::Duration;

use portcullis_core::rate_limit::{epoch_millis, gcra_step};
use portcullis_core::{RateDecision, RateLimitStore, RateQuota};

use crate::{StoreFactory, build, in_parallel, secs};

async fn check<S: RateLimitStore>(
    store: &S,
    key: &str,
    q: &RateQuota,
    now: std::time::SystemTime,
) -> RateDecision {
    store
        .check(key, q, now)
        .await
        .unwrap_or_else(|e| panic!("check failed: {e}"))
}

/// A burst of 3 passes at once, the 4th waits exactly one period, and one
/// period later one more passes.
pub async fn a_burst_then_one_per_period<S: RateLimitStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    let q = RateQuota::new(Duration::from_millis(500), 3);
    for _ in 0..3 {
        assert_eq!(check(&*store, "ip:a", &q, now).await, RateDecision::Allowed);
    }
    assert_eq!(
        check(&*store, "ip:a", &q, now).await,
        RateDecision::Limited {
            retry_after: Duration::from_millis(500)
        }
    );
    let later = now + Duration::from_millis(500);
    assert_eq!(
        check(&*store, "ip:a", &q, later).await,
        RateDecision::Allowed
    );
    assert!(matches!(
        check(&*store, "ip:a", &q, later).await,
        RateDecision::Limited { .. }
    ));
}

/// 100 concurrent checks against a burst of 10 (and a slow refill): exactly
/// 10 pass.
pub async fn concurrent_checks_allow_exactly_the_burst<S: RateLimitStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    let q = RateQuota::new(Duration::from_secs(3600), 10);
    let results = in_parallel(100, |_| {
        let store = store.clone();
        async move { store.check("ip:burst", &q, now).await }
    })
    .await;
    let allowed = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("check failed: {e}")))
        .filter(|d| *d == RateDecision::Allowed)
        .count();
    assert_eq!(allowed, 10);
}

/// 300 checks at irregular times with two quotas: every decision equals
/// the reference [`gcra_step`]'s.
pub async fn matches_the_reference_gcra<S: RateLimitStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let mut now = secs(&clock, 0);
    let quotas = [
        RateQuota::new(Duration::from_millis(250), 4),
        RateQuota::new(Duration::from_millis(1000), 1),
    ];
    let mut tats = [None, None];
    let mut x: u64 = 7;
    for step in 0..300 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        now += Duration::from_millis((x >> 40) % 400);
        let k = usize::try_from((x >> 20) % 2).unwrap_or(0);
        let key = if k == 0 { "ref:fast" } else { "ref:slow" };
        let (want, tat) = gcra_step(tats[k], &quotas[k], epoch_millis(now));
        tats[k] = Some(tat);
        assert_eq!(
            check(&*store, key, &quotas[k], now).await,
            want,
            "step {step}"
        );
    }
}

/// Spending one key's budget leaves another's whole.
pub async fn keys_have_separate_budgets<S: RateLimitStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    let q = RateQuota::new(Duration::from_secs(60), 1);
    assert_eq!(check(&*store, "ip:1", &q, now).await, RateDecision::Allowed);
    assert!(matches!(
        check(&*store, "ip:1", &q, now).await,
        RateDecision::Limited { .. }
    ));
    assert_eq!(check(&*store, "ip:2", &q, now).await, RateDecision::Allowed);
    assert_eq!(
        check(&*store, "ip:1{x}", &q, now).await,
        RateDecision::Allowed
    );
}
