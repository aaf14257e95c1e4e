//! `CaptchaLayer` with `SiteVerify` against a fake siteverify server on
//! 127.0.0.1 that answers like Turnstile, hCaptcha and reCAPTCHA v2/v3,
//! behind `LockoutLayer` in an axum app, over real HTTP. SECURITY.md rows
//! 113 and 115–123, and the siteverify client behind `CircuitBreakerLayer`
//! (row 119's breaker part): 5xx and timeouts are breaker failures, and an
//! open breaker fails the CAPTCHA closed (503) without calling the provider.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::captcha::{CaptchaLayer, SiteVerify, SiteVerifyBuilder};
use portcullis::circuit_breaker::{CircuitBreakerLayer, State as BreakerState};
use portcullis::core::{AuthMethod, AuthOutcome, FailureReason, MemoryAttemptStore};
use portcullis::lockout::{IdentifierSource, LockoutLayer};
use serde_json::{Value, json};
use tower::Layer as _;

use crate::common::{Reply, client, request, send, spawn_axum};

const PASSWORD: &str = "correct-horse";
const HOST: &str = "login.example.com";
const SITEKEY: &str = "10000000-ffff-ffff-ffff-000000000001";

/// How the fake provider answers.
#[derive(Clone, Debug)]
enum Answer {
    /// As the provider does for a valid token, with `patch` merged in.
    Valid(Value),
    /// A plain status and body (5xx, HTML…).
    Raw(u16, &'static str),
    /// Never answers.
    Hang,
}

struct Fake {
    provider: &'static str,
    answer: Mutex<Answer>,
    hits: AtomicUsize,
    forms: Mutex<Vec<HashMap<String, String>>>,
}

/// RFC 3339 for `t` (UTC), as the providers write `challenge_ts`.
fn rfc3339(t: SystemTime) -> String {
    portcullis::core::audit::rfc3339(t)
}

async fn siteverify(
    State(fake): State<Arc<Fake>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    fake.hits.fetch_add(1, Ordering::SeqCst);
    fake.forms.lock().expect("not poisoned").push(form.clone());
    let answer = fake.answer.lock().expect("not poisoned").clone();
    match answer {
        Answer::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        Answer::Raw(status, body) => {
            (StatusCode::from_u16(status).expect("valid status"), body).into_response()
        }
        Answer::Valid(patch) => {
            // Single use, as the providers do.
            let token = form.get("response").cloned().unwrap_or_default();
            let seen = fake
                .forms
                .lock()
                .expect("not poisoned")
                .iter()
                .filter(|f| f.get("response") == Some(&token))
                .count();
            let mut body = json!({
                "success": true,
                "challenge_ts": rfc3339(SystemTime::now()),
                "hostname": HOST,
            });
            match fake.provider {
                "turnstile" => {
                    body["action"] = json!("login");
                    body["cdata"] = json!("");
                }
                "recaptcha_v3" => {
                    body["action"] = json!("login");
                    body["score"] = json!(0.9);
                }
                "hcaptcha" if form.get("sitekey").map(String::as_str) != Some(SITEKEY) => {
                    body = json!({"success": false, "error-codes": ["sitekey-secret-mismatch"]});
                }
                _ => {}
            }
            if seen > 1 {
                body = json!({"success": false, "error-codes": ["timeout-or-duplicate"]});
            } else if let Value::Object(patch) = patch {
                for (k, v) in patch {
                    body[k] = v;
                }
            }
            Json(body).into_response()
        }
    }
}

impl Fake {
    async fn spawn(provider: &'static str) -> (Arc<Self>, String) {
        let fake = Arc::new(Self {
            provider,
            answer: Mutex::new(Answer::Valid(json!({}))),
            hits: AtomicUsize::new(0),
            forms: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/siteverify", post(siteverify))
            .with_state(Arc::clone(&fake));
        let addr = spawn_axum(router).await;
        (fake, format!("http://{addr}/siteverify"))
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("interop test step") = answer;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[derive(serde::Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login(State(evaluated): State<Arc<AtomicUsize>>, Form(form): Form<LoginForm>) -> Response {
    evaluated.fetch_add(1, Ordering::SeqCst);
    let ok = form.username == "alice" && form.password == PASSWORD;
    let mut res = if ok {
        Json(json!({"ok": true})).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_credentials"})),
        )
            .into_response()
    };
    let outcome = if ok {
        AuthOutcome::success(AuthMethod::Password, "user-1")
    } else {
        AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
    };
    outcome.with_identifier(form.username).attach(&mut res);
    res
}

async fn spawn_app(verifier: SiteVerify, field: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let evaluated = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route("/login", post(login))
        .layer(CaptchaLayer::new(verifier).with_fields([field]))
        .layer(
            LockoutLayer::new(MemoryAttemptStore::new(1000))
                .with_identifier(IdentifierSource::field("username")),
        )
        .with_state(Arc::clone(&evaluated));
    (spawn_axum(router).await, evaluated)
}

async fn try_login(addr: SocketAddr, password: &str, field: &str, token: Option<&str>) -> Reply {
    let mut body = format!("username=alice&password={password}");
    if let Some(token) = token {
        body.push_str(&format!("&{field}={token}"));
    }
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    send(&client(), request("POST", addr, "/login", &headers, body)).await
}

fn turnstile(url: &str) -> SiteVerifyBuilder {
    SiteVerify::turnstile("0x4AAAAAAAinterop-secret")
        .hostname(HOST)
        .action("login")
        .verify_url(url)
        .expect("interop test step")
}

/// Three failures, so the next attempt needs a CAPTCHA.
async fn fail_three(addr: SocketAddr, field: &str) {
    for _ in 0..3 {
        assert_eq!(
            try_login(addr, "wrong", field, None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

fn error(reply: &Reply) -> String {
    reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn row_113_no_token_after_three_failures_and_the_provider_flow() {
    let (fake, url) = Fake::spawn("turnstile").await;
    let (addr, evaluated) = spawn_app(
        turnstile(&url).build().expect("interop test step"),
        "cf-turnstile-response",
    )
    .await;
    fail_three(addr, "cf-turnstile-response").await;
    let reply = try_login(addr, PASSWORD, "cf-turnstile-response", None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(error(&reply), "captcha_required");
    assert_eq!(
        evaluated.load(Ordering::SeqCst),
        3,
        "password not evaluated"
    );
    assert_eq!(fake.hits(), 0);

    let reply = try_login(
        addr,
        PASSWORD,
        "cf-turnstile-response",
        Some("XXXX.DUMMY.TOKEN.XXXX"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(fake.hits(), 1);
    let form = fake.forms.lock().expect("interop test step")[0].clone();
    assert_eq!(form["secret"], "0x4AAAAAAAinterop-secret");
    assert_eq!(form["response"], "XXXX.DUMMY.TOKEN.XXXX");
    assert_eq!(form["remoteip"], "127.0.0.1");
    // Replay: refused locally, the provider is not asked again.
    let reply = try_login(
        addr,
        PASSWORD,
        "cf-turnstile-response",
        Some("XXXX.DUMMY.TOKEN.XXXX"),
    )
    .await;
    assert_eq!(error(&reply), "captcha_invalid");
    assert_eq!(fake.hits(), 1);
}

/// Rows 115–118 and 123 for each provider: a mismatching answer is
/// `403 captcha_invalid` and the password is never evaluated.
#[tokio::test]
async fn rows_115_to_118_and_123_mismatching_answers_are_refused_for_each_provider() {
    let old = rfc3339(SystemTime::now() - Duration::from_secs(301));
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "turnstile",
            "row 115 hostname",
            json!({"hostname": "evil.example"}),
        ),
        ("turnstile", "row 116 action", json!({"action": "signup"})),
        (
            "turnstile",
            "row 118 age 301 s",
            json!({"challenge_ts": old}),
        ),
        (
            "recaptcha_v3",
            "row 115 hostname",
            json!({"hostname": "evil.example"}),
        ),
        (
            "recaptcha_v3",
            "row 116 action",
            json!({"action": "signup"}),
        ),
        ("recaptcha_v3", "row 117 score", json!({"score": 0.2})),
        (
            "recaptcha_v2",
            "row 118 age 121 s",
            json!({"challenge_ts": rfc3339(SystemTime::now() - Duration::from_secs(121))}),
        ),
        (
            "hcaptcha",
            "row 115 hostname",
            json!({"hostname": "evil.example"}),
        ),
        ("hcaptcha", "row 123 another sitekey", json!({})),
    ];
    for (provider, case, patch) in cases {
        let (fake, url) = Fake::spawn(provider).await;
        let (builder, field) = match provider {
            "turnstile" => (turnstile(&url), "cf-turnstile-response"),
            "recaptcha_v3" => (
                SiteVerify::recaptcha_v3("6Lc-interop-secret", "login", 0.5)
                    .hostname(HOST)
                    .verify_url(&url)
                    .expect("interop test step"),
                "g-recaptcha-response",
            ),
            "recaptcha_v2" => (
                SiteVerify::recaptcha_v2("6Lc-interop-secret")
                    .hostname(HOST)
                    .verify_url(&url)
                    .expect("interop test step"),
                "g-recaptcha-response",
            ),
            _ => {
                let sitekey = if case.contains("123") {
                    "20000000-ffff-ffff-ffff-000000000002"
                } else {
                    SITEKEY
                };
                (
                    SiteVerify::hcaptcha("0xinterop-secret", sitekey)
                        .hostname(HOST)
                        .verify_url(&url)
                        .expect("interop test step"),
                    "h-captcha-response",
                )
            }
        };
        let (addr, evaluated) = spawn_app(builder.build().expect("interop test step"), field).await;
        fail_three(addr, field).await;
        // The same provider accepts a well-formed answer...
        let reply = try_login(addr, PASSWORD, field, Some("token-ok")).await;
        if !case.contains("123") {
            assert_eq!(reply.status, StatusCode::OK, "{provider} {case}: baseline");
        }
        // ...and refuses the mismatching one.
        fake.answer(Answer::Valid(patch));
        let before = evaluated.load(Ordering::SeqCst);
        let reply = try_login(addr, PASSWORD, field, Some("token-2")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{provider} {case}");
        assert_eq!(error(&reply), "captcha_invalid", "{provider} {case}");
        assert_eq!(
            evaluated.load(Ordering::SeqCst),
            before,
            "{provider} {case}"
        );
    }
}

#[tokio::test]
async fn row_119_provider_failures_fail_closed() {
    let (fake, url) = Fake::spawn("turnstile").await;
    let verifier = turnstile(&url)
        .timeout(Duration::from_millis(300))
        .build()
        .expect("interop test step");
    let (addr, evaluated) = spawn_app(verifier, "cf-turnstile-response").await;
    fail_three(addr, "cf-turnstile-response").await;
    let answers = [
        Answer::Raw(500, r#"{"success":true}"#),
        Answer::Raw(502, "bad gateway"),
        Answer::Raw(200, "<html><body>Service Unavailable</body></html>"),
        Answer::Valid(json!({"success": "true"})),
        Answer::Raw(200, r#"{"hostname":"login.example.com"}"#),
        Answer::Hang,
    ];
    for (i, answer) in answers.into_iter().enumerate() {
        fake.answer(answer.clone());
        let reply = try_login(
            addr,
            PASSWORD,
            "cf-turnstile-response",
            Some(&format!("token-{i}")),
        )
        .await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert_eq!(error(&reply), "upstream_unavailable", "{answer:?}");
    }
    assert_eq!(evaluated.load(Ordering::SeqCst), 3, "never let through");
}

#[tokio::test]
async fn row_120_long_token_is_refused_without_calling_the_provider() {
    let (fake, url) = Fake::spawn("turnstile").await;
    let (addr, _) = spawn_app(
        turnstile(&url).build().expect("interop test step"),
        "cf-turnstile-response",
    )
    .await;
    fail_three(addr, "cf-turnstile-response").await;
    let long = "A".repeat(2049);
    let reply = try_login(addr, PASSWORD, "cf-turnstile-response", Some(&long)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(error(&reply), "captcha_invalid");
    assert_eq!(fake.hits(), 0);
}

#[test]
fn row_121_dummy_secret_is_a_configuration_error() {
    let err = SiteVerify::turnstile("1x0000000000000000000000000000000AA")
        .hostname(HOST)
        .verify_url("http://127.0.0.1:9/siteverify")
        .expect("interop test step")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("test secret"));
}

#[tokio::test]
async fn row_122_secret_and_token_stay_out_of_bodies_and_debug() {
    let (fake, url) = Fake::spawn("turnstile").await;
    let verifier = turnstile(&url).build().expect("interop test step");
    assert!(!format!("{verifier:?}").contains("interop-secret"));
    let (addr, _) = spawn_app(verifier, "cf-turnstile-response").await;
    fail_three(addr, "cf-turnstile-response").await;
    fake.answer(Answer::Valid(json!({"hostname": "evil.example"})));
    let reply = try_login(
        addr,
        PASSWORD,
        "cf-turnstile-response",
        Some("SECRET-TOKEN-VALUE"),
    )
    .await;
    let text = String::from_utf8_lossy(&reply.body);
    assert!(
        !text.contains("SECRET-TOKEN-VALUE")
            && !text.contains("interop-secret")
            && !text.contains("evil")
    );
}

#[tokio::test]
async fn row_119_breaker_records_siteverify_failures_and_an_open_breaker_fails_closed() {
    let (fake, url) = Fake::spawn("turnstile").await;
    let layer = CircuitBreakerLayer::consecutive_failures(2, Duration::from_secs(60))
        .expect("interop test step")
        .with_name("siteverify")
        .with_call_timeout(Duration::from_millis(300));
    let breaker = layer.handle();
    let http = layer.layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let verifier = turnstile(&url)
        .client(http)
        .build()
        .expect("interop test step");
    let (addr, evaluated) = spawn_app(verifier, "cf-turnstile-response").await;
    fail_three(addr, "cf-turnstile-response").await;

    // A 5xx and a timeout: both recorded as breaker failures.
    fake.answer(Answer::Raw(503, "down"));
    let reply = try_login(addr, PASSWORD, "cf-turnstile-response", Some("t-1")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(breaker.metrics().failed_calls(), 1);
    fake.answer(Answer::Hang);
    let reply = try_login(addr, PASSWORD, "cf-turnstile-response", Some("t-2")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(fake.hits(), 2);

    // Open: the CAPTCHA fails closed without calling the provider, even
    // though it would now answer yes.
    fake.answer(Answer::Valid(json!({})));
    let reply = try_login(addr, PASSWORD, "cf-turnstile-response", Some("t-3")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error(&reply), "upstream_unavailable");
    assert_eq!(fake.hits(), 2);
    assert_eq!(evaluated.load(Ordering::SeqCst), 3);

    // The operator closes it: the same token works (it was not burnt).
    breaker.reset();
    let reply = try_login(addr, PASSWORD, "cf-turnstile-response", Some("t-3")).await;
    assert_eq!(reply.status, StatusCode::OK);
}
