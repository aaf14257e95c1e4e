//! `Jwt`: the decision and the middleware service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use portcullis_core::{
    AuthMethod, AuthOutcome, FailureReason, Principal, Rejection, RevocationStore, TokenRef,
};
use tower_service::Service;

use super::error::JwtError;
use super::extract::Extracted;
use super::layer::Shared;
use super::verifier::{VerifiedToken, unix};
use crate::future::{ResponseFuture, Verdict};
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
        if let Some(after) = err.retry_after() {
            rejection = rejection.with_retry_after(after);
        }
    }
    rejection
}

/// The verdict for a token decision: the principal and a success outcome,
/// or the rejection with a failure outcome (shadow mode: passed through with
/// a shadow outcome).
pub(crate) fn verdict(shared: &Shared, result: Result<VerifiedToken, JwtError>) -> Verdict {
    let err = match result {
        Ok(verified) => {
            let principal: Principal = verified.into_principal();
            let outcome = AuthOutcome::authenticated(AuthMethod::Jwt, &principal);
            return Verdict::Accept(principal, outcome);
        }
        Err(err) => err,
    };
    failure_verdict(shared, &err, err.reason())
}

fn failure_verdict(shared: &Shared, err: &JwtError, reason: FailureReason) -> Verdict {
    let mut outcome = AuthOutcome::failure(AuthMethod::Jwt, reason);
    if let Some(subject) = err.verified_subject() {
        outcome = outcome.with_subject(subject);
    }
    if shared.shadow {
        return Verdict::Pass(Some(outcome.shadow()));
    }
    Verdict::reject(rejection(shared, err, reason), Some(outcome))
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

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let verdict = match self.shared.decide(request.headers(), request.uri()) {
            Decision::Accept(verified) => verdict(&self.shared, Ok(verified)),
            Decision::Reject(err, reason) => failure_verdict(&self.shared, &err, reason),
            Decision::Pending(check) => {
                let shared = Arc::clone(&self.shared);
                let pending = Box::pin(async move { verdict(&shared, check.await) });
                return ResponseFuture::pending(pending, request, &mut self.inner, &self.respond);
            }
        };
        ResponseFuture::decided(verdict, request, &mut self.inner, &self.respond)
    }
}
