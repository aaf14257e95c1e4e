//! Per-request cost of `AuditLayer` with its metrics, the tracing sink on,
//! against the same service without the layer, measured in the same run:
//!
//! - `bare`: a service that reports an auth failure (`AuthOutcome` in the
//!   response), called without the audit layer;
//! - `decision`: the same through `AuditLayer` — request facts kept, the
//!   decision turned into a record and queued, counters and the duration
//!   histogram updated through a real Prometheus recorder; the consumer
//!   task drains batches to `TracingSink` on another thread, where a JSON
//!   `tracing-subscriber` formats every event into `io::sink()`;
//! - `no_decision`: a public request no layer decided on: only the facts
//!   and the request counter.
//!
//! Results and ratios: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)] // benchmark setup: a failure is a broken benchmark

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, StatusCode};
use portcullis::audit::{AuditLayer, Auditor, TracingSink};
use portcullis::core::PeerAddr;
use portcullis::{AuthMethod, AuthOutcome, FailureReason};
use tower::{Layer, Service, service_fn};

#[path = "support/mod.rs"]
mod support;
use support::poll_now;

fn request(path: &'static str) -> Request<()> {
    let mut req = Request::post(path)
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")
        .header("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([198, 51, 100, 75], 40000))));
    req
}

fn once<S>(service: &mut S, req: Request<()>) -> S::Response
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    match service.poll_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(ready) => ready.unwrap(),
        Poll::Pending => panic!("benchmarked services are always ready"),
    }
    poll_now(service.call(black_box(req))).unwrap()
}

fn audit(c: &mut Criterion) {
    // The consumer runs on its own worker thread, as in a server.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let _prometheus = portcullis::audit::prometheus::install().unwrap();
    let auditor = Auditor::builder()
        .sink(TracingSink::new())
        .capacity(100_000)
        .build()
        .unwrap();

    let handler = service_fn(|req: Request<()>| async move {
        let mut res = Response::new(());
        if req.uri().path() == "/login" {
            *res.status_mut() = StatusCode::UNAUTHORIZED;
            AuthOutcome::failure(AuthMethod::Jwt, FailureReason::InvalidToken).attach(&mut res);
        }
        Ok::<_, Infallible>(res)
    });
    let mut bare = handler;
    let mut audited = AuditLayer::new(auditor.clone()).layer(handler);

    let mut group = c.benchmark_group("audit");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("bare", |b| b.iter(|| once(&mut bare, request("/login"))));
    group.bench_function("decision", |b| {
        b.iter(|| once(&mut audited, request("/login")));
    });
    group.bench_function("no_decision", |b| {
        b.iter(|| once(&mut audited, request("/public")));
    });
    group.finish();
    rt.block_on(auditor.flush());
    // A synchronous loop produces faster than the JSON subscriber formats,
    // so the bounded queue overflows: overflow is the designed behaviour,
    // and the entry is captured before the push, so a dropped request cost
    // the request path as much as a queued one.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "audit records written: {}, dropped at the bounded queue: {}",
            auditor.written(),
            auditor.dropped()
        );
    }
}

criterion_group!(benches, audit);
criterion_main!(benches);
