//! Why a request was refused, and how each reason maps to HTTP and gRPC.
//!
//! There is one table, [`FailureReason`]'s methods: every layer, renderer,
//! metric and event reads it from here, so a reason always answers the same
//! way whichever layer raised it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// A bounded, stable reason for refusing a request.
///
/// The names are the values of the `reason` metric label and of the
/// `failure_reason` event field, so they never carry user data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FailureReason {
    /// No credential of the expected kind was sent.
    MissingToken,
    /// The request was malformed: two credentials, an empty bearer value.
    InvalidRequest,
    /// A token that cannot be accepted: malformed, wrong type, wrong issuer
    /// or audience, unknown key.
    InvalidToken,
    /// A well-formed token past its expiry.
    TokenExpired,
    /// A token whose signature does not verify.
    InvalidSignature,
    /// A token revoked by id, by family or by a per-subject watermark.
    TokenRevoked,
    /// A valid token for a subject that no longer exists.
    UserNotFound,
    /// A valid token for a disabled subject.
    UserDisabled,
    /// An API key that is malformed, unknown or has the wrong secret.
    InvalidApiKey,
    /// A revoked API key.
    ApiKeyRevoked,
    /// An expired API key.
    ApiKeyExpired,
    /// Wrong username or password, reported by a login handler.
    InvalidCredentials,
    /// Authenticated, but lacking a required scope or role.
    InsufficientPermissions,
    /// A state-changing request without a CSRF token.
    CsrfMissing,
    /// A CSRF token that does not match.
    CsrfMismatch,
    /// A request from an origin that is not trusted.
    CrossOrigin,
    /// The client address is on the block list.
    IpBlocked,
    /// A CAPTCHA must be solved first.
    CaptchaRequired,
    /// The CAPTCHA answer was rejected.
    CaptchaInvalid,
    /// Too many failures: the account is locked for a while.
    AccountLocked,
    /// Too many requests from this client.
    RateLimited,
    /// A store or provider needed for the decision could not answer.
    UpstreamUnavailable,
}

/// gRPC status codes used by rejections (a subset of `google.rpc.Code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 3: the request itself is malformed.
    InvalidArgument,
    /// 7: authenticated but not allowed.
    PermissionDenied,
    /// 8: a limit was hit.
    ResourceExhausted,
    /// 9: a precondition (a CAPTCHA) must be met first.
    FailedPrecondition,
    /// 14: a dependency is unavailable.
    Unavailable,
    /// 16: no valid credentials.
    Unauthenticated,
}

impl GrpcCode {
    /// The numeric code sent in `grpc-status`.
    #[must_use]
    pub const fn as_i32(self) -> i32 {
        match self {
            Self::InvalidArgument => 3,
            Self::PermissionDenied => 7,
            Self::ResourceExhausted => 8,
            Self::FailedPrecondition => 9,
            Self::Unavailable => 14,
            Self::Unauthenticated => 16,
        }
    }
}

impl FailureReason {
    /// Every reason, for exhaustive tests and pre-registered metrics.
    pub const ALL: [Self; 22] = [
        Self::MissingToken,
        Self::InvalidRequest,
        Self::InvalidToken,
        Self::TokenExpired,
        Self::InvalidSignature,
        Self::TokenRevoked,
        Self::UserNotFound,
        Self::UserDisabled,
        Self::InvalidApiKey,
        Self::ApiKeyRevoked,
        Self::ApiKeyExpired,
        Self::InvalidCredentials,
        Self::InsufficientPermissions,
        Self::CsrfMissing,
        Self::CsrfMismatch,
        Self::CrossOrigin,
        Self::IpBlocked,
        Self::CaptchaRequired,
        Self::CaptchaInvalid,
        Self::AccountLocked,
        Self::RateLimited,
        Self::UpstreamUnavailable,
    ];

    /// The stable snake_case name (`invalid_token`, `account_locked`, …).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::InvalidSignature => "invalid_signature",
            Self::TokenRevoked => "token_revoked",
            Self::UserNotFound => "user_not_found",
            Self::UserDisabled => "user_disabled",
            Self::InvalidApiKey => "invalid_api_key",
            Self::ApiKeyRevoked => "api_key_revoked",
            Self::ApiKeyExpired => "api_key_expired",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InsufficientPermissions => "insufficient_permissions",
            Self::CsrfMissing => "csrf_missing",
            Self::CsrfMismatch => "csrf_mismatch",
            Self::CrossOrigin => "cross_origin",
            Self::IpBlocked => "ip_blocked",
            Self::CaptchaRequired => "captcha_required",
            Self::CaptchaInvalid => "captcha_invalid",
            Self::AccountLocked => "account_locked",
            Self::RateLimited => "rate_limited",
            Self::UpstreamUnavailable => "upstream_unavailable",
        }
    }

    /// The HTTP status this reason answers with.
    #[must_use]
    pub const fn http_status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::MissingToken
            | Self::InvalidToken
            | Self::TokenExpired
            | Self::InvalidSignature
            | Self::TokenRevoked
            | Self::UserNotFound
            | Self::UserDisabled
            | Self::InvalidApiKey
            | Self::ApiKeyRevoked
            | Self::ApiKeyExpired
            | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::InsufficientPermissions
            | Self::CsrfMissing
            | Self::CsrfMismatch
            | Self::CrossOrigin
            | Self::IpBlocked
            | Self::CaptchaRequired
            | Self::CaptchaInvalid => StatusCode::FORBIDDEN,
            Self::AccountLocked | Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status this reason answers with when the request is gRPC.
    #[must_use]
    pub const fn grpc_code(self) -> GrpcCode {
        match self {
            Self::MissingToken
            | Self::InvalidRequest
            | Self::InvalidToken
            | Self::TokenExpired
            | Self::InvalidSignature
            | Self::TokenRevoked
            | Self::UserNotFound
            | Self::UserDisabled
            | Self::InvalidApiKey
            | Self::ApiKeyRevoked
            | Self::ApiKeyExpired
            | Self::InvalidCredentials => GrpcCode::Unauthenticated,
            Self::InsufficientPermissions
            | Self::CsrfMissing
            | Self::CsrfMismatch
            | Self::CrossOrigin
            | Self::IpBlocked => GrpcCode::PermissionDenied,
            Self::CaptchaRequired | Self::CaptchaInvalid => GrpcCode::FailedPrecondition,
            Self::AccountLocked | Self::RateLimited => GrpcCode::ResourceExhausted,
            Self::UpstreamUnavailable => GrpcCode::Unavailable,
        }
    }

    /// The RFC 6750 `error=` code for a `WWW-Authenticate` challenge, if any.
    ///
    /// `None` for [`MissingToken`](Self::MissingToken): RFC 6750 §3 says a
    /// request that carried no credentials gets a challenge without an error
    /// code.
    #[must_use]
    pub const fn bearer_error(self) -> Option<&'static str> {
        match self {
            Self::MissingToken => None,
            Self::InvalidRequest => Some("invalid_request"),
            Self::InsufficientPermissions => Some("insufficient_scope"),
            Self::InvalidToken
            | Self::TokenExpired
            | Self::InvalidSignature
            | Self::TokenRevoked
            | Self::UserNotFound
            | Self::UserDisabled
            | Self::InvalidApiKey
            | Self::ApiKeyRevoked
            | Self::ApiKeyExpired
            | Self::InvalidCredentials => Some("invalid_token"),
            _ => None,
        }
    }

    /// A fixed, generic sentence for response bodies.
    ///
    /// It never says more than the reason: bodies must not help an attacker
    /// tell one failure from another beyond the reason code itself.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Self::MissingToken => "authentication is required",
            Self::InvalidRequest => "the request is malformed",
            Self::InvalidToken
            | Self::TokenExpired
            | Self::InvalidSignature
            | Self::TokenRevoked
            | Self::UserNotFound
            | Self::UserDisabled => "the access token is not valid",
            Self::InvalidApiKey | Self::ApiKeyRevoked | Self::ApiKeyExpired => {
                "the API key is not valid"
            }
            Self::InvalidCredentials => "the credentials are not valid",
            Self::InsufficientPermissions => "the credentials do not grant access to this resource",
            Self::CsrfMissing | Self::CsrfMismatch | Self::CrossOrigin => {
                "the request failed cross-site request forgery checks"
            }
            Self::IpBlocked => "requests from this address are blocked",
            Self::CaptchaRequired => "a CAPTCHA must be solved",
            Self::CaptchaInvalid => "the CAPTCHA answer was not accepted",
            Self::AccountLocked => "too many failed attempts: try again later",
            Self::RateLimited => "too many requests: try again later",
            Self::UpstreamUnavailable => "the service cannot decide right now: try again later",
        }
    }

    /// Whether this reason counts as an authentication failure (401 family).
    #[must_use]
    pub const fn is_authentication_failure(self) -> bool {
        matches!(self.grpc_code(), GrpcCode::Unauthenticated)
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authentication scheme and realm for a `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    scheme: Cow<'static, str>,
    realm: Option<Cow<'static, str>>,
}

impl Challenge {
    /// A `Bearer` challenge (RFC 6750).
    #[must_use]
    pub const fn bearer() -> Self {
        Self {
            scheme: Cow::Borrowed("Bearer"),
            realm: None,
        }
    }

    /// A challenge for another scheme (`ApiKey`, …).
    pub fn new(scheme: impl Into<Cow<'static, str>>) -> Self {
        Self {
            scheme: scheme.into(),
            realm: None,
        }
    }

    /// Sets the `realm` parameter.
    #[must_use]
    pub fn with_realm(mut self, realm: impl Into<Cow<'static, str>>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The scheme name.
    #[must_use]
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The realm, if set.
    #[must_use]
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }
}

/// The challenges of a rejection: none, one (no allocation), or several
/// (a composed route accepting several schemes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Challenges {
    #[default]
    None,
    One(Challenge),
    Many(Arc<[Challenge]>),
}

impl Challenges {
    const fn none() -> Self {
        Self::None
    }

    fn as_slice(&self) -> &[Challenge] {
        match self {
            Self::None => &[],
            Self::One(challenge) => std::slice::from_ref(challenge),
            Self::Many(challenges) => challenges,
        }
    }
}

/// A refused request.
///
/// Layers never return rejections as `Service::Error`: they answer with a
/// response built by a responder and put the `Rejection` in that response's
/// extensions, where outer layers (lockout, audit) find it.
///
/// A rejection may carry several [`Challenge`]s: a route that accepts a
/// bearer token *or* an API key answers a request without credentials with
/// both. They are rendered into **one** `WWW-Authenticate` value, the
/// challenges separated by commas (RFC 9110 §11.6.1 allows a list of
/// challenges in one field value), e.g. `Bearer realm="api", ApiKey`.
///
/// The `Display` output is the reason only; the optional
/// [`detail`](Self::detail) is a fixed internal note for logs and tests and
/// is never rendered into a response.
#[derive(Clone)]
pub struct Rejection {
    reason: FailureReason,
    challenges: Challenges,
    required_scope: Option<Arc<str>>,
    retry_after: Option<Duration>,
    subject: Option<Arc<str>>,
    detail: Option<&'static str>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Rejection {
    /// A rejection for `reason`.
    #[must_use]
    pub const fn new(reason: FailureReason) -> Self {
        Self {
            reason,
            challenges: Challenges::none(),
            required_scope: None,
            retry_after: None,
            subject: None,
            detail: None,
            source: None,
        }
    }

    /// Sets the `WWW-Authenticate` challenge sent with a 401 or 403,
    /// replacing any set before.
    #[must_use]
    pub fn with_challenge(mut self, challenge: Challenge) -> Self {
        self.challenges = Challenges::One(challenge);
        self
    }

    /// Sets several challenges, one per scheme the route accepts, replacing
    /// any set before. Duplicates are dropped; the order is kept (clients
    /// tend to try the first scheme they support).
    #[must_use]
    pub fn with_challenges(mut self, challenges: impl IntoIterator<Item = Challenge>) -> Self {
        let mut unique: Vec<Challenge> = Vec::new();
        for challenge in challenges {
            if !unique.contains(&challenge) {
                unique.push(challenge);
            }
        }
        self.challenges = match unique.len() {
            0 => Challenges::None,
            1 => Challenges::One(unique.remove(0)),
            _ => Challenges::Many(unique.into()),
        };
        self
    }

    /// Names the scope(s) that would have been enough (RFC 6750 `scope=`).
    #[must_use]
    pub fn with_required_scope(mut self, scope: impl Into<Arc<str>>) -> Self {
        self.required_scope = Some(scope.into());
        self
    }

    /// Tells the client when to try again (`Retry-After`).
    #[must_use]
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// Records who the rejected credential claimed to be, for audit only.
    ///
    /// Set it only from a credential whose signature was verified (an
    /// expired token, a revoked one), never from unverified input — with
    /// one exception: the lockout layer's `account_locked` refusals carry
    /// the canonical account the attempt was refused for (what the client
    /// typed, already counted), so the audit record says which account is
    /// being hammered. Do not treat the subject of an `AccountLocked`
    /// rejection as authenticated.
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<Arc<str>>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Adds a fixed internal note (`"kid not found"`), never rendered.
    #[must_use]
    pub fn with_detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Keeps the error that caused the rejection (a [`StoreError`]).
    ///
    /// [`StoreError`]: crate::StoreError
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The reason.
    #[must_use]
    pub fn reason(&self) -> FailureReason {
        self.reason
    }

    /// The HTTP status for this rejection.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.reason.http_status()
    }

    /// The gRPC code for this rejection.
    #[must_use]
    pub fn grpc_code(&self) -> GrpcCode {
        self.reason.grpc_code()
    }

    /// The first challenge, if the layer set any.
    #[must_use]
    pub fn challenge(&self) -> Option<&Challenge> {
        self.challenges.as_slice().first()
    }

    /// Every challenge, in the order they are rendered.
    #[must_use]
    pub fn challenges(&self) -> &[Challenge] {
        self.challenges.as_slice()
    }

    /// The scope that would have been enough, if known.
    #[must_use]
    pub fn required_scope(&self) -> Option<&str> {
        self.required_scope.as_deref()
    }

    /// When to retry, if known.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The verified subject of the rejected credential, if known.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The internal note, if any.
    #[must_use]
    pub fn detail(&self) -> Option<&'static str> {
        self.detail
    }

    /// The `WWW-Authenticate` value for this rejection, if it needs one.
    ///
    /// 401 responses always get one (RFC 7235 §3.1), falling back to a bare
    /// `Bearer` challenge; 403 `insufficient_permissions` gets one with
    /// `error="insufficient_scope"` when a challenge was set. Without
    /// credentials (`missing_token`) no `error=` is sent (RFC 6750 §3).
    ///
    /// Several challenges are written into this one value, separated by
    /// `", "`; each gets the same `error=` parameters.
    #[must_use]
    pub fn www_authenticate(&self) -> Option<String> {
        let is_401 = self.status() == StatusCode::UNAUTHORIZED;
        let is_400 = self.status() == StatusCode::BAD_REQUEST;
        if !(is_401 || is_400 || self.reason == FailureReason::InsufficientPermissions) {
            return None;
        }
        let default = [Challenge::bearer()];
        let challenges = match (self.challenges.as_slice(), is_401) {
            ([], true) => &default[..],
            ([], false) => return None,
            (set, _) => set,
        };
        let mut value = String::with_capacity(64 * challenges.len());
        for (i, challenge) in challenges.iter().enumerate() {
            if i > 0 {
                value.push_str(", ");
            }
            self.push_challenge(&mut value, challenge);
        }
        Some(value)
    }

    fn push_challenge(&self, value: &mut String, challenge: &Challenge) {
        value.push_str(challenge.scheme());
        let mut params: [(&str, &str); 4] = [("", ""); 4];
        let mut n = 0;
        if let Some(realm) = challenge.realm() {
            params[n] = ("realm", realm);
            n += 1;
        }
        if let Some(error) = self.reason.bearer_error() {
            params[n] = ("error", error);
            params[n + 1] = ("error_description", self.reason.description());
            n += 2;
        }
        if self.reason == FailureReason::InsufficientPermissions
            && let Some(scope) = self.required_scope()
        {
            params[n] = ("scope", scope);
            n += 1;
        }
        for (i, (name, val)) in params[..n].iter().enumerate() {
            value.push_str(if i == 0 { " " } else { ", " });
            value.push_str(name);
            value.push_str("=\"");
            push_quoted(value, val);
            value.push('"');
        }
    }
}

/// Appends `s` as the inside of an RFC 7230 quoted-string, dropping
/// characters a header value cannot carry.
fn push_quoted(out: &mut String, s: &str) {
    // Usual case (realms, error codes, descriptions): nothing to escape.
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("reason", &self.reason)
            .field("challenges", &self.challenges.as_slice())
            .field("required_scope", &self.required_scope)
            .field("retry_after", &self.retry_after)
            .field("subject", &self.subject.as_ref().map(|_| "<set>"))
            .field("detail", &self.detail)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request rejected: {}", self.reason)
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<FailureReason> for Rejection {
    fn from(reason: FailureReason) -> Self {
        Self::new(reason)
    }
}

#[cfg(feature = "tonic")]
impl From<Rejection> for tonic::Status {
    /// The reason's gRPC code with its fixed description as the message.
    fn from(rejection: Rejection) -> Self {
        let code = tonic::Code::from_i32(rejection.grpc_code().as_i32());
        Self::new(code, rejection.reason().description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_unique_name_and_a_mapping() {
        let mut names: Vec<_> = FailureReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FailureReason::ALL.len());
        for r in FailureReason::ALL {
            assert!(r.http_status().is_client_error() || r.http_status().is_server_error());
            assert!(!r.description().is_empty());
        }
    }

    #[test]
    fn design_table_statuses() {
        use FailureReason as R;
        for r in [
            R::MissingToken,
            R::InvalidToken,
            R::TokenExpired,
            R::InvalidSignature,
            R::TokenRevoked,
            R::UserNotFound,
            R::UserDisabled,
            R::InvalidApiKey,
            R::InvalidCredentials,
        ] {
            assert_eq!(r.http_status(), 401, "{r}");
            assert_eq!(r.grpc_code().as_i32(), 16, "{r}");
        }
        assert_eq!(R::InsufficientPermissions.http_status(), 403);
        assert_eq!(R::InsufficientPermissions.grpc_code().as_i32(), 7);
        for r in [
            R::CsrfMissing,
            R::CsrfMismatch,
            R::CrossOrigin,
            R::IpBlocked,
        ] {
            assert_eq!(
                (r.http_status().as_u16(), r.grpc_code().as_i32()),
                (403, 7),
                "{r}"
            );
        }
        for r in [R::CaptchaRequired, R::CaptchaInvalid] {
            assert_eq!(
                (r.http_status().as_u16(), r.grpc_code().as_i32()),
                (403, 9),
                "{r}"
            );
        }
        for r in [R::AccountLocked, R::RateLimited] {
            assert_eq!(
                (r.http_status().as_u16(), r.grpc_code().as_i32()),
                (429, 8),
                "{r}"
            );
        }
        assert_eq!(R::UpstreamUnavailable.http_status(), 503);
        assert_eq!(R::UpstreamUnavailable.grpc_code().as_i32(), 14);
        assert_eq!(R::InvalidRequest.http_status(), 400);
    }

    #[test]
    fn no_error_code_without_credentials() {
        let r = Rejection::new(FailureReason::MissingToken)
            .with_challenge(Challenge::bearer().with_realm("api"));
        assert_eq!(r.www_authenticate().unwrap(), r#"Bearer realm="api""#);
        let r = Rejection::new(FailureReason::MissingToken);
        assert_eq!(r.www_authenticate().unwrap(), "Bearer");
    }

    #[test]
    fn invalid_token_challenge_is_generic() {
        for reason in [
            FailureReason::TokenExpired,
            FailureReason::InvalidSignature,
            FailureReason::TokenRevoked,
        ] {
            let r = Rejection::new(reason).with_challenge(Challenge::bearer().with_realm("api"));
            assert_eq!(
                r.www_authenticate().unwrap(),
                r#"Bearer realm="api", error="invalid_token", error_description="the access token is not valid""#
            );
        }
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let r = Rejection::new(FailureReason::InsufficientPermissions)
            .with_challenge(Challenge::bearer())
            .with_required_scope("orders:write \"x\"");
        let v = r.www_authenticate().unwrap();
        assert!(v.contains(r#"error="insufficient_scope""#), "{v}");
        assert!(v.contains(r#"scope="orders:write \"x\"""#), "{v}");
    }

    #[test]
    fn several_challenges_share_one_header_value() {
        let r = Rejection::new(FailureReason::MissingToken).with_challenges([
            Challenge::bearer().with_realm("api"),
            Challenge::new("ApiKey"),
            Challenge::bearer().with_realm("api"),
        ]);
        assert_eq!(r.challenges().len(), 2, "duplicates are dropped");
        assert_eq!(r.challenge().unwrap().scheme(), "Bearer");
        assert_eq!(
            r.www_authenticate().unwrap(),
            r#"Bearer realm="api", ApiKey"#
        );
        assert!(http::HeaderValue::from_str(&r.www_authenticate().unwrap()).is_ok());

        let r = Rejection::new(FailureReason::InvalidApiKey)
            .with_challenges([Challenge::new("ApiKey").with_realm("api")]);
        assert_eq!(
            r.www_authenticate().unwrap(),
            r#"ApiKey realm="api", error="invalid_token", error_description="the API key is not valid""#
        );
        let r = Rejection::new(FailureReason::MissingToken).with_challenges([]);
        assert_eq!(
            r.www_authenticate().unwrap(),
            "Bearer",
            "401 always has one"
        );
        assert!(r.challenges().is_empty());
        // A later single challenge replaces the list.
        let r = Rejection::new(FailureReason::MissingToken)
            .with_challenges([Challenge::bearer(), Challenge::new("ApiKey")])
            .with_challenge(Challenge::new("ApiKey"));
        assert_eq!(r.www_authenticate().unwrap(), "ApiKey");
    }

    #[test]
    fn quoted_values_drop_control_characters() {
        let r = Rejection::new(FailureReason::InvalidToken)
            .with_challenge(Challenge::bearer().with_realm("a\r\nb\u{e9}"));
        let v = r.www_authenticate().unwrap();
        assert!(v.starts_with(r#"Bearer realm="ab""#), "{v}");
        assert!(http::HeaderValue::from_str(&v).is_ok());
    }
}
