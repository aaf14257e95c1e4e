//! Service tests for `LockoutLayer`: one test per hostile case of
//! `shared/SECURITY.md` §3 J (rows 102–112, numbers in the test names), the
//! concurrency bound, the block list, the rate limit, shadow mode, events
//! and parser differentials. Time moves with a `FakeClock` or paused tokio
//! time, never with sleeps.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use portcullis_core::{
    Admission, AttemptKey, AttemptKeyKind, AttemptPolicy, AttemptStatus, AttemptStore, AuthMethod,
    AuthOutcome, Clock as _, EventKind, FailureReason, FailureRecord, FakeClock, Lock, LockedKey,
    MemoryAttemptStore, PeerAddr, Rejection, ResetScope, SecurityEvents, StoreError,
    StoreErrorKind,
};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::test_support::StringService;

const NOW: u64 = 1_700_000_000;
const PASSWORD: &str = "correct horse battery staple";

/// A login handler over one known account, `alice`, counting how often it
/// evaluates a password.
#[derive(Clone)]
struct Login {
    evaluated: Arc<AtomicUsize>,
}

impl Login {
    fn new() -> Self {
        Self {
            evaluated: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn evaluated(&self) -> usize {
        self.evaluated.load(Ordering::SeqCst)
    }

    fn service(&self) -> impl StringService {
        let evaluated = Arc::clone(&self.evaluated);
        service_fn(move |req: Request<String>| {
            let evaluated = Arc::clone(&evaluated);
            async move {
                // Yield so that concurrent requests really overlap.
                tokio::task::yield_now().await;
                evaluated.fetch_add(1, Ordering::SeqCst);
                let form = req.body().clone();
                let field = |name: &str| {
                    form.split('&')
                        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                        .unwrap_or_default()
                        .replace('+', " ")
                };
                let username = field("username");
                let ok = username.eq_ignore_ascii_case("alice") && field("password") == PASSWORD;
                let mut res = Response::new(String::new());
                if ok {
                    AuthOutcome::success(AuthMethod::Password, "user-1")
                        .with_identifier(username)
                        .attach(&mut res);
                } else {
                    // The same answer for unknown users and wrong passwords.
                    *res.status_mut() = StatusCode::UNAUTHORIZED;
                    *res.body_mut() = r#"{"error":"invalid_credentials"}"#.to_owned();
                    AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
                        .with_identifier(username)
                        .attach(&mut res);
                }
                Ok::<_, Infallible>(res)
            }
        })
    }
}

fn attempt(username: &str, password: &str, peer: &str) -> Request<String> {
    let mut req = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "username={username}&password={}",
            password.replace(' ', "+")
        ))
        .unwrap();
    let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(PeerAddr(addr));
    req
}

fn clock() -> FakeClock {
    FakeClock::at_unix(NOW)
}

fn layer(clock: &FakeClock) -> LockoutLayer<MemoryAttemptStore> {
    LockoutLayer::new(MemoryAttemptStore::new(10_000))
        .with_identifier(IdentifierSource::field("username"))
        .with_clock(Arc::new(clock.clone()))
}

async fn send<S>(svc: &S, req: Request<String>) -> Response<String>
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    svc.clone().oneshot(req).await.unwrap()
}

fn reason(res: &Response<String>) -> Option<FailureReason> {
    res.extensions().get::<Rejection>().map(Rejection::reason)
}

fn kinds(res: &Response<String>) -> Vec<EventKind> {
    SecurityEvents::of(res).iter().map(|e| e.kind()).collect()
}

/// Status, headers and body: what a client can see.
fn visible(res: &Response<String>) -> (StatusCode, Vec<(String, String)>, String) {
    let mut headers: Vec<_> = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    headers.sort();
    (res.status(), headers, res.body().clone())
}

#[tokio::test]
async fn row_102_locked_after_t_failures_and_the_right_password_gets_the_same_response() {
    let clock = clock();
    let login = Login::new();
    let svc = layer(&clock).layer(login.service());
    for i in 0..5 {
        let res = send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    assert_eq!(login.evaluated(), 5);

    // Attempt T+1: 429 before the credential is evaluated.
    let wrong = send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    let right = send(&svc, attempt("alice", PASSWORD, "198.51.100.7")).await;
    assert_eq!(wrong.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&wrong), Some(FailureReason::AccountLocked));
    assert_eq!(wrong.headers()["retry-after"], "1800");
    assert!(wrong.body().contains("account_locked"));
    assert_eq!(
        visible(&wrong),
        visible(&right),
        "right and wrong passwords look alike"
    );
    assert_eq!(login.evaluated(), 5, "no password evaluated while locked");

    // From another address too: the counter is the account's.
    let elsewhere = send(&svc, attempt("alice", PASSWORD, "203.0.113.9")).await;
    assert_eq!(visible(&elsewhere), visible(&right));

    // The lock ends after 1800 s.
    clock.advance(Duration::from_secs(1800));
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn row_102_lock_events_are_attached_to_the_locking_response() {
    let clock = clock();
    let svc = layer(&clock).layer(Login::new().service());
    for _ in 0..4 {
        let res = send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
        assert!(kinds(&res).is_empty());
    }
    let res = send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    let events = SecurityEvents::of(&res);
    let kinds: Vec<_> = events.iter().map(|e| e.kind()).collect();
    // Account and account+address both reached 5: one decision, one pair
    // of events (lockout metrics count one lock, not two).
    assert_eq!(
        kinds,
        [EventKind::BruteForceDetected, EventKind::AccountLocked]
    );
    assert_eq!(
        events[1].detail(),
        Some("account locked (and for this address)")
    );
    let locked = &events[1];
    assert_eq!(locked.identifier(), Some("alice"));
    assert_eq!(locked.ip(), Some("198.51.100.7".parse().unwrap()));
    assert_eq!(locked.count(), Some(1), "first lock");
    assert_eq!(
        locked.until(),
        Some(clock.now() + Duration::from_secs(1800))
    );
    assert_eq!(events[0].count(), Some(5));
}

#[tokio::test]
async fn row_103_failures_from_t_addresses_still_lock_the_account() {
    let clock = clock();
    let login = Login::new();
    let svc = layer(&clock).layer(login.service());
    for i in 0..5u8 {
        let res = send(&svc, attempt("alice", "wrong", &format!("198.51.100.{i}"))).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.99")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&res), Some(FailureReason::AccountLocked));
    assert_eq!(login.evaluated(), 5);
}

#[tokio::test]
async fn row_104_never_more_than_100_consecutive_failures_evaluated() {
    // An attacker who waits out every lock (its Retry-After) and goes on,
    // for as long as it likes, from ever-new addresses.
    let clock = clock();
    let login = Login::new();
    let layer = layer(&clock).with_ip_policy(None).unwrap();
    let svc = layer.clone().layer(login.service());
    let mut refused_until_unlocked = 0;
    for round in 0..2_000u32 {
        let peer = format!("10.{}.{}.1", round / 256 % 256, round % 256);
        let res = send(&svc, attempt("alice", "wrong", &peer)).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            clock.advance(Duration::from_secs(wait));
            if wait >= 24 * 3600 {
                refused_until_unlocked += 1;
            }
        } else {
            // Back off a little between guesses, as a careful attacker would.
            clock.advance(Duration::from_secs(30));
        }
    }
    assert_eq!(login.evaluated(), 100, "the NIST cap");
    assert!(refused_until_unlocked > 0);
    // Locked until an operator unlocks it.
    let admin = layer.admin();
    let locked = admin.locked_accounts(10).await.unwrap();
    assert_eq!(locked[0].lock, Lock::UntilUnlocked);
    assert!(admin.unlock("alice").await.unwrap().is_some());
    let res = send(&svc, attempt("alice", PASSWORD, "192.0.2.1")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn row_105_success_resets_the_account_ip_counter() {
    let clock = clock();
    let store = Arc::new(MemoryAttemptStore::new(1000));
    let svc = LockoutLayer::shared(Arc::clone(&store))
        .with_identifier(IdentifierSource::field("username"))
        .with_clock(Arc::new(clock.clone()))
        .layer(Login::new().service());
    for _ in 0..4 {
        send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    }
    let pair = AttemptKey::AccountIp("alice".into(), "198.51.100.7".parse().unwrap());
    let account = AttemptKey::Account("alice".into());
    let window = Duration::from_secs(300);
    let now = clock.now();
    assert_eq!(
        store
            .status(&pair, window, now)
            .await
            .unwrap()
            .unwrap()
            .failures,
        4
    );
    let res = send(&svc, attempt("Alice", PASSWORD, "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        store.status(&pair, window, now).await.unwrap().is_none(),
        "pair reset"
    );
    let a = store.status(&account, window, now).await.unwrap().unwrap();
    assert_eq!((a.failures, a.consecutive, a.in_flight), (4, 0, 0));
    // From that address the user has a full allowance again (the account
    // window still holds the 4 failures, so one more from elsewhere locks).
    let res = send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn row_107_unknown_and_known_accounts_are_indistinguishable() {
    let clock = clock();
    let login = Login::new();
    let svc = layer(&clock).layer(login.service());
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..7 {
        known.push(visible(
            &send(&svc, attempt("alice", "wrong", "198.51.100.7")).await,
        ));
        unknown.push(visible(
            &send(&svc, attempt("mallory-nobody", "wrong", "198.51.100.8")).await,
        ));
    }
    assert_eq!(
        known, unknown,
        "same statuses, headers and bodies at every step"
    );
    assert_eq!(known[5].0, StatusCode::TOO_MANY_REQUESTS);
    // Same work too: both went through the same store operations (a
    // lookup that never asks whether the account exists).
    assert_eq!(login.evaluated(), 10);
}

#[tokio::test]
async fn row_108_lock_duration_grows_but_is_capped() {
    let clock = clock();
    let policy = AttemptPolicy::new(5, Duration::from_secs(300), Duration::from_secs(1800))
        .with_growth(2, Duration::from_secs(4 * 3600));
    let svc = layer(&clock)
        .with_account_policy(policy)
        .unwrap()
        .with_ip_policy(None)
        .unwrap()
        .layer(Login::new().service());
    let mut locks = Vec::new();
    for round in 0..8u8 {
        for i in 0..5u8 {
            send(
                &svc,
                attempt("alice", "wrong", &format!("10.0.{round}.{i}")),
            )
            .await;
        }
        let res = send(&svc, attempt("alice", PASSWORD, "192.0.2.1")).await;
        let wait: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        locks.push(wait);
        clock.advance(Duration::from_secs(wait));
    }
    assert_eq!(
        locks,
        [1800, 3600, 7200, 14_400, 14_400, 14_400, 14_400, 14_400]
    );
    // After the attacker stops, the victim is in.
    let res = send(&svc, attempt("alice", PASSWORD, "192.0.2.1")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn row_109_spoofed_forwarded_for_does_not_change_the_counter() {
    let clock = clock();
    let login = Login::new();
    let svc = layer(&clock)
        .with_rate_limit(RateLimit::per_minute(3).unwrap())
        .layer(login.service());
    for i in 0..3 {
        let mut req = attempt(&format!("user{i}"), "wrong", "198.51.100.7");
        req.headers_mut()
            .insert("x-forwarded-for", format!("10.9.8.{i}").parse().unwrap());
        assert_eq!(send(&svc, req).await.status(), StatusCode::UNAUTHORIZED);
    }
    let mut req = attempt("user9", "wrong", "198.51.100.7");
    req.headers_mut()
        .insert("x-forwarded-for", "10.9.8.77".parse().unwrap());
    let res = send(&svc, req).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&res), Some(FailureReason::RateLimited));
    assert_eq!(res.headers()["retry-after"], "20");
    // Another real peer is not limited.
    let res = send(&svc, attempt("user9", "wrong", "198.51.100.8")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[cfg(feature = "client-ip")]
#[tokio::test]
async fn row_109_with_client_ip_layer_and_no_trusted_proxy() {
    use crate::client_ip::ClientIpLayer;
    use portcullis_core::TrustedProxies;

    let clock = clock();
    let store = Arc::new(MemoryAttemptStore::new(1000));
    let svc = ClientIpLayer::new(TrustedProxies::none()).layer(
        LockoutLayer::shared(Arc::clone(&store))
            .with_identifier(IdentifierSource::field("username"))
            .with_clock(Arc::new(clock.clone()))
            .layer(Login::new().service()),
    );
    for i in 0..3 {
        let mut req = attempt("alice", "wrong", "198.51.100.7");
        req.headers_mut()
            .insert("x-forwarded-for", format!("10.0.0.{i}").parse().unwrap());
        svc.clone().oneshot(req).await.unwrap();
    }
    let hot = store
        .hottest(
            AttemptKeyKind::Ip,
            Duration::from_secs(300),
            clock.now(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(hot, [(AttemptKey::Ip("198.51.100.7".parse().unwrap()), 3)]);
}

/// The memory store, which can be taken down.
struct FlakyStore {
    inner: MemoryAttemptStore,
    down: AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "test store down",
            ))
        } else {
            Ok(())
        }
    }
}

impl AttemptStore for FlakyStore {
    async fn begin(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserve: bool,
        now: SystemTime,
    ) -> Result<Admission, StoreError> {
        self.check()?;
        self.inner.begin(key, policy, reserve, now).await
    }
    async fn record_failure(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserved: bool,
        now: SystemTime,
    ) -> Result<FailureRecord, StoreError> {
        self.check()?;
        self.inner.record_failure(key, policy, reserved, now).await
    }
    async fn record_success(
        &self,
        key: &AttemptKey,
        scope: ResetScope,
        reserved: bool,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.record_success(key, scope, reserved, now).await
    }
    async fn release(&self, key: &AttemptKey, now: SystemTime) -> Result<(), StoreError> {
        self.check()?;
        self.inner.release(key, now).await
    }
    async fn status(
        &self,
        key: &AttemptKey,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptStatus>, StoreError> {
        self.check()?;
        self.inner.status(key, window, now).await
    }
    async fn lock(&self, key: &AttemptKey, lock: Lock, now: SystemTime) -> Result<(), StoreError> {
        self.check()?;
        self.inner.lock(key, lock, now).await
    }
    async fn unlock(&self, key: &AttemptKey, now: SystemTime) -> Result<Option<Lock>, StoreError> {
        self.check()?;
        self.inner.unlock(key, now).await
    }
    async fn locked(
        &self,
        kind: AttemptKeyKind,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<LockedKey>, StoreError> {
        self.check()?;
        self.inner.locked(kind, now, limit).await
    }
    async fn hottest(
        &self,
        kind: AttemptKeyKind,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(AttemptKey, u32)>, StoreError> {
        self.check()?;
        self.inner.hottest(kind, window, now, limit).await
    }
    async fn pairs_of(
        &self,
        of: &AttemptKey,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(AttemptKey, AttemptStatus)>, StoreError> {
        self.check()?;
        self.inner.pairs_of(of, window, now, limit).await
    }
}

fn flaky() -> Arc<FlakyStore> {
    Arc::new(FlakyStore {
        inner: MemoryAttemptStore::new(1000),
        down: AtomicBool::new(false),
    })
}

#[tokio::test]
async fn row_112_store_down_fails_closed_without_evaluating_the_password() {
    let clock = clock();
    let store = flaky();
    let login = Login::new();
    let svc = LockoutLayer::shared(Arc::clone(&store))
        .with_identifier(IdentifierSource::field("username"))
        .with_clock(Arc::new(clock.clone()))
        .layer(login.service());
    store.down.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7")).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reason(&res), Some(FailureReason::UpstreamUnavailable));
        assert!(
            !res.body().contains("test store down"),
            "no internals in bodies"
        );
    }
    assert_eq!(login.evaluated(), 0, "never unlimited");
    store.down.store(false, Ordering::SeqCst);
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// A store that answers the pre-check, then fails when the outcome is
/// recorded: the inner answer must not reach the client uncounted.
#[tokio::test]
async fn row_112_outcome_that_cannot_be_recorded_is_not_shown() {
    let clock = clock();
    let store = flaky();
    let login = Login::new();
    let down = Arc::clone(&store);
    let inner = login.service();
    let svc = LockoutLayer::shared(Arc::clone(&store))
        .with_identifier(IdentifierSource::field("username"))
        .with_clock(Arc::new(clock.clone()))
        .layer(service_fn(move |req: Request<String>| {
            down.down.store(true, Ordering::SeqCst);
            inner.clone().oneshot(req)
        }));
    let res = send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(login.evaluated(), 1);
}

#[tokio::test]
async fn row_112_insecure_fail_open_lets_through_with_an_event_each_time() {
    let clock = clock();
    let store = flaky();
    let login = Login::new();
    let svc = LockoutLayer::shared(Arc::clone(&store))
        .with_identifier(IdentifierSource::field("username"))
        .with_clock(Arc::new(clock.clone()))
        .insecure_fail_open()
        .layer(login.service());
    store.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let res = send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let events = SecurityEvents::of(&res);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].reason(), Some(FailureReason::UpstreamUnavailable));
        assert!(events[0].detail().unwrap().contains("failed open"));
    }
    assert_eq!(login.evaluated(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_200_wrong_passwords_at_most_5_reach_the_credential_check() {
    let clock = clock();
    let login = Login::new();
    let svc = layer(&clock)
        .with_ip_policy(None)
        .unwrap()
        .layer(login.service());
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let svc = svc.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let peer = format!("10.1.{}.{}", i / 256, i % 256);
                svc.oneshot(attempt("alice", "wrong", &peer))
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let evaluated = login.evaluated();
    assert!(evaluated <= 5, "{evaluated} passwords evaluated");
    assert!(evaluated >= 1);
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(unauthorized, evaluated);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        200 - evaluated
    );
}

#[tokio::test]
async fn block_list_refuses_with_403_and_an_event() {
    let clock = clock();
    let login = Login::new();
    let layer = layer(&clock);
    let svc = layer.clone().layer(login.service());
    let ip: IpAddr = "203.0.113.88".parse().unwrap();
    let added = layer
        .admin()
        .block(
            ip,
            Some(Duration::from_secs(86_400)),
            "Brute force attack detected",
        )
        .await
        .unwrap();
    assert_eq!(added.kind(), EventKind::IpBlocked);
    let res = send(&svc, attempt("alice", PASSWORD, "203.0.113.88")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(reason(&res), Some(FailureReason::IpBlocked));
    assert!(res.body().contains("ip_blocked"));
    assert!(
        !res.body().contains("Brute force"),
        "the reason is not shown"
    );
    assert_eq!(kinds(&res), [EventKind::IpBlocked]);
    assert_eq!(login.evaluated(), 0);
    clock.advance(Duration::from_secs(86_400));
    let res = send(&svc, attempt("alice", PASSWORD, "203.0.113.88")).await;
    assert_eq!(res.status(), StatusCode::OK, "the block expired");
}

#[tokio::test]
async fn address_locks_after_many_failures_on_many_accounts() {
    let clock = clock();
    let login = Login::new();
    let layer = layer(&clock)
        .with_ip_policy(Some(
            AttemptPolicy::new(10, Duration::from_secs(300), Duration::from_secs(900))
                .with_max_consecutive(None),
        ))
        .unwrap();
    let svc = layer.clone().layer(login.service());
    let mut last = None;
    for i in 0..10 {
        last = Some(send(&svc, attempt(&format!("user{i}"), "wrong", "198.51.100.66")).await);
    }
    let kinds = kinds(&last.unwrap());
    assert!(kinds.contains(&EventKind::IpBlocked), "{kinds:?}");
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.66")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&res), Some(FailureReason::RateLimited));
    assert_eq!(res.headers()["retry-after"], "900");
    let hot = layer.admin().hot_ips(5).await.unwrap();
    assert!(hot.is_empty(), "the lock cleared the address's log");
    let locked = layer.admin().locked_ips(5).await.unwrap();
    assert_eq!(locked.len(), 1);
    assert!(
        layer
            .admin()
            .unlock_ip("198.51.100.66".parse().unwrap())
            .await
            .unwrap()
    );
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.66")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn canonical_forms_share_one_counter() {
    let clock = clock();
    let login = Login::new();
    let svc = layer(&clock).layer(login.service());
    for name in ["alice", "ALICE", "+Alice+", "%EF%BC%A1lice", "aLiCe"] {
        send(&svc, attempt(name, "wrong", "198.51.100.7")).await;
    }
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_field_given_twice_is_refused_before_the_handler() {
    let clock = clock();
    let login = Login::new();
    let svc = layer(&clock).layer(login.service());
    let mut req = attempt("bob", "x", "198.51.100.7");
    *req.body_mut() = "username=bob&password=x&username=alice".to_owned();
    let res = send(&svc, req).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(reason(&res), Some(FailureReason::InvalidRequest));
    assert_eq!(login.evaluated(), 0);
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    let clock = clock();
    let login = Login::new();
    let svc = layer(&clock).layer(login.service());
    let mut req = attempt("alice", "x", "198.51.100.7");
    *req.body_mut() = format!(
        "pad={}&username=alice&password=x",
        "a".repeat(DEFAULT_MAX_BODY)
    );
    let res = send(&svc, req).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(login.evaluated(), 0);
}

#[tokio::test]
async fn an_outcome_for_another_locked_account_is_masked() {
    // The handler reads the account from somewhere the layer does not (a
    // differential): the outcome's identifier is checked on the way out.
    let clock = clock();
    let layer = layer(&clock);
    layer
        .admin()
        .lock("alice", Some(Duration::from_secs(600)))
        .await
        .unwrap();
    let evaluated = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&evaluated);
    let svc = layer.layer(service_fn(move |_req: Request<String>| {
        count.fetch_add(1, Ordering::SeqCst);
        async {
            let mut res = Response::new("welcome".to_owned());
            AuthOutcome::success(AuthMethod::Password, "user-1")
                .with_identifier("Alice")
                .attach(&mut res);
            Ok::<_, Infallible>(res)
        }
    }));
    let res = send(&svc, attempt("bob", PASSWORD, "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "600");
    assert!(!res.body().contains("welcome"));
    assert_eq!(evaluated.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failures_reported_without_an_identifier_source_are_counted() {
    // A JwtLayer-style inner layer: no identifier in the request, the
    // outcome names the subject.
    let clock = clock();
    let store = Arc::new(MemoryAttemptStore::new(100));
    let svc = LockoutLayer::shared(Arc::clone(&store))
        .with_clock(Arc::new(clock.clone()))
        .layer(service_fn(|_req: Request<String>| async {
            let mut res = Response::new(String::new());
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            AuthOutcome::failure(AuthMethod::Jwt, FailureReason::InvalidSignature)
                .with_identifier("svc-billing")
                .attach(&mut res);
            Ok::<_, Infallible>(res)
        }));
    for _ in 0..5 {
        send(&svc, attempt("x", "y", "198.51.100.7")).await;
    }
    let s = store
        .status(
            &AttemptKey::Account("svc-billing".into()),
            Duration::from_secs(300),
            clock.now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(s.lock.is_some());
    // And the next outcome for it is masked.
    let res = send(&svc, attempt("x", "y", "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn non_authentication_outcomes_release_the_reservation() {
    let clock = clock();
    let store = Arc::new(MemoryAttemptStore::new(100));
    let svc = LockoutLayer::shared(Arc::clone(&store))
        .with_identifier(IdentifierSource::field("username"))
        .with_clock(Arc::new(clock.clone()))
        .layer(service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    for _ in 0..20 {
        let res = send(&svc, attempt("alice", "x", "198.51.100.7")).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(store.is_empty(), "nothing counted, nothing held");
}

#[tokio::test]
async fn shadow_mode_reports_but_never_rejects() {
    let clock = clock();
    let login = Login::new();
    let svc = layer(&clock).shadow_mode().layer(login.service());
    for _ in 0..5 {
        send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    }
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.extensions().get::<Rejection>().is_none());
    let events = SecurityEvents::of(&res);
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.is_shadow()));
    assert!(
        events
            .iter()
            .any(|e| e.reason() == Some(FailureReason::AccountLocked))
    );
    assert_eq!(login.evaluated(), 6);
}

#[tokio::test(start_paused = true)]
async fn failure_delay_grows_before_the_credential_check() {
    let clock = clock();
    let login = Login::new();
    let svc = layer(&clock)
        .with_failure_delay(2, Duration::from_secs(1), Duration::from_secs(3))
        .layer(login.service());
    let mut waited = Vec::new();
    for _ in 0..5 {
        let start = tokio::time::Instant::now();
        send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
        waited.push(start.elapsed().as_secs());
    }
    assert_eq!(waited, [0, 0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_releases_its_reservation() {
    let clock = clock();
    let store = Arc::new(MemoryAttemptStore::new(100));
    let svc = LockoutLayer::shared(Arc::clone(&store))
        .with_identifier(IdentifierSource::field("username"))
        .with_clock(Arc::new(clock.clone()))
        .layer(service_fn(|_req: Request<String>| async {
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let fut = svc.clone().oneshot(attempt("alice", "x", "198.51.100.7"));
    let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
    // The release runs on a spawned task.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let s = store
        .status(
            &AttemptKey::Account("alice".into()),
            Duration::from_secs(300),
            clock.now(),
        )
        .await
        .unwrap();
    assert!(s.is_none_or(|s| s.in_flight == 0), "{s:?}");
}

#[test]
fn debug_output_never_shows_identifiers() {
    let key = AttemptKey::AccountIp("alice@example.com".into(), "192.0.2.1".parse().unwrap());
    assert!(!format!("{key:?}").contains("alice"));
    let layer = LockoutLayer::new(MemoryAttemptStore::new(10));
    assert!(format!("{layer:?}").contains("LockoutLayer"));
}

/// A store that always fails, as a stopped backend does.
struct DownRateStore;

impl portcullis_core::RateLimitStore for DownRateStore {
    async fn check(
        &self,
        _key: &str,
        _quota: &portcullis_core::RateQuota,
        _now: std::time::SystemTime,
    ) -> Result<portcullis_core::RateDecision, portcullis_core::StoreError> {
        Err(portcullis_core::StoreError::new(
            portcullis_core::StoreErrorKind::Unavailable,
            "backend down",
        ))
    }
}

#[tokio::test]
async fn a_shared_rate_limit_spans_instances_and_fails_closed() {
    let clock = clock();
    let shared = Arc::new(portcullis_core::MemoryRateLimitStore::new(1000));
    let rate = RateLimit::per_minute(3).unwrap();
    let login = Login::new();
    // Two instances with their own attempt stores, one shared budget.
    let a = layer(&clock)
        .with_shared_rate_limit(rate, Arc::clone(&shared))
        .layer(login.service());
    let b = layer(&clock)
        .with_shared_rate_limit(rate, Arc::clone(&shared))
        .layer(login.service());
    for (i, svc) in [&a, &b, &a].into_iter().enumerate() {
        let res = send(svc, attempt(&format!("user{i}"), "wrong", "198.51.100.7")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = send(&b, attempt("user9", "wrong", "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&res), Some(FailureReason::RateLimited));
    assert_eq!(res.headers()["retry-after"], "20");
    let res = send(&a, attempt("user9", "wrong", "198.51.100.8")).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "another address has its own budget"
    );

    let down = layer(&clock)
        .with_shared_rate_limit(rate, DownRateStore)
        .layer(login.service());
    let res = send(&down, attempt("alice", PASSWORD, "192.0.2.1")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reason(&res), Some(FailureReason::UpstreamUnavailable));
}

#[tokio::test]
async fn a_lock_of_the_account_from_one_address_only_is_reported_once() {
    // The account+address counter locks at 3, the account's at 10: the
    // third failure is one decision with one pair of events.
    let clock = clock();
    let pair_policy = AttemptPolicy::new(3, Duration::from_secs(300), Duration::from_secs(600));
    let svc = layer(&clock)
        .with_account_policy(AttemptPolicy::new(
            10,
            Duration::from_secs(300),
            Duration::from_secs(1800),
        ))
        .unwrap()
        .with_account_ip_policy(Some(pair_policy))
        .unwrap()
        .layer(Login::new().service());
    for _ in 0..2 {
        send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    }
    let res = send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    let events = SecurityEvents::of(&res);
    assert_eq!(
        kinds(&res),
        [EventKind::BruteForceDetected, EventKind::AccountLocked]
    );
    assert_eq!(events[1].detail(), Some("account locked for one address"));
}

#[tokio::test]
async fn attempts_refused_during_a_lock_name_the_account() {
    let clock = clock();
    let svc = layer(&clock).layer(Login::new().service());
    for _ in 0..5 {
        send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    }
    // Refused by the account lock (from elsewhere) and by the account and
    // account+address locks (from the guessing address): each refusal says
    // which account it was for, canonical as counted.
    for peer in ["198.51.100.7", "203.0.113.9"] {
        let res = send(&svc, attempt(" ALICE ", PASSWORD, peer)).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        let rejection = res.extensions().get::<Rejection>().unwrap();
        assert_eq!(rejection.reason(), FailureReason::AccountLocked);
        assert_eq!(rejection.subject(), Some("alice"), "{peer}");
        assert!(!res.body().contains("alice"), "never in the body");
        assert!(kinds(&res).is_empty(), "a refusal is not a new lock");
    }
}

#[tokio::test]
async fn operator_unlock_lifts_the_account_and_account_address_locks() {
    let clock = clock();
    let layer = layer(&clock);
    let admin = layer.admin();
    let svc = layer.layer(Login::new().service());
    for _ in 0..5 {
        send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    }
    // Both locks are visible to the operator.
    assert_eq!(admin.locked_accounts(10).await.unwrap().len(), 1);
    let pairs = admin.locked_pairs(10).await.unwrap();
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].key.account(), Some("alice"));
    assert_eq!(pairs[0].key.ip(), Some("198.51.100.7".parse().unwrap()));
    let of_alice = admin.account_pairs("Alice").await.unwrap();
    assert_eq!(of_alice.len(), 1);
    assert_eq!(of_alice[0].ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    assert!(of_alice[0].status.lock.is_some());

    let (unlocked, event) = admin.unlock_report("Alice").await.unwrap();
    assert_eq!(
        unlocked,
        Unlocked {
            own: true,
            pairs: 1
        }
    );
    let event = event.unwrap();
    assert_eq!(event.kind(), EventKind::AccountUnlocked);
    assert_eq!(event.count(), Some(2));
    assert!(admin.locked_pairs(10).await.unwrap().is_empty());
    assert!(admin.account_pairs("alice").await.unwrap().is_empty());

    // The user on the guessing address gets in at once.
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        admin.unlock("alice").await.unwrap().is_none(),
        "nothing left"
    );
}

#[tokio::test]
async fn operator_unlock_ip_lifts_the_address_and_its_account_locks() {
    // Only the account+address counters lock (at 2); the account's own
    // limit is out of reach.
    let clock = clock();
    let layer = layer(&clock)
        .with_account_policy(AttemptPolicy::new(
            50,
            Duration::from_secs(300),
            Duration::from_secs(1800),
        ))
        .unwrap()
        .with_account_ip_policy(Some(AttemptPolicy::new(
            2,
            Duration::from_secs(300),
            Duration::from_secs(600),
        )))
        .unwrap();
    let admin = layer.admin();
    let svc = layer.layer(Login::new().service());
    for user in ["alice", "bob"] {
        for _ in 0..2 {
            send(&svc, attempt(user, "wrong", "198.51.100.7")).await;
        }
    }
    send(&svc, attempt("alice", "wrong", "203.0.113.9")).await;
    send(&svc, attempt("alice", "wrong", "203.0.113.9")).await;
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7")).await;
    assert_eq!(reason(&res), Some(FailureReason::AccountLocked));
    assert_eq!(admin.locked_pairs(10).await.unwrap().len(), 3);

    let unlocked = admin
        .unlock_ip_report("198.51.100.7".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        unlocked,
        Unlocked {
            own: false,
            pairs: 2
        }
    );
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7")).await;
    assert_eq!(res.status(), StatusCode::OK);
    // The other address's lock of alice stays.
    let left = admin.locked_pairs(10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key.ip(), Some("203.0.113.9".parse().unwrap()));
    assert!(
        !admin
            .unlock_ip("198.51.100.7".parse().unwrap())
            .await
            .unwrap()
    );
}

#[cfg(feature = "audit")]
#[tokio::test]
async fn audit_records_of_refused_attempts_carry_the_account_and_one_lock() {
    use crate::audit::{AuditLayer, Auditor};
    use portcullis_core::MemoryAuditSink;

    let sink = MemoryAuditSink::new(100);
    let auditor = Auditor::builder()
        .sink(sink.clone())
        .pseudonym_key(b"0123456789abcdef".to_vec())
        .build()
        .unwrap();
    let clock = clock();
    let svc = AuditLayer::new(auditor.clone()).layer(layer(&clock).layer(Login::new().service()));
    for _ in 0..6 {
        send(&svc, attempt("alice", "wrong", "198.51.100.7")).await;
    }
    auditor.flush().await;
    let records = sink.records();
    let locks: Vec<_> = records
        .iter()
        .filter(|r| r.event == EventKind::AccountLocked)
        .collect();
    // The lock (from the fifth failure) and the refusal of the sixth.
    assert_eq!(locks.len(), 2, "{records:?}");
    assert_eq!(locks[0].count, Some(1), "the lock itself");
    assert_eq!(locks[1].status, Some(429), "the refusal");
    for record in &locks {
        assert_eq!(record.user_id.as_deref(), Some("alice"), "{record:?}");
    }
    let detections = records
        .iter()
        .filter(|r| r.event == EventKind::BruteForceDetected)
        .count();
    assert_eq!(detections, 1);
}

/// An inner layer that reports a failed credential for `svc-billing` and
/// checks that the lockout layer handed it its counts.
fn reporting_failures(calls: &Arc<AtomicUsize>) -> impl StringService {
    let calls = Arc::clone(calls);
    service_fn(move |req: Request<String>| {
        let calls = Arc::clone(&calls);
        async move {
            assert!(req.extensions().get::<AttemptCounts>().is_some());
            calls.fetch_add(1, Ordering::SeqCst);
            let mut res = Response::new(String::new());
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            AuthOutcome::failure(AuthMethod::Jwt, FailureReason::InvalidSignature)
                .with_identifier("svc-billing")
                .attach(&mut res);
            Ok::<_, Infallible>(res)
        }
    })
}

#[tokio::test]
async fn local_precheck_blocks_rate_limits_and_counts_learnt_accounts() {
    // No identifier source, no per-address counter: the pre-check runs
    // synchronously in `call`, with the same answers as the full flow.
    let clock = clock();
    let store = Arc::new(MemoryAttemptStore::new(100));
    let layer = LockoutLayer::shared(Arc::clone(&store))
        .with_clock(Arc::new(clock.clone()))
        .with_ip_policy(None)
        .unwrap()
        .with_rate_limit(RateLimit::per_minute(3).unwrap());
    assert!(layer.config.local_precheck().is_some());
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.clone().layer(reporting_failures(&calls));

    layer
        .admin()
        .block(
            "203.0.113.88".parse::<IpAddr>().unwrap(),
            None,
            "Brute force",
        )
        .await
        .unwrap();
    let res = send(&svc, attempt("x", "y", "203.0.113.88")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(reason(&res), Some(FailureReason::IpBlocked));
    assert_eq!(kinds(&res), [EventKind::IpBlocked]);
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Three a minute per address, then 429 with Retry-After.
    for _ in 0..3 {
        let res = send(&svc, attempt("x", "y", "198.51.100.1")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = send(&svc, attempt("x", "y", "198.51.100.1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&res), Some(FailureReason::RateLimited));
    assert!(res.headers().contains_key(http::header::RETRY_AFTER));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // The account the outcomes name is counted (3 failures so far): two
    // more lock it, and the next outcome for it is masked.
    for _ in 0..2 {
        send(&svc, attempt("x", "y", "198.51.100.2")).await;
    }
    let status = store
        .status(
            &AttemptKey::Account("svc-billing".into()),
            Duration::from_secs(300),
            clock.now(),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(status.lock.is_some());
    let res = send(&svc, attempt("x", "y", "198.51.100.3")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&res), Some(FailureReason::AccountLocked));
}

#[tokio::test]
async fn local_precheck_in_shadow_mode_reports_and_passes() {
    let clock = clock();
    let layer = LockoutLayer::new(MemoryAttemptStore::new(100))
        .with_clock(Arc::new(clock.clone()))
        .with_ip_policy(None)
        .unwrap()
        .shadow_mode();
    assert!(layer.config.local_precheck().is_some());
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.clone().layer(reporting_failures(&calls));
    layer
        .admin()
        .block("203.0.113.9".parse::<IpAddr>().unwrap(), None, "test")
        .await
        .unwrap();
    let res = send(&svc, attempt("x", "y", "203.0.113.9")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "passed through");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(res.extensions().get::<Rejection>().is_none());
    let events = SecurityEvents::of(&res);
    assert!(events.iter().all(|e| e.is_shadow()));
    assert_eq!(
        kinds(&res)[..2],
        [EventKind::IpBlocked, EventKind::AuthFailure]
    );
}
