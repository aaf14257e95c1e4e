//! `Jwt`: the middleware service and its response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::{
    AuthMethod, AuthOutcome, FailureReason, Principal, Rejection, RevocationStore, TokenRef,
};
use tower_service::Service;

use super::error::JwtError;
use super::extract::Extracted;
use super::layer::Shared;
use super::verifier::{VerifiedToken, unix};
use crate::rejection::RespondToRejection;

/// Middleware that authenticates requests with a bearer JWT.
///
/// Accepted requests carry the [`Principal`] in their extensions; the
/// response then carries an [`AuthOutcome`] success unless the handler set
/// one. Rejected requests never reach the inner service: they get the
/// responder's answer with the [`Rejection`] and a failure outcome in the
/// response extensions.
///
/// See the [module docs](crate::jwt) for an example.
pub struct Jwt<S, R> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) respond: R,
}

impl<S: Clone, R: Clone> Clone for Jwt<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            respond: self.respond.clone(),
        }
    }
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for Jwt<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwt")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .field("respond", &self.respond)
            .finish()
    }
}

crate::macros::define_inner_service_accessors!(Jwt<S, R>);

/// What a synchronous first pass decided.
pub(crate) enum Decision {
    Accept(VerifiedToken),
    Reject(JwtError, FailureReason),
    /// Needs the network: a JWKS refresh or a revocation lookup.
    Pending(Check),
}

pub(crate) type Check = Pin<Box<dyn Future<Output = Result<VerifiedToken, JwtError>> + Send>>;

impl Shared {
    /// The whole decision for one request, synchronous when it can be.
    pub(crate) fn decide(self: &Arc<Self>, headers: &HeaderMap, uri: &http::Uri) -> Decision {
        let shared = self;
        let token = match shared.source.extract(headers, uri) {
            Extracted::Token(token) => token,
            Extracted::Missing => {
                return Decision::Reject(
                    JwtError::Malformed("no credentials"),
                    FailureReason::MissingToken,
                );
            }
            Extracted::InvalidRequest(why) => {
                return Decision::Reject(JwtError::Malformed(why), FailureReason::InvalidRequest);
            }
            Extracted::Unreadable => {
                let err = JwtError::Malformed("token is not UTF-8");
                let reason = err.reason();
                return Decision::Reject(err, reason);
            }
        };
        let verifier = &shared.verifier;
        let now = verifier.clock.now();
        let verified = if let Some(hit) = shared
            .token_cache
            .as_ref()
            .and_then(|c| c.get(token, now, unix(now), verifier.expiry_slack()))
        {
            hit.verified.clone()
        } else {
            match verifier.verify_at(token, now) {
                Ok(verified) => {
                    if let Some(cache) = &shared.token_cache {
                        cache.insert(token, verified.clone(), now);
                    }
                    verified
                }
                Err(JwtError::UnknownKey) if verifier.has_remote_keys() => {
                    let shared = Arc::clone(shared);
                    let token = token.to_owned();
                    return Decision::Pending(Box::pin(async move {
                        let verified = shared.verifier.verify_async(&token).await?;
                        check_revocation(&shared, verified).await
                    }));
                }
                Err(err) => {
                    let reason = err.reason();
                    return Decision::Reject(err, reason);
                }
            }
        };
        if shared.revocation.is_none() {
            return Decision::Accept(verified);
        }
        match shared.revocation_cache.get(&revocation_key(&verified), now) {
            Some(false) => Decision::Accept(verified),
            Some(true) => {
                let err = revoked(&verified);
                Decision::Reject(err, FailureReason::TokenRevoked)
            }
            None => {
                let shared = Arc::clone(shared);
                Decision::Pending(Box::pin(async move {
                    check_revocation(&shared, verified).await
                }))
            }
        }
    }
}

fn revocation_key(verified: &VerifiedToken) -> String {
    let p = verified.principal();
    match p.token_id() {
        Some(jti) => format!("j\u{0}{jti}"),
        None => format!(
            "s\u{0}{}\u{0}{}\u{0}{}",
            p.subject(),
            p.issued_at().map_or(-1, unix),
            verified.family().unwrap_or("")
        ),
    }
}

fn revoked(verified: &VerifiedToken) -> JwtError {
    JwtError::Revoked {
        subject: verified.principal().subject().to_owned(),
    }
}

async fn check_revocation(
    shared: &Shared,
    verified: VerifiedToken,
) -> Result<VerifiedToken, JwtError> {
    let Some(store) = &shared.revocation else {
        return Ok(verified);
    };
    let principal = verified.principal();
    let token = TokenRef {
        token_id: principal.token_id(),
        family: verified.family(),
        subject: principal.subject(),
        issued_at: principal.issued_at(),
    };
    let is_revoked = store
        .is_revoked(&token)
        .await
        .map_err(|e| JwtError::Unavailable(Arc::new(e)))?;
    let now = shared.verifier.clock.now();
    shared
        .revocation_cache
        .insert(&revocation_key(&verified), is_revoked, now);
    if is_revoked {
        Err(revoked(&verified))
    } else {
        Ok(verified)
    }
}

pub(crate) fn rejection(shared: &Shared, err: &JwtError, reason: FailureReason) -> Rejection {
    let mut rejection = Rejection::new(reason)
        .with_challenge(shared.challenge.clone())
        .with_detail(err.detail());
    if let Some(subject) = err.verified_subject() {
        rejection = rejection.with_subject(subject);
    }
    if let JwtError::Unavailable(source) = err {
        rejection = rejection.with_source(Arc::clone(source));
    }
    rejection
}

fn reject<ResBody, R: RespondToRejection<ResBody>>(
    shared: &Shared,
    respond: &R,
    headers: &HeaderMap,
    err: &JwtError,
    reason: FailureReason,
) -> Response<ResBody> {
    let rejection = rejection(shared, err, reason);
    #[cfg(feature = "tracing")]
    tracing::trace!(target: "portcullis::rejection", layer = "jwt", reason = reason.as_str(), detail = err.detail(), "request rejected");
    let mut response = respond.respond(headers, &rejection);
    let mut outcome = AuthOutcome::failure(AuthMethod::Jwt, reason);
    if let Some(subject) = rejection.subject() {
        outcome = outcome.with_subject(subject);
    }
    outcome.attach(&mut response);
    response.extensions_mut().insert(rejection);
    response
}

fn shadow_outcome(err: &JwtError, reason: FailureReason) -> AuthOutcome {
    let mut outcome = AuthOutcome::failure(AuthMethod::Jwt, reason).shadow();
    if let Some(subject) = err.verified_subject() {
        outcome = outcome.with_subject(subject);
    }
    outcome
}

fn accept<B>(request: &mut Request<B>, verified: VerifiedToken) -> AuthOutcome {
    let principal: Principal = verified.into_principal();
    let outcome = AuthOutcome::authenticated(AuthMethod::Jwt, &principal);
    request.extensions_mut().insert(principal);
    outcome
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for Jwt<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    R: RespondToRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        match self.shared.decide(request.headers(), request.uri()) {
            Decision::Accept(verified) => {
                let outcome = accept(&mut request, verified);
                ResponseFuture::calling(self.inner.call(request), outcome)
            }
            Decision::Reject(err, reason) if self.shared.shadow => {
                ResponseFuture::calling(self.inner.call(request), shadow_outcome(&err, reason))
            }
            Decision::Reject(err, reason) => {
                let response = reject(&self.shared, &self.respond, request.headers(), &err, reason);
                ResponseFuture::rejected(response)
            }
            Decision::Pending(check) => {
                // Hand the service that was driven to readiness to the future
                // and keep a fresh clone; see tower's "Be careful when cloning
                // inner services".
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Checking {
                        pending: Box::new(Pending {
                            check,
                            request: Some(request),
                            inner,
                            shared: Arc::clone(&self.shared),
                            respond: self.respond.clone(),
                        }),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// Response future for [`Jwt`].
    pub struct ResponseFuture<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, R>,
    }
}

/// What the slow path keeps while the check runs.
struct Pending<S, ReqBody, R> {
    check: Check,
    request: Option<Request<ReqBody>>,
    inner: S,
    shared: Arc<Shared>,
    respond: R,
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, R>
    where
        S: Service<Request<ReqBody>>,
    {
        // Boxed: the slow path (a store or JWKS lookup) pays for the
        // allocation, and the future stays small for the fast path.
        Checking {
            pending: Box<Pending<S, ReqBody, R>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            outcome: Option<AuthOutcome>,
        },
        Rejected {
            response: Option<S::Response>,
        },
    }
}

impl<S, ReqBody, R> ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    fn calling(future: S::Future, outcome: AuthOutcome) -> Self {
        Self {
            state: State::Calling {
                future,
                outcome: Some(outcome),
            },
        }
    }

    fn rejected(response: S::Response) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
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
                StateProj::Checking { pending } => {
                    let Pending {
                        check,
                        request,
                        inner,
                        shared,
                        respond,
                    } = &mut **pending;
                    let outcome = ready!(check.as_mut().poll(cx));
                    let mut request = request.take().expect("polled after completion");
                    match outcome {
                        Ok(verified) => {
                            let outcome = accept(&mut request, verified);
                            State::Calling {
                                future: inner.call(request),
                                outcome: Some(outcome),
                            }
                        }
                        Err(err) => {
                            let reason = err.reason();
                            if shared.shadow {
                                let outcome = shadow_outcome(&err, reason);
                                State::Calling {
                                    future: inner.call(request),
                                    outcome: Some(outcome),
                                }
                            } else {
                                let response =
                                    reject(shared, respond, request.headers(), &err, reason);
                                State::Rejected {
                                    response: Some(response),
                                }
                            }
                        }
                    }
                }
                StateProj::Calling { future, outcome } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(outcome) = outcome.take() {
                        outcome.attach_if_absent(&mut response);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Rejected { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            };
            this.state.set(next);
        }
    }
}
