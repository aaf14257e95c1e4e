//! A CAPTCHA after repeated failures: the second step of the brute-force
//! escalation ladder (delay → CAPTCHA → lock).
//!
//! [`CaptchaLayer`] sits **inside**
//! [`LockoutLayer`](crate::lockout::LockoutLayer), which reads the failure
//! counts and hands them on as an
//! [`AttemptCounts`](portcullis_core::AttemptCounts) request extension.
//! Once the account or the address has 3 failures (configurable) in its
//! window, a request must carry a CAPTCHA token — header `X-Captcha-Token`
//! or the widget's form / JSON field (`cf-turnstile-response`,
//! `h-captcha-response`, `g-recaptcha-response`) — or it is refused with
//! `403 captcha_required` **before the password is checked**. A token that
//! is malformed, longer than 2048 bytes (refused locally, the provider is
//! not called), already used in this process, or refused by the provider
//! gets `403 captcha_invalid`. A provider that cannot answer gives
//! `503 upstream_unavailable`: fail closed.
//!
//! Verification is provider-neutral ([`CaptchaVerifier`]); [`SiteVerify`]
//! implements the siteverify protocol of Cloudflare Turnstile, hCaptcha
//! and Google reCAPTCHA v2/v3 and checks `success` (strictly the boolean
//! `true`), `hostname`, `action`, the v3 `score`, the age of `challenge_ts`
//! (120 s reCAPTCHA and hCaptcha, 300 s Turnstile) and, for hCaptcha, the
//! site key. Published test secrets are refused at build time unless
//! [`SiteVerifyBuilder::insecure_test_mode`] is set.
//!
//! A verified request's response carries
//! [`CaptchaSolved`](portcullis_core::CaptchaSolved) and a
//! `security.captcha_challenge` event; refusals carry the
//! [`Rejection`](portcullis_core::Rejection) and the event with the reason.
//!
//! # Security
//!
//! - Tokens and secrets never appear in `Debug`, errors, events or
//!   response bodies; the replay cache keeps keyed 64-bit hashes only.
//! - Single use is enforced twice: locally (a token is claimed atomically
//!   before the provider is asked, so concurrent replays reach it at most
//!   once) and by the provider (`timeout-or-duplicate`).
//! - The HTTP client is pluggable ([`SiteVerifyBuilder::client`]). With
//!   the `captcha-tls` feature, `HttpsClient` speaks https to the
//!   providers' endpoints (rustls, the system's certificate store or the
//!   `TlsRoots` you give) and is used by default for an `https` URL;
//!   without it, bring a TLS client. Wrap the client in a
//!   [`CircuitBreakerLayer`](crate::circuit_breaker::CircuitBreakerLayer)
//!   so a failing provider is not hammered; an open circuit fails the check
//!   closed (503) without calling the provider. Plain `http` is accepted
//!   for loopback URLs (test doubles) only, unless explicitly allowed.
//! - Without a `LockoutLayer` outside, there are no counts and a CAPTCHA is
//!   required on every request.
//! - With [`LockoutLayer::with_captcha_unlock`](crate::lockout::LockoutLayer::with_captcha_unlock),
//!   a time-locked account is let through to this layer, which then always
//!   demands a CAPTCHA: the real user can still log in during an
//!   attacker-driven lockout (SECURITY.md row 108).
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use portcullis::captcha::{CaptchaError, CaptchaLayer, CaptchaToken, CaptchaVerifier};
//! use portcullis_core::{AttemptCounts, CaptchaSolved};
//! use std::convert::Infallible;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! /// A stand-in provider: accepts the token "human".
//! struct Oracle;
//! impl CaptchaVerifier for Oracle {
//!     async fn verify(&self, token: &CaptchaToken, _: Option<std::net::IpAddr>) -> Result<(), CaptchaError> {
//!         if token.as_str() == "human" { Ok(()) } else { Err(CaptchaError::Rejected("no")) }
//!     }
//! }
//!
//! let service = CaptchaLayer::new(Oracle).layer(service_fn(|_req: Request<String>| async {
//!     Ok::<_, Infallible>(Response::new("password checked".to_owned()))
//! }));
//! // What LockoutLayer would insert after three failures.
//! let after_failures = |token: Option<&str>| {
//!     let mut req = Request::post("/login");
//!     if let Some(token) = token {
//!         req = req.header("x-captcha-token", token);
//!     }
//!     let mut req = req.body(String::new()).unwrap();
//!     req.extensions_mut().insert(AttemptCounts { account: Some(3), ..AttemptCounts::default() });
//!     req
//! };
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let res = service.clone().oneshot(after_failures(None)).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert!(res.body().contains("captcha_required"));
//!
//! let res = service.clone().oneshot(after_failures(Some("bot"))).await.unwrap();
//! assert!(res.body().contains("captcha_invalid"));
//!
//! let res = service.clone().oneshot(after_failures(Some("human"))).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert!(res.extensions().get::<CaptchaSolved>().is_some());
//!
//! // Single use.
//! let res = service.oneshot(after_failures(Some("human"))).await.unwrap();
//! assert!(res.body().contains("captcha_invalid"));
//! # });
//! ```
//!
//! # With `LockoutLayer` and Turnstile (axum)
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # {
//! use axum::{Router, routing::post};
//! use portcullis::captcha::{CaptchaLayer, SiteVerify};
//! use portcullis::lockout::{IdentifierSource, LockoutLayer};
//! use portcullis_core::MemoryAttemptStore;
//!
//! async fn login() -> &'static str { "checks the password, attaches an AuthOutcome" }
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let turnstile = SiteVerify::turnstile("0x4AAAAAAA-your-secret")
//!     .hostname("login.example.com")
//!     .action("login")
//!     // In production: .client(a TLS client behind a CircuitBreakerLayer)
//!     .verify_url("http://127.0.0.1:8787/siteverify")?
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     // Last added is outermost: lockout, then CAPTCHA, then the handler.
//!     .layer(CaptchaLayer::new(turnstile))
//!     .layer(
//!         LockoutLayer::new(MemoryAttemptStore::default())
//!             .with_identifier(IdentifierSource::field("username"))
//!             .with_captcha_unlock(),
//!     );
//! # let _ = app; Ok(()) }
//! # main().unwrap();
//! # }
//! ```

mod layer;
mod provider;
mod replay;
mod siteverify;
mod timestamp;
#[cfg(feature = "captcha-tls")]
mod tls;
mod verifier;

#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "captcha-tls"))]
mod tls_tests;

pub use layer::{Captcha, CaptchaLayer, DEFAULT_THRESHOLD, DEFAULT_TOKEN_HEADER, ResponseFuture};
pub use provider::{Provider, is_test_secret};
pub use replay::DEFAULT_REPLAY_CAPACITY;
pub use siteverify::{DEFAULT_VERIFY_TIMEOUT, SiteVerify, SiteVerifyBuilder};
#[cfg(feature = "captcha-tls")]
pub use tls::{HttpsClient, TlsRoots};
pub use verifier::{CaptchaError, CaptchaToken, CaptchaVerifier, MAX_TOKEN_LEN};
