//! Per-request cost of `LockoutLayer` with 10 000 distinct tracked client
//! addresses, against a bare service measured in the same run:
//!
//! - `bare`: building the request and calling a no-op inner service;
//! - `ip_check`: a request with no identifier (an API route): block-list
//!   lookup, the address counter's lock check, the inner call, reading the
//!   outcome;
//! - `ip_check_rate_limited`: the same plus the governor GCRA check;
//! - `login_admitted`: a login request with an identifier header: the
//!   account and account+address reservations, then their release (the
//!   handler reports no outcome);
//! - `login_locked`: a locked account refused before the inner service.
//!
//! Memory per tracked key is measured once, before the benchmarks, from the
//! growth of the resident set while 200 000 keys are inserted (a counting
//! global allocator needs `unsafe`, which the workspace forbids), and
//! printed to stderr. Results: `docs/lockout.md`.
#![allow(clippy::unwrap_used)] // benchmark setup: a failure is a broken benchmark

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue, Request, Response};
use portcullis::core::{AttemptKey, AttemptPolicy, AttemptStore, MemoryAttemptStore, PeerAddr};
use portcullis::lockout::{IdentifierSource, LockoutLayer, RateLimit};
use tower::{Layer, Service, service_fn};

#[path = "support/mod.rs"]
mod support;
use support::poll_now;

const TRACKED: u32 = 10_000;
const USER: HeaderName = HeaderName::from_static("x-login-user");

fn ip(i: u32) -> IpAddr {
    IpAddr::from((0x0a00_0000 + i).to_be_bytes())
}

fn request(i: u32, user: Option<&HeaderValue>) -> Request<String> {
    let mut request = Request::new(String::new());
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip(i % TRACKED), 40_000)));
    if let Some(user) = user {
        request.headers_mut().insert(USER, user.clone());
    }
    request
}

/// A store with `TRACKED` addresses that each have one failure.
fn tracked_store() -> Arc<MemoryAttemptStore> {
    let store = Arc::new(MemoryAttemptStore::new(100_000));
    let policy = AttemptPolicy::new(50, Duration::from_secs(300), Duration::from_secs(900));
    let now = SystemTime::now();
    for i in 0..TRACKED {
        poll_now(store.record_failure(&AttemptKey::Ip(ip(i)), &policy, false, now)).unwrap();
    }
    store
}

/// Resident set size in bytes, from `/proc/self/statm` (Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[allow(clippy::print_stderr)] // the figure is the output
fn memory_per_key() {
    const N: u32 = 200_000;
    let policy = AttemptPolicy::default();
    let now = SystemTime::now();
    // Every store is kept alive until the end, so that memory freed by one
    // measurement is not reused by the next.
    let mut kept = Vec::new();
    let mut measure = |name: &str, key: &dyn Fn(u32) -> AttemptKey| {
        let store = MemoryAttemptStore::new(N as usize * 2);
        let before = rss();
        for i in 0..N {
            poll_now(store.record_failure(&key(i), &policy, false, now)).unwrap();
        }
        if let (Some(before), Some(after)) = (before, rss()) {
            let per_key = after.saturating_sub(before) as f64 / f64::from(N);
            eprintln!("memory per tracked key ({name}, one failure each): {per_key:.0} B");
        }
        kept.push(store);
    };
    measure("ip", &|i| AttemptKey::Ip(ip(i)));
    measure("account, 20-byte identifier", &|i| {
        AttemptKey::Account(format!("user{i:07}@example.org").into())
    });
    measure("account+ip", &|i| {
        AttemptKey::AccountIp(format!("user{i:07}@example.org").into(), ip(i))
    });
    let before = rss();
    let limiter = portcullis::lockout::LockoutLayer::new(MemoryAttemptStore::new(10))
        .with_rate_limit(
            RateLimit::per_second(10)
                .unwrap()
                .with_max_tracked_ips(N as usize * 2),
        )
        .with_identifier(IdentifierSource::header(USER));
    let mut svc = limiter.layer(service_fn(|_req: Request<String>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
    }));
    for i in 0..N {
        let mut request = Request::new(String::new());
        request
            .extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip(i), 1)));
        let _ = poll_now(svc.call(request));
    }
    if let (Some(before), Some(after)) = (before, rss()) {
        let per_key = after.saturating_sub(before) as f64 / f64::from(N);
        eprintln!("memory per rate-limited address (governor): {per_key:.0} B");
    }
    assert_eq!(limiter.rate_limiter().unwrap().len(), N as usize);
    drop(kept);
}

fn lockout(c: &mut Criterion) {
    memory_per_key();

    let noop = service_fn(|_req: Request<String>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
    });
    let store = tracked_store();
    let layer =
        LockoutLayer::shared(Arc::clone(&store)).with_identifier(IdentifierSource::header(USER));

    let mut group = c.benchmark_group("lockout");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let mut bare = noop;
    let mut i = 0u32;
    group.bench_function("bare", |b| {
        b.iter(|| {
            i = i.wrapping_add(7);
            poll_now(bare.call(request(i, None))).unwrap()
        })
    });

    let mut svc = layer.layer(noop);
    group.bench_function("ip_check", |b| {
        b.iter(|| {
            i = i.wrapping_add(7);
            poll_now(svc.call(request(i, None))).unwrap()
        })
    });

    let mut limited = layer
        .clone()
        .with_rate_limit(RateLimit::per_second(1_000_000).unwrap())
        .layer(noop);
    group.bench_function("ip_check_rate_limited", |b| {
        b.iter(|| {
            i = i.wrapping_add(7);
            poll_now(limited.call(request(i, None))).unwrap()
        })
    });

    let user = HeaderValue::from_static("Alice@Example.org");
    group.bench_function("login_admitted", |b| {
        b.iter(|| {
            i = i.wrapping_add(7);
            poll_now(svc.call(request(i, Some(&user)))).unwrap()
        })
    });

    let locked = HeaderValue::from_static("locked@example.org");
    poll_now(layer.admin().lock("locked@example.org", None)).unwrap();
    group.bench_function("login_locked", |b| {
        b.iter(|| {
            i = i.wrapping_add(7);
            let res = poll_now(svc.call(request(i, Some(&locked)))).unwrap();
            assert_eq!(res.status(), 429);
        })
    });
    group.finish();
    assert!(store.len() >= TRACKED as usize);
}

criterion_group!(benches, lockout);
criterion_main!(benches);
