//! Issuing tokens: access + refresh pairs, refresh rotation with reuse
//! detection, logout and revoke-all-for-subject.
//!
//! Access tokens (`typ: at+jwt`, 15 minutes by default) and refresh tokens
//! (`typ: refresh+jwt`, 7 days) are signed with the primary key. Each login
//! starts a refresh **family**; every refresh consumes the presented refresh
//! token (an atomic test-and-set in the [`RevocationStore`]) and issues a new
//! pair in the same family. Presenting a consumed refresh token again is
//! reuse — a stolen token racing its owner — and revokes the whole family,
//! access tokens included (RFC 9700 §4.14.2, ASVS 10.4.5). A family also
//! ends at an absolute lifetime counted from the login (ASVS 10.4.8).
//!
//! ```
//! use portcullis::jwt::{Algorithm, SigningKey, TokenIssuer};
//! use portcullis_core::{MemoryRevocationStore, Principal, PrincipalKind};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let key = SigningKey::hmac(Algorithm::HS256, "an-example-secret-of-32-bytes-or-more!")?;
//! let issuer = TokenIssuer::builder(key, "https://auth.example")
//!     .build(MemoryRevocationStore::default())?;
//!
//! let pair = issuer.issue(&Principal::new("user-1", PrincipalKind::User).with_scopes(["orders:read"]))?;
//! let next = issuer.refresh(&pair.refresh_token).await?;      // rotation
//! assert!(issuer.refresh(&pair.refresh_token).await.is_err());  // reuse: family revoked
//! assert!(issuer.refresh(&next.refresh_token).await.is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{self as sig, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::{
    BoxRevocationStore, Challenge, FailureReason, Names, Principal, Rejection, RevocationStore,
    SharedClock, StoreError, SystemClock, TokenRef,
};
use serde::Serialize;

use super::algorithm::KeyFamily;
use super::error::JwtError;
use super::verifier::{from_unix, unix};
use super::{Algorithm, JwtVerifier, JwtVerifierBuilder, KeySet, TypPolicy, VerifyingKey};
use crate::ConfigError;

/// The `typ` of access tokens we issue (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
/// The `typ` of refresh tokens we issue.
pub const REFRESH_TYP: &str = "refresh+jwt";

/// A private key (or HMAC secret) that signs tokens, with the matching
/// verification key.
#[derive(Clone)]
pub struct SigningKey {
    alg: Algorithm,
    kid: Option<Arc<str>>,
    encoding: jsonwebtoken::EncodingKey,
    verifying: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("material", &"<redacted>")
            .finish()
    }
}

impl SigningKey {
    /// An HMAC signing key, with the same strength checks as
    /// [`VerifyingKey::hmac`].
    ///
    /// # Errors
    ///
    /// As [`VerifyingKey::hmac`].
    pub fn hmac(alg: Algorithm, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let verifying = VerifyingKey::hmac(alg, secret.as_ref())?;
        Ok(Self {
            alg,
            kid: None,
            encoding: jsonwebtoken::EncodingKey::from_secret(secret.as_ref()),
            verifying,
        })
    }

    /// A private key in PKCS#8 PEM (`PRIVATE KEY`; `RSA PRIVATE KEY` and
    /// `EC PRIVATE KEY` are accepted for their families).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] if the PEM does not hold a private key of
    /// `alg`'s family; [`ConfigError::WeakKey`] for weak RSA keys.
    pub fn from_pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let pem_bytes = pem.as_ref();
        let parsed = pem::parse(pem_bytes)
            .map_err(|_| ConfigError::invalid_key(None, "not a PEM document"))?;
        let der = parsed.contents();
        let bad = |reason| ConfigError::invalid_key(None, reason);
        let (encoding, verifying) = match alg.family() {
            KeyFamily::Hmac => return Err(bad("HMAC keys are secrets, not PEM")),
            KeyFamily::Ec => {
                let signing = match alg {
                    Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    _ => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
                };
                let pair = sig::EcdsaKeyPair::from_pkcs8(signing, der)
                    .or_else(|_| sig::EcdsaKeyPair::from_private_key_der(signing, der))
                    .map_err(|_| bad("not an EC private key for this curve"))?;
                (
                    jsonwebtoken::EncodingKey::from_ec_pem(pem_bytes)
                        .map_err(|_| bad("EC key not usable for signing"))?,
                    VerifyingKey::from_public_der(alg, pair.public_key().as_ref())?,
                )
            }
            KeyFamily::Rsa => {
                let pair = sig::RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| sig::RsaKeyPair::from_der(der))
                    .map_err(|_| bad("not an RSA private key"))?;
                (
                    jsonwebtoken::EncodingKey::from_rsa_pem(pem_bytes)
                        .map_err(|_| bad("RSA key not usable for signing"))?,
                    VerifyingKey::from_public_der(alg, pair.public_key().as_ref())?,
                )
            }
            KeyFamily::Okp => {
                let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|_| bad("not an Ed25519 private key"))?;
                (
                    jsonwebtoken::EncodingKey::from_ed_pem(pem_bytes)
                        .map_err(|_| bad("Ed25519 key not usable for signing"))?,
                    VerifyingKey::from_public_der(alg, pair.public_key().as_ref())?,
                )
            }
        };
        Ok(Self {
            alg,
            kid: None,
            encoding,
            verifying,
        })
    }

    /// Names the key; tokens carry it as `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        let kid = kid.into();
        self.verifying = self.verifying.with_kid(Arc::clone(&kid));
        self.kid = Some(kid);
        self
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The verification key for tokens this key signs.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying.clone()
    }

    /// Signs `claims` as a compact JWS with header `typ`.
    ///
    /// # Errors
    ///
    /// If the claims cannot be serialised or signing fails.
    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, SignError> {
        let mut header = jsonwebtoken::Header::new(self.alg.to_jsonwebtoken());
        header.typ = Some(typ.to_owned());
        header.kid = self.kid.as_deref().map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|_| SignError)
    }
}

/// Signing a token failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignError;

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("token signing failed")
    }
}

impl std::error::Error for SignError {}

/// An access token and the refresh token that renews it.
#[derive(Clone, Serialize)]
#[non_exhaustive]
pub struct TokenPair {
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    /// Refresh token lifetime in seconds.
    pub refresh_expires_in: u64,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why a refresh, logout or issue failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RefreshError {
    /// The refresh token is not valid (bad signature, expired, an access
    /// token presented as a refresh token, …).
    Invalid(JwtError),
    /// The refresh token was already used: the family is now revoked.
    Reused,
    /// The family or the subject's tokens were revoked.
    Revoked,
    /// The family passed its absolute lifetime: log in again.
    FamilyExpired,
    /// The revocation store could not answer.
    Unavailable(StoreError),
    /// Signing failed.
    Sign(SignError),
}

impl RefreshError {
    /// The failure reason to report.
    #[must_use]
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::Invalid(err) => err.reason(),
            Self::Reused | Self::Revoked => FailureReason::TokenRevoked,
            Self::FamilyExpired => FailureReason::TokenExpired,
            Self::Unavailable(_) | Self::Sign(_) => FailureReason::UpstreamUnavailable,
        }
    }

    /// A [`Rejection`] for a handler to answer with.
    #[must_use]
    pub fn to_rejection(&self) -> Rejection {
        Rejection::new(self.reason()).with_challenge(Challenge::bearer())
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(err) => write!(f, "refresh token rejected: {err}"),
            Self::Reused => f.write_str("refresh token reused: family revoked"),
            Self::Revoked => f.write_str("refresh token revoked"),
            Self::FamilyExpired => f.write_str("refresh family past its absolute lifetime"),
            Self::Unavailable(err) => write!(f, "revocation store unavailable: {err}"),
            Self::Sign(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for RefreshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Invalid(err) => Some(err),
            Self::Unavailable(err) => Some(err),
            Self::Sign(err) => Some(err),
            _ => None,
        }
    }
}

impl From<SignError> for RefreshError {
    fn from(err: SignError) -> Self {
        Self::Sign(err)
    }
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    exp: i64,
    iat: i64,
    nbf: i64,
    jti: &'a str,
    fam: &'a str,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "<[&str]>::is_empty")]
    roles: &'a [&'a str],
}

/// Signs access/refresh pairs and manages refresh families.
///
/// See the [module docs](self) for the rotation rules. Share it behind an
/// `Arc`.
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    audience: Option<String>,
    access_ttl: Duration,
    refresh_ttl: Duration,
    absolute: Duration,
    keys: KeySet,
    store: BoxRevocationStore,
    clock: SharedClock,
    refresh_verifier: JwtVerifier,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("key", &self.key)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("absolute", &self.absolute)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TokenIssuer`].
#[derive(Debug)]
#[must_use]
pub struct TokenIssuerBuilder {
    key: SigningKey,
    issuer: String,
    audience: Option<String>,
    access_ttl: Duration,
    refresh_ttl: Duration,
    absolute: Duration,
    fallbacks: Vec<(VerifyingKey, SystemTime)>,
    clock: SharedClock,
}

/// Default access token lifetime: 15 minutes.
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// Default refresh token lifetime: 7 days.
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default absolute refresh family lifetime: 30 days.
pub const DEFAULT_FAMILY_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

impl TokenIssuerBuilder {
    /// Adds `aud` to every token (and requires it when verifying).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Access token lifetime (default 15 minutes).
    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl;
        self
    }

    /// Refresh token lifetime (default 7 days).
    pub fn refresh_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_ttl = ttl;
        self
    }

    /// Absolute lifetime of a refresh family from login (default 30 days).
    pub fn family_lifetime(mut self, lifetime: Duration) -> Self {
        self.absolute = lifetime;
        self
    }

    /// Keeps verifying tokens signed by a previous key until `until`
    /// (rotation with a grace period).
    pub fn fallback_key(mut self, key: VerifyingKey, until: SystemTime) -> Self {
        self.fallbacks.push((key, until));
        self
    }

    /// Reads time from `clock`.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the issuer over `store`, which keeps consumed refresh tokens,
    /// revoked families and per-subject watermarks.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for zero lifetimes or a refresh lifetime
    /// longer than the family lifetime; key-set errors for fallback keys.
    pub fn build(self, store: impl RevocationStore) -> Result<TokenIssuer, ConfigError> {
        if self.access_ttl.is_zero() || self.refresh_ttl.is_zero() {
            return Err(ConfigError::invalid("token lifetime", "must be positive"));
        }
        if self.refresh_ttl > self.absolute {
            return Err(ConfigError::invalid(
                "refresh lifetime",
                "longer than the family lifetime",
            ));
        }
        let mut keys = KeySet::new().with_key(self.key.verifying_key())?;
        for (key, until) in self.fallbacks {
            keys = keys.with_fallback_key(key, until)?;
        }
        let mut refresh = JwtVerifier::builder(keys.clone())
            .issuer(self.issuer.clone())
            .typ(TypPolicy::Exactly(vec![REFRESH_TYP.into()]))
            .require_jti(true)
            .require_iat(true)
            .max_lifetime(Some(self.refresh_ttl))
            .clock(Arc::clone(&self.clock));
        if let Some(aud) = &self.audience {
            refresh = refresh.audience(aud.clone());
        }
        Ok(TokenIssuer {
            refresh_verifier: refresh.build()?,
            key: self.key,
            issuer: self.issuer,
            audience: self.audience,
            access_ttl: self.access_ttl,
            refresh_ttl: self.refresh_ttl,
            absolute: self.absolute,
            keys,
            store: BoxRevocationStore::new(store),
            clock: self.clock,
        })
    }
}

impl TokenIssuer {
    /// Starts building an issuer that signs with `key` as `issuer` (`iss`).
    pub fn builder(key: SigningKey, issuer: impl Into<String>) -> TokenIssuerBuilder {
        TokenIssuerBuilder {
            key,
            issuer: issuer.into(),
            audience: None,
            access_ttl: DEFAULT_ACCESS_TTL,
            refresh_ttl: DEFAULT_REFRESH_TTL,
            absolute: DEFAULT_FAMILY_LIFETIME,
            fallbacks: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// A verifier builder for this issuer's access tokens: its keys
    /// (fallbacks included), `iss`, `aud`, `typ: at+jwt`, `jti` required and
    /// the access lifetime as maximum. Add settings, then `build()`.
    pub fn access_verifier(&self) -> JwtVerifierBuilder {
        let mut builder = JwtVerifier::builder(self.keys.clone())
            .issuer(self.issuer.clone())
            .typ(TypPolicy::rfc9068())
            .require_jti(true)
            .max_lifetime(Some(self.access_ttl))
            .clock(Arc::clone(&self.clock));
        if let Some(aud) = &self.audience {
            builder = builder.audience(aud.clone());
        }
        builder
    }

    /// Issues a new pair for `principal` (its subject, scopes and roles),
    /// starting a new refresh family.
    ///
    /// # Errors
    ///
    /// [`RefreshError::Sign`] if signing fails.
    pub fn issue(&self, principal: &Principal) -> Result<TokenPair, RefreshError> {
        let now = unix(self.clock.now());
        self.issue_in_family(
            principal.subject(),
            principal.scopes(),
            principal.roles(),
            &random_id()?,
            now,
        )
    }

    fn issue_in_family(
        &self,
        subject: &str,
        scopes: Names<'_>,
        roles: Names<'_>,
        family: &str,
        auth_time: i64,
    ) -> Result<TokenPair, RefreshError> {
        let now = unix(self.clock.now());
        let scopes: Vec<&str> = scopes.collect();
        let scope = (!scopes.is_empty()).then(|| scopes.join(" "));
        let roles: Vec<&str> = roles.collect();
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let family_end = auth_time.saturating_add(secs(self.absolute));
        let access_jti = random_id()?;
        let access = IssuedClaims {
            iss: &self.issuer,
            sub: subject,
            aud: self.audience.as_deref(),
            exp: now.saturating_add(secs(self.access_ttl)),
            iat: now,
            nbf: now,
            jti: &access_jti,
            fam: family,
            auth_time,
            scope: scope.as_deref(),
            roles: &roles,
        };
        let refresh_jti = random_id()?;
        let refresh = IssuedClaims {
            exp: now.saturating_add(secs(self.refresh_ttl)).min(family_end),
            jti: &refresh_jti,
            ..access
        };
        let refresh_expires_in = u64::try_from(refresh.exp - now).unwrap_or(0);
        Ok(TokenPair {
            access_token: self.key.sign(ACCESS_TYP, &access)?,
            refresh_token: self.key.sign(REFRESH_TYP, &refresh)?,
            token_type: "Bearer",
            expires_in: self.access_ttl.as_secs(),
            refresh_expires_in,
        })
    }

    /// Exchanges a refresh token for a new pair, consuming it.
    ///
    /// # Errors
    ///
    /// [`RefreshError::Reused`] when the token was already consumed (the
    /// family is revoked as a result), [`RefreshError::Revoked`] after
    /// logout or revoke-all, [`RefreshError::FamilyExpired`] past the family
    /// lifetime, [`RefreshError::Invalid`] for any token check,
    /// [`RefreshError::Unavailable`] when the store cannot answer.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, RefreshError> {
        let verified = self
            .refresh_verifier
            .verify(refresh_token)
            .map_err(RefreshError::Invalid)?;
        let principal = verified.principal();
        let family = verified
            .family()
            .ok_or(RefreshError::Invalid(JwtError::MissingClaim("missing fam")))?;
        let jti = principal
            .token_id()
            .ok_or(RefreshError::Invalid(JwtError::MissingClaim("missing jti")))?;
        let auth_time =
            verified
                .auth_time_unix()
                .ok_or(RefreshError::Invalid(JwtError::MissingClaim(
                    "missing auth_time",
                )))?;
        let now = unix(self.clock.now());
        let family_end =
            auth_time.saturating_add(i64::try_from(self.absolute.as_secs()).unwrap_or(i64::MAX));
        if now >= family_end {
            return Err(RefreshError::FamilyExpired);
        }
        let family_ref = TokenRef {
            token_id: None,
            family: Some(family),
            subject: principal.subject(),
            issued_at: principal.issued_at(),
        };
        if self
            .store
            .is_revoked(&family_ref)
            .await
            .map_err(RefreshError::Unavailable)?
        {
            return Err(RefreshError::Revoked);
        }
        let first_use = self
            .store
            .revoke_token(jti, from_unix(verified.expires_at_unix()))
            .await
            .map_err(RefreshError::Unavailable)?;
        if !first_use {
            // Access tokens of the family live at most access_ttl past the end.
            let until = from_unix(family_end) + self.access_ttl;
            self.store
                .revoke_family(family, until)
                .await
                .map_err(RefreshError::Unavailable)?;
            return Err(RefreshError::Reused);
        }
        self.issue_in_family(
            principal.subject(),
            principal.scopes(),
            principal.roles(),
            family,
            auth_time,
        )
    }

    /// Logs out the session a refresh token belongs to: revokes its family,
    /// which ends the refresh token and every access token issued with it.
    ///
    /// # Errors
    ///
    /// [`RefreshError::Invalid`] for a token that does not verify;
    /// [`RefreshError::Unavailable`] when the store cannot answer.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), RefreshError> {
        let verified = self
            .refresh_verifier
            .verify(refresh_token)
            .map_err(RefreshError::Invalid)?;
        let family = verified
            .family()
            .ok_or(RefreshError::Invalid(JwtError::MissingClaim("missing fam")))?;
        let end = verified
            .auth_time_unix()
            .unwrap_or_else(|| verified.expires_at_unix())
            .saturating_add(i64::try_from(self.absolute.as_secs()).unwrap_or(i64::MAX));
        self.store
            .revoke_family(family, from_unix(end) + self.access_ttl)
            .await
            .map_err(RefreshError::Unavailable)
    }

    /// Revokes one access token (by `jti`) until it expires.
    ///
    /// # Errors
    ///
    /// When the store cannot answer.
    pub async fn revoke_access_token(&self, principal: &Principal) -> Result<(), StoreError> {
        if let (Some(jti), Some(exp)) = (principal.token_id(), principal.expires_at()) {
            self.store.revoke_token(jti, exp).await?;
        }
        Ok(())
    }

    /// Revokes every token of `subject` issued up to now ("log out
    /// everywhere", password change, compromised account). Tokens issued in
    /// the same second as the call are revoked too: `iat` has one-second
    /// resolution and the check fails safe.
    ///
    /// # Errors
    ///
    /// When the store cannot answer.
    pub async fn revoke_all_for_subject(&self, subject: &str) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.store
            .revoke_subject(
                subject,
                now,
                now + self.absolute.max(self.refresh_ttl) + self.access_ttl,
            )
            .await
    }

    /// The signing key.
    #[must_use]
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

/// 128 random bits, base64url: token ids and family ids.
fn random_id() -> Result<String, SignError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SignError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
