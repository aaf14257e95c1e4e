//! Why a token was refused, precisely (for tests and logs), and the coarse
//! reason a client is told.

use std::fmt;
use std::sync::Arc;

use portcullis_core::FailureReason;

/// Why a token was not accepted.
///
/// The variant is precise so tests and operators can tell cases apart; the
/// client only ever sees [`reason`](Self::reason), and response bodies never
/// say more than that.
#[derive(Debug)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is longer than the configured cap.
    TooLarge,
    /// Not a compact JWS: wrong characters, segment count, base64 or JSON.
    Malformed(&'static str),
    /// `alg` is not a supported algorithm (`none` included).
    UnsupportedAlgorithm,
    /// `alg` is supported but not allowed here.
    DisallowedAlgorithm,
    /// No configured key matches `kid` and `alg`.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// The header lists a critical extension we do not understand, or a
    /// malformed `crit`.
    UnsupportedCritical,
    /// The header's `typ` is not acceptable here.
    WrongType,
    /// A required claim is missing.
    MissingClaim(&'static str),
    /// A claim has the wrong type or an impossible value.
    InvalidClaim(&'static str),
    /// Past `exp` (plus leeway and grace).
    Expired {
        /// The verified subject, for audit.
        subject: String,
    },
    /// Before `nbf` (minus leeway).
    NotYetValid,
    /// `iat` is in the future (beyond leeway).
    IssuedInFuture,
    /// `exp` is further away than the maximum lifetime allows.
    LifetimeTooLong,
    /// `iss` is not a configured issuer.
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    WrongAudience,
    /// The token was revoked.
    Revoked {
        /// The verified subject, for audit.
        subject: String,
    },
    /// The revocation store or the key source could not answer: fail
    /// closed with `503`, never `401`.
    Unavailable(Arc<dyn std::error::Error + Send + Sync>),
}

impl JwtError {
    /// The failure reason reported to clients, metrics and events.
    #[must_use]
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::BadSignature => FailureReason::InvalidSignature,
            Self::Expired { .. } => FailureReason::TokenExpired,
            Self::Revoked { .. } => FailureReason::TokenRevoked,
            Self::Unavailable(_) => FailureReason::UpstreamUnavailable,
            _ => FailureReason::InvalidToken,
        }
    }

    /// A fixed internal note, safe for logs (never token content).
    #[must_use]
    pub fn detail(&self) -> &'static str {
        match self {
            Self::TooLarge => "token too large",
            Self::Malformed(what) | Self::MissingClaim(what) | Self::InvalidClaim(what) => what,
            Self::UnsupportedAlgorithm => "unsupported alg",
            Self::DisallowedAlgorithm => "alg not allowed",
            Self::UnknownKey => "no key for kid/alg",
            Self::BadSignature => "signature mismatch",
            Self::UnsupportedCritical => "unsupported crit",
            Self::WrongType => "typ not accepted",
            Self::Expired { .. } => "expired",
            Self::NotYetValid => "nbf in the future",
            Self::IssuedInFuture => "iat in the future",
            Self::LifetimeTooLong => "lifetime exceeds maximum",
            Self::WrongIssuer => "issuer mismatch",
            Self::WrongAudience => "audience mismatch",
            Self::Revoked { .. } => "revoked",
            Self::Unavailable(_) => "dependency unavailable",
        }
    }

    /// When a dependency that could not answer may answer again: the
    /// remaining open time of a circuit breaker on the path, or the rest of
    /// the JWKS refetch cooldown. Sent as `Retry-After` with the `503`.
    #[must_use]
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        let Self::Unavailable(source) = self else {
            return None;
        };
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&**source);
        while let Some(err) = current {
            #[cfg(feature = "circuit-breaker")]
            if let Some(open) = err.downcast_ref::<crate::circuit_breaker::error::Open>() {
                return open.retry_after();
            }
            #[cfg(feature = "jwks")]
            if let Some(super::jwks::JwksError::StillFailing { retry_after }) =
                err.downcast_ref::<super::jwks::JwksError>()
            {
                return Some(*retry_after);
            }
            current = err.source();
        }
        None
    }

    /// The verified subject, when the failure came after the signature was
    /// checked (expired, revoked).
    #[must_use]
    pub fn verified_subject(&self) -> Option<&str> {
        match self {
            Self::Expired { subject } | Self::Revoked { subject } => Some(subject),
            _ => None,
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason(), self.detail())
    }
}

impl std::error::Error for JwtError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(err) => Some(&**err),
            _ => None,
        }
    }
}
