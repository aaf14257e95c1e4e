//! The response future every authenticating layer shares.
//!
//! An authenticator decides a [`Verdict`] — at once, or after a store or
//! JWKS lookup — and this module carries it out the same way for every
//! layer: the principal goes into the request extensions and the outcome
//! onto the response; a rejection becomes the responder's response with the
//! `Rejection` (and whatever else the layer reports) in its extensions, and
//! the inner service is never called.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Extensions, Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::{AuthOutcome, Principal, Rejection};
use tower_service::Service;

use crate::rejection::RespondToRejection;

/// What an authenticating layer decided about one request.
pub(crate) enum Verdict {
    /// Call the inner service with this principal; report the outcome on the
    /// response unless the handler reports its own.
    Accept(Principal, AuthOutcome),
    /// Call the inner service without a principal (anonymous access, shadow
    /// mode), reporting the outcome if there is one.
    Pass(Option<AuthOutcome>),
    /// Refuse. `extensions` (the failure outcome, a fallback marker) are
    /// added to the response next to the `Rejection`.
    Reject(Rejection, Extensions),
}

impl Verdict {
    /// A rejection reported with `outcome`.
    pub(crate) fn reject(rejection: Rejection, outcome: Option<AuthOutcome>) -> Self {
        let mut extensions = Extensions::new();
        if let Some(outcome) = outcome {
            extensions.insert(outcome);
        }
        Self::Reject(rejection, extensions)
    }
}

/// A verdict that needs I/O first.
pub(crate) type PendingVerdict = Pin<Box<dyn Future<Output = Verdict> + Send>>;

pin_project! {
    /// Response future of the authenticating layers (`Jwt`, `ApiKey`,
    /// `Authenticated`).
    pub struct ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, R>,
    }
}

/// What the slow path keeps while the verdict is pending. Boxed so that the
/// future stays small on the fast path.
struct Waiting<S, ReqBody, R> {
    verdict: PendingVerdict,
    request: Option<Request<ReqBody>>,
    inner: S,
    respond: R,
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        Waiting { waiting: Box<Waiting<S, ReqBody, R>> },
        Calling { #[pin] future: S::Future, outcome: Option<AuthOutcome> },
        Responded { response: Option<S::Response> },
    }
}

fn carry_out<S, ReqBody, R, ResBody>(
    verdict: Verdict,
    mut request: Request<ReqBody>,
    inner: &mut S,
    respond: &R,
) -> State<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RespondToRejection<ResBody>,
{
    match verdict {
        Verdict::Accept(principal, outcome) => {
            request.extensions_mut().insert(principal);
            State::Calling {
                future: inner.call(request),
                outcome: Some(outcome),
            }
        }
        Verdict::Pass(outcome) => State::Calling {
            future: inner.call(request),
            outcome,
        },
        Verdict::Reject(rejection, extensions) => {
            #[cfg(feature = "tracing")]
            tracing::trace!(target: "portcullis::rejection", reason = rejection.reason().as_str(), detail = rejection.detail(), "request rejected");
            let mut response = respond.respond(request.headers(), &rejection);
            response.extensions_mut().extend(extensions);
            response.extensions_mut().insert(rejection);
            State::Responded {
                response: Some(response),
            }
        }
    }
}

impl<S, ReqBody, R, ResBody> ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RespondToRejection<ResBody>,
{
    /// Carries out a verdict reached without waiting.
    pub(crate) fn decided(
        verdict: Verdict,
        request: Request<ReqBody>,
        inner: &mut S,
        respond: &R,
    ) -> Self {
        Self {
            state: carry_out(verdict, request, inner, respond),
        }
    }

    /// Waits for `verdict`, then carries it out.
    pub(crate) fn pending(
        verdict: PendingVerdict,
        request: Request<ReqBody>,
        inner: &mut S,
        respond: &R,
    ) -> Self
    where
        S: Clone,
    {
        // Hand the service that was driven to readiness to the future and
        // keep a fresh clone; see tower's "Be careful when cloning inner
        // services".
        let clone = inner.clone();
        let inner = std::mem::replace(inner, clone);
        Self {
            state: State::Waiting {
                waiting: Box::new(Waiting {
                    verdict,
                    request: Some(request),
                    inner,
                    respond: respond.clone(),
                }),
            },
        }
    }
}

impl<S, ReqBody, R> fmt::Debug for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, R, ResBody> Future for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RespondToRejection<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Waiting { waiting } => {
                    let Waiting {
                        verdict,
                        request,
                        inner,
                        respond,
                    } = &mut **waiting;
                    let verdict = ready!(verdict.as_mut().poll(cx));
                    let request = request.take().expect("polled after completion");
                    carry_out(verdict, request, inner, respond)
                }
                StateProj::Calling { future, outcome } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(outcome) = outcome.take() {
                        outcome.attach_if_absent(&mut response);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Responded { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            };
            this.state.set(next);
        }
    }
}
