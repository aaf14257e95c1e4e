//! Shared vocabulary for [Portcullis](https://docs.rs/portcullis): the types
//! every layer, store and application speaks.
//!
//! - [`Principal`]: the authenticated caller, put in request extensions by
//!   authenticators.
//! - [`Rejection`] and [`FailureReason`]: why a request was refused, and the
//!   one table mapping each reason to an HTTP status, a `WWW-Authenticate`
//!   challenge and a gRPC code.
//! - [`AuthOutcome`]: the protocol by which layers tell outer layers what
//!   happened (see [`outcome`]).
//! - [`Clock`]: injectable wall-clock time, with a [`FakeClock`] for tests.
//! - [`StoreError`] and the store traits ([`RevocationStore`],
//!   [`ApiKeyStore`]), with bounded in-memory implementations.
//! - [`TrustedProxies`]: client address resolution that spoofed forwarding
//!   headers cannot change.
//!
//! Store backends depend on this crate only, so they survive releases of the
//! layers.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `axum` | no | `Principal` as an axum extractor (`FromRequestParts` and `OptionalFromRequestParts`) |
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod api_key;
pub mod attempt;
pub mod audit;
pub mod block_list;
pub mod client_ip;
mod clock;
pub mod csrf;
pub mod event;
pub mod outcome;
mod principal;
pub mod rate_limit;
mod rejection;
pub mod revocation;
mod store;

pub use api_key::{
    API_KEY_DIGEST_LEN, ApiKeyDigest, ApiKeyFilter, ApiKeyInfo, ApiKeyRecord, ApiKeyStore,
    BoxApiKeyStore, MemoryApiKeyStore,
};
pub use attempt::{
    Admission, AttemptCounts, AttemptKey, AttemptKeyKind, AttemptPolicy, AttemptState,
    AttemptStatus, AttemptStore, BoxAttemptStore, CaptchaSolved, FailureRecord, Lock, LockedKey,
    MemoryAttemptStore, ResetScope,
};
pub use audit::{AuditRecord, AuditSink, BoxAuditSink, FanOutSink, MemoryAuditSink};
pub use block_list::{BlockEntry, BlockListStore, BoxBlockListStore, MemoryBlockList};
pub use client_ip::{ClientIp, ForwardedHeader, PeerAddr, TrustedProxies};
pub use clock::{Clock, FakeClock, SharedClock, SystemClock};
pub use csrf::{
    BoxCsrfTokenStore, CSRF_TOKEN_DIGEST_LEN, CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore,
    MemoryCsrfTokenStore,
};
pub use event::{EventKind, EventLevel, SecurityEvent, SecurityEvents};
pub use outcome::{AuthMethod, AuthOutcome};
#[cfg(feature = "axum")]
pub use principal::MissingPrincipal;
pub use principal::{ClaimsError, Names, Principal, PrincipalBuilder, PrincipalKind};
pub use rate_limit::{
    BoxRateLimitStore, MemoryRateLimitStore, RateDecision, RateLimitStore, RateQuota,
};
pub use rejection::{Challenge, FailureReason, GrpcCode, Rejection};
pub use revocation::{BoxRevocationStore, MemoryRevocationStore, RevocationStore, TokenRef};
pub use store::{StoreError, StoreErrorKind};
