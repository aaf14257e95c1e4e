//! Stop calling a dependency that keeps failing, and give it time to
//! recover.
//!
//! [`CircuitBreakerLayer`] wraps an HTTP client or any
//! `Service<http::Request<_>>` — a JWKS fetcher, a token-introspection or
//! CAPTCHA-siteverify client, a remote identity provider — and follows
//! resilience4j's state machine:
//!
//! 1. **Closed**: calls go through and their outcomes are recorded in a
//!    sliding window, the last *n* calls ([`SlidingWindow::count_based`],
//!    100 by default) or the last *n* seconds
//!    ([`SlidingWindow::time_based`]). A call **fails** when the inner
//!    service returns `Err`, when the classifier says so (tower-http's
//!    [`ServerErrorsAsFailures`] by default: 5xx fail, 4xx do not), or when
//!    it exceeds the call timeout. It is **slow** when its response head
//!    takes longer than the slow-call duration. Once the window holds the
//!    minimum number of calls, the breaker opens as soon as the failure rate
//!    or the slow-call rate reaches its threshold.
//! 2. **Open**: calls are rejected at once with [`error::Open`]; the inner
//!    service is neither called nor polled for readiness. The first call
//!    after the wait in the open state moves the breaker to half-open.
//! 3. **Half-open**: exactly the permitted number of trial calls go
//!    through, however many callers race; the others are rejected. When all
//!    trial calls have completed, the breaker closes if the rates are below
//!    their thresholds and opens again otherwise. A trial call that hangs is
//!    ended by the call timeout and counts as a failure; one whose caller
//!    gives up frees its slot for another trial call.
//! 4. **Forced open** and **disabled** are set by an operator through the
//!    [`BreakerHandle`] and last until [`BreakerHandle::reset`].
//!
//! [`CircuitBreakerLayer::consecutive_failures`] is the simple mode: open
//! after *n* failures in a row, stay open for a while, then close on one
//! successful trial call.
//!
//! Outcomes of calls admitted before a transition are ignored, so a slow
//! call started while closed cannot decide a later half-open state. Every
//! transition is reported exactly once to the listeners registered with
//! [`CircuitBreakerLayer::on_transition`] and, with the `tracing` feature,
//! as one event (target `portcullis::circuit_breaker`, field
//! `event = "security.circuit_state_changed"`).
//!
//! The breaker is general resilience middleware, used on clients as much as
//! on servers. Like tower's `load_shed`, it widens the error type to
//! [`BoxError`]; the errors it adds are [`error::Open`] and
//! [`error::CallTimeout`], found with `downcast_ref`. [`error_response`]
//! turns any of its errors into the crate's fail-closed
//! `503 upstream_unavailable` response.
//!
//! # Security
//!
//! - **Fail closed.** An open breaker rejects; it never lets a call through
//!   and never turns into an authentication decision. The caller decides
//!   what a rejection means: `JwtLayer` over a `RemoteJwks` whose client is
//!   behind a breaker keeps verifying tokens whose keys it already has, and
//!   answers `503 upstream_unavailable` — not 401 — for a token whose key it
//!   would need to fetch.
//! - **It protects the dependency from you**: unknown-`kid` tokens, retries
//!   and reconnect storms do not reach an endpoint that is already failing.
//! - **Opening is an availability decision others may trigger.** Anyone who
//!   can make the dependency fail can open the breaker for every user of
//!   this process. Classify as failures only what says the dependency is
//!   unhealthy: 4xx (including 429) are not failures by default; do not
//!   count per-request rejections.
//! - **Timeouts**: a call dropped by its caller is not recorded (it only
//!   frees its trial slot). Keep the breaker's call timeout shorter than the
//!   caller's own timeout, or hangs stay invisible to the breaker.
//! - Errors, transitions and logs carry the breaker's name and state, never
//!   request or response data.
//! - The state lives in memory, per process: each replica has its own
//!   breaker, and a restart closes it.
//! - The call timeout uses tokio's timer, created only when a call does not
//!   complete on its first poll: run the breaker on a tokio runtime with
//!   time enabled, or use [`CircuitBreakerLayer::without_call_timeout`].
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use portcullis::circuit_breaker::{CircuitBreakerLayer, State, error::Open};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counter = Arc::clone(&calls);
//! // An upstream that answers 503 to everything.
//! let upstream = service_fn(move |_: Request<String>| {
//!     counter.fetch_add(1, Ordering::SeqCst);
//!     async { Ok::<_, std::convert::Infallible>(Response::builder().status(503).body(String::new()).unwrap()) }
//! });
//!
//! // The seed's policy: open after 5 failures in a row, stay open 60 s.
//! let layer = CircuitBreakerLayer::consecutive_failures(5, Duration::from_secs(60))?.with_name("idp");
//! let breaker = layer.handle();
//! let mut client = ServiceBuilder::new().layer(layer).service(upstream);
//!
//! for _ in 0..5 {
//!     let res = client.ready().await?.call(Request::new(String::new())).await?;
//!     assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! }
//! assert_eq!(breaker.state(), State::Open);
//!
//! // Open: calls fail fast, without reaching the upstream.
//! let err = client.ready().await?.call(Request::new(String::new())).await.unwrap_err();
//! let open = err.downcast_ref::<Open>().expect("rejected by the breaker");
//! assert_eq!(open.name(), "idp");
//! assert!(open.retry_after().unwrap() <= Duration::from_secs(60));
//! assert_eq!(calls.load(Ordering::SeqCst), 5);
//! assert_eq!(breaker.metrics().not_permitted_calls(), 1);
//! # Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```
//!
//! # Customizing
//!
//! Rates over a time window, slow calls, a gRPC classifier, and a listener
//! that sees every transition:
//!
//! ```
//! use portcullis::circuit_breaker::{CircuitBreakerLayer, SlidingWindow, State};
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use portcullis::circuit_breaker::classify::GrpcErrorsAsFailures;
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let log = Arc::clone(&seen);
//! let layer = CircuitBreakerLayer::new()
//!     .with_name("introspection")
//!     .with_sliding_window(SlidingWindow::time_based(30))?
//!     .with_minimum_calls(20)?
//!     .with_failure_rate_threshold(25.0)?
//!     .with_slow_call_duration(Duration::from_millis(500))
//!     .with_slow_call_rate_threshold(80.0)?
//!     .with_wait_in_open(Duration::from_secs(10))
//!     .with_permitted_calls_in_half_open(3)?
//!     .with_call_timeout(Duration::from_secs(2))
//!     .with_classifier(GrpcErrorsAsFailures::new())
//!     .on_transition(move |t| log.lock().unwrap().push((t.from(), t.to())));
//!
//! // Operator controls, e.g. from an admin endpoint.
//! let breaker = layer.handle();
//! breaker.force_open();
//! breaker.reset();
//! assert_eq!(breaker.state(), State::Closed);
//! assert_eq!(
//!     *seen.lock().unwrap(),
//!     [(State::Closed, State::ForcedOpen), (State::ForcedOpen, State::Closed)]
//! );
//! # Ok::<(), portcullis::ConfigError>(())
//! ```
//!
//! # Use with axum
//!
//! axum needs services that never fail: put `HandleErrorLayer` with
//! `circuit_breaker::handle_error` (feature `axum`) outside the breaker.
//! Open circuits then answer `503` with `Retry-After`.
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # {
//! use axum::{Router, error_handling::HandleErrorLayer, http::StatusCode, routing::get};
//! use portcullis::circuit_breaker::{self, CircuitBreakerLayer};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! async fn proxy() -> StatusCode {
//!     StatusCode::BAD_GATEWAY // the upstream is down
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let app = Router::new().route("/proxy", get(proxy)).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(circuit_breaker::handle_error))
//!         .layer(CircuitBreakerLayer::consecutive_failures(1, Duration::from_secs(30)).unwrap()),
//! );
//! let get = || axum::http::Request::get("/proxy").body(axum::body::Body::empty()).unwrap();
//!
//! assert_eq!(app.clone().oneshot(get()).await.unwrap().status(), StatusCode::BAD_GATEWAY);
//! let res = app.oneshot(get()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(res.headers()["retry-after"], "30");
//! # });
//! # }
//! ```
//!
//! # Use with tonic
//!
//! Around a tonic `Channel`, classify with tower-http's
//! [`GrpcErrorsAsFailures`](classify::GrpcErrorsAsFailures):
//! gRPC errors arrive as HTTP 200 with `grpc-status`, usually in trailers,
//! which the breaker reads at the end of the response stream
//! ([`ResponseBody`]). tonic clients accept the breaker's `BoxError`; with
//! the `tonic` feature, `From<Open> for tonic::Status` gives
//! `UNAVAILABLE`:
//!
//! ```
//! # #[cfg(feature = "tonic")]
//! # {
//! use portcullis::circuit_breaker::{CircuitBreakerLayer, error::Open};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let layer = CircuitBreakerLayer::new().with_name("users-grpc");
//! layer.handle().force_open();
//! let channel = layer.layer(service_fn(|_: http::Request<tonic::body::Body>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
//! }));
//! let err = channel.oneshot(http::Request::new(tonic::body::Body::empty())).await.unwrap_err();
//! let status = tonic::Status::from(err.downcast::<Open>().map(|open| *open).unwrap());
//! assert_eq!(status.code(), tonic::Code::Unavailable);
//! # });
//! # }
//! ```
//!
//! [`ServerErrorsAsFailures`]: classify::ServerErrorsAsFailures

mod body;
mod config;
pub mod error;
mod future;
mod layer;
mod respond;
mod service;
mod shared;
mod state;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// tower-http's response classifiers, re-exported so that
/// [`CircuitBreakerLayer::with_classifier`] needs no extra dependency.
#[doc(inline)]
pub use tower_http::classify;

pub use body::ResponseBody;
pub use config::SlidingWindow;
pub use future::ResponseFuture;
pub use layer::{CircuitBreakerLayer, MAX_WINDOW_CALLS, MAX_WINDOW_SECONDS};
pub use respond::error_response;
#[cfg(feature = "axum")]
pub use respond::handle_error;
pub use service::CircuitBreaker;
pub use shared::BreakerHandle;
pub use state::{Metrics, State, Transition};

/// The error type of [`CircuitBreaker`]: the inner service's error, or
/// [`error::Open`] / [`error::CallTimeout`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
