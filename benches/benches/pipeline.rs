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
//! `io::sink()`. Portcullis's audit records are JSON lines (`JsonLinesSink`
//! to `io::sink()`, the demo's sink) formatted by its consumer task on a
//! worker thread; `portcullis_tracing_sink` sends them through the
//! `tracing` subscriber instead.
//!
//! The stacks live in `support/stacks.rs` (shared with the callgrind
//! driver `examples/pipeline_profile.rs`): each is one `tower::ServiceBuilder`
//! on a router finalised with `with_state(())`, as `axum::serve` runs it;
//! `portcullis_one_router_layer_each` shows the price of adding each layer
//! with its own `Router::layer` instead.
//!
//! Results and ratios: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)] // benchmark setup: a failure is a broken benchmark

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use tower::ServiceExt as _;

#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/stacks.rs"]
mod stacks;
use fixture::token;
use stacks::{auditor, bare, install_observability, peer_stack, portcullis_stack, request};

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
    let _prometheus = install_observability();
    // Our audit records as JSON lines (the demo's sink); the peer stack's
    // as `tracing` JSON events. A row with our `TracingSink` too.
    let auditor = auditor(false);
    let tracing_auditor = stacks::auditor(true);

    let bearer = format!("Bearer {}", token());
    let bare = bare();
    let ours = portcullis_stack(auditor.clone(), false, false);
    let ours_cached = portcullis_stack(auditor.clone(), true, false);
    let ours_router_layers = portcullis_stack(auditor.clone(), false, true);
    let ours_tracing = portcullis_stack(tracing_auditor.clone(), false, false);
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
    bench(
        &mut group,
        &rt,
        "portcullis_one_router_layer_each",
        &ours_router_layers,
        &bearer,
    );
    bench(
        &mut group,
        &rt,
        "portcullis_tracing_sink",
        &ours_tracing,
        &bearer,
    );
    bench(&mut group, &rt, "peer_stack", &peers, &bearer);
    group.finish();
    rt.block_on(auditor.flush());
    rt.block_on(tracing_auditor.flush());
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
