//! Composable [tower] middleware for authentication and authorization.
//!
//! Any hyper, axum or tonic application assembles its own auth pipeline from
//! Portcullis layers. Layers speak only `http` types, never call each other,
//! and talk through request and response extensions (see
//! [`portcullis_core::outcome`]): an authenticator puts a [`Principal`] on
//! the request; every rejection is a response carrying a [`Rejection`],
//! never a `Service::Error`, and authenticators also attach an
//! [`AuthOutcome`] (success or failure) that lockout and audit layers read.
//! Authorization failures (`RequireLayer`) carry only the `Rejection`: they
//! are not failed logins.
//!
//! | layer | module | feature |
//! | --- | --- | --- |
//! | `JwtLayer`: bearer-JWT authentication, key rotation, remote JWKS, revocation; `TokenIssuer` for access/refresh pairs | [`jwt`] | `jwt`, `jwks` |
//! | `ApiKeyLayer`: prefixed, checksummed API keys hashed at rest; `ApiKeys` to create, list, revoke and rotate them | [`api_key`] | `api-key` |
//! | `AuthenticateLayer` and the `or` / `optional` / `all_of` / `with_fallback` combinators | [`authenticate`] | `authenticate` |
//! | `RequireLayer`: scope and role checks | [`authorize`] | `authorize` |
//! | `ClientIpLayer`: client address without trusting spoofed headers | [`client_ip`] | `client-ip` |
//! | `CsrfLayer`: Fetch Metadata / Origin checks, then signed double-submit tokens bound to the session; `CsrfToken` extractor | [`csrf`] | `csrf` |
//! | `LockoutLayer`: failure counting per account, IP and account+IP with atomic reservations, growing capped locks, IP block list, per-IP rate limit; `LockoutAdmin` | [`lockout`] | `lockout` |
//! | `CaptchaLayer`: a CAPTCHA after N failures; `SiteVerify` for Turnstile, hCaptcha, reCAPTCHA v2/v3 | [`captcha`] | `captcha` |
//! | `CircuitBreakerLayer`: closed / open / half-open around a dependency (JWKS, introspection, siteverify) | [`circuit_breaker`] | `circuit-breaker` |
//! | `AuditLayer`: one structured security event per decision, batched to an `AuditSink`; Prometheus metrics with bounded labels | [`audit`] | `audit`, `prometheus` |
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `jwt` | no | [`jwt`]: `JwtLayer`, `JwtVerifier`, keys, `TokenIssuer` |
//! | `jwks` | no | remote JWKS over HTTP (implies `jwt`) |
//! | `api-key` | no | [`api_key`]: `ApiKeyLayer`, `ApiKeys`, `KeyFormat` (aws-lc-rs, quick_cache, tokio `rt` for background `last_used_at` writes) |
//! | `authenticate` | no | [`authenticate`]: composable authenticators, `AuthenticateLayer` |
//! | `authorize` | no | [`authorize`]: `RequireLayer` |
//! | `client-ip` | no | [`client_ip`]: `ClientIpLayer` |
//! | `csrf` | no | [`csrf`]: `CsrfLayer`, `CsrfToken` (aws-lc-rs HMAC, subtle) |
//! | `lockout` | no | [`lockout`]: `LockoutLayer`, `LockoutAdmin` (governor, unicode-normalization, tokio) |
//! | `captcha` | no | [`captcha`]: `CaptchaLayer`, `SiteVerify` over a pluggable HTTP client (implies `lockout`) |
//! | `circuit-breaker` | no | [`circuit_breaker`]: `CircuitBreakerLayer` (tower-http `classify`, tokio timers) |
//! | `audit` | no | [`audit`]: `AuditLayer`, `Auditor`, sinks, metrics through the `metrics` facade (implies `client-ip`) |
//! | `prometheus` | no | [`audit::prometheus`]: recorder and `/metrics` route (metrics-exporter-prometheus) |
//! | `axum` | no | `Principal` extractor, `ConnectInfo` support, axum bodies for rejections, `circuit_breaker::handle_error` |
//! | `tonic` | no | `From<Rejection>` and `From<circuit_breaker::error::Open>` for `tonic::Status`, `NamedService` forwarding, tonic bodies |
//! | `tracing` | no | `trace!` events at decisions (target `portcullis::rejection`); circuit transitions (target `portcullis::circuit_breaker`) |
//! | `full` | no | all of the above |
//!
//! # Ordering
//!
//! Outermost first, as `ServiceBuilder` reads: audit → client IP → block
//! list / rate limit → lockout → CAPTCHA → CSRF → authenticate (`JwtLayer`)
//! → authorize (`RequireLayer`) → handler. With axum's `Router::layer`, the
//! last layer added is the outermost. Prefer one `Router::layer` holding a
//! `tower::ServiceBuilder` of the whole chain to one `Router::layer` per
//! layer: axum boxes each of those levels and clones every box per request
//! (about 10 % of the full pipeline's cost, `docs/benchmarks.md`).
//! `CircuitBreakerLayer` is not in this
//! chain: it wraps the dependencies (the JWKS client, an introspection or
//! siteverify client).
//!
//! # Example (axum)
//!
//! ```
//! # #[cfg(all(feature = "axum", feature = "jwt", feature = "authorize"))]
//! # {
//! use axum::{Router, routing::get};
//! use portcullis::authorize::RequireLayer;
//! use portcullis::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, VerifyingKey};
//! use portcullis_core::Principal;
//!
//! async fn me(principal: Principal) -> String {
//!     principal.subject().to_owned()
//! }
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let keys = KeySet::new().with_key(VerifyingKey::hmac(Algorithm::HS256, "an-example-secret-of-32-bytes-or-more!")?)?;
//! let app: Router = Router::new()
//!     .route("/orders", get(me).layer(RequireLayer::scopes(["orders:read"])))
//!     .route("/me", get(me))
//!     .layer(JwtLayer::new(JwtVerifier::builder(keys).audience("orders-api").build()?));
//! # let _ = app; Ok(()) }
//! # main().unwrap();
//! # }
//! ```
//!
//! [tower]: https://docs.rs/tower
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use portcullis_core as core;
#[doc(inline)]
pub use portcullis_core::{
    AuthMethod, AuthOutcome, Challenge, Clock, EventKind, FailureReason, FakeClock,
    MemoryRevocationStore, Principal, PrincipalKind, Rejection, RevocationStore, SecurityEvent,
    SecurityEvents, StoreError, StoreErrorKind, SystemClock,
};

mod error;
#[cfg(any(feature = "jwt", feature = "api-key", feature = "authenticate"))]
mod future;
mod macros;
pub mod rejection;

#[cfg(feature = "api-key")]
pub mod api_key;
#[cfg(feature = "audit")]
pub mod audit;
#[cfg(feature = "authenticate")]
pub mod authenticate;
#[cfg(feature = "authorize")]
pub mod authorize;
#[cfg(feature = "captcha")]
pub mod captcha;
#[cfg(feature = "circuit-breaker")]
pub mod circuit_breaker;
#[cfg(feature = "client-ip")]
pub mod client_ip;
#[cfg(feature = "csrf")]
pub mod csrf;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(feature = "lockout")]
pub mod lockout;
#[cfg(all(test, any(feature = "jwt", feature = "api-key")))]
mod test_support;
#[cfg(feature = "tonic")]
mod tonic_support;

pub use error::ConfigError;
