//! Per-request cost of `ApiKeyLayer` (positive-cache hit with an
//! HMAC-SHA256 pepper and with plain SHA-256, cache miss with a memory-store
//! lookup, offline rejection of a bad checksum, `jwt.or(api_key)` as one
//! layer), against the JWT HS256 layer path and
//! baselines measured in the same run:
//!
//! - `bare`: building the request and calling a no-op inner service,
//!   subtracted from every layer row to get the layer's own cost;
//! - `sha256` / `hmac_sha256`: digesting one key, the floor of any hashed
//!   API-key check;
//! - `jwt_hs256_layer` / `jwt_hs256_cached`: `JwtLayer` on an HS256 token
//!   (as in the `jwt` bench), without and with its verified-token cache.
//!
//! Results and ratios: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)] // benchmark setup: a failure is a broken benchmark

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::{digest, hmac};
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, Request, Response};
use portcullis::api_key::{ApiKeyLayer, MemoryApiKeyStore, NewApiKey};
use portcullis::authenticate::{AuthenticateExt as _, AuthenticateLayer};
use portcullis::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, SigningKey};
use serde::Serialize;
use tower::{Layer, Service, service_fn};

#[path = "support/mod.rs"]
mod support;
use support::poll_now;

const SECRET: &str = "bench-secret-0123456789-abcdefghijklmnopq";
const PEPPER: [u8; 32] = [0x42; 32];
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

#[derive(Serialize)]
struct Claims {
    iss: &'static str,
    sub: &'static str,
    aud: &'static str,
    exp: u64,
    iat: u64,
    jti: &'static str,
    scope: &'static str,
}

fn request(name: &HeaderName, value: &HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    request.headers_mut().insert(name.clone(), value.clone());
    request
}

fn api_key(c: &mut Criterion) {
    // A runtime context so `last_used_at` touches can be spawned (debounced
    // to one per minute: the first request spawns one, never polled here).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _context = runtime.enter();

    let hit_layer = ApiKeyLayer::new(MemoryApiKeyStore::default())
        .with_pepper(PEPPER)
        .unwrap();
    let created = runtime
        .block_on(hit_layer.keys().create(
            NewApiKey::new("svc-billing", "bench").with_scopes(["orders:read", "orders:write"]),
        ))
        .unwrap();
    let key = created.key().to_owned();
    let key_header = HeaderValue::from_str(&key).unwrap();
    // The default digest (plain SHA-256, no pepper).
    let plain_layer = ApiKeyLayer::new(MemoryApiKeyStore::default());
    let plain_key = runtime
        .block_on(plain_layer.keys().create(
            NewApiKey::new("svc-billing", "bench").with_scopes(["orders:read", "orders:write"]),
        ))
        .unwrap()
        .into_key();
    let plain_header = HeaderValue::from_str(&plain_key).unwrap();
    // A miss on every request: no cache, one memory-store lookup each time.
    let miss_layer = ApiKeyLayer::shared(std::sync::Arc::new(MemoryApiKeyStore::default()))
        .with_pepper(PEPPER)
        .unwrap()
        .with_cache(1, Duration::ZERO);
    let miss_key = runtime
        .block_on(miss_layer.keys().create(
            NewApiKey::new("svc-billing", "bench").with_scopes(["orders:read", "orders:write"]),
        ))
        .unwrap()
        .into_key();
    let miss_header = HeaderValue::from_str(&miss_key).unwrap();
    let mut typo = key.clone().into_bytes();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    let typo_header = HeaderValue::from_bytes(&typo).unwrap();

    let signing = SigningKey::hmac(Algorithm::HS256, SECRET)
        .unwrap()
        .with_kid("k1");
    let now = jsonwebtoken::get_current_timestamp();
    let token = signing
        .sign(
            "JWT",
            &Claims {
                iss: "https://auth.example",
                sub: "user-42",
                aud: "orders-api",
                exp: now + 3600,
                iat: now,
                jti: "6f1c2a9e-jti",
                scope: "orders:read orders:write",
            },
        )
        .unwrap();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let verifier = JwtVerifier::builder(KeySet::new().with_key(signing.verifying_key()).unwrap())
        .issuer("https://auth.example")
        .audience("orders-api")
        .build()
        .unwrap();

    let noop = service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
    });

    let mut group = c.benchmark_group("api_key");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let mut bare = noop;
    group.bench_function("bare", |b| {
        b.iter(|| poll_now(bare.call(request(&X_API_KEY, &key_header))).unwrap())
    });

    group.bench_function("sha256", |b| {
        b.iter(|| digest::digest(&digest::SHA256, black_box(key.as_bytes())))
    });
    let pepper = hmac::Key::new(hmac::HMAC_SHA256, &PEPPER);
    group.bench_function("hmac_sha256", |b| {
        b.iter(|| hmac::sign(&pepper, black_box(key.as_bytes())))
    });

    let mut hit = hit_layer.layer(noop);
    group.bench_function("layer_hit", |b| {
        b.iter(|| {
            let res = poll_now(hit.call(request(&X_API_KEY, &key_header))).unwrap();
            assert_eq!(res.status(), 200);
        })
    });

    let mut plain = plain_layer.layer(noop);
    group.bench_function("layer_hit_sha256", |b| {
        b.iter(|| {
            let res = poll_now(plain.call(request(&X_API_KEY, &plain_header))).unwrap();
            assert_eq!(res.status(), 200);
        })
    });

    let mut miss = miss_layer.layer(noop);
    group.bench_function("layer_miss", |b| {
        b.iter(|| {
            let res = poll_now(miss.call(request(&X_API_KEY, &miss_header))).unwrap();
            assert_eq!(res.status(), 200);
        })
    });

    group.bench_function("layer_bad_checksum", |b| {
        b.iter(|| {
            let res = poll_now(hit.call(request(&X_API_KEY, &typo_header))).unwrap();
            assert_eq!(res.status(), 401);
        })
    });

    // `jwt.or(api_key)` as one layer, API key on a cache hit.
    let jwt = JwtLayer::new(verifier.clone());
    let mut composed =
        AuthenticateLayer::new(jwt.authenticator().or(hit_layer.authenticator())).layer(noop);
    group.bench_function("or_api_key_hit", |b| {
        b.iter(|| {
            let res = poll_now(composed.call(request(&X_API_KEY, &key_header))).unwrap();
            assert_eq!(res.status(), 200);
        })
    });

    let mut jwt_layer = JwtLayer::new(verifier.clone()).layer(noop);
    group.bench_function("jwt_hs256_layer", |b| {
        b.iter(|| {
            let res = poll_now(jwt_layer.call(request(&AUTHORIZATION, &bearer))).unwrap();
            assert_eq!(res.status(), 200);
        })
    });

    let mut jwt_cached = JwtLayer::new(verifier)
        .with_token_cache(1024, Duration::from_secs(60))
        .layer(noop);
    group.bench_function("jwt_hs256_cached", |b| {
        b.iter(|| {
            let res = poll_now(jwt_cached.call(request(&AUTHORIZATION, &bearer))).unwrap();
            assert_eq!(res.status(), 200);
        })
    });
    group.finish();
}

criterion_group!(benches, api_key);
criterion_main!(benches);
