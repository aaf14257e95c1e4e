//! Authenticate requests with an API key kept as a digest in an
//! [`ApiKeyStore`].
//!
//! Keys look like GitHub's tokens: `pc_live_<key id>_<secret><checksum>`
//! (see [`KeyFormat`]), with a readable issuer and environment prefix, a
//! public 12-character key id, a 30-character base62 secret (≈ 178 random
//! bits) and a CRC32 checksum in the last six characters. [`ApiKeyLayer`]
//! reads the key from `X-API-Key` (configurable) or `Authorization: ApiKey
//! <key>` and decides:
//!
//! 1. no key: `401 missing_token` with a `WWW-Authenticate: ApiKey`
//!    challenge without `error=`; a key sent only in the query string is
//!    never read and counts as no key (the rejection's detail notes it);
//! 2. a malformed request — two keys (`X-API-Key` twice, `X-API-Key` and
//!    `Authorization: ApiKey`, or the same key also sent as a bearer
//!    token), an empty value, or a key in a header *and* the query string:
//!    `400 invalid_request`;
//! 3. a key longer than 255 characters, with a character outside
//!    `[A-Za-z0-9_]`, of another issuer or environment, of the wrong shape
//!    or with a checksum that does not match: `401 invalid_api_key` **without
//!    a store lookup**;
//! 4. otherwise the key's digest is compared in constant time with the
//!    record of its key id — from the positive-lookup cache, or from one
//!    store lookup. An unknown id and a wrong secret give the same
//!    response, `401 invalid_api_key`, after the same work (one lookup, one
//!    comparison);
//! 5. a revoked key: `401 api_key_revoked`; an expired one (or the old key
//!    of a rotation past its deadline): `401 api_key_expired`;
//! 6. the store cannot answer: `503 upstream_unavailable`, never let
//!    through.
//!
//! Accepted requests carry a [`Principal`](portcullis_core::Principal) of
//! kind [`ApiKey`](portcullis_core::PrincipalKind::ApiKey): the key's owner
//! as subject, its scopes (so `RequireLayer` treats users and machines
//! alike), its key id as token id. Their responses carry an
//! [`AuthOutcome`](portcullis_core::AuthOutcome) success with method
//! `api_key`; rejected ones the [`Rejection`](portcullis_core::Rejection)
//! and a failure outcome. gRPC requests get trailers-only
//! `UNAUTHENTICATED` / `UNAVAILABLE` responses.
//!
//! [`ApiKeys`] manages keys: create (the full key is returned once), list
//! (never secrets), revoke, rotate (a new key now, the old one valid until
//! a deadline). `last_used_at` is written at most once a minute per key
//! (configurable), from a spawned task: a request never waits for it.
//!
//! # Security
//!
//! - Keys are stored as SHA-256 digests, or HMAC-SHA256 under a server-side
//!   pepper with [`ApiKeyLayer::with_pepper`]. With ≥ 112 bits of randomness
//!   a plain hash is enough (ASVS 6.5.2): no dictionary covers the key
//!   space. The plaintext exists only in the client and, once, in
//!   [`CreatedApiKey`].
//! - Digests are compared with `subtle`'s constant-time equality (ASVS
//!   11.2.4), and only the key id — public by design — selects the record.
//! - Revocation takes effect **within the cache TTL** (default 5 s,
//!   [`DEFAULT_CACHE_TTL`]) on every instance, and at once on the instance
//!   whose [`ApiKeys`] revoked it. Only accepted keys are cached; expiry is
//!   checked on every cache hit. Set the TTL to zero to ask the store on
//!   every request.
//! - Keys are never read from URLs (ASVS 14.2.1): URLs end up in logs,
//!   browser history and `Referer` headers.
//! - Bodies and challenges never echo the key or its id; `Debug` output of
//!   every type here hides keys, digests and the pepper.
//! - A proxy that strips `X-API-Key` turns every request into "no key"; one
//!   that logs headers logs keys — configure it to mask `X-API-Key` and
//!   `Authorization`.
//! - Not done here: rate limiting guesses (use the lockout / rate-limit
//!   layers in front), binding keys to IP ranges.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use portcullis::api_key::{ApiKeyLayer, NewApiKey};
//! use portcullis_core::{MemoryApiKeyStore, Principal, PrincipalKind};
//! use std::convert::Infallible;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let layer = ApiKeyLayer::new(MemoryApiKeyStore::default());
//! let created = layer
//!     .keys()
//!     .create(NewApiKey::new("user123", "ci-deploy").with_scopes(["workflows:run"]))
//!     .await?;
//!
//! let service = layer.layer(service_fn(|req: Request<String>| async move {
//!     let principal = req.extensions().get::<Principal>().unwrap();
//!     assert_eq!(principal.kind(), PrincipalKind::ApiKey);
//!     assert!(principal.has_scope("workflows:run"));
//!     Ok::<_, Infallible>(Response::new(principal.subject().to_owned()))
//! }));
//!
//! // The key, as the client sends it.
//! let req = Request::builder().header("x-api-key", created.key()).body(String::new())?;
//! let res = service.clone().oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.body(), "user123");
//!
//! // No key: a bare challenge.
//! let res = service.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], "ApiKey");
//!
//! // A typo: the checksum fails, the store is not asked.
//! let mut typo = created.key().to_owned();
//! typo.replace_range(30..31, if &typo[30..31] == "a" { "b" } else { "a" });
//! let req = Request::builder().header("x-api-key", typo).body(String::new())?;
//! let res = service.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert!(res.body().contains("invalid_api_key"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Customizing
//!
//! Issuer and environment, a pepper, the header, the cache bound and the
//! rejection response:
//!
//! ```
//! use http::{HeaderMap, HeaderName, Response};
//! use portcullis::api_key::{ApiKeyLayer, KeyFormat};
//! use portcullis_core::{MemoryApiKeyStore, Rejection};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let pepper = [0x42u8; 32]; // from your secret manager, never from source
//! let layer = ApiKeyLayer::new(MemoryApiKeyStore::default())
//!     .with_format(KeyFormat::new("acme", "staging")?)
//!     .with_pepper(pepper)?
//!     .with_header(HeaderName::from_static("x-acme-key"))
//!     .with_realm("acme")
//!     .with_cache(50_000, Duration::from_secs(2)) // revocation bound: 2 s
//!     .with_rejection_response(|_: &HeaderMap, rejection: &Rejection| {
//!         let mut res = Response::new(format!("denied: {}", rejection.reason()));
//!         *res.status_mut() = rejection.status();
//!         res
//!     });
//! assert_eq!(layer.format().prefix(), "acme_staging_");
//! # Ok(()) }
//! ```
//!
//! # Composing with a JWT
//!
//! With the `authenticate` feature, [`ApiKeyLayer::authenticator`] composes
//! with other authenticators: the first credential present decides, and a
//! request with neither gets both challenges.
//!
//! ```
//! # #[cfg(all(feature = "authenticate", feature = "jwt"))]
//! # {
//! use http::{Request, Response, StatusCode};
//! use portcullis::api_key::ApiKeyLayer;
//! use portcullis::authenticate::{AuthenticateExt, AuthenticateLayer};
//! use portcullis::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, VerifyingKey};
//! use portcullis_core::MemoryApiKeyStore;
//! use std::convert::Infallible;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let keys = KeySet::new().with_key(VerifyingKey::hmac(Algorithm::HS256, "an-example-secret-of-32-bytes-or-more!")?)?;
//! let jwt = JwtLayer::new(JwtVerifier::builder(keys).build()?).with_realm("api");
//! let api_key = ApiKeyLayer::new(MemoryApiKeyStore::default());
//!
//! let service = AuthenticateLayer::new(jwt.authenticator().or(api_key.authenticator()))
//!     .layer(service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
//! let res = service.oneshot(Request::new(String::new())).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api", ApiKey"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # }
//! ```
//!
//! # Use with tonic
//!
//! `ApiKeyLayer` is a tower layer over `http` types, so it goes on tonic's
//! server builder; clients send the key as `x-api-key` metadata:
//!
//! ```text
//! tonic::transport::Server::builder()
//!     .layer(ApiKeyLayer::new(store))
//!     .add_service(GreeterServer::new(greeter))
//! ```

mod cache;
mod extract;
mod format;
#[cfg(feature = "audit")]
pub(crate) use format::public_prefix;
mod layer;
mod manage;
mod service;

use std::fmt;

use portcullis_core::StoreError;

pub use crate::future::ResponseFuture;
pub use format::{
    CHECKSUM_LEN, KEY_ID_LEN, KeyFormat, KeyFormatError, MAX_KEY_LEN, ParsedKey, SECRET_LEN,
};
#[cfg(feature = "authenticate")]
pub use layer::ApiKeyAuthenticator;
pub use layer::{ApiKeyLayer, DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL, DEFAULT_TOUCH_INTERVAL};
pub use manage::{ApiKeys, CreatedApiKey, NewApiKey, RotatedApiKey};
#[doc(inline)]
pub use portcullis_core::api_key::{
    ApiKeyDigest, ApiKeyFilter, ApiKeyInfo, ApiKeyRecord, ApiKeyStore, BoxApiKeyStore,
    MemoryApiKeyStore,
};
pub use service::ApiKey;

/// A management operation ([`ApiKeys`]) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// No key has this id.
    NotFound,
    /// The key is revoked or expired (it cannot be rotated).
    Inactive,
    /// An input is out of bounds.
    Invalid {
        /// Which input.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The system random number generator failed.
    Random(crate::ConfigError),
    /// The store failed; the source is kept.
    Store(StoreError),
}

impl fmt::Display for ApiKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no API key with this id"),
            Self::Inactive => f.write_str("the API key is revoked or expired"),
            Self::Invalid { field, reason } => write!(f, "invalid {field}: {reason}"),
            Self::Random(_) => f.write_str("could not generate a key"),
            Self::Store(_) => f.write_str("the API key store failed"),
        }
    }
}

impl std::error::Error for ApiKeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Random(err) => Some(err),
            Self::Store(err) => Some(err),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiKeyError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

#[cfg(test)]
mod tests;
