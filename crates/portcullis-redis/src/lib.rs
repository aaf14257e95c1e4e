//! Redis stores for [Portcullis](https://docs.rs/portcullis): every store
//! trait of `portcullis-core` on one shared Redis, so that several
//! instances behind a load balancer share lockout counters, revocations,
//! API keys, CSRF tokens, the IP block list, rate-limit budgets and an
//! audit stream.
//!
//! ```no_run
//! use portcullis_core::{AttemptKey, AttemptPolicy, AttemptStore, RevocationStore};
//! use portcullis_redis::{CachedRevocationStore, RedisBackend};
//! use std::time::{Duration, SystemTime};
//!
//! # async fn run() -> Result<(), portcullis_core::StoreError> {
//! // One connection (multiplexed, reconnecting) for every store.
//! let backend = RedisBackend::connect("redis://127.0.0.1:6379", "myapp").await?;
//!
//! let attempts = backend.attempts();
//! let policy = AttemptPolicy::default();
//! let key = AttemptKey::Account("alice".into());
//! attempts.begin(&key, &policy, true, SystemTime::now()).await?;
//!
//! // Revocations, with a local cache: revocations made elsewhere are seen
//! // within `max_staleness`.
//! let revocations = CachedRevocationStore::new(backend.revocations())
//!     .with_max_staleness(Duration::from_secs(1));
//! revocations
//!     .revoke_token("jti-1", SystemTime::now() + Duration::from_secs(900))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Failures
//!
//! Every operation is bounded in time: connection and response timeouts
//! (1 s each by default) and an overall operation timeout (2 s) configured
//! on [`RedisBackendBuilder`]. A stopped, unreachable or blocked server
//! yields [`StoreErrorKind::Unavailable`](portcullis_core::StoreErrorKind::Unavailable)
//! or [`StoreErrorKind::Timeout`](portcullis_core::StoreErrorKind::Timeout)
//! within that bound, never a hang; the layers fail closed (503) on them.
//! Replies that cannot be decoded yield
//! [`StoreErrorKind::Corrupt`](portcullis_core::StoreErrorKind::Corrupt).
//! The connection reconnects by itself: once the server is back,
//! operations succeed again through the same [`RedisBackend`].
//!
//! # Key layout
//!
//! Every key starts with the backend's prefix (`P` below; ASCII letters,
//! digits, `_`, `-`, `.`). Identifiers chosen by users or attackers
//! (token ids, subjects, account names, session ids, rate-limit keys) are
//! escaped: `%`, `{`, `}`, `:` and control characters are
//! percent-encoded, an injective encoding whose output contains no brace
//! and no separator, so no id can collide with another key or move a key
//! to another hash tag. Every atomic operation touches one key, or keys
//! sharing one hash tag, so the layout is cluster-safe.
//!
//! | key | type | holds | TTL |
//! | --- | --- | --- | --- |
//! | `P:rt:{<token id>}` | string | revoked token: expiry (ms) | remaining life |
//! | `P:rf:{<family>}` | string | revoked refresh family: expiry (ms) | remaining life |
//! | `P:rs:{<subject>}` | string | subject watermark: `<mark ms>:<retain until ms>` | until `retain_until` |
//! | `P:ak:{k}:r:<key id>` | hash | API key record (digest as hex, times in ms) | none |
//! | `P:ak:{k}:idx` | sorted set | API key ids by `created_at` | none |
//! | `P:at:<a\|i\|p>:{<storage key>}` | string | [`AttemptState`](portcullis_core::AttemptState) text | until `keep_until` (none while locked until unlocked) |
//! | `P:blocks` | hash | network text → `<until ms or ->;<created ms>;<reason>` | none (entries end by `until`) |
//! | `P:ct:{<hex digest>}` | string | CSRF token: `<expiry ms>:<session>` | remaining life |
//! | `P:cs:{<session>}` | sorted set | the session's CSRF digests by expiry | newest token's life |
//! | `P:audit` | stream | audit records, field `json` | capped with `MAXLEN ~` |
//! | `P:rl:{<key>}` | string | GCRA theoretical arrival time (ms) | `gcra_ttl` |
//!
//! # Atomicity
//!
//! | store | operation | how |
//! | --- | --- | --- |
//! | [`RedisRevocationStore`] | `revoke_token` | one script, `SET … PX <remaining life>` if absent (or past its expiry by the store's clock), else keep the later expiry: `SET NX` semantics, exactly one concurrent caller gets `true`; no key when the expiry has passed |
//! | | `revoke_family`, `revoke_subject` | one script each: expiry, watermark and retention only move forward |
//! | | `is_revoked` | one pipeline of up to three `GET`s (a read needs no cross-key atomicity) |
//! | [`RedisApiKeyStore`] | `create` | one script on the record and the index (same hash tag): refuses an existing id |
//! | | `revoke`, `expire`, `touch` | one script each: times only move earlier (later for `touch`) |
//! | [`RedisAttemptStore`] | every write | load (or the value this process last wrote), apply the shared [`AttemptState`](portcullis_core::AttemptState) method, compare-and-set script; retried on contention; one round trip in the common case |
//! | | `locked`, `hottest` | `SCAN` of the kind's keys: O(keys), one node |
//! | [`RedisBlockList`] | `block` / `unblock` / `find` | `HSET` / get-and-delete script / one `HMGET` of the covering networks |
//! | [`RedisCsrfTokenStore`] | `issue`, `consume` | one script each on the token key; `consume` is compare-session-and-delete |
//! | | `revoke_session` | index read, then a session-checked delete per token (see the type's docs for consistency) |
//! | [`RedisAuditSink`] | `write_batch` | `XADD … MAXLEN ~` per record in `MULTI` transactions of 500 |
//! | [`RedisRateLimitStore`] | `check` | one script mirroring `gcra_step` in integer milliseconds |
//!
//! # Cluster
//!
//! The layout is cluster-ready: every script and transaction touches one
//! key or keys of one hash tag. The client is a single-server
//! [`ConnectionManager`](redis::aio::ConnectionManager), though (a server,
//! a replica set behind a proxy, or a cluster proxy); the operator listings
//! that `SCAN` ([`RedisAttemptStore`]'s `locked`/`hottest`,
//! [`RedisCsrfTokenStore`]'s `purge_expired`) see one node. All API keys
//! share one hash tag (`{k}`), hence one slot.
//!
//! Stores that judge "now" themselves ([`RedisRevocationStore`],
//! [`RedisApiKeyStore::list`](portcullis_core::ApiKeyStore::list),
//! [`RedisCsrfTokenStore`]) read it from a [`SharedClock`](portcullis_core::SharedClock)
//! (`with_clock`, system clock by default) and compare it with the expiry
//! stored in the value, so an entry never counts after its expiry even
//! while Redis still holds it. TTLs only bound memory.
//!
//! # Security
//!
//! No token, digest, key, session id or account name appears in a log
//! line, an error message or a `Debug` output of these types (the URL,
//! which may carry a password, is not printed either). API-key and CSRF
//! digests are stored as hex; plaintext keys and tokens never reach the
//! store.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod api_key;
mod attempt;
mod audit;
mod backend;
mod block_list;
mod cached;
mod csrf;
mod rate_limit;
mod revocation;

pub use api_key::RedisApiKeyStore;
pub use attempt::{MAX_CAS_ATTEMPTS, RedisAttemptStore};
pub use audit::{MAX_READ_BACK, RedisAuditSink};
pub use backend::{MAX_PREFIX_LEN, RedisBackend, RedisBackendBuilder};
pub use block_list::RedisBlockList;
pub use cached::CachedRevocationStore;
pub use csrf::RedisCsrfTokenStore;
pub use rate_limit::RedisRateLimitStore;
pub use revocation::RedisRevocationStore;

/// The Redis client this crate is built on.
#[doc(inline)]
pub use redis;

/// The README's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
