//! Two app instances sharing state through Redis or PostgreSQL, over real
//! loopback HTTP (issue 8's proof): each instance has its own layers and
//! its own in-process caches; only the backend is shared.
//!
//! - 5 failures spread across both instances lock the account on both;
//! - a logout on one is refused on the other within the documented
//!   staleness bound of `CachedRevocationStore`;
//! - 200 concurrent failures across both let at most the limit reach the
//!   password check;
//! - the backend cut mid-run (a proxy drops every connection): requests fail
//!   closed with 503, nothing counted is lost, and service resumes when the
//!   backend is back.
//!
//! Backends come from `PORTCULLIS_TEST_REDIS_URL` and
//! `PORTCULLIS_TEST_POSTGRES_URL`; without them the tests are skipped with
//! a message (and fail under `CI`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis::client_ip::ClientIpLayer;
use portcullis::core::{
    AuthMethod, AuthOutcome, BoxAttemptStore, BoxRevocationStore, FailureReason, Principal,
    RevocationStore as _, TrustedProxies,
};
use portcullis::jwt::{JwtLayer, JwtVerifier};
use portcullis::lockout::{IdentifierSource, LockoutLayer};
use portcullis_redis::{CachedRevocationStore, RedisBackend};
use portcullis_sqlx::sqlx::postgres::PgConnectOptions;
use portcullis_sqlx::{PgBackend, PoolSettings};
use serde::Deserialize;
use serde_json::json;

use crate::common::{
    AUDIENCE, ISSUER, Reply, SECRET, claims, client, get_with_token, hs256_keys, mint_hs256,
    request, send, spawn_axum,
};
use crate::fault_proxy::{FaultProxy, reroute};

const PASSWORD: &str = "correct horse battery staple";
/// The cache bound each instance runs with: a revocation made elsewhere is
/// seen within it.
const STALENESS: Duration = Duration::from_millis(500);

/// The shared engine under test.
#[derive(Clone, Copy, Debug)]
enum Engine {
    Redis,
    Postgres,
}

impl Engine {
    fn env(self) -> &'static str {
        match self {
            Self::Redis => "PORTCULLIS_TEST_REDIS_URL",
            Self::Postgres => "PORTCULLIS_TEST_POSTGRES_URL",
        }
    }
}

/// The stores one instance gets: handles onto the shared backend.
#[derive(Clone)]
struct Shared {
    attempts: BoxAttemptStore,
    revocations: BoxRevocationStore,
}

/// Connects to `engine` (through `via`, a URL rewritten to a fault proxy,
/// when given) in a namespace of its own; `None` when the engine's
/// variable is unset outside CI.
async fn connect(engine: Engine, case: &str, namespace: &str, url: &str) -> Shared {
    match engine {
        Engine::Redis => {
            let backend = RedisBackend::builder(url, namespace)
                .operation_timeout(Duration::from_secs(1))
                .connect()
                .await
                .unwrap_or_else(|e| panic!("{case}: connect to Redis: {e}"));
            Shared {
                attempts: BoxAttemptStore::new(backend.attempts()),
                revocations: BoxRevocationStore::new(backend.revocations()),
            }
        }
        Engine::Postgres => {
            let backend = connect_postgres(case, namespace, url).await;
            Shared {
                attempts: BoxAttemptStore::new(backend.attempts()),
                revocations: BoxRevocationStore::new(backend.revocations()),
            }
        }
    }
}

/// A `PgBackend` whose tables live in schema `namespace` (created if
/// absent), so that parallel tests never share rows.
async fn connect_postgres(case: &str, namespace: &str, url: &str) -> PgBackend {
    use portcullis_sqlx::sqlx::{self, Connection as _};
    let options: PgConnectOptions = url
        .parse()
        .unwrap_or_else(|e| panic!("{case}: PostgreSQL URL: {e}"));
    let mut conn = sqlx::PgConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("{case}: connect to PostgreSQL: {e}"));
    // `namespace` is `unique_name` output: letters, digits and `_` only.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{namespace}\""
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{case}: create schema: {e}"));
    let settings = PoolSettings::new()
        .with_acquire_timeout(Duration::from_secs(1))
        .with_operation_timeout(Duration::from_secs(1));
    PgBackend::from_options_with(options.options([("search_path", namespace)]), settings)
        .await
        .unwrap_or_else(|e| panic!("{case}: PgBackend: {e}"))
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

#[derive(Clone)]
struct Instance {
    addr: SocketAddr,
    evaluated: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct AppState {
    evaluated: Arc<AtomicUsize>,
    revocations: BoxRevocationStore,
}

async fn login(State(app): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    app.evaluated.fetch_add(1, Ordering::SeqCst);
    tokio::task::yield_now().await;
    let ok = form.username == "alice" && form.password == PASSWORD;
    let (status, outcome) = if ok {
        (
            StatusCode::OK,
            AuthOutcome::success(AuthMethod::Password, "user-1"),
        )
    } else {
        (
            StatusCode::UNAUTHORIZED,
            AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials),
        )
    };
    let mut res = (status, Json(json!({ "ok": ok }))).into_response();
    outcome.with_identifier(form.username).attach(&mut res);
    res
}

async fn me(principal: Principal) -> Json<serde_json::Value> {
    Json(json!({ "sub": principal.subject() }))
}

/// Logout: revokes the presented token until it expires.
async fn logout(State(app): State<AppState>, principal: Principal) -> StatusCode {
    let (Some(jti), Some(exp)) = (principal.token_id(), principal.expires_at()) else {
        return StatusCode::BAD_REQUEST;
    };
    match app.revocations.revoke_token(jti, exp).await {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// One instance: its own lockout layer, its own JWT layer and revocation
/// cache; only `shared` is common.
async fn instance(shared: &Shared, ip_policy: bool) -> Instance {
    let evaluated = Arc::new(AtomicUsize::new(0));
    let cached =
        CachedRevocationStore::new(shared.revocations.clone()).with_max_staleness(STALENESS);
    let revocations = BoxRevocationStore::new(cached);
    let state = AppState {
        evaluated: Arc::clone(&evaluated),
        revocations: revocations.clone(),
    };
    let mut lockout = LockoutLayer::new(shared.attempts.clone())
        .with_identifier(IdentifierSource::field("username"));
    if !ip_policy {
        lockout = lockout
            .with_ip_policy(None)
            .expect("lockout without IP policy");
    }
    let verifier = JwtVerifier::builder(hs256_keys())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .expect("verifier");
    let jwt = JwtLayer::new(verifier)
        .with_revocation(revocations)
        // The instance's only cache is the CachedRevocationStore.
        .with_revocation_cache_ttl(Duration::ZERO);
    let router = Router::new()
        .route("/login", post(login).layer(lockout))
        .route("/me", get(me).layer(jwt.clone()))
        .route("/logout", post(logout).layer(jwt))
        .layer(ClientIpLayer::new(TrustedProxies::none()))
        .with_state(state);
    Instance {
        addr: spawn_axum(router).await,
        evaluated,
    }
}

async fn try_login(at: &Instance, user: &str, password: &str) -> Reply {
    let body = format!("username={user}&password={}", password.replace(' ', "+"));
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    send(
        &client(),
        request("POST", at.addr, "/login", &headers, body),
    )
    .await
}

/// Two instances on `engine`, or `None` (skipped) without its variable.
async fn pair(engine: Engine, case: &str, ip_policy: bool) -> Option<(Instance, Instance)> {
    let url = portcullis_test::backend_url(engine.env(), case)?;
    let namespace = portcullis_test::unique_name("pcmi");
    let a = connect(engine, case, &namespace, &url).await;
    let b = connect(engine, case, &namespace, &url).await;
    Some((instance(&a, ip_policy).await, instance(&b, ip_policy).await))
}

async fn failures_across_instances_lock_on_both(engine: Engine) {
    let case = "shared_state::failures_across_instances_lock_on_both";
    let Some((a, b)) = pair(engine, case, true).await else {
        return;
    };
    for at in [&a, &b, &a, &b, &a] {
        assert_eq!(
            try_login(at, "alice", "wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    for at in [&a, &b] {
        let reply = try_login(at, "alice", PASSWORD).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{engine:?}");
        assert_eq!(reply.json()["error"], "account_locked");
    }
    // Neither instance looked at the right password.
    assert_eq!(
        a.evaluated.load(Ordering::SeqCst) + b.evaluated.load(Ordering::SeqCst),
        5
    );
}

async fn logout_on_one_is_refused_on_the_other(engine: Engine) {
    let case = "shared_state::logout_on_one_is_refused_on_the_other";
    let Some((a, b)) = pair(engine, case, true).await else {
        return;
    };
    let mut c = claims("user-1", "");
    c["jti"] = json!(portcullis_test::unique_name("jti"));
    let token = mint_hs256(SECRET, &c);
    // Both instances accept the token, and b caches "not revoked".
    for at in [&a, &b] {
        assert_eq!(
            get_with_token(&client(), at.addr, "/me", &token)
                .await
                .status,
            StatusCode::OK
        );
    }
    let auth = format!("Bearer {token}");
    let res = send(
        &client(),
        request(
            "POST",
            a.addr,
            "/logout",
            &[("authorization", auth.as_str())],
            "",
        ),
    )
    .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let logged_out = Instant::now();
    // The instance that logged out refuses at once.
    assert_eq!(
        get_with_token(&client(), a.addr, "/me", &token)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // The other refuses within the staleness bound (polled; the slack is
    // for a slow machine, the bound itself is the cache's TTL).
    loop {
        let status = get_with_token(&client(), b.addr, "/me", &token)
            .await
            .status;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            logged_out.elapsed() < STALENESS + Duration::from_secs(2),
            "{engine:?}: the revocation was not seen within the bound"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn concurrent_failures_across_both_stay_under_the_limit(engine: Engine) {
    let case = "shared_state::concurrent_failures_across_both_stay_under_the_limit";
    let Some((a, b)) = pair(engine, case, false).await else {
        return;
    };
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let at = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { try_login(&at, "alice", "wrong").await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("login task"));
    }
    let evaluated = a.evaluated.load(Ordering::SeqCst) + b.evaluated.load(Ordering::SeqCst);
    assert!(
        (1..=5).contains(&evaluated),
        "{engine:?}: {evaluated} evaluated"
    );
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(unauthorized, evaluated);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED
            || *s == StatusCode::TOO_MANY_REQUESTS
            || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{engine:?}: {statuses:?}"
    );
}

async fn a_cut_backend_fails_closed_and_recovers(engine: Engine) {
    let case = "shared_state::a_cut_backend_fails_closed_and_recovers";
    let Some(url) = portcullis_test::backend_url(engine.env(), case) else {
        return;
    };
    let (_, upstream) = reroute(&url, "127.0.0.1:1".parse().expect("address"));
    let proxy = FaultProxy::start(upstream).await;
    let (via, _) = reroute(&url, proxy.addr());
    let namespace = portcullis_test::unique_name("pcfault");
    let shared = connect(engine, case, &namespace, &via).await;
    let app = instance(&shared, true).await;
    let mut c = claims("user-2", "");
    c["jti"] = json!(portcullis_test::unique_name("jti"));
    let token = mint_hs256(SECRET, &c);

    for _ in 0..2 {
        assert_eq!(
            try_login(&app, "alice", "wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        get_with_token(&client(), app.addr, "/me", &token)
            .await
            .status,
        StatusCode::OK
    );

    proxy.cut();
    // Let the negative revocation answer age out, so /me must ask the store.
    tokio::time::sleep(STALENESS + Duration::from_millis(100)).await;
    let started = Instant::now();
    let reply = try_login(&app, "alice", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{engine:?}");
    assert_eq!(reply.json()["error"], "upstream_unavailable");
    let reply = get_with_token(&client(), app.addr, "/me", &token).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{engine:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{engine:?}: failing closed must not hang"
    );
    let evaluated_during_outage = app.evaluated.load(Ordering::SeqCst);
    assert_eq!(
        evaluated_during_outage, 2,
        "no password checked while the store is down"
    );

    proxy.restore();
    // The stores reconnect by themselves; poll until they do.
    let back = Instant::now();
    loop {
        let status = get_with_token(&client(), app.addr, "/me", &token)
            .await
            .status;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "{engine:?}: no recovery after the backend returned ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing was lost: the two failures from before the outage still
    // count, so three more lock the account.
    for n in 3..=5 {
        let reply = try_login(&app, "alice", "wrong").await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{engine:?}: failure {n}"
        );
    }
    let reply = try_login(&app, "alice", PASSWORD).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{engine:?}");
    assert_eq!(reply.json()["error"], "account_locked");
}

macro_rules! on_every_engine {
    ($($case:ident),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Engine::Redis).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::Engine::Postgres).await;
                }
            )*
        }
    };
}

on_every_engine!(
    failures_across_instances_lock_on_both,
    logout_on_one_is_refused_on_the_other,
    concurrent_failures_across_both_stay_under_the_limit,
    a_cut_backend_fails_closed_and_recovers,
);
