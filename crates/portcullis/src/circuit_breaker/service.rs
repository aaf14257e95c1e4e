//! [`CircuitBreaker`]: the middleware service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_http::classify::ClassifyResponse;
use tower_service::Service;

use super::BoxError;
use super::body::ResponseBody;
use super::future::ResponseFuture;
use super::shared::{BreakerHandle, Shared};
use super::state::Refusal;

/// What `poll_ready` decided, for the next `call`.
#[derive(Clone, Copy, Debug)]
enum Readiness {
    /// `poll_ready` was not called since the last `call`.
    Unknown,
    /// The circuit was not admitting calls: the inner service was not
    /// polled, and `call` rejects.
    Refused(Refusal),
    /// The circuit was admitting calls and the inner service is ready.
    Ready,
}

/// Middleware that stops calling a failing service for a while.
///
/// Cloning is cheap when the inner service's clone is: all clones share one
/// breaker. The readiness decision of `poll_ready` is not shared (a clone
/// starts without one, like tower's `LoadShed`).
///
/// See the [module docs](crate::circuit_breaker) for an example.
pub struct CircuitBreaker<S, C> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) classifier: C,
    readiness: Readiness,
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, classifier: C) -> Self {
        Self {
            inner,
            shared,
            classifier,
            readiness: Readiness::Unknown,
        }
    }

    /// The handle of the breaker this service reports to.
    #[must_use]
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        // A clone has not been polled ready: its readiness starts unknown.
        Self::new(
            self.inner.clone(),
            Arc::clone(&self.shared),
            self.classifier.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.shared)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

crate::macros::define_inner_service_accessors!(CircuitBreaker<S, C>);

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body,
    C: ClassifyResponse + Clone,
{
    type Response = Response<ResponseBody<ResBody, C::ClassifyEos>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The circuit first: an open circuit must answer at once, without
        // waiting on a dependency that may never become ready
        // (tower-resilience #381/#386).
        if let Err(refusal) = self.shared.check() {
            self.readiness = Readiness::Refused(refusal);
            return Poll::Ready(Ok(()));
        }
        self.readiness = Readiness::Unknown;
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.readiness = Readiness::Ready;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => {
                // A service that cannot become ready is a failing dependency.
                if let Ok(permit) = self.shared.acquire() {
                    permit.finish(true);
                }
                Poll::Ready(Err(err.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let refusal = match std::mem::replace(&mut self.readiness, Readiness::Unknown) {
            Readiness::Refused(refusal) => refusal,
            // `Unknown`: called without `poll_ready`, against the `Service`
            // contract; decide now and let the inner service enforce its own
            // readiness, as a layer that does not gate readiness would.
            Readiness::Ready | Readiness::Unknown => match self.shared.acquire() {
                Ok(permit) => {
                    let future = self.inner.call(request);
                    return ResponseFuture::called(future, permit, self.classifier.clone());
                }
                // The circuit opened between `poll_ready` and `call`.
                Err(refusal) => refusal,
            },
        };
        self.shared.count_rejection();
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "portcullis::circuit_breaker",
            breaker = &*self.shared.config.name,
            state = refusal.state.as_str(),
            "call rejected: circuit open"
        );
        ResponseFuture::rejected(self.shared.open_error(refusal))
    }
}
