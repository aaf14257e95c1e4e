//! Configuration errors, returned when a layer is built.

use std::fmt;

/// A layer or key could not be built from its configuration.
///
/// Returned by fallible builders so that a misconfigured service refuses to
/// start instead of running insecurely. Messages name the offending setting
/// or key id, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Key material that is too weak to use.
    WeakKey {
        /// The key id, if known.
        kid: Option<String>,
        /// Which rule failed.
        reason: &'static str,
    },
    /// Key material that cannot be used at all.
    InvalidKey {
        /// The key id, if known.
        kid: Option<String>,
        /// Which rule failed.
        reason: &'static str,
    },
    /// Two keys share one `kid`: a token naming it would be ambiguous.
    DuplicateKeyId {
        /// The duplicated id.
        kid: String,
    },
    /// One key set mixes symmetric and asymmetric keys.
    MixedKeyFamilies,
    /// No verification key was configured.
    NoKeys,
    /// A setting is out of range or inconsistent.
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

#[cfg_attr(not(feature = "jwt"), allow(dead_code))]
impl ConfigError {
    pub(crate) fn weak_key(reason: &'static str) -> Self {
        Self::WeakKey { kid: None, reason }
    }

    pub(crate) fn invalid_key(kid: Option<&str>, reason: &'static str) -> Self {
        Self::InvalidKey {
            kid: kid.map(short),
            reason,
        }
    }

    pub(crate) fn invalid(setting: &'static str, reason: &'static str) -> Self {
        Self::Invalid { setting, reason }
    }

    pub(crate) fn with_kid(self, kid: Option<&str>) -> Self {
        match self {
            Self::WeakKey { reason, .. } => Self::WeakKey {
                kid: kid.map(short),
                reason,
            },
            Self::InvalidKey { reason, .. } => Self::InvalidKey {
                kid: kid.map(short),
                reason,
            },
            other => other,
        }
    }
}

/// Key ids can come from a remote JWKS: keep messages short.
#[cfg_attr(not(feature = "jwt"), allow(dead_code))]
fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WeakKey {
                kid: Some(kid),
                reason,
            } => write!(f, "weak key {kid:?}: {reason}"),
            Self::WeakKey { kid: None, reason } => write!(f, "weak key: {reason}"),
            Self::InvalidKey {
                kid: Some(kid),
                reason,
            } => write!(f, "invalid key {kid:?}: {reason}"),
            Self::InvalidKey { kid: None, reason } => write!(f, "invalid key: {reason}"),
            Self::DuplicateKeyId { kid } => write!(f, "duplicate key id {kid:?}"),
            Self::MixedKeyFamilies => f.write_str("key set mixes symmetric and asymmetric keys"),
            Self::NoKeys => f.write_str("no verification keys configured"),
            Self::Invalid { setting, reason } => write!(f, "invalid {setting}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}
