//! Cross-crate integration tests: Portcullis layers in axum, bare hyper and
//! tonic servers, and a remote JWKS, all over real loopback HTTP.
//!
//! One test binary (one link) with a module per integration:
//!
//! - `api_key`: `ApiKeyLayer` composed with `JwtLayer` (`jwt.or(api_key)`)
//!   in an axum app with seed 002's key admin endpoints, and on a tonic
//!   server;
//! - `with_axum`: `JwtLayer` + `RequireLayer` in an axum 0.8 router, the
//!   `Principal` extractor, and the outcome protocol read by an outer layer;
//! - `with_hyper`: `JwtLayer` around a `service_fn` served by hyper 1.x;
//! - `with_tonic`: `JwtLayer` on a tonic 0.14 server with a hand-written
//!   unary gRPC service (no protoc);
//! - `jwks`: `RemoteJwks` against a local JWKS server whose keys change;
//! - `audit`: `AuditLayer` in front of all of them: one record per
//!   decision, no secrets in the output, panics caught;
//! - `csrf`, `csrf_browser`: `CsrfLayer` over HTTP and in headless Chromium;
//! - `lockout`, `captcha`: `LockoutLayer` and `CaptchaLayer` on a login
//!   route, with a fake siteverify server answering like each provider;
//! - `breaker`: the JWKS client behind `CircuitBreakerLayer` while the JWKS
//!   server fails;
//! - `shared_state`: two app instances sharing Redis or PostgreSQL (lockout
//!   across instances, logout propagation, 200 concurrent failures) and the
//!   backend cut mid-run through `fault_proxy`.

#[path = "interop/api_key.rs"]
mod api_key;
#[path = "interop/audit.rs"]
mod audit;
#[path = "interop/breaker.rs"]
mod breaker;
#[path = "interop/captcha.rs"]
mod captcha;
#[path = "interop/common.rs"]
mod common;
#[path = "interop/csrf.rs"]
mod csrf;
#[path = "interop/csrf_browser.rs"]
mod csrf_browser;
#[path = "interop/fault_proxy.rs"]
mod fault_proxy;
#[path = "interop/jwks.rs"]
mod jwks;
#[path = "interop/lockout.rs"]
mod lockout;
#[path = "interop/shared_state.rs"]
mod shared_state;
#[path = "interop/axum.rs"]
mod with_axum;
#[path = "interop/hyper.rs"]
mod with_hyper;
#[path = "interop/tonic.rs"]
mod with_tonic;
