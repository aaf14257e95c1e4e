//! Authenticate requests with a bearer JWT.
//!
//! [`JwtLayer`] reads the token from `Authorization: Bearer` (or a cookie),
//! verifies it with a [`JwtVerifier`], and on success puts the
//! [`Principal`](portcullis_core::Principal) in the request extensions.
//! Requests are rejected when:
//!
//! 1. no token is sent: `401` with a `WWW-Authenticate: Bearer` challenge
//!    without `error=` (`missing_token`);
//! 2. the request is malformed (two `Authorization` headers, an empty bearer
//!    value, a token in both header and cookie or also in the query string):
//!    `400 invalid_request`;
//! 3. the token fails any check of [`JwtVerifier`]: `401` with
//!    `error="invalid_token"` and reason `invalid_token`,
//!    `invalid_signature` or `token_expired`;
//! 4. the token is revoked (with [`JwtLayer::with_revocation`]):
//!    `401 token_revoked`; if the revocation store cannot answer,
//!    `503 upstream_unavailable` — never let through.
//!
//! Rejected requests never reach the inner service. Their responses carry the
//! [`Rejection`](portcullis_core::Rejection) and an
//! [`AuthOutcome`](portcullis_core::AuthOutcome) in their extensions; accepted
//! requests' responses carry a success outcome. gRPC requests get
//! trailers-only responses (`UNAUTHENTICATED`). Response bodies name the
//! reason and nothing else.
//!
//! # Security
//!
//! - Algorithms are an allow-list and every key is bound to one algorithm
//!   (RFC 8725 §3.1): `alg: none`, RS256→HS256 confusion and algorithm
//!   substitution cannot select a key. Key material is checked when keys are
//!   built: HMAC secrets shorter than the hash, well-known example secrets,
//!   RSA keys under 2048 bits and ROCA moduli are refused.
//! - `jku`, `x5u`, `jwk` and `x5c` headers are never used; keys come only
//!   from the [`KeySet`] or the configured JWKS URL.
//! - The token length is capped before any decoding; header and signature
//!   are decoded into fixed stack buffers; JSON nesting is bounded by
//!   serde_json's recursion limit; duplicate JSON members are refused.
//! - HMAC tags are compared in constant time (aws-lc-rs `hmac::verify`).
//! - Claims are read only after the signature verified. `exp` and `sub` are
//!   required, `nbf` is always checked, `iat` may not be in the future, the
//!   lifetime is capped (24 h by default), `iss` is compared exactly, and a
//!   token with an `aud` is refused unless it names a configured audience.
//! - The `typ` policy keeps refresh tokens (`refresh+jwt`) and other token
//!   kinds out of access-token routes.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use portcullis::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, VerifyingKey};
//! use portcullis_core::Principal;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let secret = "an-example-secret-of-32-bytes-or-more!";
//! let keys = KeySet::new().with_key(VerifyingKey::hmac(Algorithm::HS256, secret)?)?;
//! let verifier = JwtVerifier::builder(keys).issuer("https://auth.example").build()?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(JwtLayer::new(verifier))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let who = req.extensions().get::<Principal>().unwrap().subject().to_owned();
//!         Ok::<_, Infallible>(Response::new(who))
//!     }));
//!
//! // No token: 401 with a bare challenge.
//! let res = service.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], "Bearer");
//!
//! // A valid token (minted here with the `jsonwebtoken` crate).
//! let claims = serde_json::json!({
//!     "sub": "user-1", "iss": "https://auth.example",
//!     "exp": jsonwebtoken::get_current_timestamp() + 600,
//! });
//! let token = jsonwebtoken::encode(
//!     &jsonwebtoken::Header::default(),
//!     &claims,
//!     &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
//! )?;
//! let req = Request::builder()
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(String::new())?;
//! let res = service.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.body(), "user-1");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Customizing the rejection
//!
//! ```
//! use http::{HeaderMap, Response, StatusCode};
//! use portcullis::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, VerifyingKey};
//! use portcullis_core::Rejection;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = KeySet::new().with_key(VerifyingKey::hmac(Algorithm::HS256, "an-example-secret-of-32-bytes-or-more!")?)?;
//! let layer = JwtLayer::new(JwtVerifier::builder(keys).build()?)
//!     .with_rejection_response(|_: &HeaderMap, rejection: &Rejection| {
//!         let mut res = Response::new(format!("go away ({})", rejection.reason()));
//!         *res.status_mut() = rejection.status();
//!         res
//!     });
//! # let _ = layer; Ok(()) }
//! ```
//!
//! # Use with tonic
//!
//! `JwtLayer` is a tower layer over `http` types, so it goes on tonic's
//! server builder directly (tonic's synchronous interceptors cannot await a
//! revocation store or a JWKS refresh):
//!
//! ```text
//! tonic::transport::Server::builder()
//!     .layer(JwtLayer::new(verifier))
//!     .add_service(GreeterServer::new(greeter))
//! ```
//!
//! Handlers read `request.extensions().get::<Principal>()`; rejected calls
//! reach the client as `UNAUTHENTICATED` / `PERMISSION_DENIED` statuses.

mod algorithm;
mod cache;
mod error;
mod extract;
pub mod issue;
#[cfg(feature = "jwks")]
pub mod jwks;
mod key;
mod keyset;
mod layer;
mod parse;
mod service;
mod verifier;

pub use crate::future::ResponseFuture;
pub use algorithm::{Algorithm, KeyFamily};
pub use error::JwtError;
pub use issue::{RefreshError, SigningKey, TokenIssuer, TokenPair};
pub use key::{Jwk, VerifyingKey};
pub use keyset::{KeySet, MAX_KEYS};
#[cfg(feature = "authenticate")]
pub use layer::JwtAuthenticator;
pub use layer::{DEFAULT_REVOCATION_CACHE_TTL, JwtLayer};
pub use service::Jwt;
pub use verifier::{
    DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_TOKEN_LEN, JwtVerifier, JwtVerifierBuilder,
    TypPolicy, VerifiedToken,
};
#[cfg(test)]
mod tests;
