//! `Csrf`: the decision for one request and the middleware service.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, Method, Request, Response, Uri};
use portcullis_core::{CsrfTokenStore as _, FailureReason, Rejection};
use subtle::ConstantTimeEq as _;
use tower_service::Service;

use super::config::Config;
use super::cookie::{self, Found};
use super::form::{self, TokenLocation};
use super::future::{Pending, ResponseFuture, Verdict};
use super::handle::{CsrfError, CsrfExempt, State, mint};
use super::token::{ParsedToken, digest_of};
use crate::rejection::RespondToRejection;

/// Middleware that refuses cross-site state-changing requests; see the
/// [module docs](crate::csrf).
pub struct Csrf<S, R, F> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
    pub(crate) respond: R,
    pub(crate) location: F,
}

impl<S: Clone, R: Clone, F: Clone> Clone for Csrf<S, R, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            respond: self.respond.clone(),
            location: self.location.clone(),
        }
    }
}

impl<S: fmt::Debug, R: fmt::Debug, F: fmt::Debug> fmt::Debug for Csrf<S, R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Csrf")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("respond", &self.respond)
            .field("location", &self.location)
            .finish()
    }
}

crate::macros::define_inner_service_accessors!(Csrf<S, R, F>);

/// Safe methods (RFC 9110 §9.2.1) that never need a token. `TRACE` is left
/// out on purpose: it is checked like any unsafe method.
pub(crate) fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Headers frameworks read to turn one method into another.
static METHOD_OVERRIDE_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// A safe request must stay safe: the decision is made on the real method,
/// and the override headers and `_method` query parameters are removed so
/// that nothing behind this layer can turn a GET into a POST.
fn strip_method_overrides<B>(request: &mut Request<B>) {
    let headers = request.headers_mut();
    // Typed names: a `&str` name is parsed again on every lookup.
    for name in &METHOD_OVERRIDE_HEADERS {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
    if let Some(uri) = without_method_param(request.uri()) {
        *request.uri_mut() = uri;
    }
}

fn without_method_param(uri: &Uri) -> Option<Uri> {
    let query = uri.query()?;
    let is_method = |pair: &&str| {
        let key = pair.split('=').next().unwrap_or_default();
        key == "_method" || (key.contains('%') && key.eq_ignore_ascii_case("%5fmethod"))
    };
    if !query.split('&').any(|p| is_method(&p)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|p| !is_method(p)).collect();
    let mut path_and_query = uri.path().to_owned();
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// What the synchronous pass decided.
pub(crate) enum Decision {
    Done(Verdict),
    /// The token is in the form body.
    Form {
        cookie: String,
        session: Option<Box<str>>,
    },
    /// A store must be asked.
    Store(Pending),
}

fn reject(reason: FailureReason, detail: &'static str, session: Option<Box<str>>) -> Decision {
    Decision::Done(Verdict::reject(reason, detail, session))
}

/// Whether the body is JSON, or there is no body at all.
fn json_or_empty(headers: &HeaderMap) -> bool {
    match form::media_type(headers) {
        Some(media) => {
            let media = media.to_ascii_lowercase();
            media == b"application/json"
                || (media.starts_with(b"application/") && media.ends_with(b"+json"))
        }
        None => {
            !headers.contains_key(http::header::CONTENT_TYPE)
                && !headers.contains_key(http::header::TRANSFER_ENCODING)
                && headers
                    .get(http::header::CONTENT_LENGTH)
                    .is_none_or(|v| v.as_bytes() == b"0")
        }
    }
}

impl Config {
    /// The whole synchronous decision.
    pub(crate) fn decide<B>(&self, request: &Request<B>, reads_forms: bool) -> Decision {
        let headers = request.headers();
        let session: Option<Box<str>> = self
            .session
            .session_id(headers, request.extensions())
            .filter(|s| !s.is_empty())
            .map(Cow::into_owned)
            .map(String::into_boxed_str);
        let credential_only = self.exempt.applies(headers, session.is_some());
        if is_safe(request.method()) {
            // An API client (explicit credential, no ambient one) never
            // sends the cookie back in a way that matters: minting it a
            // token would cost an HMAC and a `Set-Cookie` per request.
            if credential_only {
                return Decision::Done(Verdict::pass(session, None, false));
            }
            return self.safe(headers, session);
        }
        if credential_only || request.extensions().get::<CsrfExempt>().is_some() {
            return Decision::Done(Verdict::pass(session, None, false));
        }
        if self.json_only && !json_or_empty(headers) {
            return reject(
                FailureReason::CrossOrigin,
                "simple content type on a JSON-only route",
                session,
            );
        }
        if let Err(detail) = self.origins.check(headers, request.extensions()) {
            return reject(FailureReason::CrossOrigin, detail, session);
        }
        let cookie = match cookie::find(headers, &self.cookie.name) {
            Found::None => None,
            Found::One(v) => Some(v),
            Found::Many => {
                return reject(
                    FailureReason::CsrfMismatch,
                    "CSRF cookie sent more than once",
                    session,
                );
            }
        };
        let mut submitted = headers.get_all(&self.header).iter();
        let submitted = match (submitted.next(), submitted.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v.as_bytes()),
            (Some(_), Some(_)) => {
                return reject(
                    FailureReason::CsrfMismatch,
                    "CSRF header sent more than once",
                    session,
                );
            }
        };
        match (cookie, submitted) {
            (None, _) => reject(FailureReason::CsrfMissing, "no CSRF cookie", session),
            (Some(cookie), Some(submitted)) => self.compare(cookie, submitted, session),
            (Some(cookie), None) => {
                if !(reads_forms && form::is_urlencoded(headers)) {
                    return reject(
                        FailureReason::CsrfMissing,
                        "no CSRF token in the header or form",
                        session,
                    );
                }
                if ParsedToken::parse(cookie.as_bytes()).is_none() {
                    // Never buffer a body for a cookie that cannot match.
                    return reject(
                        FailureReason::CsrfMismatch,
                        "malformed CSRF cookie",
                        session,
                    );
                }
                Decision::Form {
                    cookie: cookie.to_owned(),
                    session,
                }
            }
        }
    }

    /// Safe request: keep a valid cookie, or issue a new token.
    fn safe(&self, headers: &HeaderMap, session: Option<Box<str>>) -> Decision {
        let sid = session.as_deref().unwrap_or_default();
        let valid = match cookie::find(headers, &self.cookie.name) {
            Found::One(v) if self.secret.verify(sid, v) => Some(v.to_owned()),
            _ => None,
        };
        if self.store.is_some() && session.is_some() {
            return Decision::Store(Pending::Safe {
                session,
                token: valid,
            });
        }
        match valid {
            Some(token) => Decision::Done(Verdict::pass(session, Some(token), false)),
            None => match self.secret.mint(sid) {
                Ok(token) => Decision::Done(Verdict::pass(session, Some(token), true)),
                Err(err) => Decision::Done(Verdict::unavailable(CsrfError::Random(err), session)),
            },
        }
    }

    /// Both halves present: equal, well formed, signed for this session.
    pub(crate) fn compare(
        &self,
        cookie: &str,
        submitted: &[u8],
        session: Option<Box<str>>,
    ) -> Decision {
        let Some(parsed) = ParsedToken::parse(submitted) else {
            return reject(FailureReason::CsrfMismatch, "malformed CSRF token", session);
        };
        if ParsedToken::parse(cookie.as_bytes()).is_none() {
            return reject(
                FailureReason::CsrfMismatch,
                "malformed CSRF cookie",
                session,
            );
        }
        // Same length (both parsed): a constant-time comparison of the bytes.
        if !bool::from(cookie.as_bytes().ct_eq(submitted)) {
            return reject(
                FailureReason::CsrfMismatch,
                "CSRF token does not match the cookie",
                session,
            );
        }
        if !self
            .secret
            .verify_parsed(session.as_deref().unwrap_or_default(), &parsed)
        {
            return reject(
                FailureReason::CsrfMismatch,
                "CSRF token not signed for this session",
                session,
            );
        }
        if self.store.is_some() && session.is_some() {
            return Decision::Store(Pending::Unsafe {
                session,
                token: cookie.to_owned(),
            });
        }
        Decision::Done(Verdict::pass(session, Some(cookie.to_owned()), false))
    }

    /// The store's part of the decision.
    pub(crate) async fn settle(&self, pending: Pending) -> Verdict {
        let Some(store) = &self.store else {
            // Only built when a store is configured.
            return Verdict::reject(FailureReason::UpstreamUnavailable, "no CSRF store", None);
        };
        match pending {
            Pending::Safe { session, token } => {
                if let Some(token) = token {
                    let sid = session.as_deref().unwrap_or_default();
                    match store.store.validate(sid, &digest_of(&token)).await {
                        Ok(true) => return Verdict::pass(session, Some(token), false),
                        Ok(false) => {}
                        Err(err) => return Verdict::unavailable(CsrfError::Store(err), session),
                    }
                }
                match mint(self, session.as_deref()).await {
                    Ok(token) => Verdict::pass(session, Some(token), true),
                    Err(err) => Verdict::unavailable(err, session),
                }
            }
            Pending::Unsafe { session, token } => {
                let sid = session.as_deref().unwrap_or_default();
                let digest = digest_of(&token);
                let live = if store.single_use {
                    store.store.consume(sid, &digest).await
                } else {
                    store.store.validate(sid, &digest).await
                };
                match live {
                    Ok(true) if store.single_use => match mint(self, session.as_deref()).await {
                        Ok(fresh) => Verdict::pass(session, Some(fresh), true),
                        Err(err) => Verdict::unavailable(err, session),
                    },
                    Ok(true) => Verdict::pass(session, Some(token), false),
                    Ok(false) => Verdict::reject(
                        FailureReason::CsrfMismatch,
                        "CSRF token unknown to the store, used or expired",
                        session,
                    ),
                    Err(err) => Verdict::unavailable(CsrfError::Store(err), session),
                }
            }
        }
    }
}

impl Verdict {
    pub(crate) fn pass(session: Option<Box<str>>, token: Option<String>, issue: bool) -> Self {
        Self::Pass(State {
            session,
            token,
            issue,
        })
    }

    pub(crate) fn reject(
        reason: FailureReason,
        detail: &'static str,
        session: Option<Box<str>>,
    ) -> Self {
        Self::Reject(Rejection::new(reason).with_detail(detail), session)
    }

    pub(crate) fn unavailable(err: CsrfError, session: Option<Box<str>>) -> Self {
        let rejection = Rejection::new(FailureReason::UpstreamUnavailable);
        let rejection = match err {
            CsrfError::Store(err) => rejection
                .with_detail("CSRF token store unavailable")
                .with_source(err),
            CsrfError::Random(err) => rejection
                .with_detail("random generator failed")
                .with_source(err),
        };
        Self::Reject(rejection, session)
    }
}

impl<S, R, F, ReqBody, ResBody> Service<Request<ReqBody>> for Csrf<S, R, F>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    R: RespondToRejection<ResBody>,
    F: TokenLocation<ReqBody>,
    ReqBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if is_safe(request.method()) {
            strip_method_overrides(&mut request);
        }
        match self.config.decide(&request, self.location.reads_forms()) {
            Decision::Done(verdict) => ResponseFuture::decided(
                verdict,
                request,
                &mut self.inner,
                &self.respond,
                &self.config,
            ),
            Decision::Store(pending) => {
                let config = Arc::clone(&self.config);
                let waiting = Box::pin(async move {
                    let verdict = config.settle(pending).await;
                    (request, verdict)
                });
                ResponseFuture::pending(waiting, &mut self.inner, &self.respond, &self.config)
            }
            Decision::Form { cookie, session } => {
                let config = Arc::clone(&self.config);
                let read = self.location.read(request);
                let waiting = Box::pin(async move {
                    let (request, field) = read.await;
                    let decision = match field {
                        Ok(Some(value)) => config.compare(&cookie, value.as_bytes(), session),
                        Ok(None) => reject(
                            FailureReason::CsrfMissing,
                            "no CSRF token in the header or form",
                            session,
                        ),
                        Err(detail) => reject(FailureReason::CsrfMissing, detail, session),
                    };
                    let verdict = match decision {
                        Decision::Done(verdict) => verdict,
                        Decision::Store(pending) => config.settle(pending).await,
                        Decision::Form { session, .. } => Verdict::reject(
                            FailureReason::CsrfMissing,
                            "no CSRF token in the header or form",
                            session,
                        ),
                    };
                    (request, verdict)
                });
                ResponseFuture::pending(waiting, &mut self.inner, &self.respond, &self.config)
            }
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn method_param_is_removed_from_the_query() {
        let uri: Uri = "/a?x=1&_method=DELETE&y=2".parse().unwrap();
        assert_eq!(without_method_param(&uri).unwrap(), "/a?x=1&y=2");
        let uri: Uri = "/a?%5Fmethod=POST".parse().unwrap();
        assert_eq!(without_method_param(&uri).unwrap(), "/a");
        let uri: Uri = "/a?method=x".parse().unwrap();
        assert!(without_method_param(&uri).is_none());
    }
}
