//! The provider-neutral verifier: a token goes in, a yes or a reason comes
//! out.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest token accepted, in bytes. Turnstile documents 2048 characters as
/// the maximum; longer tokens are refused locally, without a provider call.
pub const MAX_TOKEN_LEN: usize = 2048;

/// A CAPTCHA response token as the client sent it. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct CaptchaToken(Arc<str>);

impl CaptchaToken {
    /// Wraps `token`.
    #[must_use]
    pub fn new(token: &str) -> Self {
        Self(token.into())
    }

    /// The token text, to send to the provider.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the token can be sent at all: 1 to [`MAX_TOKEN_LEN`] bytes of
    /// printable ASCII (tokens of every provider are URL-safe text).
    #[must_use]
    pub fn is_well_formed(&self) -> bool {
        !self.0.is_empty()
            && self.0.len() <= MAX_TOKEN_LEN
            && self.0.bytes().all(|b| b.is_ascii_graphic())
    }
}

impl fmt::Debug for CaptchaToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaptchaToken(<redacted, {} bytes>)", self.0.len())
    }
}

/// Why a token was not accepted.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaptchaError {
    /// The provider answered, and the answer is no (or does not match this
    /// site: hostname, action, score, age, site key). The request gets
    /// `403 captcha_invalid`. The reason is a fixed string for logs.
    Rejected(&'static str),
    /// The provider could not be asked or gave no usable answer (transport
    /// error, timeout, open circuit, 5xx, not JSON, `success` missing or
    /// not a boolean). The request gets `503 upstream_unavailable`: fail
    /// closed, never let through.
    Unavailable(&'static str, Option<BoxError>),
}

impl CaptchaError {
    pub(crate) fn unavailable(why: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable(why, Some(source.into()))
    }
}

impl fmt::Display for CaptchaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(why) => write!(f, "CAPTCHA rejected: {why}"),
            Self::Unavailable(why, _) => write!(f, "CAPTCHA provider unavailable: {why}"),
        }
    }
}

impl std::error::Error for CaptchaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(_, Some(source)) => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Checks a CAPTCHA token with its provider.
///
/// Implemented by [`SiteVerify`](super::SiteVerify) for Cloudflare
/// Turnstile, hCaptcha and Google reCAPTCHA v2/v3; implement it for another
/// provider (or a test double). The layer checks the token's shape and
/// single use before calling it.
pub trait CaptchaVerifier: Send + Sync + 'static {
    /// Verifies `token`, sent from `remote_ip` when known.
    fn verify(
        &self,
        token: &CaptchaToken,
        remote_ip: Option<IpAddr>,
    ) -> impl Future<Output = Result<(), CaptchaError>> + Send;
}

impl<T: CaptchaVerifier> CaptchaVerifier for Arc<T> {
    fn verify(
        &self,
        token: &CaptchaToken,
        remote_ip: Option<IpAddr>,
    ) -> impl Future<Output = Result<(), CaptchaError>> + Send {
        T::verify(self, token, remote_ip)
    }
}
