//! Instruction counts for the JWT bench's cases (`valgrind --tool=callgrind`),
//! repeatable where wall time on a shared machine is not: runs one case of
//! one algorithm `N` times inside `drive`, the function to collect.
//!
//! ```sh
//! CARGO_PROFILE_BENCH_DEBUG=line-tables-only cargo build --profile bench \
//!     -p portcullis-benches --example jwt_profile
//! valgrind --tool=callgrind --toggle-collect=jwt_profile::drive \
//!     target/release/examples/jwt_profile HS256 layer 100000
//! ```
//!
//! Cases: `jsonwebtoken`, `floor`, `verifier`, `bare`, `layer`,
//! `layer_cached`, as in `benches/jwt.rs`; the layer's own cost is
//! `layer − bare`.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a profiling driver

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use portcullis::jwt::JwtLayer;
use tower::{Layer, Service, service_fn};

#[path = "../benches/support/mod.rs"]
mod support;
use support::poll_now;
#[path = "../benches/support/jwt_cases.rs"]
mod jwt_cases;
use jwt_cases::{AUDIENCE, Case, Claims, ISSUER, cases, floor, request, verifier};

#[inline(never)]
fn drive(n: u32, mut once: impl FnMut()) {
    for _ in 0..n {
        once();
    }
}

fn run(case: &Case, what: &str, n: u32) {
    let header = HeaderValue::from_str(&format!("Bearer {}", case.token)).unwrap();
    let noop = service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
    });
    let v = verifier(case);
    // Each case warms up once outside `drive`.
    match what {
        "jsonwebtoken" => {
            let mut validation =
                jsonwebtoken::Validation::new(case.alg.to_string().parse().unwrap());
            validation.set_issuer(&[ISSUER]);
            validation.set_audience(&[AUDIENCE]);
            validation.validate_nbf = true;
            validation.leeway = 30;
            let once = || {
                jsonwebtoken::decode::<Claims>(black_box(&case.token), &case.decoding, &validation)
                    .unwrap();
            };
            once();
            drive(n, once);
        }
        "floor" => {
            let once = || {
                black_box(floor(black_box(&case.token), &*case.floor));
            };
            once();
            drive(n, once);
        }
        "verifier" => {
            let once = || {
                black_box(v.verify(black_box(&case.token)).unwrap());
            };
            once();
            drive(n, once);
        }
        "bare" => {
            let mut bare = noop;
            let mut once = || {
                black_box(poll_now(bare.call(request(&header))).unwrap());
            };
            once();
            drive(n, once);
        }
        "layer" | "layer_cached" => {
            let mut layer = JwtLayer::new(v);
            if what == "layer_cached" {
                layer = layer.with_token_cache(1024, Duration::from_secs(60));
            }
            let mut service = layer.layer(noop);
            let mut once = || {
                let res = poll_now(service.call(request(&header))).unwrap();
                assert_eq!(res.status(), 200);
            };
            once();
            drive(n, once);
        }
        other => panic!("unknown case {other}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let alg = args.next().unwrap_or_else(|| "HS256".into());
    let what = args.next().unwrap_or_else(|| "layer".into());
    let n: u32 = args.next().map_or(100_000, |n| n.parse().unwrap());
    let case = cases().into_iter().find(|c| c.name == alg).unwrap();
    run(&case, &what, n);
    println!("{alg} {what}: {n}");
}
