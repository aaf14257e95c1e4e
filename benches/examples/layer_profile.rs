//! A driver for instruction-count profiles of the peer bench's rate limit
//! and API key stacks (`valgrind --tool=callgrind`): counts are repeatable
//! where wall time on a shared 2-core machine is not. Each stack is built
//! as in `benches/benches/peers.rs` and finalised with `.with_state(())`
//! (as `axum::serve` does); `drive` runs `N` requests through it on a
//! current-thread runtime and is the function to collect:
//!
//! ```sh
//! CARGO_PROFILE_BENCH_DEBUG=line-tables-only cargo build --profile bench \
//!     -p portcullis-benches --example layer_profile
//! valgrind --tool=callgrind --toggle-collect='*drive*' \
//!     --callgrind-out-file=/tmp/c.ratelimit \
//!     target/release/examples/layer_profile ratelimit 10000
//! ```
//!
//! Cost of a layer per request: (its count − `bare`'s count) ÷ `N`.
//!
//! Stacks: `bare`, `bare_apikey` (the bare router, requests with the
//! `x-api-key` header of the key stacks), `ratelimit` (`LockoutLayer` with a `RateLimit` per
//! address), `governor` (tower_governor, peer-address key), `apikey_hit`
//! (cached), `apikey_miss` (store lookup every time), `apikey_unknown`
//! (well-formed key of another store), `apikey_baseline` and
//! `apikey_baseline_unknown` (SHA-256 + map + constant-time compare in the
//! handler).
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a profiling driver

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::get;
use portcullis::api_key::{ApiKeyLayer, MemoryApiKeyStore, NewApiKey};
use portcullis::core::{MemoryAttemptStore, PeerAddr};
use portcullis::lockout::{LockoutLayer, RateLimit};
use subtle::ConstantTimeEq as _;
use tower::ServiceExt as _;

#[path = "../benches/support/fixture.rs"]
#[allow(dead_code)]
mod fixture;
use fixture::address;

/// A GET with `x-api-key` (when given) and the peer address in both
/// extensions, as `peers.rs` builds it.
fn request(i: u32, key: Option<&str>) -> Request<Body> {
    let mut builder = Request::get("/orders");
    if let Some(key) = key {
        builder = builder.header("x-api-key", key);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    let peer = address(i);
    request.extensions_mut().insert(PeerAddr(peer));
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

async fn ok() -> &'static str {
    "ok"
}

#[derive(Clone)]
struct Digests(Arc<HashMap<[u8; 8], [u8; 32]>>);

fn sha256(key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, key.as_bytes()).as_ref());
    out
}

async fn bare_key_handler(State(digests): State<Digests>, headers: HeaderMap) -> StatusCode {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let digest = sha256(key);
    let prefix: [u8; 8] = digest[..8].try_into().unwrap();
    if digests
        .0
        .get(&prefix)
        .is_some_and(|stored| bool::from(stored.ct_eq(&digest)))
    {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// The router of `stack`, the key its requests carry and the status they get.
fn stack(rt: &tokio::runtime::Runtime, stack: &str) -> (Router, Option<String>, StatusCode) {
    let base = Router::new().route("/orders", get(ok));
    let new_key = || NewApiKey::new("svc-billing", "bench").with_scopes(["orders:read"]);
    let create = |layer: &ApiKeyLayer<MemoryApiKeyStore>| {
        rt.block_on(layer.keys().create(new_key()))
            .unwrap()
            .into_key()
    };
    match stack {
        "bare" => (base.with_state(()), None, StatusCode::OK),
        // The bare router with the `x-api-key` header of the key cases.
        "bare_apikey" => {
            let key = create(&ApiKeyLayer::new(MemoryApiKeyStore::default()));
            (base.with_state(()), Some(key), StatusCode::OK)
        }
        "ratelimit" => (
            base.layer(
                LockoutLayer::new(MemoryAttemptStore::new(16))
                    .with_rate_limit(RateLimit::per_second(1_000_000).unwrap())
                    .with_ip_policy(None)
                    .unwrap(),
            )
            .with_state(()),
            None,
            StatusCode::OK,
        ),
        "governor" => {
            let config = tower_governor::governor::GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000)
                .key_extractor(tower_governor::key_extractor::PeerIpKeyExtractor)
                .finish()
                .unwrap();
            (
                base.layer(tower_governor::GovernorLayer::new(config))
                    .with_state(()),
                None,
                StatusCode::OK,
            )
        }
        "apikey_hit" | "apikey_unknown" => {
            let layer = ApiKeyLayer::new(MemoryApiKeyStore::default());
            let (key, status) = if stack == "apikey_hit" {
                (create(&layer), StatusCode::OK)
            } else {
                let other = ApiKeyLayer::new(MemoryApiKeyStore::default());
                (create(&other), StatusCode::UNAUTHORIZED)
            };
            (base.layer(layer).with_state(()), Some(key), status)
        }
        "apikey_miss" => {
            let layer =
                ApiKeyLayer::new(MemoryApiKeyStore::default()).with_cache(1, Duration::ZERO);
            let key = create(&layer);
            (base.layer(layer).with_state(()), Some(key), StatusCode::OK)
        }
        "apikey_baseline" | "apikey_baseline_unknown" => {
            let layer = ApiKeyLayer::new(MemoryApiKeyStore::default());
            let key = create(&layer);
            let digest = sha256(&key);
            let digests = Digests(Arc::new(HashMap::from([(
                <[u8; 8]>::try_from(&digest[..8]).unwrap(),
                digest,
            )])));
            let (key, status) = if stack == "apikey_baseline" {
                (key, StatusCode::OK)
            } else {
                (create(&layer), StatusCode::UNAUTHORIZED)
            };
            (
                Router::new()
                    .route("/orders", get(bare_key_handler))
                    .with_state(digests),
                Some(key),
                status,
            )
        }
        other => panic!("unknown stack {other}"),
    }
}

#[inline(never)]
fn drive(
    rt: &tokio::runtime::Runtime,
    router: &Router,
    key: Option<&str>,
    status: StatusCode,
    n: u32,
) {
    rt.block_on(async {
        for i in 0..n {
            let response = router
                .clone()
                .oneshot(black_box(request(i, key)))
                .await
                .unwrap();
            assert_eq!(response.status(), status);
        }
    });
}

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "ratelimit".into());
    let n: u32 = args.next().map_or(10_000, |n| n.parse().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let (router, key, status) = stack(&rt, &name);
    // Warm up (caches, lazily built state) outside the collected function.
    for i in 0..1_000 {
        let response = rt
            .block_on(router.clone().oneshot(request(i, key.as_deref())))
            .unwrap();
        assert_eq!(response.status(), status);
    }
    drive(&rt, &router, key.as_deref(), status, n);
    println!("{name}: {n} requests");
}
