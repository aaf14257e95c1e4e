//! Token verification as a plain method: the decision logic of `JwtLayer`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::{Principal, PrincipalKind, SharedClock, SystemClock};

use super::Algorithm;
use super::error::JwtError;
use super::keyset::KeySet;
use super::parse::{self, Claims, Header};
use crate::ConfigError;

/// Which `typ` header values a verifier accepts.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TypPolicy {
    /// Access tokens: `typ` absent, `JWT`, `at+jwt` or `application/at+jwt`.
    /// Refresh tokens (`refresh+jwt`), ID tokens and anything else are
    /// refused, so one kind of token cannot stand in for another.
    #[default]
    AccessToken,
    /// Only these exact values (RFC 9068 resource servers use
    /// `["at+jwt", "application/at+jwt"]`). A token without `typ` fails.
    Exactly(Vec<Cow<'static, str>>),
    /// No check. Only for issuers that give different token kinds different
    /// keys or audiences.
    Any,
}

impl TypPolicy {
    /// RFC 9068 §4: `at+jwt` or `application/at+jwt`, nothing else.
    #[must_use]
    pub fn rfc9068() -> Self {
        Self::Exactly(vec![
            Cow::Borrowed("at+jwt"),
            Cow::Borrowed("application/at+jwt"),
        ])
    }

    fn accepts(&self, typ: Option<&str>) -> bool {
        match self {
            Self::AccessToken => {
                matches!(typ, None | Some("JWT" | "at+jwt" | "application/at+jwt"))
            }
            Self::Exactly(allowed) => typ.is_some_and(|t| allowed.iter().any(|a| a == t)),
            Self::Any => true,
        }
    }
}

/// Where keys come from.
#[derive(Clone)]
pub(crate) enum KeySource {
    Static(Arc<KeySet>),
    #[cfg(feature = "jwks")]
    Remote(super::jwks::RemoteJwks),
}

/// A token that passed every check.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    principal: Principal,
    family: Option<Arc<str>>,
    expires_at: i64,
    auth_time: Option<i64>,
    in_grace: bool,
}

impl VerifiedToken {
    /// The authenticated principal.
    #[must_use]
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Takes the principal.
    #[must_use]
    pub fn into_principal(self) -> Principal {
        self.principal
    }

    /// The refresh family (`fam` claim) the token belongs to, if any.
    #[must_use]
    pub fn family(&self) -> Option<&str> {
        self.family.as_deref()
    }

    /// `exp`, in seconds since the epoch.
    #[must_use]
    pub fn expires_at_unix(&self) -> i64 {
        self.expires_at
    }

    /// `auth_time`, when present.
    #[must_use]
    pub fn auth_time_unix(&self) -> Option<i64> {
        self.auth_time
    }

    /// Whether the token was accepted only thanks to the expiry grace period.
    #[must_use]
    pub fn in_grace_period(&self) -> bool {
        self.in_grace
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) issuers: Vec<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) leeway: i64,
    pub(crate) grace: i64,
    pub(crate) max_lifetime: Option<i64>,
    pub(crate) require_iat: bool,
    pub(crate) require_jti: bool,
    pub(crate) typ: TypPolicy,
    pub(crate) crit: Vec<String>,
    pub(crate) max_token_len: usize,
}

/// Verifies compact JWS tokens against keys and a validation policy.
///
/// This is `JwtLayer`'s decision logic as a plain method, usable on its own
/// (a WebSocket handshake, a queue consumer). Build it with
/// [`JwtVerifier::builder`].
///
/// The checks, in order (cheap and unauthenticated first):
///
/// 1. length cap, then base64url alphabet and exactly three segments;
/// 2. header: strict base64url and JSON, no duplicate members, `alg` one of
///    the allowed algorithms (case-sensitive; `none` is not an algorithm),
///    `crit` per RFC 7515 §4.1.11, no `b64`/`enc`/`zip`, `typ` per policy;
/// 3. signature, with the key selected by `kid` and bound to `alg`
///    (`jku`, `x5u`, `jwk` and `x5c` are never used);
/// 4. claims, only after the signature verified: strict JSON, no duplicate
///    claims, typed `NumericDate`s; `exp` and `sub` required; `nbf` and
///    `iat` checked with the leeway; maximum lifetime; exact `iss`; `aud`
///    must name a configured audience, and is refused when none is
///    configured.
#[derive(Clone)]
pub struct JwtVerifier {
    pub(crate) keys: KeySource,
    pub(crate) policy: Arc<Policy>,
    pub(crate) clock: SharedClock,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A builder verifying with a fixed key set.
    pub fn builder(keys: KeySet) -> JwtVerifierBuilder {
        JwtVerifierBuilder::new(KeySource::Static(Arc::new(keys)))
    }

    /// A builder verifying with keys from a remote JWKS.
    #[cfg(feature = "jwks")]
    pub fn builder_remote(jwks: super::jwks::RemoteJwks) -> JwtVerifierBuilder {
        let mut builder = JwtVerifierBuilder::new(KeySource::Remote(jwks));
        builder.algorithms = Some(
            Algorithm::ALL
                .into_iter()
                .filter(|a| a.family() != super::algorithm::KeyFamily::Hmac)
                .collect(),
        );
        builder
    }

    /// Verifies `token` completely.
    ///
    /// # Errors
    ///
    /// The first check that fails, as a [`JwtError`].
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        self.verify_at(token, self.clock.now())
    }

    /// [`verify`](Self::verify) at a time the caller already read.
    pub(crate) fn verify_at(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<VerifiedToken, JwtError> {
        let payload = self.check_signature(token, now)?;
        // Claims of ordinary size are decoded on the stack; the one heap copy
        // is the shared buffer the principal keeps.
        let mut buf = [0u8; 1024];
        if base64::decoded_len_estimate(payload.len()) <= buf.len() {
            let len = parse::decode_into(payload, &mut buf)?;
            self.validate_claims(&buf[..len], now)
        } else {
            let decoded = URL_SAFE_NO_PAD
                .decode(payload)
                .map_err(|_| JwtError::Malformed("invalid base64url"))?;
            self.validate_claims(&decoded, now)
        }
    }

    /// Verifies as [`verify`](Self::verify), refreshing a remote JWKS once
    /// (within its cooldown) when the token names an unknown key.
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify).
    pub async fn verify_async(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        match self.verify(token) {
            Err(JwtError::UnknownKey) => match self.refresh_for_unknown_key().await {
                Ok(true) => self.verify(token),
                Ok(false) => Err(JwtError::UnknownKey),
                // The key source cannot answer: fail closed with 503 rather
                // than call a possibly valid token invalid.
                Err(err) => Err(JwtError::Unavailable(err)),
            },
            other => other,
        }
    }

    /// Whether an unknown-key failure might be cured by refreshing keys.
    pub(crate) fn has_remote_keys(&self) -> bool {
        match &self.keys {
            KeySource::Static(_) => false,
            #[cfg(feature = "jwks")]
            KeySource::Remote(_) => true,
        }
    }

    pub(crate) async fn refresh_for_unknown_key(
        &self,
    ) -> Result<bool, Arc<dyn std::error::Error + Send + Sync>> {
        match &self.keys {
            KeySource::Static(_) => Ok(false),
            #[cfg(feature = "jwks")]
            KeySource::Remote(remote) => remote
                .refresh_on_unknown_kid()
                .await
                .map_err(|e| Arc::new(e) as Arc<dyn std::error::Error + Send + Sync>),
        }
    }

    /// Checks the header and signature only and returns the decoded payload,
    /// without reading the claims. For JWS whose payload is not a JWT (test
    /// vectors, detached uses).
    ///
    /// # Errors
    ///
    /// As [`verify`](Self::verify), for steps 1–3.
    pub fn verify_signature(&self, token: &str) -> Result<Vec<u8>, JwtError> {
        let payload = self.check_signature(token, self.clock.now())?;
        URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| JwtError::Malformed("invalid base64url"))
    }

    /// Steps 1–3; returns the still-encoded payload segment.
    fn check_signature<'t>(&self, token: &'t str, now: SystemTime) -> Result<&'t str, JwtError> {
        let policy = &*self.policy;
        if token.len() > policy.max_token_len {
            return Err(JwtError::TooLarge);
        }
        let segments = parse::split(token)?;
        let mut header_buf = [0u8; parse::MAX_HEADER];
        let header_len = parse::decode_into(segments.header, &mut header_buf)?;
        let header = Header::parse(&header_buf[..header_len])?;
        if header.unsupported {
            return Err(JwtError::Malformed(
                "unsupported header member (b64, enc or zip)",
            ));
        }
        let alg = Algorithm::from_name(&header.alg).ok_or(JwtError::UnsupportedAlgorithm)?;
        if !policy.algorithms.contains(&alg) {
            return Err(JwtError::DisallowedAlgorithm);
        }
        header.check_crit(&policy.crit)?;
        if !policy.typ.accepts(header.typ.as_deref()) {
            return Err(JwtError::WrongType);
        }
        // Signatures up to RSA-4096 on the stack; RSA-8192 on the heap.
        let mut small = [0u8; 512];
        let large;
        let signature = if base64::decoded_len_estimate(segments.signature.len()) <= small.len() {
            let len = parse::decode_into(segments.signature, &mut small)?;
            &small[..len]
        } else {
            let mut buf = vec![0u8; parse::MAX_SIGNATURE];
            let len = parse::decode_into(segments.signature, &mut buf)?;
            buf.truncate(len);
            large = buf;
            &large[..]
        };
        let message = segments.signing_input.as_bytes();
        let kid = header.kid.as_deref();
        match &self.keys {
            KeySource::Static(keys) => keys.verify(alg, kid, now, message, signature)?,
            #[cfg(feature = "jwks")]
            KeySource::Remote(remote) => {
                remote.current().verify(alg, kid, now, message, signature)?
            }
        }
        Ok(segments.payload)
    }

    fn validate_claims(&self, payload: &[u8], now: SystemTime) -> Result<VerifiedToken, JwtError> {
        let policy = &*self.policy;
        let json = std::str::from_utf8(payload)
            .map_err(|_| JwtError::Malformed("claims are not UTF-8"))?;
        let claims = Claims::parse(json)?;
        let now = unix(now);

        let exp = claims.exp.ok_or(JwtError::MissingClaim("missing exp"))?;
        let sub = claims
            .sub
            .as_deref()
            .ok_or(JwtError::MissingClaim("missing sub"))?;
        if sub.is_empty() {
            return Err(JwtError::InvalidClaim("empty sub"));
        }
        if policy.require_jti && claims.jti.is_none() {
            return Err(JwtError::MissingClaim("missing jti"));
        }
        if policy.require_iat && claims.iat.is_none() {
            return Err(JwtError::MissingClaim("missing iat"));
        }
        if !policy.issuers.is_empty() {
            let iss = claims
                .iss
                .as_deref()
                .ok_or(JwtError::MissingClaim("missing iss"))?;
            if !policy.issuers.iter().any(|i| i == iss) {
                return Err(JwtError::WrongIssuer);
            }
        }
        match (&claims.aud, policy.audiences.is_empty()) {
            (None, true) => {}
            (None, false) => return Err(JwtError::MissingClaim("missing aud")),
            (Some(_), true) => return Err(JwtError::WrongAudience),
            (Some(aud), false) => {
                if !aud.iter().any(|a| policy.audiences.iter().any(|p| p == a)) {
                    return Err(JwtError::WrongAudience);
                }
            }
        }
        if let Some(nbf) = claims.nbf
            && nbf > now.saturating_add(policy.leeway)
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(iat) = claims.iat {
            if iat > now.saturating_add(policy.leeway) {
                return Err(JwtError::IssuedInFuture);
            }
            if exp < iat {
                return Err(JwtError::InvalidClaim("exp before iat"));
            }
        }
        if let Some(max) = policy.max_lifetime {
            let from = claims.iat.unwrap_or(now);
            if exp.saturating_sub(from) > max
                || exp.saturating_sub(now) > max.saturating_add(policy.leeway)
            {
                return Err(JwtError::LifetimeTooLong);
            }
        }
        if now
            > exp
                .saturating_add(policy.leeway)
                .saturating_add(policy.grace)
        {
            return Err(JwtError::Expired {
                subject: sub.to_owned(),
            });
        }
        let in_grace = now > exp.saturating_add(policy.leeway);

        let kind = match claims.client_id.as_deref() {
            Some(client) if client == sub => PrincipalKind::Service,
            _ => PrincipalKind::User,
        };
        // JSON text is UTF-8 and serde_json has just parsed it.
        let capacity = json.len() + claims.jti.as_ref().map_or(0, |j| j.len()) + 64;
        let mut principal = Principal::builder_with_capacity(sub, kind, capacity)
            .scopes(claims.scope_names())
            .expires_at(from_unix(exp))
            .raw_claims(json);
        if let Some(roles) = &claims.roles {
            principal = principal.roles(roles.iter());
        }
        if let Some(jti) = &claims.jti {
            principal = principal.token_id(jti.as_ref());
        }
        if let Some(iat) = claims.iat {
            principal = principal.issued_at(from_unix(iat));
        }
        Ok(VerifiedToken {
            principal: principal.build(),
            family: claims.fam.as_deref().map(Arc::from),
            expires_at: exp,
            auth_time: claims.auth_time,
            in_grace,
        })
    }

    /// The policy's leeway plus grace, for caches that recheck `exp`.
    pub(crate) fn expiry_slack(&self) -> i64 {
        self.policy.leeway.saturating_add(self.policy.grace)
    }
}

pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) fn from_unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// Builds a [`JwtVerifier`].
#[derive(Debug)]
#[must_use]
pub struct JwtVerifierBuilder {
    keys: KeySource,
    algorithms: Option<Vec<Algorithm>>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    grace: Duration,
    max_lifetime: Option<Duration>,
    require_iat: bool,
    require_jti: bool,
    typ: TypPolicy,
    crit: Vec<String>,
    max_token_len: usize,
    clock: SharedClock,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static(keys) => f.debug_tuple("Static").field(&keys.len()).finish(),
            #[cfg(feature = "jwks")]
            Self::Remote(remote) => f.debug_tuple("Remote").field(remote).finish(),
        }
    }
}

/// Default clock-skew leeway.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Default maximum token lifetime.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Default cap on a token's length, checked before any decoding.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

impl JwtVerifierBuilder {
    fn new(keys: KeySource) -> Self {
        Self {
            keys,
            algorithms: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            grace: Duration::ZERO,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            require_iat: false,
            require_jti: false,
            typ: TypPolicy::default(),
            crit: Vec::new(),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            clock: Arc::new(SystemClock),
        }
    }

    /// Allows only these algorithms (default: the algorithms of the
    /// configured keys; for a remote JWKS, every asymmetric algorithm).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Requires `iss` to equal `issuer` exactly (call again to allow more).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Requires `aud` to name `audience` (call again to allow more).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Clock-skew allowance for `exp`, `nbf` and `iat` (default 30 s, at
    /// most 5 minutes).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Accepts tokens up to `grace` past `exp` (after leeway), marking them
    /// [`in_grace_period`](VerifiedToken::in_grace_period). Default none;
    /// at most one hour.
    pub fn expiry_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Refuses tokens whose `exp` is more than `max` after `iat` (or after
    /// now). Default 24 hours; `None` disables the check.
    pub fn max_lifetime(mut self, max: Option<Duration>) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Requires `iat`.
    pub fn require_iat(mut self, yes: bool) -> Self {
        self.require_iat = yes;
        self
    }

    /// Requires `jti` (needed for per-token revocation).
    pub fn require_jti(mut self, yes: bool) -> Self {
        self.require_jti = yes;
        self
    }

    /// Sets the `typ` policy (default [`TypPolicy::AccessToken`]).
    pub fn typ(mut self, typ: TypPolicy) -> Self {
        self.typ = typ;
        self
    }

    /// Critical header extensions the application understands. Tokens
    /// listing any other name in `crit` are refused.
    pub fn understood_crit<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.crit = names.into_iter().map(Into::into).collect();
        self
    }

    /// Caps token length before decoding (default 8 KiB, 256 B to 64 KiB).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Reads time from `clock` (tests use a `FakeClock`).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the verifier.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoKeys`] without keys; [`ConfigError::Invalid`] for an
    /// empty algorithm list, one that no key can use, or settings out of
    /// range.
    pub fn build(self) -> Result<JwtVerifier, ConfigError> {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        if self.leeway > Duration::from_secs(300) {
            return Err(ConfigError::invalid("leeway", "more than 5 minutes"));
        }
        if self.grace > Duration::from_secs(3600) {
            return Err(ConfigError::invalid("expiry grace", "more than 1 hour"));
        }
        if !(256..=65_536).contains(&self.max_token_len) {
            return Err(ConfigError::invalid(
                "max token length",
                "must be 256 B to 64 KiB",
            ));
        }
        if self
            .issuers
            .iter()
            .chain(&self.audiences)
            .any(String::is_empty)
        {
            return Err(ConfigError::invalid("issuer/audience", "empty value"));
        }
        let algorithms = match (&self.keys, self.algorithms) {
            (KeySource::Static(keys), None) => {
                if keys.is_empty() {
                    return Err(ConfigError::NoKeys);
                }
                let mut algs: Vec<Algorithm> = keys.algorithms().collect();
                algs.sort_unstable();
                algs.dedup();
                algs
            }
            (KeySource::Static(keys), Some(algs)) => {
                if keys.is_empty() {
                    return Err(ConfigError::NoKeys);
                }
                if !algs.iter().any(|a| keys.algorithms().any(|k| k == *a)) {
                    return Err(ConfigError::invalid(
                        "algorithms",
                        "no configured key uses any of them",
                    ));
                }
                algs
            }
            #[cfg(feature = "jwks")]
            (KeySource::Remote(_), algs) => algs.unwrap_or_default(),
        };
        if algorithms.is_empty() {
            return Err(ConfigError::invalid("algorithms", "empty allow-list"));
        }
        Ok(JwtVerifier {
            keys: self.keys,
            policy: Arc::new(Policy {
                algorithms,
                issuers: self.issuers,
                audiences: self.audiences,
                leeway: secs(self.leeway),
                grace: secs(self.grace),
                max_lifetime: self.max_lifetime.map(secs),
                require_iat: self.require_iat,
                require_jti: self.require_jti,
                typ: self.typ,
                crit: self.crit,
                max_token_len: self.max_token_len,
            }),
            clock: self.clock,
        })
    }
}
