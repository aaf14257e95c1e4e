//! The whole pipeline — audit + metrics, rate limit, lockout check, CSRF,
//! JWT (HS256), scope check — on an axum 0.8 router called in-process with
//! `tower::ServiceExt::oneshot` (request construction included), against,
//! in the same run:
//!
//! - `bare`: the same router and handler without any layer;
//! - `peer_stack`: the same checks assembled from the peers by hand:
//!   a `from_fn` middleware recording the `metrics` counter and histogram
//!   and an audit `tracing` event (JSON, formatted on the request path as
//!   a tracing-based audit does), tower_governor, a lockout check over a
//!   `Mutex<HashMap>` of locked addresses, tower-http's `CsrfLayer`,
//!   axum-jwt-auth's `Claims` extractor and the scope check in the handler.
//!
//! The request is an authenticated GET (bearer token, no cookie: the CSRF
//! layers let it through after their checks). Both stacks share one
//! Prometheus recorder and one JSON `tracing` subscriber writing to
//! `io::sink()`; Portcullis's audit entries are formatted by its consumer
//! task on a worker thread.
//!
//! Results and ratios: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)] // benchmark setup: a failure is a broken benchmark

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRef, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use portcullis::audit::{AuditLayer, Auditor, TracingSink};
use portcullis::authorize::RequireLayer;
use portcullis::core::{MemoryAttemptStore, PeerAddr};
use portcullis::csrf::{CsrfLayer, CsrfSecret, SessionCookie};
use portcullis::jwt::JwtLayer;
use portcullis::lockout::{LockoutLayer, RateLimit};
use tower::ServiceExt as _;

#[path = "support/fixture.rs"]
mod fixture;
use fixture::{AUDIENCE, Claims, ISSUER, ORIGIN, SECRET, address, token, verifier};

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

fn portcullis_stack(auditor: Auditor, cached: bool) -> Router {
    let mut jwt = JwtLayer::new(verifier());
    if cached {
        jwt = jwt.with_token_cache(1024, Duration::from_secs(60));
    }
    let csrf = CsrfLayer::builder(
        CsrfSecret::new(b"bench-csrf-secret-0123456789-abcdefghij".as_slice()).unwrap(),
    )
    .trusted_origin(ORIGIN)
    .session(SessionCookie::new("sid"))
    .exempt_requests_without_ambient_credentials(["sid"])
    .build()
    .unwrap();
    let lockout = LockoutLayer::new(MemoryAttemptStore::new(100_000))
        .with_rate_limit(RateLimit::per_second(1_000_000).unwrap());
    Router::new()
        .route("/orders", get(ok))
        .layer(RequireLayer::scopes(["orders:read"]))
        .layer(jwt)
        .layer(csrf)
        .layer(lockout)
        .layer(AuditLayer::new(auditor))
}

// --- The hand-assembled peer stack -------------------------------------------

#[derive(Clone, FromRef)]
struct PeerState {
    decoder: axum_jwt_auth::Decoder<Claims>,
}

async fn peer_handler(claims: axum_jwt_auth::Claims<Claims>) -> Response {
    if claims.claims.scope.split(' ').any(|s| s == "orders:read") {
        "ok".into_response()
    } else {
        StatusCode::FORBIDDEN.into_response()
    }
}

/// Metrics and an audit record, as a `tracing`-based setup writes them.
async fn observe(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics::counter!("http_requests_total", "status" => status.to_string()).increment(1);
    metrics::histogram!("http_request_duration_seconds").record(start.elapsed().as_secs_f64());
    tracing::info!(
        target: "audit",
        method = %method,
        path = %path,
        status,
        peer = ?peer,
        "request"
    );
    response
}

/// Locked addresses (a failure counter elsewhere would fill it).
type Locked = Arc<Mutex<HashMap<IpAddr, Instant>>>;

async fn lockout_check(locked: Locked, request: Request, next: Next) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip {
        let until = locked.lock().unwrap().get(&ip).copied();
        if until.is_some_and(|until| until > Instant::now()) {
            return StatusCode::TOO_MANY_REQUESTS.into_response();
        }
    }
    next.run(request).await
}

fn peer_stack() -> Router {
    let mut validation = jsonwebtoken10::Validation::new(jsonwebtoken10::Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let decoder = axum_jwt_auth::LocalDecoder::builder()
        .keys(vec![jsonwebtoken10::DecodingKey::from_secret(
            SECRET.as_bytes(),
        )])
        .validation(validation)
        .build()
        .unwrap();
    let governor = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000)
        .key_extractor(tower_governor::key_extractor::PeerIpKeyExtractor)
        .finish()
        .unwrap();
    let locked: Locked = Arc::new(Mutex::new(HashMap::new()));
    // One locked address that the benchmark never uses, so the map is not empty.
    locked.lock().unwrap().insert(
        IpAddr::from([203, 0, 113, 9]),
        Instant::now() + Duration::from_secs(900),
    );
    Router::new()
        .route("/orders", get(peer_handler))
        .with_state(PeerState {
            decoder: Arc::new(decoder),
        })
        .layer(
            tower_http::csrf::CsrfLayer::new()
                .add_trusted_origin(ORIGIN)
                .unwrap(),
        )
        .layer(middleware::from_fn(move |request, next| {
            lockout_check(Arc::clone(&locked), request, next)
        }))
        .layer(tower_governor::GovernorLayer::new(governor))
        .layer(middleware::from_fn(observe))
}

fn bench(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    router: &Router,
    bearer: &str,
) {
    let mut i = 0u32;
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            i = i.wrapping_add(1);
            let request = request(i, bearer);
            async move {
                let response = router.clone().oneshot(black_box(request)).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
            }
        })
    });
}

fn pipeline(c: &mut Criterion) {
    // The audit consumer runs on a worker thread, as in a server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
    let bare = Router::new().route("/orders", get(ok));
    let ours = portcullis_stack(auditor.clone(), false);
    let ours_cached = portcullis_stack(auditor.clone(), true);
    let peers = peer_stack();

    let mut group = c.benchmark_group("pipeline");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    bench(&mut group, &rt, "bare", &bare, &bearer);
    bench(&mut group, &rt, "portcullis", &ours, &bearer);
    bench(
        &mut group,
        &rt,
        "portcullis_token_cache_hit",
        &ours_cached,
        &bearer,
    );
    bench(&mut group, &rt, "peer_stack", &peers, &bearer);
    group.finish();
    rt.block_on(auditor.flush());
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
