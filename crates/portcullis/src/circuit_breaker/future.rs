//! [`ResponseFuture`]: the inner call, timed and classified, or an
//! immediate [`Open`] rejection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_http::classify::{ClassifiedResponse, ClassifyEos as _, ClassifyResponse};

use super::BoxError;
use super::body::ResponseBody;
use super::error::{CallTimeout, Open};
use super::shared::Permit;
use super::state::Now;

pin_project! {
    /// Response future of [`CircuitBreaker`](super::CircuitBreaker).
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            // Created on the first `Pending` only: calls that complete at
            // once never touch the timer. Boxed to keep the future small on
            // that fast path.
            sleep: Option<Pin<Box<Sleep>>>,
            call: Option<(Permit, C)>,
        },
        Rejected {
            error: Option<Open>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, permit: Permit, classifier: C) -> Self {
        Self {
            kind: Kind::Called {
                future,
                sleep: None,
                call: Some((permit, classifier)),
            },
        }
    }

    pub(crate) fn rejected(error: Open) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// Records the outcome of a completed call and wraps the body.
fn finish<B, E, C>(
    result: Result<Response<B>, E>,
    permit: Permit,
    classifier: C,
) -> Result<Response<ResponseBody<B, C::ClassifyEos>>, BoxError>
where
    B: Body,
    E: Into<BoxError>,
    C: ClassifyResponse,
{
    let response = match result {
        Ok(response) => response,
        Err(err) => {
            permit.finish(true);
            return Err(err.into());
        }
    };
    match classifier.classify_response(&response) {
        ClassifiedResponse::Ready(class) => {
            permit.finish(class.is_err());
            Ok(response.map(ResponseBody::plain))
        }
        // Nothing more will come: classify now rather than wait for a poll
        // that may never happen.
        ClassifiedResponse::RequiresEos(eos) if response.body().is_end_stream() => {
            permit.finish(eos.classify_eos(None).is_err());
            Ok(response.map(ResponseBody::plain))
        }
        ClassifiedResponse::RequiresEos(eos) => {
            // Slow calls are judged on the time to the response head.
            let elapsed = permit.elapsed(&mut Now::lazy());
            Ok(response.map(|body| ResponseBody::classified(body, eos, permit, elapsed)))
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body,
    C: ClassifyResponse,
{
    type Output = Result<Response<ResponseBody<B, C::ClassifyEos>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
            KindProj::Called {
                future,
                sleep,
                call,
            } => {
                if let Poll::Ready(result) = future.poll(cx) {
                    let (permit, classifier) = call.take().expect("polled after completion");
                    return Poll::Ready(finish(result, permit, classifier));
                }
                let timer = match sleep {
                    Some(timer) => timer,
                    None => {
                        let (permit, _) = call.as_ref().expect("polled after completion");
                        let Some(timeout) = permit.shared().config.call_timeout else {
                            return Poll::Pending;
                        };
                        // From admission when measured, else from now (the
                        // first poll, right after `call`).
                        let start = permit.start().unwrap_or_else(Instant::now);
                        let Some(deadline) = start.checked_add(timeout) else {
                            return Poll::Pending;
                        };
                        sleep.insert(Box::pin(tokio::time::sleep_until(deadline)))
                    }
                };
                ready!(timer.as_mut().poll(cx));
                // The inner call hung: a failure, so that a stuck trial call
                // cannot keep the breaker half-open (resilience4j #903).
                let (permit, _) = call.take().expect("polled after completion");
                let config = &permit.shared().config;
                let error = CallTimeout {
                    name: std::sync::Arc::clone(&config.name),
                    after: config.call_timeout.unwrap_or_default(),
                };
                permit.finish(true);
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
