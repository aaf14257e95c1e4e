//! Per-call cost of `CircuitBreakerLayer` while the circuit is closed,
//! against the same no-op service without the layer, measured in the same
//! run:
//!
//! - `bare`: `poll_ready` + `call` + poll of a no-op `service_fn`;
//! - `closed_count`: the same through the layer with the default
//!   count-based window (100 calls, minimum 100);
//! - `closed_time`: a time-based window (60 one-second buckets);
//! - `closed_consecutive`: `consecutive_failures(5, 60 s)`;
//! - `open`: the rejection path (circuit forced open), for reference.
//!
//! Every call completes on its first poll, as a cache hit or an in-process
//! service would; the call timeout's timer is then never created.
//!
//! Results and ratios: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)] // benchmark setup: a failure is a broken benchmark

use std::convert::Infallible;
use std::hint::black_box;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use portcullis::circuit_breaker::{CircuitBreakerLayer, SlidingWindow};
use tower::{Layer, Service, service_fn};

#[path = "support/mod.rs"]
mod support;
use support::poll_now;

/// `poll_ready`, `call`, and the future's first poll.
fn once<S>(service: &mut S) -> S::Response
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(ready) => ready.unwrap(),
        Poll::Pending => panic!("benchmarked services are always ready"),
    }
    poll_now(service.call(black_box(Request::new(())))).unwrap()
}

fn circuit_breaker(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let noop = service_fn(|_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
    });

    let mut bare = noop;
    group.bench_function("bare", |b| b.iter(|| once(&mut bare).status()));

    let layers = [
        ("closed_count", CircuitBreakerLayer::new()),
        (
            "closed_time",
            CircuitBreakerLayer::new()
                .with_sliding_window(SlidingWindow::time_based(60))
                .unwrap(),
        ),
        (
            "closed_consecutive",
            CircuitBreakerLayer::consecutive_failures(5, Duration::from_secs(60)).unwrap(),
        ),
    ];
    for (name, layer) in layers {
        let handle = layer.handle();
        let mut service = layer.layer(noop);
        group.bench_function(name, |b| b.iter(|| once(&mut service).status()));
        assert_eq!(handle.state().as_str(), "closed");
        assert!(handle.metrics().calls() > 0);
    }

    let layer = CircuitBreakerLayer::new();
    layer.handle().force_open();
    let mut open = layer.layer(noop);
    group.bench_function("open", |b| {
        b.iter(|| {
            let _ = open.poll_ready(&mut Context::from_waker(Waker::noop()));
            poll_now(open.call(black_box(Request::new(())))).unwrap_err()
        })
    });
    group.finish();
}

criterion_group!(benches, circuit_breaker);
criterion_main!(benches);
