//! A driver for instruction-count profiles of the pipeline bench's stacks
//! (`valgrind --tool=callgrind`): counts are repeatable where wall time on
//! a shared 2-core machine is not. Runs `N` requests through one stack on a
//! current-thread runtime (the audit consumer runs on the same thread, so
//! its work is counted too) inside `drive`, the function to collect:
//!
//! ```sh
//! CARGO_PROFILE_BENCH_DEBUG=line-tables-only cargo build --profile bench \
//!     -p portcullis-benches --example pipeline_profile
//! valgrind --tool=callgrind --toggle-collect=*drive* \
//!     target/release/examples/pipeline_profile portcullis 20000
//! ```
//!
//! Stacks: `bare`, `portcullis`, `cached`, and one layer at a time over
//! the bare router: `jwt`, `lockout`, `csrf`, `audit`, `require`.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a profiling driver

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::routing::get;
use portcullis::audit::{AuditLayer, Auditor, TracingSink};
use portcullis::authorize::RequireLayer;
use portcullis::core::{MemoryAttemptStore, PeerAddr};
use portcullis::csrf::{CsrfLayer, CsrfSecret, SessionCookie};
use portcullis::jwt::JwtLayer;
use portcullis::lockout::{LockoutLayer, RateLimit};
use tower::ServiceExt as _;

#[path = "../benches/support/fixture.rs"]
#[allow(dead_code)]
mod fixture;
use fixture::{ORIGIN, address, token, verifier};

fn request(i: u32, bearer: &str) -> Request {
    let mut request = Request::get("/orders")
        .header("authorization", bearer)
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")
        .body(Body::empty())
        .unwrap();
    let peer = address(i);
    request.extensions_mut().insert(PeerAddr(peer));
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

async fn ok() -> &'static str {
    "ok"
}

fn csrf() -> CsrfLayer {
    CsrfLayer::builder(
        CsrfSecret::new(b"bench-csrf-secret-0123456789-abcdefghij".as_slice()).unwrap(),
    )
    .trusted_origin(ORIGIN)
    .session(SessionCookie::new("sid"))
    .exempt_requests_without_ambient_credentials(["sid"])
    .build()
    .unwrap()
}

fn lockout() -> LockoutLayer<MemoryAttemptStore> {
    LockoutLayer::new(MemoryAttemptStore::new(100_000))
        .with_rate_limit(RateLimit::per_second(1_000_000).unwrap())
}

fn router(stack: &str, auditor: &Auditor) -> Router {
    let base = Router::new().route("/orders", get(ok));
    match stack {
        "bare" => base,
        "jwt" => base.layer(JwtLayer::new(verifier())),
        "lockout" => base.layer(lockout()),
        "csrf" => base.layer(csrf()),
        "audit" => base.layer(AuditLayer::new(auditor.clone())),
        // Without a principal the check refuses: give it the JWT layer's.
        "require" => base
            .layer(RequireLayer::scopes(["orders:read"]))
            .layer(JwtLayer::new(verifier())),
        "portcullis" | "cached" => {
            let mut jwt = JwtLayer::new(verifier());
            if stack == "cached" {
                jwt = jwt.with_token_cache(1024, Duration::from_secs(60));
            }
            base.layer(RequireLayer::scopes(["orders:read"]))
                .layer(jwt)
                .layer(csrf())
                .layer(lockout())
                .layer(AuditLayer::new(auditor.clone()))
        }
        other => panic!("unknown stack {other}"),
    }
}

#[inline(never)]
fn drive(rt: &tokio::runtime::Runtime, router: &Router, auditor: &Auditor, bearer: &str, n: u32) {
    rt.block_on(async {
        for i in 0..n {
            let response = router
                .clone()
                .oneshot(black_box(request(i, bearer)))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        // The audit consumer's work for this batch is counted too.
        auditor.flush().await;
    });
}

fn main() {
    let mut args = std::env::args().skip(1);
    let stack = args.next().unwrap_or_else(|| "portcullis".into());
    let n: u32 = args.next().map_or(20_000, |n| n.parse().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let _prometheus = portcullis::audit::prometheus::install().unwrap();
    let auditor = Auditor::builder()
        .sink(TracingSink::new())
        .capacity(100_000)
        .build()
        .unwrap();
    let bearer = format!("Bearer {}", token());
    // `with_state` builds every route once, as `axum::serve` does; a
    // `Router<()>` called directly would re-apply its layers per request.
    let router = router(&stack, &auditor).with_state(());
    // Warm up (caches, lazily built state) outside the collected function.
    for i in 0..1_000 {
        let response = rt
            .block_on(router.clone().oneshot(request(i, &bearer)))
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    rt.block_on(auditor.flush());
    drive(&rt, &router, &auditor, &bearer, n);
    println!("{stack}: {n} requests");
}
