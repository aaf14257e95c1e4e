//! Each Portcullis layer against the crates users assemble by hand, in one
//! run, every case an axum router called in-process with
//! `tower::ServiceExt::oneshot` (request construction included), each group
//! with its own baseline. Every router, ours and the peers', is finalised
//! with `.with_state(())` as `axum::serve` does: a bare `Router<()>` called
//! with `oneshot` would re-apply its layers on every request.
//!
//! - `jwt`: a bare axum 0.8 router; `JwtLayer` (and its verified-token cache
//!   hit); a handler calling `jsonwebtoken::decode` itself; axum-jwt-auth's
//!   `Claims` extractor; jwt-authorizer's layer — on axum 0.7, the newest it
//!   supports, so a bare axum 0.7 router is measured too. All check `iss`,
//!   `aud` and `exp` of the same HS256 token; the same again for ES256,
//!   RS256 and EdDSA tokens.
//! - `rate_limit`: `LockoutLayer` with only a `RateLimit` (GCRA per client
//!   address) against tower_governor with the peer-address key, over 1 000
//!   rotating addresses, limits high enough that nothing is refused.
//! - `csrf`: `CsrfLayer` on a POST with its token against axum_csrf (layer
//!   plus the `verify` call its handlers make) and tower-http's `CsrfLayer`,
//!   which checks `Sec-Fetch-Site`/`Origin` only (no token).
//! - `api_key`: `ApiKeyLayer` hit (cached), miss (store lookup) and unknown
//!   key, against a handler doing SHA-256 + map lookup + constant-time
//!   compare itself.
//!
//! Results and ratios: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)] // benchmark setup: a failure is a broken benchmark

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRef, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::{get, post};
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use portcullis::api_key::{ApiKeyLayer, MemoryApiKeyStore, NewApiKey};
use portcullis::core::{MemoryAttemptStore, PeerAddr};
use portcullis::csrf::{CsrfLayer, CsrfSecret, SessionCookie};
use portcullis::jwt::{JwtLayer, JwtVerifier};
use portcullis::lockout::{LockoutLayer, RateLimit};
use subtle::ConstantTimeEq as _;
use tower::ServiceExt as _;

#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/jwt_cases.rs"]
#[allow(dead_code)]
mod jwt_cases;
use fixture::{AUDIENCE, Claims, ISSUER, ORIGIN, SECRET, address, token, verifier};

const SESSION: &str = "3f9a1c7e5b2d4086a1e9c3b7d5f20864";

/// A GET as the server hands it over: the peer address in both the
/// Portcullis (`PeerAddr`) and the axum (`ConnectInfo`) extension, so every
/// case builds the same request.
fn get_request(i: u32, headers: &[(&'static str, String)]) -> Request<Body> {
    let mut builder = Request::get("/orders");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    let peer = address(i);
    request.extensions_mut().insert(PeerAddr(peer));
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn post_request(headers: &[(&'static str, String)]) -> Request<Body> {
    let mut builder = Request::post("/orders");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    request.extensions_mut().insert(PeerAddr(address(7)));
    request
}

async fn ok() -> &'static str {
    "ok"
}

/// Calls `router` once with `oneshot` and checks the status.
async fn call(router: &Router, request: Request<Body>, status: StatusCode) {
    let response = router.clone().oneshot(black_box(request)).await.unwrap();
    assert_eq!(response.status(), status);
}

fn bench_router(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    router: &Router,
    request: &dyn Fn(u32) -> Request<Body>,
    status: StatusCode,
) {
    let mut i = 0u32;
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            i = i.wrapping_add(1);
            call(router, request(i), status)
        })
    });
}

// --- JWT -------------------------------------------------------------------

/// State of the handler that verifies the token itself with jsonwebtoken.
#[derive(Clone)]
struct Bare {
    key: Arc<jsonwebtoken::DecodingKey>,
    validation: Arc<jsonwebtoken::Validation>,
}

async fn decode_handler(State(bare): State<Bare>, headers: HeaderMap) -> StatusCode {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return StatusCode::UNAUTHORIZED;
    };
    match jsonwebtoken::decode::<Claims>(token, &bare.key, &bare.validation) {
        Ok(data) => {
            black_box(data);
            StatusCode::OK
        }
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

#[derive(Clone, FromRef)]
struct JwtAuthState {
    decoder: axum_jwt_auth::Decoder<Claims>,
}

async fn axum_jwt_auth_handler(claims: axum_jwt_auth::Claims<Claims>) -> StatusCode {
    black_box(claims.claims);
    StatusCode::OK
}

/// One JWT group's inputs: the token and the same key for every verifier.
struct JwtPeerCase {
    group: String,
    token: String,
    verifier: JwtVerifier,
    alg: String,
    decoding: jsonwebtoken::DecodingKey,
    decoding10: jsonwebtoken10::DecodingKey,
    authorizer: jwt_authorizer::AuthorizerBuilder<Claims>,
}

/// HS256 with the pipeline's token and secret, then ES256, RS256 and EdDSA
/// with the jwt bench's keys and tokens (`support/jwt_cases.rs`) for the
/// peers that take those keys from PEM.
fn jwt(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    jwt_group(
        c,
        rt,
        JwtPeerCase {
            group: "peers/jwt_hs256".into(),
            token: token(),
            verifier: verifier(),
            alg: "HS256".into(),
            decoding: jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
            decoding10: jsonwebtoken10::DecodingKey::from_secret(SECRET.as_bytes()),
            authorizer: jwt_authorizer::JwtAuthorizer::<Claims>::from_secret(SECRET),
        },
    );
    for case in jwt_cases::cases().into_iter().filter(|c| c.name != "HS256") {
        let public = match case.name {
            "ES256" => include_str!("../keys/ec256.pub.pem"),
            "RS256" => include_str!("../keys/rsa2048.pub.pem"),
            _ => include_str!("../keys/ed25519.pub.pem"),
        };
        let (decoding10, authorizer) = match case.name {
            "ES256" => (
                jsonwebtoken10::DecodingKey::from_ec_pem(public.as_bytes()),
                jwt_authorizer::JwtAuthorizer::<Claims>::from_ec_pem_text(public),
            ),
            "RS256" => (
                jsonwebtoken10::DecodingKey::from_rsa_pem(public.as_bytes()),
                jwt_authorizer::JwtAuthorizer::<Claims>::from_rsa_pem_text(public),
            ),
            _ => (
                jsonwebtoken10::DecodingKey::from_ed_pem(public.as_bytes()),
                jwt_authorizer::JwtAuthorizer::<Claims>::from_ed_pem_text(public),
            ),
        };
        jwt_group(
            c,
            rt,
            JwtPeerCase {
                group: format!("peers/jwt_{}", case.name.to_lowercase()),
                verifier: jwt_cases::verifier(&case),
                alg: case.alg.to_string(),
                token: case.token,
                decoding: case.decoding,
                decoding10: decoding10.unwrap(),
                authorizer,
            },
        );
    }
}

fn jwt_group(c: &mut Criterion, rt: &tokio::runtime::Runtime, case: JwtPeerCase) {
    let bearer = [("authorization", format!("Bearer {}", case.token))];
    let request = |i| get_request(i, &bearer);

    let bare = Router::new().route("/orders", get(ok)).with_state(());
    let ours = Router::new()
        .route("/orders", get(ok))
        .layer(JwtLayer::new(case.verifier.clone()))
        .with_state(());
    let ours_cached = Router::new()
        .route("/orders", get(ok))
        .layer(JwtLayer::new(case.verifier).with_token_cache(1024, Duration::from_secs(60)))
        .with_state(());

    let mut validation = jsonwebtoken::Validation::new(case.alg.parse().unwrap());
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let key = Arc::new(case.decoding);
    let validation = Arc::new(validation);
    let decode = Router::new()
        .route("/orders", get(decode_handler))
        .with_state(Bare {
            key: Arc::clone(&key),
            validation: Arc::clone(&validation),
        });

    let mut validation10 = jsonwebtoken10::Validation::new(case.alg.parse().unwrap());
    validation10.set_issuer(&[ISSUER]);
    validation10.set_audience(&[AUDIENCE]);
    let decoder = axum_jwt_auth::LocalDecoder::builder()
        .keys(vec![case.decoding10])
        .validation(validation10)
        .build()
        .unwrap();
    let axum_jwt_auth = Router::new()
        .route("/orders", get(axum_jwt_auth_handler))
        .with_state(JwtAuthState {
            decoder: Arc::new(decoder),
        });

    // jwt-authorizer: axum 0.7 (same http 1 request and body types).
    let authorizer = rt
        .block_on(
            case.authorizer
                .validation(
                    jwt_authorizer::Validation::new()
                        .iss(&[ISSUER])
                        .aud(&[AUDIENCE]),
                )
                .build(),
        )
        .unwrap();
    let bare07 = axum07::Router::new()
        .route("/orders", axum07::routing::get(ok))
        .with_state(());
    let authorizer07 = axum07::Router::new()
        .route("/orders", axum07::routing::get(ok))
        .layer(jwt_authorizer::IntoLayer::into_layer(authorizer))
        .with_state(());

    let mut group = c.benchmark_group(case.group);
    settings(&mut group);
    for (name, router) in [
        ("bare_axum08", &bare),
        ("portcullis_layer", &ours),
        ("portcullis_cached_hit", &ours_cached),
        ("jsonwebtoken_decode_in_handler", &decode),
        ("axum_jwt_auth", &axum_jwt_auth),
    ] {
        bench_router(&mut group, rt, name, router, &request, StatusCode::OK);
    }
    for (name, router) in [
        ("bare_axum07", &bare07),
        ("jwt_authorizer_axum07", &authorizer07),
    ] {
        let mut i = 0u32;
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| {
                i = i.wrapping_add(1);
                let request = request(i);
                async move {
                    let response = router.clone().oneshot(black_box(request)).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                }
            })
        });
    }
    // The work every verifier does, outside any router.
    group.bench_function("jsonwebtoken_decode_alone", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Claims>(black_box(&case.token), &key, &validation).unwrap()
        })
    });
    group.finish();
}

// --- Rate limit ------------------------------------------------------------

fn rate_limit(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let request = |i| get_request(i, &[]);
    let bare = Router::new().route("/orders", get(ok)).with_state(());

    let ours = Router::new()
        .route("/orders", get(ok))
        .layer(
            LockoutLayer::new(MemoryAttemptStore::new(16))
                .with_rate_limit(RateLimit::per_second(1_000_000).unwrap())
                .with_ip_policy(None)
                .unwrap(),
        )
        .with_state(());

    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000)
        .key_extractor(tower_governor::key_extractor::PeerIpKeyExtractor)
        .finish()
        .unwrap();
    let governor = Router::new()
        .route("/orders", get(ok))
        .layer(tower_governor::GovernorLayer::new(config))
        .with_state(());

    let mut group = c.benchmark_group("peers/rate_limit");
    settings(&mut group);
    bench_router(&mut group, rt, "bare", &bare, &request, StatusCode::OK);
    bench_router(
        &mut group,
        rt,
        "portcullis_lockout_rate_limit",
        &ours,
        &request,
        StatusCode::OK,
    );
    bench_router(
        &mut group,
        rt,
        "tower_governor",
        &governor,
        &request,
        StatusCode::OK,
    );
    group.finish();
}

// --- CSRF ------------------------------------------------------------------

async fn axum_csrf_issue(token: axum_csrf::CsrfToken) -> impl axum::response::IntoResponse {
    let authenticity = token.authenticity_token().unwrap();
    (token, [("x-authenticity-token", authenticity)])
}

async fn axum_csrf_verify(token: axum_csrf::CsrfToken, headers: HeaderMap) -> StatusCode {
    let presented = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if token.verify(presented).is_ok() {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    }
}

fn csrf(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let secret = CsrfSecret::new(b"bench-csrf-secret-0123456789-abcdefghij".as_slice()).unwrap();
    let ours_token = secret.mint(SESSION).unwrap();
    let ours_layer = CsrfLayer::builder(secret)
        .trusted_origin(ORIGIN)
        .session(SessionCookie::new("sid"))
        .build()
        .unwrap();
    let ours_headers = [
        ("origin", ORIGIN.to_owned()),
        ("sec-fetch-site", "same-origin".to_owned()),
        ("cookie", format!("sid={SESSION}; __Host-csrf={ours_token}")),
        ("x-csrf-token", ours_token),
    ];
    let ours = Router::new()
        .route("/orders", post(ok))
        .layer(ours_layer)
        .with_state(());

    // axum_csrf: a GET mints the cookie and the form token, the POST
    // handler verifies them (the crate's layer only reads the cookie).
    let config = axum_csrf::CsrfConfig::default().with_key(Some(axum_csrf::Key::generate()));
    let peer = Router::new()
        .route("/orders", post(axum_csrf_verify).get(axum_csrf_issue))
        .layer(axum_csrf::CsrfLayer::new(config))
        .with_state(());
    let minted = rt
        .block_on(peer.clone().oneshot(get_request(0, &[])))
        .unwrap();
    let cookie = minted.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let authenticity = minted.headers()["x-authenticity-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let peer_headers = [
        ("origin", ORIGIN.to_owned()),
        ("sec-fetch-site", "same-origin".to_owned()),
        ("cookie", format!("sid={SESSION}; {cookie}")),
        ("x-csrf-token", authenticity),
    ];

    let tower_http = Router::new()
        .route("/orders", post(ok))
        .layer(
            tower_http::csrf::CsrfLayer::new()
                .add_trusted_origin(ORIGIN)
                .unwrap(),
        )
        .with_state(());

    let mut group = c.benchmark_group("peers/csrf_post");
    settings(&mut group);
    let ours_request = |_| post_request(&ours_headers);
    let peer_request = |_| post_request(&peer_headers);
    bench_router(
        &mut group,
        rt,
        "bare",
        &Router::new().route("/orders", post(ok)).with_state(()),
        &ours_request,
        StatusCode::OK,
    );
    bench_router(
        &mut group,
        rt,
        "portcullis_token",
        &ours,
        &ours_request,
        StatusCode::OK,
    );
    bench_router(
        &mut group,
        rt,
        "axum_csrf_token",
        &peer,
        &peer_request,
        StatusCode::OK,
    );
    bench_router(
        &mut group,
        rt,
        "tower_http_fetch_metadata_only",
        &tower_http,
        &ours_request,
        StatusCode::OK,
    );
    group.finish();
}

// --- API keys --------------------------------------------------------------

/// The hand-written check: SHA-256 of the presented key, a map lookup by
/// digest prefix, a constant-time compare of the whole digest.
#[derive(Clone)]
struct Digests(Arc<HashMap<[u8; 8], [u8; 32]>>);

fn sha256(key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, key.as_bytes()).as_ref());
    out
}

fn bare_check(digests: &Digests, key: &str) -> bool {
    let digest = sha256(key);
    let prefix: [u8; 8] = digest[..8].try_into().unwrap();
    digests
        .0
        .get(&prefix)
        .is_some_and(|stored| bool::from(stored.ct_eq(&digest)))
}

async fn bare_key_handler(State(digests): State<Digests>, headers: HeaderMap) -> StatusCode {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if bare_check(&digests, key) {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

fn api_key(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let _context = rt.enter();
    let new_key = || NewApiKey::new("svc-billing", "bench").with_scopes(["orders:read"]);
    let hit_layer = ApiKeyLayer::new(MemoryApiKeyStore::default());
    let key = rt
        .block_on(hit_layer.keys().create(new_key()))
        .unwrap()
        .into_key();
    let miss_layer = ApiKeyLayer::new(MemoryApiKeyStore::default()).with_cache(1, Duration::ZERO);
    let miss_key = rt
        .block_on(miss_layer.keys().create(new_key()))
        .unwrap()
        .into_key();
    // Well formed (valid checksum), but in another store.
    let unknown = rt
        .block_on(
            ApiKeyLayer::new(MemoryApiKeyStore::default())
                .keys()
                .create(new_key()),
        )
        .unwrap()
        .into_key();

    let digest = sha256(&key);
    let digests = Digests(Arc::new(HashMap::from([(
        <[u8; 8]>::try_from(&digest[..8]).unwrap(),
        digest,
    )])));

    let bare = Router::new().route("/orders", get(ok)).with_state(());
    let hit = Router::new()
        .route("/orders", get(ok))
        .layer(hit_layer)
        .with_state(());
    let miss = Router::new()
        .route("/orders", get(ok))
        .layer(miss_layer)
        .with_state(());
    let hand = Router::new()
        .route("/orders", get(bare_key_handler))
        .with_state(digests.clone());

    let with = |key: &str| [("x-api-key", key.to_owned())];
    let (key_h, miss_h, unknown_h) = (with(&key), with(&miss_key), with(&unknown));
    let key_request = |i| get_request(i, &key_h);
    let miss_request = |i| get_request(i, &miss_h);
    let unknown_request = |i| get_request(i, &unknown_h);

    let mut group = c.benchmark_group("peers/api_key");
    settings(&mut group);
    bench_router(&mut group, rt, "bare", &bare, &key_request, StatusCode::OK);
    bench_router(
        &mut group,
        rt,
        "portcullis_hit_cached",
        &hit,
        &key_request,
        StatusCode::OK,
    );
    bench_router(
        &mut group,
        rt,
        "portcullis_miss_store_lookup",
        &miss,
        &miss_request,
        StatusCode::OK,
    );
    bench_router(
        &mut group,
        rt,
        "portcullis_unknown_key",
        &hit,
        &unknown_request,
        StatusCode::UNAUTHORIZED,
    );
    bench_router(
        &mut group,
        rt,
        "sha256_ct_eq_in_handler_hit",
        &hand,
        &key_request,
        StatusCode::OK,
    );
    bench_router(
        &mut group,
        rt,
        "sha256_ct_eq_in_handler_unknown",
        &hand,
        &unknown_request,
        StatusCode::UNAUTHORIZED,
    );
    group.bench_function("sha256_ct_eq_alone", |b| {
        b.iter(|| assert!(bare_check(&digests, black_box(&key))))
    });
    group.finish();
}

fn settings(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

fn peers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    jwt(c, &rt);
    rate_limit(c, &rt);
    csrf(c, &rt);
    api_key(c, &rt);
}

criterion_group!(benches, peers);
criterion_main!(benches);
