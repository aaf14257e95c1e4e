//! Key sets: keys by `kid`, with fallback keys that expire for rotation.

use std::time::SystemTime;

use super::Algorithm;
use super::error::JwtError;
use super::key::{Jwk, VerifyingKey};
use crate::ConfigError;

/// The most keys a set holds; a JWKS with more is cut to this many.
pub const MAX_KEYS: usize = 32;

/// The keys a verifier may use.
///
/// Rotation as operators do it (seed 000): the current key, plus fallback
/// keys that keep verifying old tokens until a deadline — the grace period —
/// after which they are ignored without a restart.
///
/// ```
/// use portcullis::jwt::{Algorithm, KeySet, VerifyingKey};
/// use std::time::{Duration, SystemTime};
///
/// let current = VerifyingKey::hmac(Algorithm::HS256, "current-key-0123456789-abcdefghijkl")?.with_kid("2024-06");
/// let previous = VerifyingKey::hmac(Algorithm::HS256, "previous-key-0123456789-abcdefghijk")?.with_kid("2024-01");
/// let keys = KeySet::new()
///     .with_key(current)?
///     .with_fallback_key(previous, SystemTime::now() + Duration::from_secs(24 * 3600))?;
/// assert_eq!(keys.len(), 2);
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    key: VerifyingKey,
    not_after: Option<SystemTime>,
}

impl KeySet {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key that never expires from the set.
    ///
    /// # Errors
    ///
    /// [`ConfigError::DuplicateKeyId`] if a key with the same `kid` is
    /// present, [`ConfigError::MixedKeyFamilies`] when mixing HMAC with
    /// public keys, [`ConfigError::Invalid`] past [`MAX_KEYS`].
    pub fn with_key(self, key: VerifyingKey) -> Result<Self, ConfigError> {
        self.push(key, None)
    }

    /// Adds a fallback key, used for verification until `until` only.
    ///
    /// # Errors
    ///
    /// As [`with_key`](Self::with_key).
    pub fn with_fallback_key(
        self,
        key: VerifyingKey,
        until: SystemTime,
    ) -> Result<Self, ConfigError> {
        self.push(key, Some(until))
    }

    fn push(
        mut self,
        key: VerifyingKey,
        not_after: Option<SystemTime>,
    ) -> Result<Self, ConfigError> {
        if let Some(kid) = key.kid()
            && self.entries.iter().any(|e| e.key.kid() == Some(kid))
        {
            return Err(ConfigError::DuplicateKeyId {
                kid: kid.chars().take(64).collect(),
            });
        }
        if self
            .entries
            .iter()
            .any(|e| e.key.is_symmetric() != key.is_symmetric())
        {
            return Err(ConfigError::MixedKeyFamilies);
        }
        if self.entries.len() >= MAX_KEYS {
            return Err(ConfigError::invalid("key set", "more than 32 keys"));
        }
        self.entries.push(Entry { key, not_after });
        Ok(self)
    }

    /// Parses a JWKS document you provide yourself (a file, an environment
    /// variable). Every key must be valid; symmetric keys are allowed but not
    /// mixed with asymmetric ones; duplicate `kid`s are an error.
    ///
    /// # Errors
    ///
    /// The first key that breaks a rule, or a malformed document.
    pub fn from_jwks(json: &str) -> Result<Self, ConfigError> {
        let mut set = Self::new();
        for jwk in parse_jwks(json)? {
            set = set.with_key(jwk?.to_key(true)?)?;
        }
        Ok(set)
    }

    /// Parses a JWKS from a remote source, leniently: invalid, symmetric
    /// and ambiguous (duplicate `kid`) keys are skipped so one bad key does
    /// not take the others down. Returns the set and how many were skipped.
    #[cfg(feature = "jwks")]
    pub(crate) fn from_remote_jwks(json: &[u8]) -> Result<(Self, usize), ConfigError> {
        let text =
            std::str::from_utf8(json).map_err(|_| ConfigError::invalid("JWKS", "not UTF-8"))?;
        let entries = parse_jwks(text)?;
        let total = entries.len();
        let jwks: Vec<Jwk> = entries.into_iter().filter_map(Result::ok).collect();
        let mut set = Self::new();
        for (i, jwk) in jwks.iter().enumerate() {
            let ambiguous = jwk.kid().is_some_and(|kid| {
                jwks.iter()
                    .enumerate()
                    .any(|(j, other)| j != i && other.kid() == Some(kid))
            });
            if ambiguous {
                continue;
            }
            if let Ok(key) = jwk.to_key(false)
                && let Ok(next) = set.clone().with_key(key)
            {
                set = next;
            }
        }
        let skipped = total - set.len();
        Ok((set, skipped))
    }

    /// Number of keys, fallback keys included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a key with `kid` is present (expired fallbacks included).
    #[must_use]
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.entries.iter().any(|e| e.key.kid() == Some(kid))
    }

    pub(crate) fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.entries.iter().map(|e| e.key.algorithm())
    }

    /// Verifies a signature with the key the header selects.
    ///
    /// With a `kid`, only that key is tried and its algorithm must equal
    /// `alg`. Without one, every live key bound to `alg` is tried in order.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        now: SystemTime,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), JwtError> {
        let live = |e: &&Entry| e.not_after.is_none_or(|until| now <= until);
        let mut tried = false;
        for entry in self.entries.iter().filter(live) {
            let key = &entry.key;
            if let Some(kid) = kid
                && key.kid() != Some(kid)
            {
                continue;
            }
            if key.algorithm() != alg {
                continue;
            }
            tried = true;
            if key.verify(message, signature) {
                return Ok(());
            }
            if kid.is_some() {
                break;
            }
        }
        if tried {
            Err(JwtError::BadSignature)
        } else {
            Err(JwtError::UnknownKey)
        }
    }
}

/// Reads a JWKS document into one result per key (at most [`MAX_KEYS`]).
fn parse_jwks(json: &str) -> Result<Vec<Result<Jwk, ConfigError>>, ConfigError> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_str(json)
        .map_err(|_| ConfigError::invalid("JWKS", "not a JSON object with a `keys` array"))?;
    Ok(doc
        .keys
        .into_iter()
        .take(MAX_KEYS)
        .map(|v| {
            serde_json::from_value(v).map_err(|_| ConfigError::invalid_key(None, "unreadable JWK"))
        })
        .collect())
}
