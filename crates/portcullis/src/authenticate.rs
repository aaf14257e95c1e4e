//! Authenticators as values: compose them, then turn them into middleware.
//!
//! An [`Authenticate`] implementation looks at a request and answers with an
//! [`AuthDecision`]:
//!
//! - **accepted**: a credential of mine, valid — here is the [`Principal`];
//! - **not present**: no credential of mine — another authenticator may try;
//! - **rejected**: a credential of mine that failed — stop and refuse.
//!
//! The distinction between *not present* and *rejected* is what makes
//! composition safe: [`or`](AuthenticateExt::or) tries the next
//! authenticator only when the first saw nothing of its own, never after a
//! failed credential (which would let an attacker route around a revoked
//! token by adding a second header).
//!
//! Combinators:
//!
//! - [`Or`]: `jwt.or(api_key)` accepts either credential;
//! - [`Optional`]: lets requests without a credential through anonymously,
//!   still refusing bad credentials;
//! - [`AllOf`]: [`all_of(a, b)`](all_of) for the rare route that needs two
//!   credentials at once (a user token *and* a device key); the principal
//!   is the first's;
//! - [`Fallback`]: seed 000's `AuthManager` — try a remote authenticator
//!   under a timeout and, when it cannot answer (timeout, open circuit, store
//!   down: `upstream_unavailable`), decide with a local one instead. The
//!   fallback's use is marked on the [`AuthOutcome`] (`is_fallback`) and
//!   traced, so it shows in events.
//!
//! [`AuthenticateLayer`] turns any authenticator into tower middleware with
//! the same protocol as every Portcullis authenticator: the principal in the
//! request extensions, an [`AuthOutcome`] on the response, rejections as
//! responses carrying their [`Rejection`].
//!
//! A request with no credential at all is refused with `401 missing_token`
//! carrying the challenge of **every** scheme the composed authenticator
//! accepts ([`Authenticate::challenges`]), in one `WWW-Authenticate` value:
//! `Bearer realm="api", ApiKey` for `jwt.or(api_key)`.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use portcullis::authenticate::{AuthenticateExt, AuthenticateLayer};
//! use portcullis::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, VerifyingKey};
//! use std::convert::Infallible;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let keys = KeySet::new().with_key(VerifyingKey::hmac(Algorithm::HS256, "an-example-secret-of-32-bytes-or-more!")?)?;
//! let jwt = JwtLayer::new(JwtVerifier::builder(keys).build()?).authenticator();
//!
//! // Anonymous requests pass without a principal; bad tokens are still refused.
//! let service = AuthenticateLayer::new(jwt.optional()).layer(service_fn(|_: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new(String::new()))
//! }));
//! let res = service.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! let bad = Request::builder().header("authorization", "Bearer x.y.z").body(String::new())?;
//! assert_eq!(service.oneshot(bad).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Extensions, HeaderMap, Method, Request, Response, Uri};
use portcullis_core::{AuthMethod, AuthOutcome, Challenge, FailureReason, Principal, Rejection};
use tower_layer::Layer;
use tower_service::Service;

use crate::future;
pub use crate::future::ResponseFuture;
use crate::rejection::{DefaultRejection, RespondToRejection};

/// What an authenticator decided about one request.
#[derive(Clone, Debug)]
pub enum AuthDecision {
    /// A valid credential of this authenticator.
    Accepted(Principal, AuthMethod),
    /// No credential of this authenticator: another one may try.
    NotPresent,
    /// A credential of this authenticator that failed: refuse.
    Rejected(Rejection, AuthMethod),
    /// No credential, and that is fine ([`Optional`]): pass without a
    /// principal.
    Anonymous,
    /// Decided by a [`Fallback`]'s fallback authenticator, and why.
    ViaFallback(Box<Self>, FallbackReason),
}

/// A future deciding later (a store lookup, a JWKS refresh).
pub type BoxDecision = Pin<Box<dyn Future<Output = AuthDecision> + Send + 'static>>;

/// An authenticator's answer: now, or later.
#[must_use]
pub enum Check {
    /// Decided without waiting.
    Ready(AuthDecision),
    /// Needs I/O first.
    Pending(BoxDecision),
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(decision) => f.debug_tuple("Ready").field(decision).finish(),
            Self::Pending(_) => f.write_str("Pending"),
        }
    }
}

impl Check {
    /// Waits for the decision.
    pub async fn decision(self) -> AuthDecision {
        match self {
            Self::Ready(decision) => decision,
            Self::Pending(future) => future.await,
        }
    }
}

/// The parts of a request an authenticator may read. Bodies are never
/// read: gRPC streams would hang.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (a `ClientIp`, a `PeerAddr`).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of `request`.
    pub fn of<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}

/// Decides whether a request carries a valid credential.
///
/// Implementations decide synchronously when they can and return a
/// `'static` future (holding clones of what it needs) when they must wait,
/// so the common path allocates nothing.
pub trait Authenticate: Send + Sync + 'static {
    /// Looks at the request.
    fn check(&self, head: &RequestHead<'_>) -> Check;

    /// The challenge of this authenticator's own scheme (`Bearer` unless
    /// overridden).
    fn challenge(&self) -> Challenge {
        Challenge::bearer()
    }

    /// Every challenge for a request that carried no credential at all:
    /// one per scheme this authenticator accepts, in order. A single
    /// authenticator has its [`challenge`](Self::challenge); combinators
    /// return the union of their parts', without duplicates.
    fn challenges(&self) -> Vec<Challenge> {
        vec![self.challenge()]
    }
}

impl<A: Authenticate + ?Sized> Authenticate for Arc<A> {
    fn check(&self, head: &RequestHead<'_>) -> Check {
        (**self).check(head)
    }

    fn challenge(&self) -> Challenge {
        (**self).challenge()
    }

    fn challenges(&self) -> Vec<Challenge> {
        (**self).challenges()
    }
}

/// `a`'s challenges followed by those of `b` it lacks.
fn union(mut a: Vec<Challenge>, b: Vec<Challenge>) -> Vec<Challenge> {
    for challenge in b {
        if !a.contains(&challenge) {
            a.push(challenge);
        }
    }
    a
}

/// Combinators for authenticators.
pub trait AuthenticateExt: Authenticate + Sized {
    /// Accepts this credential or, when absent, `other`'s.
    fn or<B: Authenticate>(self, other: B) -> Or<Self, B> {
        Or {
            first: Arc::new(self),
            second: Arc::new(other),
        }
    }

    /// Lets requests without any credential through without a principal.
    fn optional(self) -> Optional<Self> {
        Optional { inner: self }
    }

    /// Requires this credential **and** `other`'s. See [`all_of`].
    fn and<B: Authenticate>(self, other: B) -> AllOf<Self, B> {
        all_of(self, other)
    }

    /// Decides with `fallback` when this authenticator times out after
    /// `timeout` or answers `upstream_unavailable`.
    fn with_fallback<F: Authenticate>(self, fallback: F, timeout: Duration) -> Fallback<Self, F> {
        Fallback {
            primary: Arc::new(self),
            fallback: Arc::new(fallback),
            timeout,
        }
    }
}

impl<A: Authenticate> AuthenticateExt for A {}

/// Accepts the first authenticator's credential or, when it has none, the
/// second's. See [`AuthenticateExt::or`].
pub struct Or<A, B> {
    first: Arc<A>,
    second: Arc<B>,
}

impl<A, B> Clone for Or<A, B> {
    fn clone(&self) -> Self {
        Self {
            first: Arc::clone(&self.first),
            second: Arc::clone(&self.second),
        }
    }
}

impl<A, B> fmt::Debug for Or<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Or").finish_non_exhaustive()
    }
}

impl<A: Authenticate, B: Authenticate> Authenticate for Or<A, B> {
    fn check(&self, head: &RequestHead<'_>) -> Check {
        match self.first.check(head) {
            Check::Ready(AuthDecision::NotPresent) => self.second.check(head),
            Check::Ready(decided) => Check::Ready(decided),
            Check::Pending(first) => {
                // The second check must be prepared now, while the request
                // head is borrowed; it only runs if the first finds nothing.
                let second = self.second.check(head);
                Check::Pending(Box::pin(async move {
                    match first.await {
                        AuthDecision::NotPresent => second.decision().await,
                        decided => decided,
                    }
                }))
            }
        }
    }

    fn challenge(&self) -> Challenge {
        self.first.challenge()
    }

    fn challenges(&self) -> Vec<Challenge> {
        union(self.first.challenges(), self.second.challenges())
    }
}

/// Lets requests without a credential through anonymously. See
/// [`AuthenticateExt::optional`].
#[derive(Clone, Debug)]
pub struct Optional<A> {
    inner: A,
}

impl<A: Authenticate> Authenticate for Optional<A> {
    fn check(&self, head: &RequestHead<'_>) -> Check {
        let anonymous = |d| match d {
            AuthDecision::NotPresent => AuthDecision::Anonymous,
            other => other,
        };
        match self.inner.check(head) {
            Check::Ready(decision) => Check::Ready(anonymous(decision)),
            Check::Pending(future) => {
                Check::Pending(Box::pin(async move { anonymous(future.await) }))
            }
        }
    }

    fn challenge(&self) -> Challenge {
        self.inner.challenge()
    }

    fn challenges(&self) -> Vec<Challenge> {
        self.inner.challenges()
    }
}

/// Requires both credentials: `a`'s **and** `b`'s.
///
/// - both accepted: accepted, with **`a`'s principal** (and method). The
///   second credential only gates the request: its principal is dropped and
///   its scopes are *not* merged in, so a weaker credential can never widen
///   what the first one grants. Put the credential whose identity and
///   scopes should apply first;
/// - either rejected: rejected (`a`'s rejection if both are), so a bad
///   credential is refused even when the other one is missing;
/// - otherwise (one or both absent): *not present*, so the middleware
///   answers `401 missing_token` with both challenges, and an enclosing
///   [`Or`] or [`Optional`] may act on it.
///
/// Both checks run for every request (the second one's store lookup too,
/// unless the first already rejected synchronously).
pub fn all_of<A: Authenticate, B: Authenticate>(a: A, b: B) -> AllOf<A, B> {
    AllOf {
        first: Arc::new(a),
        second: Arc::new(b),
    }
}

/// Requires two credentials at once. See [`all_of`].
pub struct AllOf<A, B> {
    first: Arc<A>,
    second: Arc<B>,
}

impl<A, B> Clone for AllOf<A, B> {
    fn clone(&self) -> Self {
        Self {
            first: Arc::clone(&self.first),
            second: Arc::clone(&self.second),
        }
    }
}

impl<A, B> fmt::Debug for AllOf<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllOf").finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Rejected,
    Absent,
}

fn verdict(decision: &AuthDecision) -> Verdict {
    match decision {
        AuthDecision::Accepted(..) => Verdict::Accepted,
        AuthDecision::Rejected(..) => Verdict::Rejected,
        AuthDecision::NotPresent | AuthDecision::Anonymous => Verdict::Absent,
        AuthDecision::ViaFallback(inner, _) => verdict(inner),
    }
}

fn both(first: AuthDecision, second: AuthDecision) -> AuthDecision {
    match (verdict(&first), verdict(&second)) {
        (Verdict::Rejected, _) | (Verdict::Accepted, Verdict::Accepted) => first,
        (_, Verdict::Rejected) => second,
        _ => AuthDecision::NotPresent,
    }
}

impl<A: Authenticate, B: Authenticate> Authenticate for AllOf<A, B> {
    fn check(&self, head: &RequestHead<'_>) -> Check {
        match self.first.check(head) {
            Check::Ready(first) if verdict(&first) == Verdict::Rejected => Check::Ready(first),
            Check::Ready(first) => match self.second.check(head) {
                Check::Ready(second) => Check::Ready(both(first, second)),
                Check::Pending(second) => {
                    Check::Pending(Box::pin(async move { both(first, second.await) }))
                }
            },
            Check::Pending(first) => {
                // Prepared now, while the request head is borrowed.
                let second = self.second.check(head);
                Check::Pending(Box::pin(async move {
                    let first = first.await;
                    if verdict(&first) == Verdict::Rejected {
                        return first;
                    }
                    both(first, second.decision().await)
                }))
            }
        }
    }

    fn challenge(&self) -> Challenge {
        self.first.challenge()
    }

    fn challenges(&self) -> Vec<Challenge> {
        union(self.first.challenges(), self.second.challenges())
    }
}

/// Tries a primary authenticator under a timeout and decides with the
/// fallback when the primary cannot answer. See
/// [`AuthenticateExt::with_fallback`].
///
/// The fallback decides when the primary:
/// - takes longer than the timeout;
/// - answers `upstream_unavailable` (its store, provider or circuit is down);
/// - finds no credential of its own.
///
/// It never decides after the primary *rejected* a credential: a revoked
/// or forged credential must not get a second chance elsewhere.
pub struct Fallback<P, F> {
    primary: Arc<P>,
    fallback: Arc<F>,
    timeout: Duration,
}

impl<P, F> Clone for Fallback<P, F> {
    fn clone(&self) -> Self {
        Self {
            primary: Arc::clone(&self.primary),
            fallback: Arc::clone(&self.fallback),
            timeout: self.timeout,
        }
    }
}

impl<P, F> fmt::Debug for Fallback<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a [`Fallback`] used its fallback, carried in the response extensions
/// of requests it decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FallbackReason {
    /// The primary did not answer within the timeout.
    Timeout,
    /// The primary answered `upstream_unavailable`.
    Unavailable,
    /// The primary found no credential of its own.
    NotPresent,
}

/// Wraps a decision taken by the fallback, so the layer marks the outcome
/// (`AuthOutcome::is_fallback`). "Nothing found" stays unwrapped so that
/// [`Or`] can still move on.
fn mark_fallback(decision: AuthDecision, why: FallbackReason) -> AuthDecision {
    #[cfg(feature = "tracing")]
    tracing::info!(target: "portcullis::fallback", reason = ?why, "decided by the fallback authenticator");
    match decision {
        AuthDecision::NotPresent | AuthDecision::Anonymous => decision,
        decided => AuthDecision::ViaFallback(Box::new(decided), why),
    }
}

fn is_unavailable(decision: &AuthDecision) -> bool {
    matches!(decision, AuthDecision::Rejected(r, _) if r.reason() == FailureReason::UpstreamUnavailable)
}

impl<P: Authenticate, F: Authenticate> Authenticate for Fallback<P, F> {
    fn check(&self, head: &RequestHead<'_>) -> Check {
        match self.primary.check(head) {
            Check::Ready(AuthDecision::NotPresent) => {
                map_check(self.fallback.check(head), FallbackReason::NotPresent)
            }
            Check::Ready(d) if is_unavailable(&d) => {
                map_check(self.fallback.check(head), FallbackReason::Unavailable)
            }
            Check::Ready(decided) => Check::Ready(decided),
            Check::Pending(primary) => {
                let fallback = self.fallback.check(head);
                let timeout = self.timeout;
                Check::Pending(Box::pin(async move {
                    let why = match tokio::time::timeout(timeout, primary).await {
                        Err(_) => FallbackReason::Timeout,
                        Ok(AuthDecision::NotPresent) => FallbackReason::NotPresent,
                        Ok(d) if is_unavailable(&d) => FallbackReason::Unavailable,
                        Ok(decided) => return decided,
                    };
                    mark_fallback(fallback.decision().await, why)
                }))
            }
        }
    }

    fn challenge(&self) -> Challenge {
        self.primary.challenge()
    }

    fn challenges(&self) -> Vec<Challenge> {
        union(self.primary.challenges(), self.fallback.challenges())
    }
}

fn map_check(check: Check, why: FallbackReason) -> Check {
    match check {
        Check::Ready(decision) => Check::Ready(mark_fallback(decision, why)),
        Check::Pending(future) => {
            Check::Pending(Box::pin(async move { mark_fallback(future.await, why) }))
        }
    }
}

/// Layer that turns an [`Authenticate`] into the [`Authenticated`]
/// middleware.
#[must_use]
pub struct AuthenticateLayer<A, R = DefaultRejection> {
    auth: Arc<A>,
    respond: R,
}

impl<A, R: Clone> Clone for AuthenticateLayer<A, R> {
    fn clone(&self) -> Self {
        Self {
            auth: Arc::clone(&self.auth),
            respond: self.respond.clone(),
        }
    }
}

impl<A, R: fmt::Debug> fmt::Debug for AuthenticateLayer<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateLayer")
            .field("respond", &self.respond)
            .finish_non_exhaustive()
    }
}

impl<A: Authenticate> AuthenticateLayer<A> {
    /// Authenticates every request with `auth`.
    pub fn new(auth: A) -> Self {
        Self {
            auth: Arc::new(auth),
            respond: DefaultRejection::new(),
        }
    }
}

impl<A, R> AuthenticateLayer<A, R> {
    /// Replaces the response sent when a request is rejected.
    pub fn with_rejection_response<R2>(self, respond: R2) -> AuthenticateLayer<A, R2> {
        AuthenticateLayer {
            auth: self.auth,
            respond,
        }
    }
}

impl<S, A, R: Clone> Layer<S> for AuthenticateLayer<A, R> {
    type Service = Authenticated<S, A, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            auth: Arc::clone(&self.auth),
            respond: self.respond.clone(),
        }
    }
}

/// Middleware applying an [`Authenticate`].
pub struct Authenticated<S, A, R> {
    inner: S,
    auth: Arc<A>,
    respond: R,
}

impl<S: Clone, A, R: Clone> Clone for Authenticated<S, A, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            auth: Arc::clone(&self.auth),
            respond: self.respond.clone(),
        }
    }
}

impl<S: fmt::Debug, A, R> fmt::Debug for Authenticated<S, A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticated")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

crate::macros::define_inner_service_accessors!(Authenticated<S, A, R>);

/// The verdict for an authenticator's decision.
fn layer_verdict<A: Authenticate + ?Sized>(auth: &A, decision: AuthDecision) -> future::Verdict {
    let (decision, fallback) = match decision {
        AuthDecision::ViaFallback(inner, why) => (*inner, Some(why)),
        other => (other, None),
    };
    let mark = |outcome: AuthOutcome| {
        if fallback.is_some() {
            outcome.via_fallback()
        } else {
            outcome
        }
    };
    let (rejection, method) = match decision {
        AuthDecision::Accepted(principal, method) => {
            let outcome = mark(AuthOutcome::authenticated(method, &principal));
            return future::Verdict::Accept(principal, outcome);
        }
        AuthDecision::Anonymous => return future::Verdict::Pass(None),
        AuthDecision::NotPresent | AuthDecision::ViaFallback(..) => (
            Rejection::new(FailureReason::MissingToken).with_challenges(auth.challenges()),
            None,
        ),
        AuthDecision::Rejected(rejection, method) => (rejection, Some(method)),
    };
    let outcome = method.map(|method| {
        let mut outcome = AuthOutcome::failure(method, rejection.reason());
        if let Some(subject) = rejection.subject() {
            outcome = outcome.with_subject(subject);
        }
        mark(outcome)
    });
    let mut verdict = future::Verdict::reject(rejection, outcome);
    if let (Some(why), future::Verdict::Reject(_, extensions)) = (fallback, &mut verdict) {
        extensions.insert(why);
    }
    verdict
}

impl<S, A, R, ReqBody, ResBody> Service<Request<ReqBody>> for Authenticated<S, A, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    A: Authenticate,
    R: RespondToRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.auth.check(&RequestHead::of(&request)) {
            Check::Ready(decision) => {
                let verdict = layer_verdict(&*self.auth, decision);
                ResponseFuture::decided(verdict, request, &mut self.inner, &self.respond)
            }
            Check::Pending(future) => {
                let auth = Arc::clone(&self.auth);
                let pending = Box::pin(async move { layer_verdict(&*auth, future.await) });
                ResponseFuture::pending(pending, request, &mut self.inner, &self.respond)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::PrincipalKind;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{ServiceExt, service_fn};

    /// Accepts `x-test: ok`, rejects any other `x-test` value, and sees
    /// nothing without the header. Optionally slow or down.
    #[derive(Clone, Default)]
    struct HeaderAuth {
        calls: Arc<AtomicUsize>,
        delay: Option<Duration>,
        down: bool,
    }

    impl Authenticate for HeaderAuth {
        fn check(&self, head: &RequestHead<'_>) -> Check {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let decision = if self.down {
                AuthDecision::Rejected(
                    Rejection::new(FailureReason::UpstreamUnavailable),
                    AuthMethod::Other("header"),
                )
            } else {
                match head.headers.get("x-test").map(|v| v.as_bytes()) {
                    None => AuthDecision::NotPresent,
                    Some(b"ok") => AuthDecision::Accepted(
                        Principal::new("header-user", PrincipalKind::Service),
                        AuthMethod::Other("header"),
                    ),
                    Some(_) => AuthDecision::Rejected(
                        Rejection::new(FailureReason::InvalidCredentials),
                        AuthMethod::Other("header"),
                    ),
                }
            };
            match self.delay {
                None => Check::Ready(decision),
                Some(delay) => Check::Pending(Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    decision
                })),
            }
        }
    }

    fn jwt() -> crate::jwt::JwtAuthenticator {
        use crate::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, VerifyingKey};
        let keys = KeySet::new()
            .with_key(VerifyingKey::hmac(Algorithm::HS256, SECRET).unwrap())
            .unwrap();
        JwtLayer::new(JwtVerifier::builder(keys).build().unwrap()).authenticator()
    }

    const SECRET: &str = "compose-secret-0123456789-abcdefghijkl";

    fn token() -> String {
        let claims = serde_json::json!({"sub": "jwt-user", "exp": jsonwebtoken::get_current_timestamp() + 600});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    async fn run<A: Authenticate>(auth: A, request: Request<String>) -> Response<String> {
        AuthenticateLayer::new(auth)
            .layer(service_fn(|req: Request<String>| async move {
                let who = req
                    .extensions()
                    .get::<Principal>()
                    .map_or("<anonymous>".to_owned(), |p| p.subject().to_owned());
                Ok::<_, Infallible>(Response::new(who))
            }))
            .oneshot(request)
            .await
            .unwrap()
    }

    fn request(headers: &[(&'static str, String)]) -> Request<String> {
        let mut req = Request::new(String::new());
        for (k, v) in headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        req
    }

    #[tokio::test]
    async fn or_accepts_either_credential() {
        let other = HeaderAuth::default();
        let auth = jwt().or(other.clone());
        let res = run(
            auth.clone(),
            request(&[("authorization", format!("Bearer {}", token()))]),
        )
        .await;
        assert_eq!(res.body(), "jwt-user");
        assert_eq!(AuthOutcome::of(&res).unwrap().method(), AuthMethod::Jwt);
        assert_eq!(
            other.calls.load(Ordering::SeqCst),
            0,
            "the second is not consulted"
        );

        let res = run(auth.clone(), request(&[("x-test", "ok".into())])).await;
        assert_eq!(res.body(), "header-user");

        let res = run(auth, request(&[])).await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        assert_eq!(
            res.extensions().get::<Rejection>().unwrap().reason(),
            FailureReason::MissingToken
        );
    }

    #[tokio::test]
    async fn or_never_tries_the_second_after_a_failed_credential() {
        let auth = jwt().or(HeaderAuth::default());
        let req = request(&[
            ("authorization", "Bearer forged.token.here".into()),
            ("x-test", "ok".into()),
        ]);
        let res = run(auth, req).await;
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.extensions().get::<Rejection>().unwrap().reason(),
            FailureReason::InvalidToken
        );
        assert_eq!(AuthOutcome::of(&res).unwrap().method(), AuthMethod::Jwt);
    }

    #[tokio::test]
    async fn optional_lets_anonymous_requests_through_but_not_bad_credentials() {
        let res = run(jwt().optional(), request(&[])).await;
        assert_eq!(
            (res.status().as_u16(), res.body().as_str()),
            (200, "<anonymous>")
        );
        assert!(AuthOutcome::of(&res).is_none());
        let res = run(
            jwt().optional(),
            request(&[("authorization", "Bearer a.b.c".into())]),
        )
        .await;
        assert_eq!(res.status(), 401);
    }

    #[tokio::test(start_paused = true)]
    async fn all_of_waits_for_both_and_rejects_either_failure() {
        let slow = HeaderAuth {
            delay: Some(Duration::from_secs(1)),
            ..HeaderAuth::default()
        };
        let bearer = ("authorization", format!("Bearer {}", token()));
        // Ready first, pending second: the first's principal.
        let res = run(
            all_of(jwt(), slow.clone()),
            request(&[bearer.clone(), ("x-test", "ok".into())]),
        )
        .await;
        assert_eq!(res.body(), "jwt-user");
        // Pending first, ready second; and a failure in either.
        let res = run(
            all_of(slow.clone(), jwt()),
            request(&[bearer.clone(), ("x-test", "ok".into())]),
        )
        .await;
        assert_eq!(res.body(), "header-user");
        let res = run(
            all_of(slow.clone(), jwt()),
            request(&[bearer.clone(), ("x-test", "bad".into())]),
        )
        .await;
        assert_eq!(
            res.extensions().get::<Rejection>().unwrap().reason(),
            FailureReason::InvalidCredentials
        );
        let res = run(
            all_of(jwt(), slow.clone()),
            request(&[
                ("authorization", "Bearer a.b.c".into()),
                ("x-test", "ok".into()),
            ]),
        )
        .await;
        assert_eq!(
            res.extensions().get::<Rejection>().unwrap().reason(),
            FailureReason::InvalidToken
        );
        // One missing: not present, so `optional` lets it through anonymously
        // and the plain layer answers with the (deduplicated) challenges.
        let res = run(
            all_of(jwt(), slow.clone()).optional(),
            request(std::slice::from_ref(&bearer)),
        )
        .await;
        assert_eq!(res.body(), "<anonymous>");
        let res = run(all_of(jwt(), slow), request(&[bearer])).await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
    }

    #[tokio::test(start_paused = true)]
    async fn fallback_decides_when_the_primary_times_out() {
        let slow = HeaderAuth {
            delay: Some(Duration::from_secs(30)),
            ..HeaderAuth::default()
        };
        let auth = slow.with_fallback(jwt(), Duration::from_secs(2));
        let res = run(
            auth,
            request(&[
                ("authorization", format!("Bearer {}", token())),
                ("x-test", "ok".into()),
            ]),
        )
        .await;
        assert_eq!(res.body(), "jwt-user");
        let outcome = AuthOutcome::of(&res).unwrap();
        assert!(outcome.is_fallback());
        assert_eq!(outcome.method(), AuthMethod::Jwt);
    }

    #[tokio::test]
    async fn fallback_decides_when_the_primary_is_unavailable() {
        let down = HeaderAuth {
            down: true,
            ..HeaderAuth::default()
        };
        let auth = down.with_fallback(jwt(), Duration::from_secs(2));
        let res = run(
            auth.clone(),
            request(&[("authorization", format!("Bearer {}", token()))]),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert!(AuthOutcome::of(&res).unwrap().is_fallback());

        // The fallback's own verdict stands, marked as such.
        let res = run(auth, request(&[("authorization", "Bearer a.b.c".into())])).await;
        assert_eq!(res.status(), 401);
        assert!(AuthOutcome::of(&res).unwrap().is_fallback());
        assert_eq!(
            res.extensions().get::<FallbackReason>(),
            Some(&FallbackReason::Unavailable)
        );
    }

    #[tokio::test]
    async fn fallback_never_overrides_a_rejection() {
        let fallback = HeaderAuth::default();
        let auth = jwt().with_fallback(fallback.clone(), Duration::from_secs(2));
        let req = request(&[
            ("authorization", "Bearer forged.token.here".into()),
            ("x-test", "ok".into()),
        ]);
        let res = run(auth, req).await;
        assert_eq!(res.status(), 401);
        assert!(!AuthOutcome::of(&res).unwrap().is_fallback());
        assert_eq!(fallback.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn fallback_with_a_real_unavailable_primary() {
        // Primary: a JWT authenticator whose revocation store is down (503).
        use crate::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, VerifyingKey};
        struct Down;
        impl portcullis_core::RevocationStore for Down {
            async fn revoke_token(
                &self,
                _: &str,
                _: std::time::SystemTime,
            ) -> Result<bool, portcullis_core::StoreError> {
                Err(portcullis_core::StoreError::new(
                    portcullis_core::StoreErrorKind::Unavailable,
                    "down",
                ))
            }
            async fn revoke_family(
                &self,
                _: &str,
                _: std::time::SystemTime,
            ) -> Result<(), portcullis_core::StoreError> {
                Err(portcullis_core::StoreError::new(
                    portcullis_core::StoreErrorKind::Unavailable,
                    "down",
                ))
            }
            async fn revoke_subject(
                &self,
                _: &str,
                _: std::time::SystemTime,
                _: std::time::SystemTime,
            ) -> Result<(), portcullis_core::StoreError> {
                Err(portcullis_core::StoreError::new(
                    portcullis_core::StoreErrorKind::Unavailable,
                    "down",
                ))
            }
            async fn is_revoked(
                &self,
                _: &portcullis_core::TokenRef<'_>,
            ) -> Result<bool, portcullis_core::StoreError> {
                Err(portcullis_core::StoreError::new(
                    portcullis_core::StoreErrorKind::Unavailable,
                    "down",
                ))
            }
        }
        let keys = KeySet::new()
            .with_key(VerifyingKey::hmac(Algorithm::HS256, SECRET).unwrap())
            .unwrap();
        let remote = JwtLayer::new(JwtVerifier::builder(keys).build().unwrap())
            .with_revocation(Down)
            .authenticator();
        let res = run(
            remote.clone(),
            request(&[("authorization", format!("Bearer {}", token()))]),
        )
        .await;
        assert_eq!(res.status(), 503, "alone, the primary fails closed");
        let res = run(
            remote.with_fallback(jwt(), Duration::from_secs(2)),
            request(&[("authorization", format!("Bearer {}", token()))]),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert!(AuthOutcome::of(&res).unwrap().is_fallback());
    }
}
