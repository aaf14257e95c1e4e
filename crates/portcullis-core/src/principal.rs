//! The authenticated caller, as authenticators hand it to the rest of the stack.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::de::DeserializeOwned;

/// What kind of credential produced a [`Principal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrincipalKind {
    /// A person, usually authenticated by a bearer token.
    User,
    /// A machine calling with an API key.
    ApiKey,
    /// A service authenticated by a token of its own (client credentials).
    Service,
}

impl PrincipalKind {
    /// Stable lowercase name, for events and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ApiKey => "api_key",
            Self::Service => "service",
        }
    }
}

/// The authenticated caller.
///
/// Authenticators (`JwtLayer`, `ApiKeyLayer`, …) insert one into the request
/// extensions when they accept a credential. Handlers read it with
/// `request.extensions().get::<Principal>()` or, with the `axum` feature, as
/// an extractor; authorization layers check its scopes and roles.
///
/// `Principal` is cheap to clone: everything is behind one shared pointer.
///
/// Its `Debug` output never shows claim values (they may hold emails or other
/// personal data) and masks a subject that looks like an email address.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    inner: Arc<Inner>,
}

#[derive(Clone, PartialEq, Eq)]
struct Inner {
    subject: Arc<str>,
    kind: PrincipalKind,
    scopes: Vec<String>,
    roles: Vec<String>,
    token_id: Option<String>,
    issued_at: Option<SystemTime>,
    expires_at: Option<SystemTime>,
    claims: Option<Arc<[u8]>>,
}

/// Builds a [`Principal`] in one allocation (authenticators use it on the
/// hot path; `Principal::with_*` is the convenient form elsewhere).
#[derive(Clone)]
#[must_use]
pub struct PrincipalBuilder {
    inner: Inner,
}

impl fmt::Debug for PrincipalBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrincipalBuilder").finish_non_exhaustive()
    }
}

impl PrincipalBuilder {
    /// Sets the granted scopes.
    pub fn scopes(mut self, scopes: Vec<String>) -> Self {
        self.inner.scopes = scopes;
        self
    }

    /// Sets the roles.
    pub fn roles(mut self, roles: Vec<String>) -> Self {
        self.inner.roles = roles;
        self
    }

    /// Sets the credential's identifier.
    pub fn token_id(mut self, token_id: impl Into<String>) -> Self {
        self.inner.token_id = Some(token_id.into());
        self
    }

    /// Sets when the credential was issued.
    pub fn issued_at(mut self, at: SystemTime) -> Self {
        self.inner.issued_at = Some(at);
        self
    }

    /// Sets when the credential expires.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.inner.expires_at = Some(at);
        self
    }

    /// Attaches the raw claims JSON.
    pub fn raw_claims(mut self, json: impl Into<Arc<[u8]>>) -> Self {
        self.inner.claims = Some(json.into());
        self
    }

    /// The principal.
    pub fn build(self) -> Principal {
        Principal {
            inner: Arc::new(self.inner),
        }
    }
}

impl Principal {
    /// Starts building a principal for `subject`.
    pub fn builder(subject: impl Into<Arc<str>>, kind: PrincipalKind) -> PrincipalBuilder {
        PrincipalBuilder {
            inner: Inner {
                subject: subject.into(),
                kind,
                scopes: Vec::new(),
                roles: Vec::new(),
                token_id: None,
                issued_at: None,
                expires_at: None,
                claims: None,
            },
        }
    }

    /// A principal for `subject` with no scopes, roles or claims.
    pub fn new(subject: impl Into<Arc<str>>, kind: PrincipalKind) -> Self {
        Self {
            inner: Arc::new(Inner {
                subject: subject.into(),
                kind,
                scopes: Vec::new(),
                roles: Vec::new(),
                token_id: None,
                issued_at: None,
                expires_at: None,
                claims: None,
            }),
        }
    }

    fn edit(&mut self) -> &mut Inner {
        Arc::make_mut(&mut self.inner)
    }

    /// Sets the granted scopes.
    #[must_use]
    pub fn with_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.edit().scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the roles.
    #[must_use]
    pub fn with_roles<I, T>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.edit().roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the credential's identifier (a JWT `jti`, an API key id).
    #[must_use]
    pub fn with_token_id(mut self, token_id: impl Into<String>) -> Self {
        self.edit().token_id = Some(token_id.into());
        self
    }

    /// Sets when the credential was issued.
    #[must_use]
    pub fn with_issued_at(mut self, at: SystemTime) -> Self {
        self.edit().issued_at = Some(at);
        self
    }

    /// Sets when the credential stops being valid.
    #[must_use]
    pub fn with_expires_at(mut self, at: SystemTime) -> Self {
        self.edit().expires_at = Some(at);
        self
    }

    /// Attaches the raw claims as the JSON object they were verified from.
    ///
    /// The bytes are kept as they are and parsed on demand by
    /// [`claims`](Self::claims), so authenticators do not pay for claims a
    /// handler never reads.
    #[must_use]
    pub fn with_raw_claims(mut self, json: impl Into<Arc<[u8]>>) -> Self {
        self.edit().claims = Some(json.into());
        self
    }

    /// The subject: a user id, a key owner, a client id.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The subject as a shared string (no copy).
    #[must_use]
    pub fn subject_shared(&self) -> Arc<str> {
        Arc::clone(&self.inner.subject)
    }

    /// The kind of credential that was accepted.
    #[must_use]
    pub fn kind(&self) -> PrincipalKind {
        self.inner.kind
    }

    /// Granted scopes.
    #[must_use]
    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }

    /// Roles.
    #[must_use]
    pub fn roles(&self) -> &[String] {
        &self.inner.roles
    }

    /// Whether `scope` was granted (exact, case-sensitive match).
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.inner.scopes.iter().any(|s| s == scope)
    }

    /// Whether the principal has `role` (exact, case-sensitive match).
    #[must_use]
    pub fn has_role(&self, role: &str) -> bool {
        self.inner.roles.iter().any(|r| r == role)
    }

    /// The credential's identifier, if it has one.
    #[must_use]
    pub fn token_id(&self) -> Option<&str> {
        self.inner.token_id.as_deref()
    }

    /// When the credential was issued, if known.
    #[must_use]
    pub fn issued_at(&self) -> Option<SystemTime> {
        self.inner.issued_at
    }

    /// When the credential expires, if it does.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.inner.expires_at
    }

    /// The raw claims JSON, if the credential carried claims.
    #[must_use]
    pub fn raw_claims(&self) -> Option<&[u8]> {
        self.inner.claims.as_deref()
    }

    /// Parses the claims into `T`.
    ///
    /// Use a struct with named fields: serde rejects duplicate fields in a
    /// struct, which keeps an attacker from smuggling a second `role` past a
    /// check that reads the first.
    ///
    /// # Errors
    ///
    /// Fails when the principal has no claims or they do not fit `T`.
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, ClaimsError> {
        let raw = self
            .inner
            .claims
            .as_deref()
            .ok_or(ClaimsError { source: None })?;
        serde_json::from_slice(raw).map_err(|err| ClaimsError {
            source: Some(Box::new(err)),
        })
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &*self.inner;
        f.debug_struct("Principal")
            .field("subject", &DisplayMasked(&p.subject))
            .field("kind", &p.kind)
            .field("scopes", &p.scopes)
            .field("roles", &p.roles)
            .field("token_id", &p.token_id)
            .field("issued_at", &p.issued_at)
            .field("expires_at", &p.expires_at)
            .field("claims", &p.claims.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Masks values that look like an email address, for `Debug` output.
struct DisplayMasked<'a>(&'a str);

impl fmt::Debug for DisplayMasked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains('@') {
            f.write_str("\"<redacted email>\"")
        } else {
            fmt::Debug::fmt(self.0, f)
        }
    }
}

/// The claims could not be read into the requested type.
#[derive(Debug)]
pub struct ClaimsError {
    source: Option<Box<serde_json::Error>>,
}

impl fmt::Display for ClaimsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            None => f.write_str("the principal carries no claims"),
            Some(_) => f.write_str("the claims do not match the requested type"),
        }
    }
}

impl std::error::Error for ClaimsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(feature = "axum")]
mod extract {
    use super::Principal;
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;
    use std::convert::Infallible;

    /// The request reached a handler that needs a [`Principal`] without one.
    ///
    /// This is a wiring mistake (no authenticator in front of the route), not
    /// a client error, so it answers `500` and tells the developer why.
    #[derive(Debug, Clone, Copy)]
    #[non_exhaustive]
    pub struct MissingPrincipal;

    impl IntoResponse for MissingPrincipal {
        fn into_response(self) -> Response {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "no authenticated principal: is an authentication layer (JwtLayer, ApiKeyLayer) in front of this route?",
            )
                .into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Principal {
        type Rejection = MissingPrincipal;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<Self>()
                .cloned()
                .ok_or(MissingPrincipal)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
        type Rejection = Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<Self>().cloned())
        }
    }
}

#[cfg(feature = "axum")]
pub use extract::MissingPrincipal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_claims_and_email_subjects() {
        let p = Principal::new("alice@example.com", PrincipalKind::User)
            .with_raw_claims(br#"{"email":"alice@example.com"}"#.to_vec());
        let shown = format!("{p:?}");
        assert!(!shown.contains("alice"), "{shown}");
        assert!(shown.contains("<redacted"));

        let p = Principal::new("user-42", PrincipalKind::User);
        assert!(format!("{p:?}").contains("user-42"));
    }

    #[test]
    fn typed_claims_reject_duplicate_fields() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Claims {
            role: String,
        }
        let p = Principal::new("u", PrincipalKind::User)
            .with_raw_claims(br#"{"role":"user","role":"admin"}"#.to_vec());
        assert!(p.claims::<Claims>().is_err());
        let p = Principal::new("u", PrincipalKind::User)
            .with_raw_claims(br#"{"role":"admin"}"#.to_vec());
        assert_eq!(p.claims::<Claims>().unwrap().role, "admin");
    }

    #[test]
    fn scopes_and_roles_match_exactly() {
        let p = Principal::new("u", PrincipalKind::Service)
            .with_scopes(["orders:read"])
            .with_roles(["admin"]);
        assert!(p.has_scope("orders:read"));
        assert!(!p.has_scope("orders"));
        assert!(p.has_role("admin"));
        assert!(!p.has_role("Admin"));
    }
}
