//! `CaptchaLayer` and the `Captcha` service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderName, Request, Response};
use http_body::Body;
use portcullis_core::{
    AttemptCounts, CaptchaSolved, EventKind, EventLevel, FailureReason, Rejection, SecurityEvent,
    SharedClock, SystemClock,
};
use tower_layer::Layer;
use tower_service::Service;

use super::replay::{Claim, DEFAULT_REPLAY_CAPACITY, ReplayCache};
use super::verifier::{CaptchaError, CaptchaToken, CaptchaVerifier, MAX_TOKEN_LEN};
use crate::lockout::{self, ReadError};
use crate::rejection::{DefaultRejection, RejectionBody, RespondToRejection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Response future of [`Captcha`]: the whole per-request flow (reading the
/// token, the provider round trip), boxed once.
pub struct ResponseFuture<B, E> {
    inner: Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>,
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// Default failures (for the account, or from the address) after which a
/// CAPTCHA is required: seed 000's 3.
pub const DEFAULT_THRESHOLD: u32 = 3;

/// Default header a token may come in.
pub const DEFAULT_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-captcha-token");

struct Config<V> {
    verifier: Arc<V>,
    account_threshold: u32,
    ip_threshold: u32,
    header: Option<HeaderName>,
    fields: Arc<[Arc<str>]>,
    replay: Arc<ReplayCache>,
    clock: SharedClock,
    shadow: bool,
    fail_open: bool,
}

impl<V> Clone for Config<V> {
    fn clone(&self) -> Self {
        Self {
            verifier: Arc::clone(&self.verifier),
            account_threshold: self.account_threshold,
            ip_threshold: self.ip_threshold,
            header: self.header.clone(),
            fields: Arc::clone(&self.fields),
            replay: Arc::clone(&self.replay),
            clock: Arc::clone(&self.clock),
            shadow: self.shadow,
            fail_open: self.fail_open,
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for Config<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("verifier", &self.verifier)
            .field("account_threshold", &self.account_threshold)
            .field("ip_threshold", &self.ip_threshold)
            .field("header", &self.header)
            .field("fields", &self.fields)
            .field("shadow", &self.shadow)
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

/// Layer that applies the [`Captcha`] middleware: a CAPTCHA after repeated
/// failures.
///
/// Put it **inside** [`LockoutLayer`](crate::lockout::LockoutLayer), which
/// hands it the failure counts. See the [module docs](crate::captcha).
#[must_use]
pub struct CaptchaLayer<V, R = DefaultRejection> {
    config: Config<V>,
    respond: R,
}

impl<V, R: Clone> Clone for CaptchaLayer<V, R> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            respond: self.respond.clone(),
        }
    }
}

impl<V: fmt::Debug, R: fmt::Debug> fmt::Debug for CaptchaLayer<V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptchaLayer")
            .field("config", &self.config)
            .field("respond", &self.respond)
            .finish()
    }
}

impl<V: CaptchaVerifier> CaptchaLayer<V> {
    /// Requires a CAPTCHA verified by `verifier` once the account or the
    /// address has 3 failures in its window (or always, when no
    /// `LockoutLayer` outside reports counts). Tokens are read from
    /// `X-Captcha-Token` or the widget fields `cf-turnstile-response`,
    /// `h-captcha-response`, `g-recaptcha-response`; each is accepted once
    /// per 300 s in this process.
    pub fn new(verifier: V) -> Self {
        Self {
            config: Config {
                verifier: Arc::new(verifier),
                account_threshold: DEFAULT_THRESHOLD,
                ip_threshold: DEFAULT_THRESHOLD,
                header: Some(DEFAULT_TOKEN_HEADER),
                fields: [
                    "cf-turnstile-response",
                    "h-captcha-response",
                    "g-recaptcha-response",
                ]
                .map(Arc::from)
                .into(),
                replay: Arc::new(ReplayCache::new(
                    Duration::from_secs(300),
                    DEFAULT_REPLAY_CAPACITY,
                )),
                clock: Arc::new(SystemClock),
                shadow: false,
                fail_open: false,
            },
            respond: DefaultRejection::new(),
        }
    }
}

impl<V, R> CaptchaLayer<V, R> {
    /// Requires a CAPTCHA after `account` failures for the account or `ip`
    /// failures from the address (default 3 and 3; 0 = always).
    pub fn with_thresholds(mut self, account: u32, ip: u32) -> Self {
        self.config.account_threshold = account;
        self.config.ip_threshold = ip;
        self
    }

    /// Reads the token from `header` (`None`: from no header).
    pub fn with_header(mut self, header: Option<HeaderName>) -> Self {
        self.config.header = header;
        self
    }

    /// Reads the token from these form / JSON body fields (the first
    /// present; two present is `400 invalid_request`).
    pub fn with_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.config.fields = fields.into_iter().map(|f| Arc::from(f.as_ref())).collect();
        self
    }

    /// Remembers up to `capacity` used tokens for `ttl` (default 100 000
    /// for 300 s, the longest token lifetime); a full cache fails closed.
    pub fn with_replay_cache(mut self, ttl: Duration, capacity: usize) -> Self {
        self.config.replay = Arc::new(ReplayCache::new(ttl, capacity));
        self
    }

    /// Reads time (replay cache) from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Shadow mode: decide and report (events marked shadow) but let every
    /// request through.
    pub fn shadow_mode(mut self) -> Self {
        self.config.shadow = true;
        self
    }

    /// **Insecure.** When the provider cannot answer (timeout, 5xx, open
    /// circuit), let the request through instead of `503`, with a critical
    /// `security.captcha_challenge` event each time. A CAPTCHA that can be
    /// skipped by taking the provider down protects nothing while it is
    /// down.
    pub fn insecure_fail_open(mut self) -> Self {
        self.config.fail_open = true;
        self
    }

    /// Replaces the response sent when a request is rejected.
    pub fn with_rejection_response<R2>(self, respond: R2) -> CaptchaLayer<V, R2> {
        CaptchaLayer {
            config: self.config,
            respond,
        }
    }

    /// The verifier.
    #[must_use]
    pub fn verifier(&self) -> &V {
        &self.config.verifier
    }
}

impl<S, V, R: Clone> Layer<S> for CaptchaLayer<V, R> {
    type Service = Captcha<S, V, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Captcha {
            inner,
            config: Arc::new(self.config.clone()),
            respond: self.respond.clone(),
        }
    }
}

/// Middleware that demands a solved CAPTCHA once failures pile up.
///
/// See the [module docs](crate::captcha) for an example.
pub struct Captcha<S, V, R> {
    inner: S,
    config: Arc<Config<V>>,
    respond: R,
}

impl<S: Clone, V, R: Clone> Clone for Captcha<S, V, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            respond: self.respond.clone(),
        }
    }
}

impl<S: fmt::Debug, V: fmt::Debug, R: fmt::Debug> fmt::Debug for Captcha<S, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Captcha")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("respond", &self.respond)
            .finish()
    }
}

crate::macros::define_inner_service_accessors!(Captcha<S, V, R>);

/// What the request carries.
enum Presented {
    Token(CaptchaToken),
    Missing,
    Invalid(&'static str),
}

impl<V> Config<V> {
    fn required(&self, counts: Option<&AttemptCounts>) -> bool {
        // Without counts from a lockout layer there is nothing to go on:
        // demand a CAPTCHA every time (fail closed).
        let Some(counts) = counts else {
            return true;
        };
        counts.captcha_unlock
            || counts.account.unwrap_or(0) >= self.account_threshold
            || counts.ip.unwrap_or(0) >= self.ip_threshold
    }

    fn event(&self, detail: &'static str) -> SecurityEvent {
        let event = SecurityEvent::new(EventKind::CaptchaChallenge).with_detail(detail);
        if self.shadow { event.shadow() } else { event }
    }

    async fn read_token<B>(&self, request: Request<B>) -> (Request<B>, Presented)
    where
        B: Body + RejectionBody,
        B::Error: Into<BoxError>,
    {
        if let Some(header) = &self.header {
            match lockout::header_value(request.headers(), header) {
                Ok(Some(value)) => {
                    let token = CaptchaToken::new(value.trim());
                    return (request, Presented::Token(token));
                }
                Ok(None) => {}
                Err(ReadError::Invalid(_) | ReadError::Body) => {
                    return (request, Presented::Invalid("token header unreadable"));
                }
            }
        }
        let Some(kind) = lockout::body_kind(request.method(), request.headers()) else {
            return (request, Presented::Missing);
        };
        if self.fields.is_empty() {
            return (request, Presented::Missing);
        }
        // Enough for the largest token plus a login form.
        let max = lockout::DEFAULT_MAX_BODY.max(MAX_TOKEN_LEN * 4);
        let Ok((parts, bytes)) = lockout::buffer(request, max).await else {
            // The body is gone: hand on an empty one; the request is
            // refused anyway.
            let request = Request::new(B::from_bytes(bytes::Bytes::new()));
            return (request, Presented::Invalid("body unreadable or too large"));
        };
        let mut found = Presented::Missing;
        for field in self.fields.iter() {
            match lockout::body_field(kind, &bytes, field) {
                Ok(Some(value)) => {
                    if matches!(found, Presented::Token(_)) {
                        found = Presented::Invalid("two CAPTCHA fields");
                        break;
                    }
                    if value.len() > lockout::MAX_FIELD_BYTES {
                        found = Presented::Invalid("token too long");
                        break;
                    }
                    found = Presented::Token(CaptchaToken::new(value.trim()));
                }
                Ok(None) => {}
                Err(_) => {
                    found = Presented::Invalid("token field unreadable");
                    break;
                }
            }
        }
        (lockout::rebuild(parts, bytes), found)
    }
}

fn respond_with<B, R: RespondToRejection<B>>(
    respond: &R,
    headers: &HeaderMap,
    rejection: Rejection,
    event: SecurityEvent,
) -> Response<B> {
    let mut response = respond.respond(headers, &rejection);
    response.extensions_mut().insert(rejection);
    event.attach(&mut response);
    response
}

impl<S, V, R, ReqBody, ResBody> Service<Request<ReqBody>> for Captcha<S, V, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    V: CaptchaVerifier,
    R: RespondToRejection<ResBody>,
    ReqBody: Body + RejectionBody + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        let respond = self.respond.clone();
        ResponseFuture {
            inner: Box::pin(async move {
                if !config.required(request.extensions().get::<AttemptCounts>()) {
                    return inner.call(request).await;
                }
                let ip = lockout::client_ip(&request);
                let (request, presented) = config.read_token(request).await;
                let refuse = |reason: FailureReason, detail: &'static str| {
                    (
                        Rejection::new(reason).with_detail(detail),
                        config.event(detail).with_reason(reason),
                    )
                };
                let verdict = match presented {
                    Presented::Missing => {
                        Err(refuse(FailureReason::CaptchaRequired, "CAPTCHA required"))
                    }
                    Presented::Invalid(why) => Err(refuse(FailureReason::CaptchaInvalid, why)),
                    Presented::Token(token) if !token.is_well_formed() => Err(refuse(
                        FailureReason::CaptchaInvalid,
                        "token malformed or too long",
                    )),
                    Presented::Token(token) => {
                        match config.replay.claim(token.as_str(), config.clock.now()) {
                            Claim::Replayed => {
                                Err(refuse(FailureReason::CaptchaInvalid, "token already used"))
                            }
                            Claim::Full => Err(refuse(
                                FailureReason::UpstreamUnavailable,
                                "CAPTCHA replay cache full",
                            )),
                            Claim::Fresh => match config.verifier.verify(&token, ip).await {
                                Ok(()) => Ok(None),
                                Err(CaptchaError::Rejected(why)) => {
                                    Err(refuse(FailureReason::CaptchaInvalid, why))
                                }
                                Err(CaptchaError::Unavailable(why, source)) => {
                                    config.replay.forget(token.as_str());
                                    if config.fail_open {
                                        Ok(Some(
                                            config
                                                .event("CAPTCHA provider unavailable: failed open")
                                                .with_reason(FailureReason::UpstreamUnavailable)
                                                .with_level(EventLevel::Error),
                                        ))
                                    } else {
                                        let (mut rejection, event) =
                                            refuse(FailureReason::UpstreamUnavailable, why);
                                        if let Some(source) = source {
                                            rejection = rejection.with_source(SourceError(source));
                                        }
                                        Err((rejection, event))
                                    }
                                }
                            },
                        }
                    }
                };
                match verdict {
                    Ok(note) => {
                        let mut response = inner.call(request).await?;
                        match note {
                            Some(event) => event.attach(&mut response),
                            None => {
                                response.extensions_mut().insert(CaptchaSolved);
                                config
                                    .event("CAPTCHA solved")
                                    .with_level(EventLevel::Info)
                                    .attach(&mut response);
                            }
                        }
                        Ok(response)
                    }
                    Err((_, event)) if config.shadow => {
                        let mut response = inner.call(request).await?;
                        event.attach(&mut response);
                        Ok(response)
                    }
                    Err((rejection, event)) => {
                        Ok(respond_with(&respond, request.headers(), rejection, event))
                    }
                }
            }),
        }
    }
}

/// Keeps a boxed provider error as a rejection's source.
#[derive(Debug)]
struct SourceError(BoxError);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
