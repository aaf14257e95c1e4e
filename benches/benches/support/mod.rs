//! Helpers shared by the benchmarks (included with `#[path]`; not a bench
//! target of its own).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Polls `future` once with a no-op waker: benchmarked services complete
/// synchronously (cache hits, in-process stores), so a `Pending` is a broken
/// benchmark, not something to wait for.
pub(crate) fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("benchmarked futures complete synchronously"),
    }
}
