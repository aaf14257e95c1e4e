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

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use portcullis::jwt::JwtLayer;
use tower::{Layer, Service, service_fn};

#[path = "support/mod.rs"]
mod support;
use support::poll_now;
#[path = "support/jwt_cases.rs"]
mod jwt_cases;
use jwt_cases::{AUDIENCE, Claims, ISSUER, cases, floor, request, verifier};

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
