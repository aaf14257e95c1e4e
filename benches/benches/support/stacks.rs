//! The two stacks of the pipeline bench — Portcullis and the same checks
//! assembled from the peers by hand — and the request they serve, shared
//! by `benches/pipeline.rs` (wall time) and `examples/pipeline_profile.rs`
//! (instruction counts) so that both measure the same thing.
//!
//! Every router is finalised with `with_state(())`, as `axum::serve` does
//! (a `Router<()>` called directly re-applies its layers per request), and
//! each stack's layers are one `tower::ServiceBuilder`.

use std::collections::HashMap;
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
use portcullis::audit::prometheus::PrometheusHandle;
use portcullis::audit::{AuditLayer, Auditor, JsonLinesSink, TracingSink};
use portcullis::authorize::RequireLayer;
use portcullis::core::{MemoryAttemptStore, PeerAddr};
use portcullis::csrf::{CsrfLayer, CsrfSecret, SessionCookie};
use portcullis::jwt::JwtLayer;
use portcullis::lockout::{LockoutLayer, RateLimit};

use super::fixture::{AUDIENCE, Claims, ISSUER, ORIGIN, SECRET, address, verifier};

/// The bare router: the same route and handler without any layer.
pub(crate) fn bare() -> Router {
    Router::new().route("/orders", get(ok)).with_state(())
}

pub(crate) fn request(i: u32, bearer: &str) -> Request {
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

pub(crate) async fn ok() -> &'static str {
    "ok"
}

/// The stacks' CSRF layer: bearer requests without the session cookie are
/// exempt (they pass after the Fetch-Metadata / origin checks).
pub(crate) fn csrf() -> CsrfLayer {
    CsrfLayer::builder(
        CsrfSecret::new(b"bench-csrf-secret-0123456789-abcdefghij".as_slice()).unwrap(),
    )
    .trusted_origin(ORIGIN)
    .session(SessionCookie::new("sid"))
    .exempt_requests_without_ambient_credentials(["sid"])
    .build()
    .unwrap()
}

/// The stacks' lockout check with a per-address rate limit that never
/// refuses (one client address may send a million requests a second).
pub(crate) fn lockout() -> LockoutLayer<MemoryAttemptStore> {
    LockoutLayer::new(MemoryAttemptStore::new(100_000))
        .with_rate_limit(RateLimit::per_second(1_000_000).unwrap())
}

/// The JSON `tracing` subscriber (to `io::sink()`) and the Prometheus
/// recorder both stacks report to; the handle keeps the recorder alive.
pub(crate) fn install_observability() -> PrometheusHandle {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    portcullis::audit::prometheus::install().unwrap()
}

/// An auditor writing JSON lines to `io::sink()` (the demo's sink), or with
/// `tracing`, through the `tracing` subscriber.
pub(crate) fn auditor(tracing: bool) -> Auditor {
    let builder = Auditor::builder().capacity(100_000);
    let builder = if tracing {
        builder.sink(TracingSink::new())
    } else {
        builder.sink(JsonLinesSink::new(std::io::sink()))
    };
    builder.build().unwrap()
}

/// `routes` behind every Portcullis layer of the pipeline, outermost first,
/// as one `ServiceBuilder`, finalised.
pub(crate) fn with_portcullis(routes: Router, auditor: Auditor, cached: bool) -> Router {
    let mut jwt = JwtLayer::new(verifier());
    if cached {
        jwt = jwt.with_token_cache(1024, Duration::from_secs(60));
    }
    routes
        .layer(
            tower::ServiceBuilder::new()
                .layer(AuditLayer::new(auditor))
                .layer(lockout())
                .layer(csrf())
                .layer(jwt)
                .layer(RequireLayer::scopes(["orders:read"])),
        )
        .with_state(())
}

pub(crate) fn portcullis_stack(
    auditor: Auditor,
    cached: bool,
    one_router_layer_each: bool,
) -> Router {
    if !one_router_layer_each {
        return with_portcullis(Router::new().route("/orders", get(ok)), auditor, cached);
    }
    let mut jwt = JwtLayer::new(verifier());
    if cached {
        jwt = jwt.with_token_cache(1024, Duration::from_secs(60));
    }
    let (csrf, lockout) = (csrf(), lockout());
    // Each layer its own `Router::layer`: axum boxes every level and clones
    // each box per request.
    Router::new()
        .route("/orders", get(ok))
        .layer(RequireLayer::scopes(["orders:read"]))
        .layer(jwt)
        .layer(csrf)
        .layer(lockout)
        .layer(AuditLayer::new(auditor))
        .with_state(())
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

pub(crate) fn peer_stack() -> Router {
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
            tower::ServiceBuilder::new()
                .layer(middleware::from_fn(observe))
                .layer(tower_governor::GovernorLayer::new(governor))
                .layer(middleware::from_fn(move |request, next| {
                    lockout_check(Arc::clone(&locked), request, next)
                }))
                .layer(
                    tower_http::csrf::CsrfLayer::new()
                        .add_trusted_origin(ORIGIN)
                        .unwrap(),
                ),
        )
}
