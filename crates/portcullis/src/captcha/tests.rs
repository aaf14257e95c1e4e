//! Service tests for `CaptchaLayer`, alone and inside `LockoutLayer`: rows
//! 108 (CAPTCHA path during a lockout), 113 (no token: password not
//! evaluated), 120 and 122 at the layer, replay, fail-closed and shadow
//! behaviour. Provider-answer checks (rows 115–119, 121, 123) are in
//! `siteverify.rs`; the real-HTTP versions in the interop tests.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use portcullis_core::{
    AttemptCounts, AuthMethod, AuthOutcome, CaptchaSolved, EventKind, FailureReason, FakeClock,
    MemoryAttemptStore, PeerAddr, Rejection, SecurityEvents,
};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::lockout::{IdentifierSource, LockoutLayer};
use crate::test_support::StringService;

const PASSWORD: &str = "correct-horse";

/// Accepts tokens starting with `human`; can be taken down; counts calls.
#[derive(Clone, Default)]
struct Oracle {
    calls: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl CaptchaVerifier for Oracle {
    async fn verify(&self, token: &CaptchaToken, _ip: Option<IpAddr>) -> Result<(), CaptchaError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(CaptchaError::Unavailable("test provider down", None));
        }
        if token.as_str().starts_with("human") {
            Ok(())
        } else {
            Err(CaptchaError::Rejected("provider said no"))
        }
    }
}

/// A login handler for `alice`, counting evaluated passwords.
fn handler(evaluated: Arc<AtomicUsize>) -> impl StringService {
    service_fn(move |req: Request<String>| {
        let evaluated = Arc::clone(&evaluated);
        async move {
            evaluated.fetch_add(1, Ordering::SeqCst);
            let body = req.body().clone();
            let user = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("username="))
                .unwrap_or_default()
                .to_owned();
            let ok = user == "alice" && body.contains(&format!("password={PASSWORD}"));
            let mut res = Response::new(String::new());
            if ok {
                AuthOutcome::success(AuthMethod::Password, "u1")
                    .with_identifier(user)
                    .attach(&mut res);
            } else {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
                    .with_identifier(user)
                    .attach(&mut res);
            }
            Ok::<_, Infallible>(res)
        }
    })
}

fn attempt(user: &str, password: &str, peer: &str, token: Option<&str>) -> Request<String> {
    let mut body = format!("username={user}&password={password}");
    if let Some(token) = token {
        body.push_str(&format!("&cf-turnstile-response={token}"));
    }
    let mut req = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .unwrap();
    let addr: SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(PeerAddr(addr));
    req
}

fn reason(res: &Response<String>) -> Option<FailureReason> {
    res.extensions().get::<Rejection>().map(Rejection::reason)
}

struct Stack {
    oracle: Oracle,
    evaluated: Arc<AtomicUsize>,
    clock: FakeClock,
}

impl Stack {
    fn new() -> Self {
        Self {
            oracle: Oracle::default(),
            evaluated: Arc::new(AtomicUsize::new(0)),
            clock: FakeClock::at_unix(1_700_000_000),
        }
    }

    fn lockout(&self) -> LockoutLayer<MemoryAttemptStore> {
        LockoutLayer::new(MemoryAttemptStore::new(1000))
            .with_identifier(IdentifierSource::field("username"))
            .with_clock(Arc::new(self.clock.clone()))
    }

    fn service(
        &self,
        lockout: LockoutLayer<MemoryAttemptStore>,
    ) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone
    {
        lockout.layer(
            CaptchaLayer::new(self.oracle.clone())
                .with_clock(Arc::new(self.clock.clone()))
                .layer(handler(Arc::clone(&self.evaluated))),
        )
    }

    fn evaluated(&self) -> usize {
        self.evaluated.load(Ordering::SeqCst)
    }

    fn provider_calls(&self) -> usize {
        self.oracle.calls.load(Ordering::SeqCst)
    }
}

async fn send<S>(svc: &S, req: Request<String>) -> Response<String>
where
    S: Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
{
    svc.clone().oneshot(req).await.unwrap()
}

#[tokio::test]
async fn row_113_after_n_failures_no_token_is_refused_before_the_password() {
    let stack = Stack::new();
    let svc = stack.service(stack.lockout());
    for _ in 0..3 {
        let res = send(&svc, attempt("alice", "wrong", "198.51.100.7", None)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(stack.evaluated(), 3);
    // Failure 4 needs a CAPTCHA, even with the right password.
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7", None)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(reason(&res), Some(FailureReason::CaptchaRequired));
    assert!(res.body().contains("captcha_required"));
    assert_eq!(stack.evaluated(), 3, "the inner service was NOT called");
    assert_eq!(stack.provider_calls(), 0);
    let events = SecurityEvents::of(&res);
    assert_eq!(events[0].kind(), EventKind::CaptchaChallenge);
    // From another address as well (the account's count).
    let res = send(&svc, attempt("alice", PASSWORD, "203.0.113.5", None)).await;
    assert_eq!(reason(&res), Some(FailureReason::CaptchaRequired));
    // A bad token: captcha_invalid, still not evaluated.
    let res = send(
        &svc,
        attempt("alice", PASSWORD, "198.51.100.7", Some("bot-1")),
    )
    .await;
    assert_eq!(reason(&res), Some(FailureReason::CaptchaInvalid));
    assert_eq!(stack.evaluated(), 3);
    // A good one: the password is checked and the user is in.
    let res = send(
        &svc,
        attempt("alice", PASSWORD, "198.51.100.7", Some("human-1")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.extensions().get::<CaptchaSolved>().is_some());
    assert_eq!(stack.evaluated(), 4);
    // Another account from a fresh address needs none.
    let res = send(&svc, attempt("bob", "x", "192.0.2.50", None)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn captcha_failures_are_not_counted_as_password_failures() {
    let stack = Stack::new();
    let svc = stack.service(stack.lockout());
    for _ in 0..3 {
        send(&svc, attempt("alice", "wrong", "198.51.100.7", None)).await;
    }
    for i in 0..20 {
        let res = send(
            &svc,
            attempt("alice", "wrong", "198.51.100.7", Some(&format!("bot-{i}"))),
        )
        .await;
        assert_eq!(reason(&res), Some(FailureReason::CaptchaInvalid));
    }
    // Still not locked: two more real guesses (with CAPTCHAs) are allowed.
    for i in 0..2 {
        let res = send(
            &svc,
            attempt(
                "alice",
                "wrong",
                "198.51.100.7",
                Some(&format!("human-{i}")),
            ),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = send(
        &svc,
        attempt("alice", PASSWORD, "198.51.100.7", Some("human-x")),
    )
    .await;
    assert_eq!(reason(&res), Some(FailureReason::AccountLocked));
}

#[tokio::test]
async fn row_108_captcha_path_lets_the_victim_in_during_an_attacker_lockout() {
    let stack = Stack::new();
    let svc = stack.service(stack.lockout().with_captcha_unlock());
    // The attacker locks alice from 203.0.113.66.
    for i in 0..5 {
        let token = format!("human-attacker-{i}");
        let token = (i >= 3).then_some(token.as_str());
        let res = send(&svc, attempt("alice", "wrong", "203.0.113.66", token)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{i}");
    }
    let evaluated = stack.evaluated();
    // Without a CAPTCHA the lock holds (and nothing is evaluated).
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7", None)).await;
    assert_eq!(reason(&res), Some(FailureReason::CaptchaRequired));
    assert_eq!(stack.evaluated(), evaluated);
    // The attacker's own address stays locked even with CAPTCHAs.
    let res = send(
        &svc,
        attempt("alice", "guess", "203.0.113.66", Some("human-a")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&res), Some(FailureReason::AccountLocked));
    assert_eq!(stack.evaluated(), evaluated);
    // The victim, from home, with a solved CAPTCHA: in.
    let res = send(
        &svc,
        attempt("alice", PASSWORD, "198.51.100.7", Some("human-victim")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(stack.evaluated(), evaluated + 1);
}

#[tokio::test]
async fn row_108_captcha_unlock_without_a_captcha_layer_is_masked() {
    // Misconfiguration: unlock enabled but no CaptchaLayer inside.
    let stack = Stack::new();
    let evaluated = Arc::clone(&stack.evaluated);
    let svc = stack
        .lockout()
        .with_captcha_unlock()
        .layer(handler(Arc::clone(&evaluated)));
    for _ in 0..5 {
        send(&svc, attempt("alice", "wrong", "203.0.113.66", None)).await;
    }
    let wrong = send(&svc, attempt("alice", "wrong", "198.51.100.7", None)).await;
    let right = send(&svc, attempt("alice", PASSWORD, "198.51.100.7", None)).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&right), Some(FailureReason::AccountLocked));
    assert_eq!(wrong.status(), right.status());
    assert_eq!(wrong.headers(), right.headers());
    assert_eq!(wrong.body(), right.body());
}

#[tokio::test]
async fn row_120_long_or_malformed_tokens_never_reach_the_provider() {
    let stack = Stack::new();
    let svc = CaptchaLayer::new(stack.oracle.clone()).layer(handler(Arc::clone(&stack.evaluated)));
    let long = "h".repeat(MAX_TOKEN_LEN + 1);
    let res = send(
        &svc,
        attempt("alice", PASSWORD, "198.51.100.7", Some(&long)),
    )
    .await;
    assert_eq!(reason(&res), Some(FailureReason::CaptchaInvalid));
    let mut req = attempt("alice", PASSWORD, "198.51.100.7", None);
    req.headers_mut()
        .insert("x-captcha-token", "has space".parse().unwrap());
    let res = send(&svc, req).await;
    assert_eq!(reason(&res), Some(FailureReason::CaptchaInvalid));
    assert_eq!(stack.provider_calls(), 0);
    assert_eq!(stack.evaluated(), 0);
}

#[tokio::test]
async fn without_counts_a_captcha_is_always_required() {
    let stack = Stack::new();
    let svc = CaptchaLayer::new(stack.oracle.clone()).layer(handler(Arc::clone(&stack.evaluated)));
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7", None)).await;
    assert_eq!(reason(&res), Some(FailureReason::CaptchaRequired));
    let res = send(
        &svc,
        attempt("alice", PASSWORD, "198.51.100.7", Some("human-1")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn tokens_are_single_use_and_read_from_header_or_field() {
    let stack = Stack::new();
    let svc = CaptchaLayer::new(stack.oracle.clone()).layer(handler(Arc::clone(&stack.evaluated)));
    let mut req = attempt("alice", PASSWORD, "198.51.100.7", None);
    req.headers_mut()
        .insert("x-captcha-token", "human-h".parse().unwrap());
    assert_eq!(send(&svc, req).await.status(), StatusCode::OK);
    let res = send(
        &svc,
        attempt("alice", PASSWORD, "198.51.100.7", Some("human-h")),
    )
    .await;
    assert_eq!(
        reason(&res),
        Some(FailureReason::CaptchaInvalid),
        "replayed via the field"
    );
    assert_eq!(
        stack.provider_calls(),
        1,
        "the replay never reached the provider"
    );
    // Two widget fields at once are ambiguous.
    let mut req = attempt("alice", PASSWORD, "198.51.100.7", Some("human-2"));
    req.body_mut().push_str("&g-recaptcha-response=human-3");
    assert_eq!(
        reason(&send(&svc, req).await),
        Some(FailureReason::CaptchaInvalid)
    );
}

#[tokio::test]
async fn provider_down_fails_closed_and_the_token_can_be_retried() {
    let stack = Stack::new();
    let svc = CaptchaLayer::new(stack.oracle.clone()).layer(handler(Arc::clone(&stack.evaluated)));
    stack.oracle.down.store(true, Ordering::SeqCst);
    let res = send(
        &svc,
        attempt("alice", PASSWORD, "198.51.100.7", Some("human-1")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reason(&res), Some(FailureReason::UpstreamUnavailable));
    assert!(!res.body().contains("test provider down"));
    assert_eq!(stack.evaluated(), 0);
    stack.oracle.down.store(false, Ordering::SeqCst);
    let res = send(
        &svc,
        attempt("alice", PASSWORD, "198.51.100.7", Some("human-1")),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the unverified token was not burnt"
    );
}

#[tokio::test]
async fn insecure_fail_open_marks_every_pass() {
    let stack = Stack::new();
    let svc = CaptchaLayer::new(stack.oracle.clone())
        .insecure_fail_open()
        .layer(handler(Arc::clone(&stack.evaluated)));
    stack.oracle.down.store(true, Ordering::SeqCst);
    let res = send(
        &svc,
        attempt("alice", PASSWORD, "198.51.100.7", Some("human-1")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.extensions().get::<CaptchaSolved>().is_none());
    let events = SecurityEvents::of(&res);
    assert_eq!(events[0].reason(), Some(FailureReason::UpstreamUnavailable));
    assert!(events[0].detail().unwrap().contains("failed open"));
}

#[tokio::test]
async fn shadow_mode_reports_without_rejecting() {
    let stack = Stack::new();
    let svc = CaptchaLayer::new(stack.oracle.clone())
        .shadow_mode()
        .layer(handler(Arc::clone(&stack.evaluated)));
    let res = send(&svc, attempt("alice", PASSWORD, "198.51.100.7", None)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let events = SecurityEvents::of(&res);
    assert!(events[0].is_shadow());
    assert_eq!(events[0].reason(), Some(FailureReason::CaptchaRequired));
}

#[tokio::test]
async fn thresholds_follow_the_counts() {
    let stack = Stack::new();
    let svc = CaptchaLayer::new(stack.oracle.clone())
        .with_thresholds(3, 10)
        .layer(handler(Arc::clone(&stack.evaluated)));
    let with = |account, ip| {
        let mut req = attempt("alice", PASSWORD, "198.51.100.7", None);
        req.extensions_mut().insert(AttemptCounts {
            account,
            ip,
            captcha_unlock: false,
        });
        req
    };
    assert_eq!(
        send(&svc, with(Some(2), Some(9))).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        reason(&send(&svc, with(Some(3), None)).await),
        Some(FailureReason::CaptchaRequired)
    );
    assert_eq!(
        reason(&send(&svc, with(None, Some(10))).await),
        Some(FailureReason::CaptchaRequired)
    );
    let _ = Duration::ZERO;
}
