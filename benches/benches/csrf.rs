//! Per-request cost of `CsrfLayer`, against baselines measured in the same
//! run:
//!
//! - `bare_post` / `bare_get`: building the same request and calling a
//!   no-op service directly, subtracted from the layered figures to get the
//!   layer's own cost;
//! - `jwt_hs256_bare` / `jwt_hs256_layer`: the HS256 `JwtLayer` path of
//!   `benches/jwt.rs` on a bearer request, the reference the CSRF cost is
//!   reported against.
//!
//! CSRF cases: a valid-token POST (origin check, cookie and header parse,
//! constant-time compare, one HMAC), a safe GET with a valid cookie (one
//! HMAC to confirm the cookie is bound to the session), a GET that must
//! issue a token (64 random bytes, one HMAC, `Set-Cookie`), and a
//! cross-site POST refused on the first line (JSON rejection, event).
#![allow(clippy::unwrap_used)] // benchmark setup: a failure is a broken benchmark

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Method, Request, Response};
use portcullis::csrf::{CsrfLayer, CsrfSecret, SessionCookie};
use portcullis::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, VerifyingKey};
use serde_json::json;
use tower::{Layer, Service, service_fn};

#[path = "support/mod.rs"]
mod support;
use support::poll_now;

const CSRF_SECRET: &[u8] = b"bench-csrf-secret-0123456789-abcdefghij";
const JWT_SECRET: &str = "bench-secret-0123456789-abcdefghijklmnopq";
const ORIGIN: &str = "https://app.example.org";
const SESSION: &str = "3f9a1c7e5b2d4086a1e9c3b7d5f20864";

/// A request with `headers`, as a server would hand it over.
fn request(method: &Method, headers: &[(&'static str, HeaderValue)]) -> Request<()> {
    let mut request = Request::new(());
    *request.method_mut() = method.clone();
    for (name, value) in headers {
        request.headers_mut().append(*name, value.clone());
    }
    request
}

fn csrf(c: &mut Criterion) {
    let mut group = c.benchmark_group("csrf");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let secret = CsrfSecret::new(CSRF_SECRET).unwrap();
    let token = secret.mint(SESSION).unwrap();
    let layer = CsrfLayer::builder(secret)
        .trusted_origin(ORIGIN)
        .session(SessionCookie::new("sid"))
        .build()
        .unwrap();
    let noop = service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
    });

    let cookie = HeaderValue::from_str(&format!("sid={SESSION}; __Host-csrf={token}")).unwrap();
    let session_only = HeaderValue::from_str(&format!("sid={SESSION}")).unwrap();
    let post_headers = [
        ("origin", HeaderValue::from_static(ORIGIN)),
        ("sec-fetch-site", HeaderValue::from_static("same-origin")),
        ("cookie", cookie.clone()),
        ("x-csrf-token", HeaderValue::from_str(&token).unwrap()),
    ];
    let cross_site = [
        ("origin", HeaderValue::from_static("https://evil.example")),
        ("sec-fetch-site", HeaderValue::from_static("cross-site")),
        ("cookie", cookie.clone()),
        ("x-csrf-token", HeaderValue::from_str(&token).unwrap()),
    ];
    let get_valid = [("cookie", cookie)];
    let get_new = [("cookie", session_only)];

    let mut bare = noop;
    group.bench_function("bare_post", |b| {
        b.iter(|| poll_now(bare.call(request(&Method::POST, black_box(&post_headers)))).unwrap())
    });
    group.bench_function("bare_get", |b| {
        b.iter(|| poll_now(bare.call(request(&Method::GET, black_box(&get_valid)))).unwrap())
    });

    let mut csrf = layer.layer(noop);
    group.bench_function("post_valid_token", |b| {
        b.iter(|| {
            let res =
                poll_now(csrf.call(request(&Method::POST, black_box(&post_headers)))).unwrap();
            assert_eq!(res.status(), 200);
        })
    });
    group.bench_function("get_valid_cookie", |b| {
        b.iter(|| {
            let res = poll_now(csrf.call(request(&Method::GET, black_box(&get_valid)))).unwrap();
            assert!(!res.headers().contains_key("set-cookie"));
        })
    });
    group.bench_function("get_issues_token", |b| {
        b.iter(|| {
            let res = poll_now(csrf.call(request(&Method::GET, black_box(&get_new)))).unwrap();
            assert!(res.headers().contains_key("set-cookie"));
        })
    });
    group.bench_function("post_cross_site_refused", |b| {
        b.iter(|| {
            let res = poll_now(csrf.call(request(&Method::POST, black_box(&cross_site)))).unwrap();
            assert_eq!(res.status(), 403);
        })
    });

    // The JWT HS256 reference, as in benches/jwt.rs.
    let now = jsonwebtoken::get_current_timestamp();
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({
            "iss": "https://auth.example", "sub": "user-42", "aud": "orders-api",
            "iat": now, "exp": now + 3600, "jti": "6f1c2a9e-jti", "scope": "orders:read",
        }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let keys = KeySet::new()
        .with_key(VerifyingKey::hmac(Algorithm::HS256, JWT_SECRET).unwrap())
        .unwrap();
    let verifier = JwtVerifier::builder(keys)
        .issuer("https://auth.example")
        .audience("orders-api")
        .build()
        .unwrap();
    let bearer = [(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {jwt}")).unwrap(),
    )];
    group.bench_function("jwt_hs256_bare", |b| {
        b.iter(|| poll_now(bare.call(request(&Method::GET, black_box(&bearer)))).unwrap())
    });
    let mut jwt_layer = JwtLayer::new(verifier).layer(noop);
    group.bench_function("jwt_hs256_layer", |b| {
        b.iter(|| {
            let res = poll_now(jwt_layer.call(request(&Method::GET, black_box(&bearer)))).unwrap();
            assert_eq!(res.status(), 200);
        })
    });
    group.finish();
}

criterion_group!(benches, csrf);
criterion_main!(benches);
