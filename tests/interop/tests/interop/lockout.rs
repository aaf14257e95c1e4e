//! `LockoutLayer` in an axum app over real loopback HTTP: a login route that
//! reports its outcome, `ClientIpLayer` with no trusted proxy, and seed
//! 000's operator endpoints (unlock, block). SECURITY.md rows 102, 107 and
//! 109 end to end, and the concurrency bound with 200 parallel HTTP
//! requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use portcullis::client_ip::ClientIpLayer;
use portcullis::core::{
    AuthMethod, AuthOutcome, FailureReason, MemoryAttemptStore, TrustedProxies,
};
use portcullis::lockout::{IdentifierSource, LockoutAdmin, LockoutLayer, RateLimit};
use serde::Deserialize;

use crate::common::{Reply, client, request, send, spawn_axum};

const PASSWORD: &str = "correct horse battery staple";

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

#[derive(Clone)]
struct App {
    evaluated: Arc<AtomicUsize>,
    admin: LockoutAdmin<MemoryAttemptStore>,
}

/// Seed 003's login: one known user; the same answer for unknown users and
/// wrong passwords; the outcome reported for the lockout layer.
async fn login(State(app): State<App>, Form(form): Form<LoginForm>) -> Response {
    app.evaluated.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    if form.username == "alice" && form.password == PASSWORD {
        let mut res = Json(serde_json::json!({"ok": true})).into_response();
        AuthOutcome::success(AuthMethod::Password, "user-1")
            .with_identifier(form.username)
            .attach(&mut res);
        res
    } else {
        let mut res = (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "invalid_credentials"})),
        )
            .into_response();
        AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
            .with_identifier(form.username)
            .attach(&mut res);
        res
    }
}

/// `POST /admin/unlock/{account}`: the event travels on the response.
async fn unlock(State(app): State<App>, Path(account): Path<String>) -> Response {
    match app.admin.unlock(&account).await {
        Ok(Some(event)) => {
            let mut res = StatusCode::NO_CONTENT.into_response();
            event.attach(&mut res);
            res
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// `POST /admin/block/{ip}`: seed 000's `BlockList.add_ip`.
async fn block(State(app): State<App>, Path(ip): Path<std::net::IpAddr>) -> Response {
    match app
        .admin
        .block(
            ip,
            Some(Duration::from_secs(86_400)),
            "Brute force attack detected",
        )
        .await
    {
        Ok(event) => {
            let mut res = StatusCode::NO_CONTENT.into_response();
            event.attach(&mut res);
            res
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn spawn(lockout: LockoutLayer<MemoryAttemptStore>) -> (SocketAddr, App) {
    let app = App {
        evaluated: Arc::new(AtomicUsize::new(0)),
        admin: lockout.admin(),
    };
    let router = Router::new()
        .route("/login", post(login))
        .layer(lockout)
        .layer(ClientIpLayer::new(TrustedProxies::none()))
        .route("/admin/unlock/{account}", post(unlock))
        .route("/admin/block/{ip}", post(block))
        .with_state(app.clone());
    (spawn_axum(router).await, app)
}

fn lockout() -> LockoutLayer<MemoryAttemptStore> {
    LockoutLayer::new(MemoryAttemptStore::new(10_000))
        .with_identifier(IdentifierSource::field("username"))
}

async fn try_login(addr: SocketAddr, user: &str, password: &str, xff: Option<&str>) -> Reply {
    let body = format!("username={user}&password={}", password.replace(' ', "+"));
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(xff) = xff {
        headers.push(("x-forwarded-for", xff));
    }
    send(&client(), request("POST", addr, "/login", &headers, body)).await
}

fn visible(reply: &Reply) -> (StatusCode, Option<String>, Option<String>, bytes::Bytes) {
    let header = |n: &str| {
        reply
            .headers
            .get(n)
            .map(|v| v.to_str().expect("interop test step").to_owned())
    };
    (
        reply.status,
        header("retry-after"),
        header("content-type"),
        reply.body.clone(),
    )
}

#[tokio::test]
async fn row_102_and_107_lock_over_http_same_answer_for_right_wrong_and_unknown() {
    let (addr, app) = spawn(lockout()).await;
    for _ in 0..5 {
        assert_eq!(
            try_login(addr, "alice", "wrong", None).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            try_login(addr, "nobody", "wrong", None).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let right = try_login(addr, "alice", PASSWORD, None).await;
    let wrong = try_login(addr, "alice", "wrong", None).await;
    let unknown = try_login(addr, "nobody", "wrong", None).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(right.json()["error"], "account_locked");
    let retry: u64 = right
        .header("retry-after")
        .parse()
        .expect("interop test step");
    assert!((1799..=1800).contains(&retry), "{retry}");
    assert_eq!(visible(&right), visible(&wrong));
    assert_eq!(visible(&right), visible(&unknown));
    assert_eq!(app.evaluated.load(Ordering::SeqCst), 10);

    // The operator unlocks alice (seed 000), and she is in.
    let res = send(
        &client(),
        request("POST", addr, "/admin/unlock/Alice", &[], ""),
    )
    .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    // Only the account lock was lifted (the account+address counters are
    // left alone: an address that was guessing stays locked out).
    let locked = app
        .admin
        .locked_accounts(10)
        .await
        .expect("interop test step");
    assert_eq!(locked.len(), 1, "only `nobody` is still locked");
}

#[tokio::test]
async fn row_109_rotating_forwarded_for_from_an_untrusted_peer_hits_one_counter() {
    let (addr, _app) =
        spawn(lockout().with_rate_limit(RateLimit::per_minute(5).expect("interop test step")))
            .await;
    for i in 0..5 {
        let xff = format!("203.0.113.{i}");
        let reply = try_login(addr, &format!("user{i}"), "wrong", Some(&xff)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = try_login(addr, "user9", "wrong", Some("198.51.100.200")).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.json()["error"], "rate_limited");
    assert!(reply.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn blocked_address_gets_403_ip_blocked() {
    let (addr, app) = spawn(lockout()).await;
    let res = send(
        &client(),
        request("POST", addr, "/admin/block/127.0.0.1", &[], ""),
    )
    .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let reply = try_login(addr, "alice", PASSWORD, None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["error"], "ip_blocked");
    assert_eq!(app.evaluated.load(Ordering::SeqCst), 0);
    assert_eq!(
        app.admin.blocked().await.expect("interop test step")[0].reason,
        "Brute force attack detected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_200_http_requests_at_most_5_passwords_evaluated() {
    let (addr, app) = spawn(lockout().with_ip_policy(None).expect("interop test step")).await;
    let tasks: Vec<_> = (0..200)
        .map(|_| tokio::spawn(async move { try_login(addr, "alice", "wrong", None).await.status }))
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("interop test step"));
    }
    let evaluated = app.evaluated.load(Ordering::SeqCst);
    assert!((1..=5).contains(&evaluated), "{evaluated}");
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count(),
        evaluated
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS)
    );
}
