//! What the audit layer queues per request, and how the consumer turns it
//! into records.
//!
//! While the request runs, the layer holds reference-counted clones of the
//! header values and the URI. When a record is due, the request path copies
//! the few bytes it needs into the queued entry ([`Copied`]) and counts
//! metrics; sanitizing, pseudonymizing (an HMAC per email) and building
//! records happens on the consumer task, off the request path.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::header::{AUTHORIZATION, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use portcullis_core::{
    AuditRecord, AuthMethod, AuthOutcome, ClientIp, EventKind, FailureReason, Rejection,
    SecurityEvent, SecurityEvents, TrustedProxies,
};

use super::auditor::{Shared, count_event, fill_from_event};
use super::copied::{Copied, enough_chars, enough_lossy_bytes};
use super::redact::{MAX_ENDPOINT, MAX_USER_AGENT, sanitize, token_prefix};

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// What the layer keeps from the request until the response arrives, on
/// the request's thread. Header values are reference-counted slices:
/// keeping them costs no copy, and nothing is parsed unless a record is
/// written.
pub(crate) struct RequestFacts {
    pub(crate) start: Instant,
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
    pub(crate) fn new<B>(request: &Request<B>, trusted: &TrustedProxies) -> Self {
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
    fn trace_id(&self) -> Option<&str> {
        if let Some(id) = self
            .traceparent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(traceparent_trace_id)
        {
            return Some(id);
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
    }

    fn token_prefix(&self) -> Option<&str> {
        if let Some(value) = self.authorization.as_ref().and_then(|v| v.to_str().ok()) {
            let credential = value
                .split_once(' ')
                .map_or("", |(_, rest)| rest.trim_start());
            return api_key_prefix(credential).or_else(|| token_prefix(credential));
        }
        let key = self.api_key.as_ref().and_then(|v| v.to_str().ok())?;
        if cfg!(feature = "api-key") {
            api_key_prefix(key)
        } else {
            token_prefix(key)
        }
    }
}

/// An API key's labels and public key id (`pc_live_3kq9x0c1v2b7`), never
/// its secret; `None` for a credential not shaped like one.
#[cfg(feature = "api-key")]
fn api_key_prefix(credential: &str) -> Option<&str> {
    crate::api_key::public_prefix(credential)
}

#[cfg(not(feature = "api-key"))]
fn api_key_prefix(_credential: &str) -> Option<&str> {
    None
}

/// What `RequireLayer` found missing (`missing scope orders:write`).
#[cfg(feature = "authorize")]
fn missing_permissions<B>(response: &Response<B>) -> Option<String> {
    response
        .extensions()
        .get::<crate::authorize::MissingPermissions>()
        .map(ToString::to_string)
}

#[cfg(not(feature = "authorize"))]
fn missing_permissions<B>(_response: &Response<B>) -> Option<String> {
    None
}

/// The trace-id field of a version-00 `traceparent`, if well formed and not
/// all zeros.
pub(crate) fn traceparent_trace_id(value: &str) -> Option<&str> {
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

/// The decision a response reports, if any layer or handler took one.
pub(crate) struct Decision {
    kind: EventKind,
    reason: Option<FailureReason>,
    method: Option<AuthMethod>,
    /// Who it is about, copied: the outcome's subject or identifier, or the
    /// rejection's subject.
    user: Option<User>,
    shadow: bool,
    fallback: bool,
    layer: &'static str,
    /// What an authorization refusal found missing.
    missing: Option<String>,
}

impl Decision {
    pub(crate) fn of<B>(response: &Response<B>) -> Option<Self> {
        let outcome = AuthOutcome::of(response);
        let rejection = response.extensions().get::<Rejection>();
        let missing = missing_permissions(response);
        let user = match outcome {
            Some(outcome) => outcome.subject().or_else(|| outcome.identifier()),
            None => rejection.and_then(Rejection::subject),
        }
        .map(|user| User::new(user.as_bytes()));
        match (outcome, rejection) {
            // Authenticated, then refused further in (authorization, CSRF
            // after login, …): the refusal is the decision.
            (Some(outcome), Some(rejection)) if outcome.is_success() => Some(Self {
                kind: kind_of_reason(rejection.reason()),
                reason: Some(rejection.reason()),
                method: Some(outcome.method()),
                user,
                shadow: false,
                fallback: outcome.is_fallback(),
                layer: layer_of_reason(rejection.reason(), Some(outcome.method())),
                missing,
            }),
            (Some(outcome), _) => Some(Self {
                kind: match outcome.reason() {
                    None => EventKind::AuthSuccess,
                    Some(FailureReason::TokenExpired) => EventKind::TokenExpired,
                    Some(_) => EventKind::AuthFailure,
                },
                reason: outcome.reason(),
                method: Some(outcome.method()),
                user,
                shadow: outcome.is_shadow(),
                fallback: outcome.is_fallback(),
                layer: method_layer(outcome.method()),
                missing: None,
            }),
            (None, Some(rejection)) => Some(Self {
                kind: kind_of_reason(rejection.reason()),
                reason: Some(rejection.reason()),
                method: None,
                user,
                shadow: false,
                fallback: false,
                layer: layer_of_reason(rejection.reason(), None),
                missing,
            }),
            (None, None) => None,
        }
    }

    /// Counts the decision's metrics, on the request path.
    pub(crate) fn count(&self, shared: &Shared) {
        match (self.reason, self.shadow) {
            (None, _) => {
                if let Some(method) = self.method {
                    shared.metrics.success(method);
                }
            }
            (Some(reason), true) => shared.metrics.shadow(reason),
            (Some(reason), false) => shared.metrics.failure(reason, self.method),
        }
    }
}

// Room in a queued entry for each copied value; longer values spill to the
// heap (`Copied`). Most paths, user agents and subjects fit.
type Endpoint = Copied<128>;
type UserAgent = Copied<256>;
type TraceId = Copied<64>;
type Prefix = Copied<48>;
type User = Copied<64>;

/// One audited request, waiting in the queue. It owns no heap memory
/// unless a value spilled or the response carried events or a missing
/// permission: the consumer, on another thread, frees nothing the request
/// thread allocated (module [`copied`](super::copied)).
pub(crate) struct RequestEntry {
    timestamp: SystemTime,
    status: u16,
    method: Method,
    ip: Option<IpAddr>,
    /// The path, cut to what `sanitize` reads.
    endpoint: Endpoint,
    /// The raw header bytes, cut to what `sanitize` reads.
    user_agent: Option<UserAgent>,
    trace_id: Option<TraceId>,
    token_prefix: Option<Prefix>,
    decision: Option<Decision>,
    events: Vec<SecurityEvent>,
}

impl RequestEntry {
    /// Counts metrics and captures the response's decision and events; `None`
    /// when there is nothing to record.
    pub(crate) fn capture<B>(
        shared: &Shared,
        facts: &RequestFacts,
        response: &Response<B>,
    ) -> Option<Self> {
        let decision = Decision::of(response);
        let events = SecurityEvents::of(response);
        if decision.is_none() && events.is_empty() {
            return None;
        }
        if let Some(decision) = &decision {
            decision.count(shared);
        }
        for event in events {
            count_event(shared, event);
        }
        Some(Self {
            timestamp: shared.clock.now(),
            status: response.status().as_u16(),
            method: facts.method.clone(),
            ip: facts.ip,
            endpoint: Endpoint::new(enough_chars(facts.uri.path(), MAX_ENDPOINT).as_bytes()),
            user_agent: facts
                .user_agent
                .as_ref()
                .map(|v| UserAgent::new(enough_lossy_bytes(v.as_bytes(), MAX_USER_AGENT))),
            trace_id: facts.trace_id().map(|id| TraceId::new(id.as_bytes())),
            token_prefix: facts.token_prefix().map(|p| Prefix::new(p.as_bytes())),
            decision,
            events: events.to_vec(),
        })
    }

    /// The records: the decision, unless a layer reported the same kind of
    /// event itself (its record carries more: counts, lock end), then one
    /// per event.
    pub(crate) fn into_records(self, shared: &Shared, out: &mut Vec<AuditRecord>) {
        let trace_id: Arc<str> = match &self.trace_id {
            Some(id) => id.as_str().into(),
            None => shared.new_trace_id().into(),
        };
        let endpoint = sanitize(self.endpoint.as_str(), MAX_ENDPOINT);
        let user_agent = self
            .user_agent
            .as_ref()
            .map(|v| sanitize(&String::from_utf8_lossy(v.as_bytes()), MAX_USER_AGENT));
        let prefix: Option<Box<str>> = self.token_prefix.as_ref().map(|p| p.as_str().into());
        let base = |kind: EventKind| {
            let mut record = AuditRecord::new(kind, self.timestamp, trace_id.clone());
            record.ip_address = self.ip;
            record.endpoint = Some(endpoint.clone());
            record.http_method = Some(self.method.as_str().into());
            record.user_agent.clone_from(&user_agent);
            record.status = Some(self.status);
            record.token_prefix.clone_from(&prefix);
            record
        };
        if let Some(decision) = &self.decision
            && !self
                .events
                .iter()
                .any(|event| event.kind() == decision.kind)
        {
            let mut record = base(decision.kind);
            record.failure_reason = decision.reason;
            record.auth_method = decision.method;
            record.user_id = decision
                .user
                .as_ref()
                .map(|user| shared.pseudonyms.identifier(user.as_str()));
            record.shadow = decision.shadow;
            record.fallback = decision.fallback;
            record.layer = Some(decision.layer);
            record.detail = decision.missing.clone().map(Into::into);
            out.push(record);
        }
        for event in &self.events {
            let mut record = base(event.kind());
            fill_from_event(&mut record, event, self.ip, &shared.pseudonyms);
            out.push(record);
        }
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
    fn a_typical_entry_owns_no_heap_memory_and_stays_small() {
        use crate::{AuthOutcome, Principal};

        let request = Request::get("/api/orders/42?page=2")
            .header(
                USER_AGENT,
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36",
            )
            .header(AUTHORIZATION, "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig")
            .header(
                TRACEPARENT,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body(())
            .unwrap();
        let facts = RequestFacts::new(&request, &TrustedProxies::none());
        let mut response = Response::new(());
        let principal = Principal::new("user-7f3a9c", crate::PrincipalKind::User);
        AuthOutcome::authenticated(AuthMethod::Jwt, &principal).attach(&mut response);
        let auditor = crate::audit::Auditor::builder();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let auditor = runtime.block_on(async { auditor.build().unwrap() });
        let entry = RequestEntry::capture(&auditor.shared, &facts, &response).unwrap();
        assert!(entry.endpoint.is_inline());
        assert_eq!(entry.endpoint.as_str(), "/api/orders/42");
        assert!(entry.user_agent.as_ref().unwrap().is_inline());
        assert_eq!(
            entry.trace_id.as_ref().unwrap().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(entry.token_prefix.as_ref().unwrap().as_str(), "eyJhbG");
        let user = entry.decision.as_ref().unwrap().user.as_ref().unwrap();
        assert!(user.is_inline());
        assert_eq!(user.as_str(), "user-7f3a9c");
        assert!(entry.events.is_empty() && entry.decision.as_ref().unwrap().missing.is_none());
        // The queue holds up to `capacity` of these by value.
        assert!(size_of::<super::super::auditor::Pending>() <= 1024);
    }

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
