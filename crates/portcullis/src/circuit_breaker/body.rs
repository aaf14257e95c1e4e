//! [`ResponseBody`]: classifies responses whose outcome is known only at
//! the end of the stream (gRPC `grpc-status` in trailers).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_http::classify::ClassifyEos;

use super::shared::Permit;
use super::state::Now;

/// What is left to do at the end of the stream.
struct Pending<E> {
    classify: E,
    permit: Permit,
    /// Time to the response head: what the slow-call threshold applies to.
    elapsed: Option<Duration>,
}

pin_project! {
    /// Response body of [`CircuitBreaker`](super::CircuitBreaker).
    ///
    /// Passes frames through untouched. When the classifier needs the end
    /// of the stream (as [`GrpcErrorsAsFailures`] does for `grpc-status` in
    /// trailers), the outcome is recorded when the trailers or the end
    /// arrive; a body error is a failure; a body dropped before its end
    /// records nothing (and gives back a half-open trial slot).
    ///
    /// [`GrpcErrorsAsFailures`]: tower_http::classify::GrpcErrorsAsFailures
    pub struct ResponseBody<B, E> {
        #[pin]
        inner: B,
        pending: Option<Pending<E>>,
    }
}

impl<B, E> ResponseBody<B, E> {
    pub(crate) fn plain(inner: B) -> Self {
        Self {
            inner,
            pending: None,
        }
    }

    pub(crate) fn classified(
        inner: B,
        classify: E,
        permit: Permit,
        elapsed: Option<Duration>,
    ) -> Self {
        Self {
            inner,
            pending: Some(Pending {
                classify,
                permit,
                elapsed,
            }),
        }
    }

    /// Consumes the wrapper, returning the inner body (an outcome still
    /// pending is dropped unrecorded).
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B, E> Body for ResponseBody<B, E>
where
    B: Body,
    E: ClassifyEos,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        // `Some(Ok(trailers))` at the end of the stream, `Some(Err(()))` on a
        // body error, `None` while data frames flow.
        let end: Option<Result<Option<&http::HeaderMap>, ()>> = match &frame {
            None => Some(Ok(None)),
            Some(Ok(frame)) => frame.trailers_ref().map(|trailers| Ok(Some(trailers))),
            Some(Err(_)) => Some(Err(())),
        };
        if let Some(end) = end
            && let Some(pending) = this.pending.take()
        {
            let failed = match end {
                Ok(trailers) => pending.classify.classify_eos(trailers).is_err(),
                Err(()) => true,
            };
            pending.permit.record(failed, pending.elapsed, Now::lazy());
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug, E> fmt::Debug for ResponseBody<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("pending", &self.pending.is_some())
            .finish()
    }
}
