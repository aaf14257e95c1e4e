//! Per-request cost of `JwtLayer`, against baselines measured in the same
//! run:
//!
//! - `jsonwebtoken`: `jsonwebtoken::decode` of the same token with an
//!   equivalent `Validation` (issuer, audience, nbf);
//! - `floor`: the least work any verifier must do — strict base64url decode,
//!   signature check with a key prepared once (aws-lc-rs), JSON parse of
//!   header and claims into borrowed structs, `exp` check;
//! - `bare`: building the request and calling a no-op service directly,
//!   subtracted from `layer` to get the layer's own cost.
//!
//! Results and ratios: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)] // benchmark setup: a failure is a broken benchmark

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::{hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use portcullis::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use tower::{Layer, Service, service_fn};

#[path = "support/mod.rs"]
mod support;
use support::poll_now;

const SECRET: &str = "bench-secret-0123456789-abcdefghijklmnopq";
const ISSUER: &str = "https://auth.example";
const AUDIENCE: &str = "orders-api";

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    jti: String,
    scope: String,
}

#[derive(Deserialize)]
struct FloorHeader<'a> {
    #[serde(borrow)]
    alg: &'a str,
    #[serde(borrow, default)]
    kid: Option<&'a str>,
}

#[derive(Deserialize)]
struct FloorClaims<'a> {
    #[serde(borrow)]
    sub: &'a str,
    exp: u64,
    #[serde(borrow)]
    iss: &'a str,
    #[serde(borrow)]
    aud: &'a str,
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> Claims {
    Claims {
        iss: ISSUER.into(),
        sub: "user-42".into(),
        aud: AUDIENCE.into(),
        exp: now() + 3600,
        iat: now(),
        jti: "6f1c2a9e-jti".into(),
        scope: "orders:read orders:write".into(),
    }
}

/// The verification every verifier must do, and nothing else.
fn floor(token: &str, verify: &dyn Fn(&[u8], &[u8]) -> bool) -> usize {
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let (header, payload) = signing_input.split_once('.').unwrap();
    let mut sig = [0u8; 512];
    let n = URL_SAFE_NO_PAD.decode_slice(signature, &mut sig).unwrap();
    assert!(verify(signing_input.as_bytes(), &sig[..n]));
    let mut head = [0u8; 256];
    let hn = URL_SAFE_NO_PAD.decode_slice(header, &mut head).unwrap();
    let header: FloorHeader<'_> = serde_json::from_slice(&head[..hn]).unwrap();
    let body = URL_SAFE_NO_PAD.decode(payload).unwrap();
    let claims: FloorClaims<'_> = serde_json::from_slice(&body).unwrap();
    assert!(claims.exp > now() && claims.iss == ISSUER && claims.aud == AUDIENCE);
    header.alg.len() + header.kid.map_or(0, str::len) + claims.sub.len()
}

fn request(header: &HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    request.headers_mut().insert(AUTHORIZATION, header.clone());
    request
}

struct Case {
    name: &'static str,
    alg: Algorithm,
    token: String,
    verifying: VerifyingKey,
    decoding: jsonwebtoken::DecodingKey,
    floor: Box<dyn Fn(&[u8], &[u8]) -> bool>,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();

    let hs = SigningKey::hmac(Algorithm::HS256, SECRET)
        .unwrap()
        .with_kid("k1");
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    out.push(Case {
        name: "HS256",
        alg: Algorithm::HS256,
        token: hs.sign("JWT", &claims()).unwrap(),
        verifying: hs.verifying_key(),
        decoding: jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        floor: Box::new(move |m, s| hmac::verify(&hmac_key, m, s).is_ok()),
    });

    let asymmetric: [(
        &str,
        Algorithm,
        &str,
        &str,
        &'static dyn signature::VerificationAlgorithm,
    ); 3] = [
        (
            "ES256",
            Algorithm::ES256,
            include_str!("../keys/ec256.pem"),
            include_str!("../keys/ec256.pub.pem"),
            &signature::ECDSA_P256_SHA256_FIXED,
        ),
        (
            "RS256",
            Algorithm::RS256,
            include_str!("../keys/rsa2048.pem"),
            include_str!("../keys/rsa2048.pub.pem"),
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            include_str!("../keys/ed25519.pem"),
            include_str!("../keys/ed25519.pub.pem"),
            &signature::ED25519,
        ),
    ];
    for (name, alg, private, public, verification) in asymmetric {
        let signing = SigningKey::from_pem(alg, private).unwrap().with_kid("k1");
        let decoding = match alg {
            Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_pem(public.as_bytes()),
            Algorithm::RS256 => jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()),
            _ => jsonwebtoken::DecodingKey::from_ed_pem(public.as_bytes()),
        }
        .unwrap();
        let spki = pem::parse(public).unwrap().into_contents();
        let parsed = match alg {
            // aws-lc-rs takes PKCS#1 for RSA; SPKI works for EC and Ed25519.
            Algorithm::RS256 => {
                let rsa = aws_lc_rs::rsa::PublicKey::from_der(&spki).unwrap();
                signature::ParsedPublicKey::new(verification, rsa.as_ref()).unwrap()
            }
            _ => signature::ParsedPublicKey::new(verification, &spki).unwrap(),
        };
        out.push(Case {
            name,
            alg,
            token: signing.sign("JWT", &claims()).unwrap(),
            verifying: signing.verifying_key(),
            decoding,
            floor: Box::new(move |m, s| parsed.verify_sig(m, s).is_ok()),
        });
    }
    out
}

fn verifier(case: &Case) -> JwtVerifier {
    JwtVerifier::builder(KeySet::new().with_key(case.verifying.clone()).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

fn jwt(c: &mut Criterion) {
    for case in cases() {
        let mut group = c.benchmark_group(case.name);
        group
            .sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));

        let mut validation = jsonwebtoken::Validation::new(case.alg.to_string().parse().unwrap());
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        group.bench_function("jsonwebtoken", |b| {
            b.iter(|| {
                jsonwebtoken::decode::<Claims>(black_box(&case.token), &case.decoding, &validation)
                    .unwrap()
            })
        });

        group.bench_function("floor", |b| {
            b.iter(|| floor(black_box(&case.token), &*case.floor))
        });

        let v = verifier(&case);
        group.bench_function("verifier", |b| {
            b.iter(|| v.verify(black_box(&case.token)).unwrap())
        });

        // What the outcome protocol alone costs: one request and one response
        // extension insert (each allocates a map and a box), then the drops.
        group.bench_function("extensions", |b| {
            b.iter(|| {
                let mut request = Request::new(());
                request.extensions_mut().insert(black_box(1u64));
                let mut response = Response::new(());
                response.extensions_mut().insert(black_box(2u32));
                (request, response)
            })
        });

        let header = HeaderValue::from_str(&format!("Bearer {}", case.token)).unwrap();
        let noop = service_fn(|_: Request<()>| {
            std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
        });
        let mut bare = noop;
        group.bench_function("bare", |b| {
            b.iter(|| poll_now(bare.call(request(&header))).unwrap())
        });

        let mut layered = JwtLayer::new(v.clone()).layer(noop);
        group.bench_function("layer", |b| {
            b.iter(|| {
                let res = poll_now(layered.call(request(&header))).unwrap();
                assert_eq!(res.status(), 200);
            })
        });

        let mut cached = JwtLayer::new(v.clone())
            .with_token_cache(1024, Duration::from_secs(60))
            .layer(noop);
        group.bench_function("layer_cached", |b| {
            b.iter(|| {
                let res = poll_now(cached.call(request(&header))).unwrap();
                assert_eq!(res.status(), 200);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, jwt);
criterion_main!(benches);
