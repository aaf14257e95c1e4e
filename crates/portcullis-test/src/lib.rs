//! The conformance kit for Portcullis store backends.
//!
//! Every store trait in `portcullis-core` documents a contract — atomic
//! test-and-set, expiry, `Ok(None)` for the unknown, ordering of listings,
//! no secrets in `Debug`. This crate turns each contract into test cases, so
//! that a backend (ours for memory, SQLite, PostgreSQL and Redis, or yours)
//! proves it keeps them against the real engine.
//!
//! Each module holds the cases of one trait as plain `async fn`s taking a
//! *factory*: a closure that receives a [`SharedClock`] (a [`FakeClock`]
//! set near the real time, which the case may advance) and returns a fresh,
//! isolated store. One macro per trait expands to one named `#[test]` per
//! case, each on its own multi-thread runtime:
//!
//! ```
//! use portcullis_core::MemoryRevocationStore;
//!
//! portcullis_test::revocation_store_tests!(|clock| async move {
//!     MemoryRevocationStore::with_clock(10_000, clock)
//! });
//! # fn main() {}
//! ```
//!
//! A backend that needs a server names the environment variable holding
//! its address; without it the tests print a notice and pass locally, and
//! **fail** when `CI` is set:
//!
//! ```no_run
//! # use portcullis_core::MemoryRevocationStore;
//! portcullis_test::revocation_store_tests!(requires = "PORTCULLIS_TEST_REDIS_URL", |clock| async move {
//!     // connect to std::env::var("PORTCULLIS_TEST_REDIS_URL") with a fresh key prefix
//! #   MemoryRevocationStore::with_clock(10_000, clock)
//! });
//! # fn main() {}
//! ```
//!
//! Times the kit stores have whole-second resolution, so backends may keep
//! seconds or milliseconds.
//!
//! # Panics
//!
//! Every case panics, with the step and what was expected, when the store
//! breaks its contract or returns an error: that is how a test fails.

// The cases are tests: panicking is their only way to report.
#![allow(clippy::missing_panics_doc)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_core::{FakeClock, SharedClock};

pub mod api_key;
pub mod attempt;
pub mod audit;
pub mod block_list;
pub mod csrf;
pub mod rate_limit;
pub mod revocation;
mod suite;

/// Runs one case: skips it (visibly) when `requires` names an unset
/// environment variable outside CI, fails it inside CI, else blocks on it on
/// a fresh multi-thread runtime.
///
/// # Panics
///
/// When the case fails, or when `CI` is set and the required variable is not.
pub fn run(case: &str, requires: Option<&str>, test: impl Future<Output = ()>) {
    if let Some(var) = requires
        && backend_url(var, case).is_none()
    {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot build a tokio runtime: {e}"));
    runtime.block_on(test);
}

/// The value of environment variable `var` (a backend's address), or
/// `None` after printing why `case` is skipped.
///
/// # Panics
///
/// When `var` is unset or empty and `CI` is set: in CI a missing backend is
/// a failure, never a skip.
#[must_use]
pub fn backend_url(var: &str, case: &str) -> Option<String> {
    use std::io::Write as _;
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{case}: {var} is not set, and CI requires every backend test to run")
        }
        _ => {
            // Straight to the process's stderr: the test harness captures
            // `eprintln!`, and a skip must be visible.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {case}: set {var} to run it against a real server"
            );
            None
        }
    }
}

/// A fresh identifier for a schema, key prefix or file: `prefix`, then
/// letters and digits unique within the process and across runs.
#[must_use]
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}_{}_{nanos:x}_{n}", std::process::id())
}

/// The clock a case hands its factory: fake, on a whole second, near the
/// real time (so that backends computing TTLs from it get sane values).
pub(crate) fn fake_clock() -> Arc<FakeClock> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Arc::new(FakeClock::at_unix(now))
}

/// What every case takes: a closure that builds a fresh, isolated store
/// of type `S` using the clock it is given (`|clock| async move { … }`).
pub trait StoreFactory<S>: FnOnce(SharedClock) -> <Self as StoreFactory<S>>::Store {
    /// The future the closure returns.
    type Store: Future<Output = S>;
}

impl<S, F, Fut> StoreFactory<S> for F
where
    F: FnOnce(SharedClock) -> Fut,
    Fut: Future<Output = S>,
{
    type Store = Fut;
}

/// Builds the store under test with a fresh fake clock.
pub(crate) async fn build<S>(factory: impl StoreFactory<S>) -> (Arc<S>, Arc<FakeClock>) {
    let clock = fake_clock();
    let shared: SharedClock = clock.clone();
    (Arc::new(factory(shared).await), clock)
}

/// Whole seconds after the fake clock's start.
pub(crate) fn secs(clock: &FakeClock, s: u64) -> SystemTime {
    use portcullis_core::Clock as _;
    clock.now() + Duration::from_secs(s)
}

/// Runs `n` copies of `task` at once and collects their results.
pub(crate) async fn in_parallel<T, Fut>(n: usize, task: impl Fn(usize) -> Fut) -> Vec<T>
where
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let fut = task(i);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for handle in handles {
        out.push(
            handle
                .await
                .unwrap_or_else(|e| panic!("a parallel task panicked: {e}")),
        );
    }
    out
}
