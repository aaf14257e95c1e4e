//! [`AuditLayer`]: one audit record per decision, metrics per request.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::header::{AUTHORIZATION, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use pin_project_lite::pin_project;
use portcullis_core::{
    AuditRecord, AuthMethod, AuthOutcome, ClientIp, EventKind, FailureReason, Rejection,
    SecurityEvents, TrustedProxies,
};
use tower_layer::Layer;
use tower_service::Service;

use super::auditor::{Auditor, count_event, fill_from_event};
use super::redact::{MAX_ENDPOINT, MAX_USER_AGENT, sanitize, token_prefix};

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Applies [`Audit`] to a service: the outermost layer of a pipeline.
///
/// For every request it reads what the inner layers and the handler
/// attached to the response ([`AuthOutcome`], [`Rejection`],
/// [`SecurityEvent`](crate::SecurityEvent)s) and queues one audit record
/// per decision, plus one per event a layer reported; requests no layer
/// decided on (a public page) produce none. It also counts every request and
/// times it, and counts successes and failures by method and reason.
///
/// Nothing is logged in the request path: records go to the
/// [`Auditor`]'s queue and are written in batches.
#[derive(Clone)]
pub struct AuditLayer {
    auditor: Auditor,
    trusted: TrustedProxies,
}

impl AuditLayer {
    /// A layer reporting to `auditor`. The client address is the socket
    /// peer ([`PeerAddr`](crate::core::PeerAddr) or axum's `ConnectInfo`)
    /// unless a `ClientIp` extension is already present.
    #[must_use]
    pub fn new(auditor: Auditor) -> Self {
        Self {
            auditor,
            trusted: TrustedProxies::none(),
        }
    }

    /// Resolves the client address through `trusted` proxies, as
    /// [`ClientIpLayer`](crate::client_ip::ClientIpLayer) does; the audit
    /// layer sits outside it, so it needs the same configuration.
    #[must_use]
    pub fn with_trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted = trusted;
        self
    }
}

impl fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayer")
            .field("auditor", &self.auditor)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            auditor: self.auditor.clone(),
            trusted: self.trusted.clone(),
        }
    }
}

/// Middleware that audits every decision taken below it.
#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    auditor: Auditor,
    trusted: TrustedProxies,
}

crate::macros::define_inner_service_accessors!(Audit<S>);

impl<S: fmt::Debug> fmt::Debug for Audit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("inner", &self.inner)
            .field("auditor", &self.auditor)
            .finish_non_exhaustive()
    }
}

/// What the layer keeps from the request until the response arrives.
/// Header values are reference-counted slices: keeping them costs no copy,
/// and nothing is parsed unless a record is written.
struct RequestFacts {
    start: Instant,
    method: Method,
    uri: Uri,
    ip: Option<IpAddr>,
    user_agent: Option<HeaderValue>,
    traceparent: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
    authorization: Option<HeaderValue>,
    api_key: Option<HeaderValue>,
}

impl RequestFacts {
    fn new<B>(request: &Request<B>, trusted: &TrustedProxies) -> Self {
        let headers = request.headers();
        let ip = request
            .extensions()
            .get::<ClientIp>()
            .map(|ip| ip.0)
            .or_else(|| {
                crate::client_ip::peer_addr(request).map(|peer| trusted.resolve(peer, headers))
            });
        Self {
            start: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            ip,
            user_agent: headers.get(USER_AGENT).cloned(),
            traceparent: headers.get(TRACEPARENT).cloned(),
            request_id: headers.get(X_REQUEST_ID).cloned(),
            authorization: headers.get(AUTHORIZATION).cloned(),
            api_key: headers.get(X_API_KEY).cloned(),
        }
    }

    /// The trace id: W3C `traceparent`'s trace-id, else a well-formed
    /// `X-Request-Id`, else none (the auditor generates one).
    fn trace_id(&self) -> Option<String> {
        if let Some(id) = self
            .traceparent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(traceparent_trace_id)
        {
            return Some(id.to_owned());
        }
        self.request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .filter(|id| {
                (1..=64).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            })
            .map(str::to_owned)
    }

    fn token_prefix(&self) -> Option<Box<str>> {
        if let Some(value) = self.authorization.as_ref().and_then(|v| v.to_str().ok()) {
            let credential = value
                .split_once(' ')
                .map_or("", |(_, rest)| rest.trim_start());
            return token_prefix(credential);
        }
        self.api_key
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(token_prefix)
    }
}

/// The trace-id field of a version-00 `traceparent`, if well formed and not
/// all zeros.
fn traceparent_trace_id(value: &str) -> Option<&str> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2);
    ok.then_some(trace)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Audit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let facts = RequestFacts::new(&request, &self.trusted);
        ResponseFuture {
            future: self.inner.call(request),
            facts: Some(facts),
            auditor: self.auditor.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`Audit`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        facts: Option<RequestFacts>,
        auditor: Auditor,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        if let Some(facts) = this.facts.take() {
            let elapsed = facts.start.elapsed().as_secs_f64();
            this.auditor.shared.metrics.request(elapsed);
            if let Ok(response) = &result {
                observe(this.auditor, &facts, response);
            }
        }
        Poll::Ready(result)
    }
}

/// The decision a response reports, if any layer or handler took one.
struct Decision {
    kind: EventKind,
    reason: Option<FailureReason>,
    method: Option<AuthMethod>,
    user: Option<String>,
    shadow: bool,
    fallback: bool,
    layer: &'static str,
}

fn decision_of<B>(response: &Response<B>) -> Option<Decision> {
    let outcome = AuthOutcome::of(response);
    let rejection = response.extensions().get::<Rejection>();
    match (outcome, rejection) {
        // Authenticated, then refused further in (authorization, CSRF
        // after login, …): the refusal is the decision.
        (Some(outcome), Some(rejection)) if outcome.is_success() => Some(Decision {
            kind: kind_of_reason(rejection.reason()),
            reason: Some(rejection.reason()),
            method: Some(outcome.method()),
            user: outcome.subject().map(str::to_owned),
            shadow: false,
            fallback: outcome.is_fallback(),
            layer: layer_of_reason(rejection.reason(), Some(outcome.method())),
        }),
        (Some(outcome), _) => Some(Decision {
            kind: match outcome.reason() {
                None => EventKind::AuthSuccess,
                Some(FailureReason::TokenExpired) => EventKind::TokenExpired,
                Some(_) => EventKind::AuthFailure,
            },
            reason: outcome.reason(),
            method: Some(outcome.method()),
            user: outcome
                .subject()
                .or_else(|| outcome.identifier())
                .map(str::to_owned),
            shadow: outcome.is_shadow(),
            fallback: outcome.is_fallback(),
            layer: method_layer(outcome.method()),
        }),
        (None, Some(rejection)) => Some(Decision {
            kind: kind_of_reason(rejection.reason()),
            reason: Some(rejection.reason()),
            method: None,
            user: rejection.subject().map(str::to_owned),
            shadow: false,
            fallback: false,
            layer: layer_of_reason(rejection.reason(), None),
        }),
        (None, None) => None,
    }
}

fn observe<B>(auditor: &Auditor, facts: &RequestFacts, response: &Response<B>) {
    let shared = &auditor.shared;
    let decision = decision_of(response);
    let events = SecurityEvents::of(response);
    if decision.is_none() && events.is_empty() {
        return;
    }

    // Metrics for the decision; event-specific counters follow below.
    if let Some(decision) = &decision {
        match (decision.reason, decision.shadow) {
            (None, _) => {
                if let Some(method) = decision.method {
                    shared.metrics.success(method);
                }
            }
            (Some(reason), true) => shared.metrics.shadow(reason),
            (Some(reason), false) => shared.metrics.failure(reason, decision.method),
        }
    }

    let now = shared.clock.now();
    let trace_id: std::sync::Arc<str> = facts
        .trace_id()
        .unwrap_or_else(|| shared.new_trace_id())
        .into();
    let endpoint = sanitize(facts.uri.path(), MAX_ENDPOINT);
    let user_agent = facts
        .user_agent
        .as_ref()
        .map(|v| sanitize(&String::from_utf8_lossy(v.as_bytes()), MAX_USER_AGENT));
    let prefix = facts.token_prefix();
    let base = |kind: EventKind| {
        let mut record = AuditRecord::new(kind, now, trace_id.clone());
        record.ip_address = facts.ip;
        record.endpoint = Some(endpoint.clone());
        record.http_method = Some(facts.method.as_str().into());
        record.user_agent.clone_from(&user_agent);
        record.status = Some(response.status().as_u16());
        record.token_prefix.clone_from(&prefix);
        record
    };

    // The decision, unless a layer reported the same kind of event itself
    // (its record carries more: counts, lock end).
    if let Some(decision) = decision
        && !events.iter().any(|event| event.kind() == decision.kind)
    {
        let mut record = base(decision.kind);
        record.failure_reason = decision.reason;
        record.auth_method = decision.method;
        record.user_id = decision
            .user
            .as_deref()
            .map(|user| shared.pseudonyms.identifier(user));
        record.shadow = decision.shadow;
        record.fallback = decision.fallback;
        record.layer = Some(decision.layer);
        shared.push(record);
    }
    for event in events {
        let mut record = base(event.kind());
        fill_from_event(&mut record, event, facts.ip, &shared.pseudonyms);
        count_event(shared, event);
        shared.push(record);
    }
}

const fn kind_of_reason(reason: FailureReason) -> EventKind {
    match reason {
        FailureReason::CsrfMissing | FailureReason::CsrfMismatch | FailureReason::CrossOrigin => {
            EventKind::CsrfViolation
        }
        FailureReason::IpBlocked => EventKind::IpBlocked,
        FailureReason::AccountLocked => EventKind::AccountLocked,
        FailureReason::CaptchaRequired | FailureReason::CaptchaInvalid => {
            EventKind::CaptchaChallenge
        }
        FailureReason::TokenExpired => EventKind::TokenExpired,
        _ => EventKind::AuthFailure,
    }
}

const fn method_layer(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::Jwt => "jwt",
        AuthMethod::ApiKey => "api_key",
        AuthMethod::Password => "login",
        AuthMethod::Other(name) => name,
        _ => "authenticate",
    }
}

const fn layer_of_reason(reason: FailureReason, method: Option<AuthMethod>) -> &'static str {
    match reason {
        FailureReason::CsrfMissing | FailureReason::CsrfMismatch | FailureReason::CrossOrigin => {
            "csrf"
        }
        FailureReason::IpBlocked => "block_list",
        FailureReason::AccountLocked => "lockout",
        FailureReason::RateLimited => "rate_limit",
        FailureReason::CaptchaRequired | FailureReason::CaptchaInvalid => "captcha",
        FailureReason::InsufficientPermissions => "authorize",
        _ => match method {
            Some(method) => method_layer(method),
            None => "authenticate",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_parsed_strictly() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            traceparent_trace_id(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some(id)
        );
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f35-00f067aa0ba902b7-01",
            "garbage",
            "",
        ] {
            assert_eq!(traceparent_trace_id(bad), None, "{bad}");
        }
    }
}
