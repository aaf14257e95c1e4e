//! `AuditLayer`: one structured security event per decision, and metrics.
//!
//! The seeds' operators diagnose everything from two sources: JSON security
//! events (`jq` over the log) and Prometheus metrics. The audit layer is the
//! outermost layer of a pipeline; on the way out it reads what the layers
//! below attached to the response — the [`AuthOutcome`], the [`Rejection`],
//! any [`SecurityEvent`]s — and
//!
//! - queues one [`AuditRecord`] per decision (and one per event a layer
//!   reported: a lock, a block, a CSRF violation) in seed 000's shape:
//!   `timestamp`, `level`, `event`, `message`, `context {user_id,
//!   ip_address, failure_reason, token_prefix, endpoint, user_agent, …}`,
//!   `trace_id`;
//! - counts the request, its duration and its outcome with pre-registered
//!   `metrics` handles whose labels are bounded enums (see
//!   [`metrics::names`]).
//!
//! Records are written by a background task in batches, to the
//! [`TracingSink`] by default, or to any [`AuditSink`]: a
//! [`JsonLinesSink`], the bounded [`MemoryAuditSink`], a database. A full
//! queue drops and counts; a slow sink never slows a request.
//!
//! A queued request owns no heap memory in the common case: the request
//! path copies the path, user agent, trace id, credential prefix and
//! subject into the entry, so the background task, on another thread, frees
//! nothing the request thread allocated (glibc's `malloc` serialises such
//! frees on an arena lock; `docs/benchmarks.md`, "The allocator decides the
//! wall time"), and no header value keeps a connection's read buffer alive
//! while it waits. Responses that carry [`SecurityEvent`]s or a missing
//! permission still hand those over.
//!
//! Nothing secret reaches a record: only the first six characters of a
//! credential (`token_prefix`; for an API key its labels and public key
//! id, `pc_live_3kq9x0c1v2b7`), email-like identifiers as keyed pseudonyms
//! (`email:3fa9c2d1e0b4`), paths without query strings, and every
//! attacker-controlled string with control characters replaced and its
//! length capped.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::convert::Infallible;
//!
//! use http::{Request, Response, StatusCode};
//! use portcullis::audit::{AuditLayer, Auditor};
//! use portcullis::core::MemoryAuditSink;
//! use portcullis::{AuthMethod, AuthOutcome, FailureReason};
//! use tower::{ServiceBuilder, ServiceExt as _};
//!
//! let sink = MemoryAuditSink::new(1000);
//! let auditor = Auditor::builder().sink(sink.clone()).build().unwrap();
//!
//! // A login handler reporting a failed password check.
//! let login = tower::service_fn(|_req: Request<()>| async {
//!     let mut res = Response::new(());
//!     *res.status_mut() = StatusCode::UNAUTHORIZED;
//!     AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
//!         .with_identifier("alice")
//!         .attach(&mut res);
//!     Ok::<_, Infallible>(res)
//! });
//! let app = ServiceBuilder::new().layer(AuditLayer::new(auditor.clone())).service(login);
//!
//! app.oneshot(Request::post("/login").body(()).unwrap()).await.unwrap();
//! auditor.flush().await;
//!
//! let record = &sink.records()[0];
//! assert_eq!(record.event.name(), "security.auth_failure");
//! assert_eq!(record.to_json()["context"]["failure_reason"], "invalid_credentials");
//! assert_eq!(record.to_json()["context"]["user_id"], "alice");
//! # }
//! ```
//!
//! With the `prometheus` feature, [`prometheus::install`] sets up the
//! recorder and [`prometheus::metrics_route`] serves `/metrics` for axum.
//! `docs/observability/` has alert rules and a Grafana dashboard written
//! against these names.
//!
//! [`AuthOutcome`]: crate::AuthOutcome
//! [`Rejection`]: crate::Rejection
//! [`SecurityEvent`]: crate::SecurityEvent
//! [`AuditRecord`]: crate::core::AuditRecord
//! [`AuditSink`]: crate::core::AuditSink
//! [`MemoryAuditSink`]: crate::core::MemoryAuditSink

mod auditor;
mod copied;
mod entry;
mod layer;
pub mod metrics;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod redact;
mod sinks;
mod top_k;

#[cfg(all(test, feature = "prometheus"))]
mod tests;

pub use auditor::{Auditor, AuditorBuilder};
pub use layer::{Audit, AuditLayer, ResponseFuture};
pub use sinks::{JsonLinesSink, TracingSink};
pub use top_k::{Offender, TopOffenders};
