//! Cross-site request forgery protection, to the OWASP CSRF Prevention
//! Cheat Sheet: Fetch Metadata and origin checks first, then a signed
//! double-submit token bound to the session.
//!
//! [`CsrfLayer`] lets safe methods (`GET`, `HEAD`, `OPTIONS`) through,
//! deciding on the real method: method-override headers
//! (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`) and
//! `_method` query parameters are removed from safe requests, so nothing
//! behind the layer can turn a GET into a state change, and a POST that
//! asks to be treated as a GET is still checked as a POST.
//!
//! A state-changing request must pass, in order:
//!
//! 1. **the first line**: `Sec-Fetch-Site: cross-site` is refused;
//!    `same-site` is refused unless the origin is trusted (see
//!    [`SameSitePolicy`]); an `Origin` (or, when `Origin` is absent, the
//!    origin of `Referer`) must be **exactly** a trusted origin — scheme,
//!    host and port; `Origin: null` and look-alikes such as
//!    `https://example.org.attacker.com` fail. Missing headers are not
//!    evidence of a same-origin request: by default the token alone then
//!    decides ([`MissingOriginPolicy`]). Failures: `403 cross_origin`;
//! 2. **the token**: the `__Host-csrf` cookie and the `X-CSRF-Token` header
//!    (or a form field, [`CsrfLayer::with_form_field`]) must be present
//!    (`403 csrf_missing`), byte-equal in constant time, well formed, and
//!    signed for the **current** session (`403 csrf_mismatch`). The token
//!    format is the cheat sheet's: `hex(HMAC-SHA256(secret, len(sid) "!"
//!    sid "!" len(rand) "!" rand)) "." rand` with 64 random bytes (see
//!    [`CsrfSecret`]);
//! 3. optionally **the store** ([`CsrfLayerBuilder::store`]): the token
//!    must still be held for the session (synchronizer tokens, seed 003's
//!    `csrf_tokens` table), optionally single use.
//!
//! Responses get `Vary: Sec-Fetch-Site, Origin` (merged with an existing
//! `Vary`). A safe request without a valid token cookie gets a new one:
//! `__Host-csrf=…; Path=/; Secure; HttpOnly; SameSite=Lax`, no `Domain`.
//! Handlers read the token, and rotate it at login, through the
//! [`CsrfToken`] request extension (an axum extractor with the `axum`
//! feature).
//!
//! Refused requests get the crate's rejection response (JSON, problem
//! details or gRPC `PERMISSION_DENIED`) with the
//! [`Rejection`](portcullis_core::Rejection) and a `security.csrf_violation`
//! [`SecurityEvent`](portcullis_core::SecurityEvent) in the response
//! extensions, and never reach the inner service. In shadow mode the event
//! is marked shadow and the request goes through. A store that cannot
//! answer gives `503 upstream_unavailable`, never a pass.
//!
//! The guide, with the reasoning behind each default, is `docs/csrf.md`.
//!
//! # Example
//!
//! ```
//! use http::{Method, Request, Response, StatusCode};
//! use portcullis::csrf::{CsrfLayer, CsrfSecret, CsrfToken, SessionCookie};
//! use std::convert::Infallible;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let layer = CsrfLayer::builder(CsrfSecret::new(b"a-32-byte-secret-from-your-vault!")?)
//!     .trusted_origin("https://app.example.org")
//!     .session(SessionCookie::new("session"))
//!     .build()?;
//! let app = layer.layer(service_fn(|req: Request<String>| async move {
//!     // Render the token into the page (or let scripts read it).
//!     let token = req.extensions().get::<CsrfToken>().unwrap().token().await.unwrap();
//!     Ok::<_, Infallible>(Response::new(token))
//! }));
//!
//! // The page: the response sets the cookie and carries the token.
//! let page = app.clone().oneshot(
//!     Request::get("/").header("cookie", "session=s1").body(String::new())?,
//! ).await?;
//! let set_cookie = page.headers()["set-cookie"].to_str()?.to_owned();
//! assert!(set_cookie.starts_with("__Host-csrf="));
//! assert!(set_cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"));
//! let token = page.into_body();
//!
//! // The form post: cookie and header agree, signed for session s1.
//! let post = |origin: &str, token: &str| {
//!     Request::builder()
//!         .method(Method::POST)
//!         .uri("/transfer")
//!         .header("origin", origin)
//!         .header("cookie", format!("session=s1; __Host-csrf={token}"))
//!         .header("x-csrf-token", token)
//!         .body(String::new())
//!         .unwrap()
//! };
//! let ok = app.clone().oneshot(post("https://app.example.org", &token)).await?;
//! assert_eq!(ok.status(), StatusCode::OK);
//!
//! // Another origin is refused before the token is even looked at.
//! let evil = app.oneshot(post("https://app.example.org.attacker.com", &token)).await?;
//! assert_eq!(evil.status(), StatusCode::FORBIDDEN);
//! assert!(evil.body().contains("cross_origin"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod config;
mod cookie;
mod form;
mod future;
mod handle;
mod layer;
mod origin;
mod service;
mod session;
mod token;

pub use config::{CsrfLayerBuilder, DEFAULT_HEADER, DEFAULT_STORE_TTL};
pub use cookie::{DEFAULT_COOKIE_NAME, SameSite};
pub use form::{DEFAULT_MAX_FORM_BODY, FormField, FormRead, HeaderOnly, TokenLocation};
pub use future::ResponseFuture;
#[cfg(feature = "axum")]
pub use handle::MissingCsrfLayer;
pub use handle::{CsrfError, CsrfExempt, CsrfToken};
pub use layer::CsrfLayer;
pub use origin::{MissingOriginPolicy, SameSitePolicy};
#[doc(inline)]
pub use portcullis_core::csrf::{
    BoxCsrfTokenStore, CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore, MemoryCsrfTokenStore,
};
pub use service::Csrf;
pub use session::{NoSession, SessionCookie, SessionExtension, SessionIdSource};
pub use token::{
    CsrfSecret, MAC_HEX_LEN, MIN_SECRET_LEN, RANDOM_HEX_LEN, RANDOM_LEN, RandomError, TOKEN_LEN,
};

#[cfg(test)]
mod tests;
