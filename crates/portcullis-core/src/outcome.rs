//! The auth-outcome protocol: how layers tell each other what happened.
//!
//! Layers never call each other. An authenticator, or a login handler that
//! checks a password itself, attaches an [`AuthOutcome`] to the **response**
//! extensions; outer layers (lockout, CAPTCHA, audit) read it on the way out.
//! A rejecting layer also puts its [`Rejection`](crate::Rejection) there.
//!
//! The innermost outcome wins: an authenticator that let a request through
//! adds its success only if the handler did not report an outcome of its own,
//! so a login handler's `invalid_credentials` is never masked by the token
//! layer in front of it.
//!
//! ```
//! use http::{Response, StatusCode};
//! use portcullis_core::{AuthMethod, AuthOutcome, FailureReason};
//!
//! // In a login handler: report the failure, with the submitted identifier.
//! let mut response = Response::new(());
//! *response.status_mut() = StatusCode::UNAUTHORIZED;
//! AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
//!     .with_identifier("alice")
//!     .attach(&mut response);
//!
//! // In an outer layer: read it.
//! let outcome = AuthOutcome::of(&response).unwrap();
//! assert_eq!(outcome.reason(), Some(FailureReason::InvalidCredentials));
//! assert_eq!(outcome.identifier(), Some("alice"));
//! ```

use std::fmt;
use std::sync::Arc;

use crate::{FailureReason, Principal};

/// How the caller tried to authenticate; a bounded metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A bearer JWT.
    Jwt,
    /// An API key.
    ApiKey,
    /// A username and password checked by a login handler.
    Password,
    /// Anything else, named by a fixed string.
    Other(&'static str),
}

impl AuthMethod {
    /// Stable lowercase name (`jwt`, `api_key`, `password`, …).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Password => "password",
            Self::Other(name) => name,
        }
    }
}

/// The result of one authentication decision, carried in response extensions.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    method: AuthMethod,
    reason: Option<FailureReason>,
    subject: Option<Subject>,
    identifier: Option<Arc<str>>,
    shadow: bool,
    fallback: bool,
}

/// Who the outcome is about: a string, or the accepted principal itself
/// (shared, so reporting a success costs no copy).
#[derive(Clone, PartialEq, Eq)]
enum Subject {
    Text(Arc<str>),
    Principal(Principal),
}

impl Subject {
    fn as_str(&self) -> &str {
        match self {
            Self::Text(text) => text,
            Self::Principal(principal) => principal.subject(),
        }
    }
}

impl AuthOutcome {
    /// A successful authentication of `principal`.
    #[must_use]
    pub fn authenticated(method: AuthMethod, principal: &Principal) -> Self {
        Self {
            method,
            reason: None,
            subject: Some(Subject::Principal(principal.clone())),
            identifier: None,
            shadow: false,
            fallback: false,
        }
    }

    /// A successful authentication of `subject`.
    pub fn success(method: AuthMethod, subject: impl Into<Arc<str>>) -> Self {
        Self {
            method,
            reason: None,
            subject: Some(Subject::Text(subject.into())),
            identifier: None,
            shadow: false,
            fallback: false,
        }
    }

    /// A failed authentication.
    #[must_use]
    pub const fn failure(method: AuthMethod, reason: FailureReason) -> Self {
        Self {
            method,
            reason: Some(reason),
            subject: None,
            identifier: None,
            shadow: false,
            fallback: false,
        }
    }

    /// The identifier the client submitted (a username), whether or not such
    /// an account exists. Lockout counts failures by it.
    #[must_use]
    pub fn with_identifier(mut self, identifier: impl Into<Arc<str>>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// The verified subject, when a failure still identified one (an
    /// expired token).
    #[must_use]
    pub fn with_subject(mut self, subject: impl Into<Arc<str>>) -> Self {
        self.subject = Some(Subject::Text(subject.into()));
        self
    }

    /// Marks a decision taken in shadow mode: reported, not enforced.
    #[must_use]
    pub fn shadow(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// Marks a decision taken by a fallback authenticator because the
    /// primary one could not answer (seed 000's fallback authentication).
    #[must_use]
    pub fn via_fallback(mut self) -> Self {
        self.fallback = true;
        self
    }

    /// Whether a fallback authenticator took the decision.
    #[must_use]
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// Inserts this outcome into `response`'s extensions.
    pub fn attach<B>(self, response: &mut http::Response<B>) {
        response.extensions_mut().insert(self);
    }

    /// Inserts this outcome unless the response already carries one.
    pub fn attach_if_absent<B>(self, response: &mut http::Response<B>) {
        if response.extensions().get::<Self>().is_none() {
            response.extensions_mut().insert(self);
        }
    }

    /// The outcome a response carries, if any.
    #[must_use]
    pub fn of<B>(response: &http::Response<B>) -> Option<&Self> {
        response.extensions().get::<Self>()
    }

    /// Whether authentication succeeded.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.reason.is_none()
    }

    /// The failure reason, `None` on success.
    #[must_use]
    pub fn reason(&self) -> Option<FailureReason> {
        self.reason
    }

    /// The method.
    #[must_use]
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// The verified subject, if any.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_ref().map(Subject::as_str)
    }

    /// The submitted identifier, if any.
    #[must_use]
    pub fn identifier(&self) -> Option<&str> {
        self.identifier.as_deref()
    }

    /// Whether the decision was taken in shadow mode.
    #[must_use]
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }
}

impl fmt::Debug for AuthOutcome {
    // Identifiers are often email addresses: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthOutcome")
            .field("method", &self.method)
            .field("reason", &self.reason)
            .field("subject", &self.subject.as_ref().map(|_| "<set>"))
            .field("identifier", &self.identifier.as_ref().map(|_| "<set>"))
            .field("shadow", &self.shadow)
            .field("fallback", &self.fallback)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn innermost_outcome_wins() {
        let mut res = http::Response::new(());
        AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
            .attach(&mut res);
        AuthOutcome::success(AuthMethod::Jwt, "u1").attach_if_absent(&mut res);
        assert_eq!(
            AuthOutcome::of(&res).unwrap().reason(),
            Some(FailureReason::InvalidCredentials)
        );
    }

    #[test]
    fn debug_never_prints_identifiers() {
        let o = AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
            .with_identifier("alice@example.com");
        assert!(!format!("{o:?}").contains("alice"));
    }
}
