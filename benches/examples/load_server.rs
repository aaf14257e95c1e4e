//! The servers the load test (`benches/load/run.sh`) compares with the
//! reference server: the same `GET /api/me` over real HTTP on loopback,
//!
//! - `bare`: a plain axum handler, no layer (the baseline);
//! - `pipeline`: the pipeline bench's stack — audit + Prometheus metrics,
//!   lockout check + rate limit, CSRF, JWT HS256, scope check — on memory
//!   stores, so its figure is the layers' cost without the demo's database.
//!
//! `load_server <bare|pipeline> <addr>` prints `token <bearer token>` and
//! `listening <addr>` on stdout, then serves until killed.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark server

use std::io::Write as _;
use std::net::SocketAddr;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use portcullis::Principal;
use portcullis::audit::{AuditLayer, Auditor, JsonLinesSink};
use portcullis::authorize::RequireLayer;
use portcullis::core::MemoryAttemptStore;
use portcullis::csrf::{CsrfLayer, CsrfSecret, SessionCookie};
use portcullis::jwt::JwtLayer;
use portcullis::lockout::{LockoutLayer, RateLimit};

#[path = "../benches/support/fixture.rs"]
#[allow(dead_code)]
mod fixture;
use fixture::{ORIGIN, token, verifier};

/// The demo's `/api/me` body, from the principal.
async fn me(principal: Principal) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "id": principal.subject(),
        "kind": principal.kind().as_str(),
        "scopes": principal.scopes().collect::<Vec<_>>(),
    }))
}

/// The same body shape without authentication.
async fn me_bare() -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "id": "user-42",
        "kind": "user",
        "scopes": ["orders:read", "orders:write"],
    }))
}

fn pipeline() -> Router {
    let csrf = CsrfLayer::builder(
        CsrfSecret::new(b"bench-csrf-secret-0123456789-abcdefghij".as_slice()).unwrap(),
    )
    .trusted_origin(ORIGIN)
    .session(SessionCookie::new("sid"))
    .exempt_requests_without_ambient_credentials(["sid"])
    .build()
    .unwrap();
    // The rate limit runs on every request but never refuses: the load
    // generator is one client address.
    let lockout = LockoutLayer::new(MemoryAttemptStore::new(100_000))
        .with_rate_limit(RateLimit::per_second(100_000_000).unwrap());
    // One JSON line per decision, as the demo writes them (to /dev/null here).
    let auditor = Auditor::builder()
        .sink(JsonLinesSink::new(std::io::sink()))
        .build()
        .unwrap();
    Router::new()
        .route("/api/me", get(me))
        .layer(RequireLayer::scopes(["orders:read"]))
        .layer(JwtLayer::new(verifier()))
        .layer(csrf)
        .layer(lockout)
        .layer(AuditLayer::new(auditor))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "bare".into());
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18600".into())
        .parse()
        .unwrap();
    let _prometheus = portcullis::audit::prometheus::install().unwrap();
    let router = match mode.as_str() {
        "bare" => Router::new().route("/api/me", get(me_bare)),
        "pipeline" => pipeline(),
        other => panic!("unknown mode {other} (bare | pipeline)"),
    };
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "token {}", token()).unwrap();
    writeln!(out, "listening {}", listener.local_addr().unwrap()).unwrap();
    out.flush().unwrap();
    drop(out);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .unwrap();
}
