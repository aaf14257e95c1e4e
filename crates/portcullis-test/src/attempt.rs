//! Cases for [`AttemptStore`]: the contract on its trait documentation,
//! and agreement with [`AttemptState`], the reference state machine.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use portcullis_core::{
    Admission, AttemptKey, AttemptKeyKind, AttemptPolicy, AttemptState, AttemptStatus,
    AttemptStore, FailureRecord, Lock, ResetScope,
};

use crate::{StoreFactory, build, in_parallel, secs};

fn policy(limit: u32) -> AttemptPolicy {
    AttemptPolicy::new(limit, Duration::from_secs(300), Duration::from_secs(600))
}

fn account(name: &str) -> AttemptKey {
    AttemptKey::Account(name.into())
}

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("bad test address {text}: {e}"))
}

async fn begin<S: AttemptStore>(
    store: &S,
    key: &AttemptKey,
    p: &AttemptPolicy,
    now: SystemTime,
) -> Admission {
    store
        .begin(key, p, true, now)
        .await
        .unwrap_or_else(|e| panic!("begin failed: {e}"))
}

async fn fail<S: AttemptStore>(
    store: &S,
    key: &AttemptKey,
    p: &AttemptPolicy,
    now: SystemTime,
) -> FailureRecord {
    store
        .record_failure(key, p, false, now)
        .await
        .unwrap_or_else(|e| panic!("record_failure failed: {e}"))
}

async fn status<S: AttemptStore>(store: &S, key: &AttemptKey, now: SystemTime) -> AttemptStatus {
    store
        .status(key, Duration::from_secs(300), now)
        .await
        .unwrap_or_else(|e| panic!("status failed: {e}"))
        .unwrap_or_else(|| panic!("status: the key is unknown"))
}

/// 50 failures recorded at once are 50 failures: no lost update.
pub async fn parallel_failures_count_exactly<S: AttemptStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    let p = policy(1000);
    let results = in_parallel(50, |_| {
        let store = store.clone();
        let p = p.clone();
        async move {
            store
                .record_failure(&account("alice"), &p, false, now)
                .await
        }
    })
    .await;
    assert!(
        results.iter().all(Result::is_ok),
        "every record_failure succeeds"
    );
    let s = status(&*store, &account("alice"), now).await;
    assert_eq!((s.failures, s.consecutive), (50, 50));
}

/// 200 concurrent `begin`s against a limit of 5 admit exactly 5: the
/// reservation is taken in the same atomic step as the check.
pub async fn concurrent_begins_admit_exactly_the_limit<S: AttemptStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    let p = policy(5);
    let results = in_parallel(200, |_| {
        let store = store.clone();
        let p = p.clone();
        async move { store.begin(&account("alice"), &p, true, now).await }
    })
    .await;
    let mut admitted = 0;
    for result in results {
        match result {
            Ok(Admission::Admitted { .. }) => admitted += 1,
            Ok(Admission::Busy) => {}
            other => panic!("unexpected answer to begin: {other:?}"),
        }
    }
    assert_eq!(admitted, 5);
    assert_eq!(status(&*store, &account("alice"), now).await.in_flight, 5);
}

/// The `limit`-th failure locks the key for the policy's lock duration;
/// locked, `begin` answers `Locked`; after the lock the log starts afresh.
pub async fn the_limit_locks_and_the_lock_ends<S: AttemptStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let t = |s| secs(&clock, s);
    let p = policy(3);
    let key = account("alice");
    for n in 1..=3 {
        assert!(matches!(
            begin(&*store, &key, &p, t(n)).await,
            Admission::Admitted { .. }
        ));
        let r = store
            .record_failure(&key, &p, true, t(n))
            .await
            .unwrap_or_else(|e| panic!("record_failure failed: {e}"));
        assert_eq!(r.failures, u32::try_from(n).unwrap_or(0));
        assert_eq!(r.newly_locked, n == 3);
    }
    let until = t(3) + Duration::from_secs(600);
    assert_eq!(
        begin(&*store, &key, &p, t(4)).await,
        Admission::Locked(Lock::Until(until))
    );
    assert_eq!(
        status(&*store, &key, t(4)).await.lock,
        Some(Lock::Until(until))
    );
    assert_eq!(
        begin(&*store, &key, &p, t(603)).await,
        Admission::Admitted {
            failures: 0,
            consecutive: 3
        }
    );
}

/// Failures older than the window stop counting (an exact sliding log).
pub async fn the_window_slides<S: AttemptStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let t = |s| secs(&clock, s);
    let p = policy(5);
    let key = account("alice");
    fail(&*store, &key, &p, t(0)).await;
    fail(&*store, &key, &p, t(100)).await;
    assert_eq!(status(&*store, &key, t(299)).await.failures, 2);
    assert_eq!(status(&*store, &key, t(300)).await.failures, 1);
    assert_eq!(fail(&*store, &key, &p, t(301)).await.failures, 2);
}

/// A reservation whose request vanished stops counting after the policy's
/// reservation TTL, so a crash cannot block an account.
pub async fn reservations_expire<S: AttemptStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let t = |s| secs(&clock, s);
    let p = policy(2).with_reservation_ttl(Duration::from_secs(30));
    let key = account("alice");
    begin(&*store, &key, &p, t(0)).await;
    begin(&*store, &key, &p, t(0)).await;
    assert_eq!(begin(&*store, &key, &p, t(1)).await, Admission::Busy);
    assert!(matches!(
        begin(&*store, &key, &p, t(31)).await,
        Admission::Admitted { .. }
    ));
}

/// Success resets the consecutive count (and, with `ResetScope::All`, the
/// window); `release` ends a reservation without counting anything.
pub async fn success_resets_and_release_frees<S: AttemptStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    let p = policy(3);
    let key = account("alice");
    fail(&*store, &key, &p, now).await;
    fail(&*store, &key, &p, now).await;
    begin(&*store, &key, &p, now).await;
    assert_eq!(begin(&*store, &key, &p, now).await, Admission::Busy);
    store
        .release(&key, now)
        .await
        .unwrap_or_else(|e| panic!("release failed: {e}"));
    assert_eq!(status(&*store, &key, now).await.in_flight, 0);
    store
        .record_success(&key, ResetScope::Consecutive, false, now)
        .await
        .unwrap_or_else(|e| panic!("record_success failed: {e}"));
    let s = status(&*store, &key, now).await;
    assert_eq!((s.failures, s.consecutive), (2, 0));
    store
        .record_success(&key, ResetScope::All, false, now)
        .await
        .unwrap_or_else(|e| panic!("record_success failed: {e}"));
    let s = store
        .status(&key, Duration::from_secs(300), now)
        .await
        .unwrap_or_else(|e| panic!("status failed: {e}"));
    assert!(
        s.is_none_or(|s| s.failures == 0 && s.consecutive == 0 && s.locks == 0),
        "a full reset forgets the key: {s:?}"
    );
}

/// Unknown keys: `status` is `Ok(None)`, success and release are no-ops,
/// a non-reserving `begin` admits with zero counts and stores nothing.
pub async fn unknown_keys_are_none_and_reads_do_not_insert<S: AttemptStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    let key = account("nobody");
    let p = policy(3);
    assert_eq!(
        store.begin(&key, &p, false, now).await.ok(),
        Some(Admission::Admitted {
            failures: 0,
            consecutive: 0
        })
    );
    assert!(store.release(&key, now).await.is_ok());
    assert!(
        store
            .record_success(&key, ResetScope::All, false, now)
            .await
            .is_ok()
    );
    assert!(matches!(
        store.status(&key, Duration::from_secs(300), now).await,
        Ok(None)
    ));
    assert!(matches!(store.unlock(&key, now).await, Ok(None)));
}

/// Operator locks and unlocks; `locked` lists one kind, "until unlocked"
/// first, then the latest end first.
pub async fn operator_locks_unlocks_and_listing_order<S: AttemptStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    let t = |s| secs(&clock, s);
    let lock = |key: AttemptKey, lock| {
        let store = store.clone();
        async move {
            store
                .lock(&key, lock, t(0))
                .await
                .unwrap_or_else(|e| panic!("lock failed: {e}"));
        }
    };
    lock(account("a"), Lock::Until(t(100))).await;
    lock(account("b"), Lock::UntilUnlocked).await;
    lock(account("c"), Lock::Until(t(200))).await;
    lock(AttemptKey::Ip(ip("192.0.2.7")), Lock::Until(t(50))).await;
    let listed = |kind, now| {
        let store = store.clone();
        async move {
            store
                .locked(kind, now, 10)
                .await
                .unwrap_or_else(|e| panic!("locked failed: {e}"))
                .into_iter()
                .map(|l| (l.key, l.lock))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(AttemptKeyKind::Account, t(1)).await,
        [
            (account("b"), Lock::UntilUnlocked),
            (account("c"), Lock::Until(t(200))),
            (account("a"), Lock::Until(t(100))),
        ]
    );
    assert_eq!(
        listed(AttemptKeyKind::Ip, t(1)).await,
        [(AttemptKey::Ip(ip("192.0.2.7")), Lock::Until(t(50)))]
    );
    assert!(listed(AttemptKeyKind::AccountIp, t(1)).await.is_empty());
    assert_eq!(
        store.unlock(&account("b"), t(2)).await.ok(),
        Some(Some(Lock::UntilUnlocked))
    );
    assert_eq!(
        begin(&*store, &account("b"), &policy(3), t(2)).await,
        Admission::Admitted {
            failures: 0,
            consecutive: 0
        }
    );
    // Ended locks are not listed.
    assert_eq!(
        listed(AttemptKeyKind::Account, t(150)).await,
        [(account("c"), Lock::Until(t(200)))]
    );
    let limited = store.locked(AttemptKeyKind::Account, t(1), 1).await;
    assert_eq!(limited.map(|l| l.len()).ok(), Some(1));
}

/// `hottest` lists the keys of one kind with the most failures in the
/// window, most first, at most `limit`.
pub async fn hottest_orders_by_failures<S: AttemptStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    let p = policy(100);
    for (addr, n) in [("198.51.100.1", 3), ("198.51.100.2", 1), ("2001:db8::9", 5)] {
        for _ in 0..n {
            fail(&*store, &AttemptKey::Ip(ip(addr)), &p, now).await;
        }
    }
    fail(&*store, &account("alice"), &p, now).await;
    let hot = store
        .hottest(AttemptKeyKind::Ip, Duration::from_secs(300), now, 2)
        .await
        .unwrap_or_else(|e| panic!("hottest failed: {e}"));
    assert_eq!(
        hot,
        [
            (AttemptKey::Ip(ip("2001:db8::9")), 5),
            (AttemptKey::Ip(ip("198.51.100.1")), 3)
        ]
    );
    let later = now + Duration::from_secs(301);
    let cold = store
        .hottest(AttemptKeyKind::Ip, Duration::from_secs(300), later, 10)
        .await
        .unwrap_or_else(|e| panic!("hottest failed: {e}"));
    assert!(cold.is_empty(), "failures outside the window are not hot");
}

/// `pairs_of` finds the account+address counters of one account (exactly
/// that account: not one whose name ends like it, nor one with a backslash
/// or a NUL that a backend escapes) or of one address, with their state,
/// sorted by storage key, at most `limit`.
pub async fn pairs_of_finds_the_account_and_address_counters<S: AttemptStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    let p = policy(2);
    let window = Duration::from_secs(300);
    let pair = |name: &str, addr: &str| AttemptKey::AccountIp(name.into(), ip(addr));
    // alice locked from one address, one failure from another.
    fail(&*store, &pair("alice", "192.0.2.1"), &p, now).await;
    let locked = fail(&*store, &pair("alice", "192.0.2.1"), &p, now).await;
    assert!(locked.newly_locked);
    fail(&*store, &pair("alice", "2001:db8::"), &p, now).await;
    // Look-alikes of alice, and others from the same address.
    for name in [
        "x|alice", "alice|x", "malice", "a\\lice", "alice\0", "alic%",
    ] {
        fail(&*store, &pair(name, "192.0.2.1"), &p, now).await;
    }
    fail(&*store, &pair("bob", "192.0.2.9"), &p, now).await;
    fail(&*store, &account("alice"), &p, now).await;
    fail(&*store, &AttemptKey::Ip(ip("192.0.2.1")), &p, now).await;
    let pairs_of = |of: AttemptKey, limit| {
        let store = store.clone();
        async move {
            store
                .pairs_of(&of, window, now, limit)
                .await
                .unwrap_or_else(|e| panic!("pairs_of failed: {e}"))
        }
    };
    let of_alice = pairs_of(account("alice"), 100).await;
    assert_eq!(
        of_alice.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        [pair("alice", "192.0.2.1"), pair("alice", "2001:db8::")]
    );
    assert!(
        of_alice[0].1.lock.is_some_and(|l| l.is_active(now)),
        "the lock is shown"
    );
    assert_eq!(of_alice[1].1.failures, 1);
    assert!(of_alice[1].1.lock.is_none());
    for name in ["a\\lice", "alice\0", "x|alice"] {
        let found = pairs_of(account(name), 100).await;
        assert_eq!(
            found.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            [pair(name, "192.0.2.1")],
            "{name:?}"
        );
    }
    let of_ip = pairs_of(AttemptKey::Ip(ip("192.0.2.1")), 100).await;
    assert_eq!(of_ip.len(), 7, "alice and the six look-alikes");
    assert!(of_ip.iter().all(|(k, _)| k.ip() == Some(ip("192.0.2.1"))));
    let mut sorted = of_ip.clone();
    sorted.sort_by_cached_key(|(k, _)| k.storage_key());
    assert_eq!(of_ip, sorted, "sorted by storage key");
    assert_eq!(pairs_of(AttemptKey::Ip(ip("192.0.2.1")), 3).await.len(), 3);
    assert_eq!(
        pairs_of(pair("bob", "192.0.2.9"), 10).await.len(),
        1,
        "a pair lists itself"
    );
    assert!(pairs_of(account("carol"), 10).await.is_empty());
    assert!(
        pairs_of(AttemptKey::Ip(ip("198.51.100.1")), 10)
            .await
            .is_empty()
    );
    // Unlocking what it found clears the account from that address.
    for (key, _) in &of_alice {
        store
            .unlock(key, now)
            .await
            .unwrap_or_else(|e| panic!("unlock failed: {e}"));
    }
    assert!(pairs_of(account("alice"), 100).await.is_empty());
}

/// An account, an address and their pair are three counters, and account
/// names with separators or non-ASCII characters do not run together.
pub async fn key_kinds_and_odd_accounts_stay_apart<S: AttemptStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let now = secs(&clock, 0);
    let p = policy(100);
    let addr = ip("192.0.2.1");
    let odd = "a:b{c}|ü@example.com";
    fail(&*store, &account(odd), &p, now).await;
    fail(&*store, &account(odd), &p, now).await;
    fail(&*store, &AttemptKey::AccountIp(odd.into(), addr), &p, now).await;
    fail(&*store, &AttemptKey::Ip(addr), &p, now).await;
    fail(&*store, &AttemptKey::Ip(addr), &p, now).await;
    fail(&*store, &AttemptKey::Ip(addr), &p, now).await;
    assert_eq!(status(&*store, &account(odd), now).await.failures, 2);
    assert_eq!(
        status(&*store, &AttemptKey::AccountIp(odd.into(), addr), now)
            .await
            .failures,
        1
    );
    assert_eq!(
        status(&*store, &AttemptKey::Ip(addr), now).await.failures,
        3
    );
    assert!(matches!(
        store
            .status(&account("a:b"), Duration::from_secs(300), now)
            .await,
        Ok(None)
    ));
}

/// Instances' clocks differ by a second or two: a failure stamped earlier
/// than the last one recorded still counts, and the key stays readable.
pub async fn failures_from_clocks_behind_still_count<S: AttemptStore>(
    factory: impl StoreFactory<S>,
) {
    let (store, clock) = build(factory).await;
    let t = |s| secs(&clock, s);
    let p = policy(10);
    let key = account("alice");
    for s in [10, 8, 10, 9] {
        fail(&*store, &key, &p, t(s)).await;
    }
    assert_eq!(status(&*store, &key, t(10)).await.failures, 4);
    assert!(matches!(
        begin(&*store, &key, &p, t(10)).await,
        Admission::Admitted { failures: 4, .. }
    ));
}

/// A small deterministic generator, so that a failing sequence replays.
struct Steps(u64);

impl Steps {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

fn blank() -> AttemptStatus {
    AttemptState::default().status(Duration::from_secs(300), SystemTime::UNIX_EPOCH)
}

/// 600 operations of every kind over three keys, with time moving on in
/// jumps: the store answers exactly as [`AttemptState`] does.
pub async fn matches_the_reference_state_machine<S: AttemptStore>(factory: impl StoreFactory<S>) {
    let (store, clock) = build(factory).await;
    let p = AttemptPolicy::new(3, Duration::from_secs(300), Duration::from_secs(60))
        .with_growth(2, Duration::from_secs(600))
        .with_max_consecutive(Some(12))
        .with_reservation_ttl(Duration::from_secs(30))
        .with_forget_after(Duration::from_secs(900));
    let keys = [
        account("alice"),
        AttemptKey::Ip(ip("203.0.113.5")),
        AttemptKey::AccountIp("bob".into(), ip("2001:db8::1")),
    ];
    let mut reference = [
        AttemptState::default(),
        AttemptState::default(),
        AttemptState::default(),
    ];
    let mut steps = Steps(0x5eed);
    let mut now = secs(&clock, 0);
    for step in 0..600 {
        now += Duration::from_secs(steps.next(40));
        let k = usize::try_from(steps.next(3)).unwrap_or(0);
        let (key, state) = (&keys[k], &mut reference[k]);
        let ctx = format!("step {step}, key {k}");
        match steps.next(8) {
            0 | 1 => {
                let reserve = steps.next(4) != 0;
                let got = store.begin(key, &p, reserve, now).await.ok();
                assert_eq!(got, Some(state.begin(&p, reserve, now)), "{ctx}: begin");
            }
            2..=4 => {
                let reserved = steps.next(2) == 0;
                let got = store.record_failure(key, &p, reserved, now).await.ok();
                let want = state.record_failure(&p, reserved, now);
                assert_eq!(got, Some(want), "{ctx}: record_failure");
            }
            5 => {
                let scope = if steps.next(2) == 0 {
                    ResetScope::All
                } else {
                    ResetScope::Consecutive
                };
                let reserved = steps.next(2) == 0;
                let got = store.record_success(key, scope, reserved, now).await;
                assert!(got.is_ok(), "{ctx}: record_success");
                state.record_success(scope, reserved, now);
            }
            6 => {
                assert!(store.release(key, now).await.is_ok(), "{ctx}: release");
                state.release(now);
            }
            _ => {
                if steps.next(5) == 0 {
                    let got = store.unlock(key, now).await.ok();
                    assert_eq!(got, Some(state.unlock(now)), "{ctx}: unlock");
                } else if steps.next(10) == 0 {
                    let until = Lock::Until(now + Duration::from_secs(steps.next(200) + 1));
                    assert!(store.lock(key, until, now).await.is_ok(), "{ctx}: lock");
                    state.lock(until, now);
                }
            }
        }
        let got = store
            .status(key, Duration::from_secs(300), now)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: status failed: {e}"))
            .unwrap_or_else(blank);
        assert_eq!(
            got,
            state.status(Duration::from_secs(300), now),
            "{ctx}: status"
        );
    }
}
