//! The servers the load test (`benches/load/run.sh`) compares with the
//! reference server: the same `GET /api/me` over real HTTP on loopback,
//!
//! - `bare`: a plain axum handler, no layer (the baseline);
//! - `pipeline`: the pipeline bench's layers (`support/stacks.rs`) — audit
//!   with Prometheus metrics, lockout check and rate limit, CSRF, JWT HS256,
//!   scope check — on memory stores, so its figure is the layers' cost
//!   without the demo's database.
//!
//! `load_server <bare|pipeline> <addr>` prints `token <bearer token>` and
//! `listening <addr>` on stdout, then serves until killed.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a benchmark server

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write as _;
use std::net::SocketAddr;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use portcullis::Principal;

#[path = "../benches/support/fixture.rs"]
#[allow(dead_code)]
mod fixture;
#[path = "../benches/support/stacks.rs"]
#[allow(dead_code)]
mod stacks;
use fixture::token;

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
    stacks::with_portcullis(
        Router::new().route("/api/me", get(me)),
        stacks::auditor(false),
        false,
    )
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
