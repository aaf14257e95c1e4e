//! A driver for instruction-count profiles of the pipeline bench's stacks
//! (`valgrind --tool=callgrind`): counts are repeatable where wall time on
//! a shared 2-core machine is not. Runs `N` requests through one stack on a
//! current-thread runtime (the audit consumer runs on the same thread, so
//! its work is counted too) inside `drive`, the function to collect:
//!
//! ```sh
//! CARGO_PROFILE_BENCH_DEBUG=line-tables-only cargo build --profile bench \
//!     -p portcullis-benches --example pipeline_profile
//! valgrind --tool=callgrind --toggle-collect=pipeline_profile::drive \
//!     target/release/examples/pipeline_profile portcullis 20000
//! ```
//!
//! Stacks (`support/stacks.rs`, as the pipeline bench builds them): `bare`,
//! `portcullis`, `cached` (token-cache hit), `router_layers` (each layer
//! its own `Router::layer`), `peer` (the hand-assembled peer stack), and one
//! layer at a time over the bare router: `jwt`, `lockout`, `csrf`, `audit`,
//! `require`. Audit records go to a `JsonLinesSink`, as in the bench, or
//! with `SINK=tracing` through a `TracingSink` to the JSON subscriber; both
//! write to `io::sink()`.
#![allow(clippy::unwrap_used, clippy::print_stdout)] // a profiling driver

use std::hint::black_box;

use axum::Router;
use axum::http::StatusCode;
use portcullis::audit::{AuditLayer, Auditor};
use portcullis::authorize::RequireLayer;
use portcullis::jwt::JwtLayer;
use tower::ServiceExt as _;

#[path = "../benches/support/fixture.rs"]
#[allow(dead_code)]
mod fixture;
#[path = "../benches/support/stacks.rs"]
mod stacks;
use fixture::{token, verifier};
use stacks::{
    auditor, bare, csrf, install_observability, lockout, peer_stack, portcullis_stack, request,
};

/// One layer alone over the bare route.
fn single(stack: &str, auditor: &Auditor) -> Router {
    let base = bare();
    match stack {
        "jwt" => base.layer(JwtLayer::new(verifier())),
        "lockout" => base.layer(lockout()),
        "csrf" => base.layer(csrf()),
        "audit" => base.layer(AuditLayer::new(auditor.clone())),
        // Without a principal the check refuses: give it the JWT layer's.
        "require" => base.layer(
            tower::ServiceBuilder::new()
                .layer(JwtLayer::new(verifier()))
                .layer(RequireLayer::scopes(["orders:read"])),
        ),
        other => panic!("unknown stack {other}"),
    }
}

fn router(stack: &str, auditor: &Auditor) -> Router {
    match stack {
        "bare" => bare(),
        "portcullis" => portcullis_stack(auditor.clone(), false, false),
        "cached" => portcullis_stack(auditor.clone(), true, false),
        "router_layers" => portcullis_stack(auditor.clone(), false, true),
        "peer" => peer_stack(),
        other => single(other, auditor),
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
    let _prometheus = install_observability();
    let auditor = auditor(std::env::var("SINK").is_ok_and(|s| s == "tracing"));
    let bearer = format!("Bearer {}", token());
    let router = router(&stack, &auditor);
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
