//! Brute-force defence for login routes: an IP block list, a per-IP rate
//! limit, failure counting per account, per address and per account+address
//! over a sliding window, account locks that grow, and operator controls.
//!
//! [`LockoutLayer`] goes **outside** the layer or handler that checks the
//! credential. For every request it:
//!
//! 1. refuses addresses on the block list: `403 ip_blocked`;
//! 2. applies the per-address rate limit (governor GCRA in this process,
//!    and/or a GCRA shared by every instance through a
//!    [`RateLimitStore`](portcullis_core::RateLimitStore) such as Redis,
//!    [`LockoutLayer::with_shared_rate_limit`]): `429 rate_limited` with
//!    `Retry-After`;
//! 3. reads the submitted identifier (a header or a form / JSON body field,
//!    see [`IdentifierSource`]) and canonicalises it
//!    ([`canonical_identifier`]: trim, NFKC, lowercase);
//! 4. refuses a locked address (`429 rate_limited`) and a locked account or
//!    account+address pair (`429 account_locked` with `Retry-After`)
//!    **before the credential is evaluated**, so the answer is the same
//!    whether the password was right or wrong, and whether the account
//!    exists or not;
//! 5. otherwise reserves the attempt atomically in the
//!    [`AttemptStore`] — concurrent guesses
//!    cannot overshoot the limit — and calls the inner service;
//! 6. reads the [`AuthOutcome`](portcullis_core::AuthOutcome) on the
//!    response: a failure (any 401-family reason, from `JwtLayer`,
//!    `ApiKeyLayer` or a login handler) is counted on every counter and may
//!    lock; a success resets the account+address counter and the account's
//!    consecutive count; anything else just releases the reservation.
//!
//! Unknown accounts are counted exactly like known ones: the layer never
//! asks whether an account exists.
//!
//! # Escalation
//!
//! | step | default | configured with |
//! | --- | --- | --- |
//! | delay before the credential check | off | [`LockoutLayer::with_failure_delay`] |
//! | CAPTCHA after N failures | 3 (account or address) | [`CaptchaLayer`](crate::captcha::CaptchaLayer), inside this layer |
//! | lock after 5 failures in 300 s | 1800 s, ×2 per further lock, ≤ 24 h | [`LockoutLayer::with_account_policy`] |
//! | lock until unlocked | after 100 consecutive failures | [`AttemptPolicy::with_max_consecutive`](portcullis_core::AttemptPolicy::with_max_consecutive) |
//! | address lock | 50 failures in 300 s → 900 s | [`LockoutLayer::with_ip_policy`] |
//!
//! Locks are capped (24 h) so an attacker cannot keep a victim out for
//! ever by repeating the lock; with [`LockoutLayer::with_captcha_unlock`], a
//! time-locked account still admits requests that solve a CAPTCHA, from
//! addresses that are not themselves locked — the real user gets in while
//! the attacker's address stays locked. The NIST cap (never more than 100
//! consecutive failures evaluated for one account) is the one lock a
//! CAPTCHA never opens: it lasts until an operator (or a password reset
//! flow) calls [`LockoutAdmin::unlock`].
//!
//! # Events
//!
//! Through the outcome protocol, on the response that caused them:
//! `security.brute_force_detected` and `security.account_locked` when a
//! failure locks an account (or `security.ip_blocked` when it locks an
//! address), `security.ip_blocked` on each request refused by the block
//! list. [`LockoutAdmin`] returns `security.account_unlocked`,
//! `security.account_locked` and `security.ip_blocked` events for the admin
//! endpoint to attach to its own response.
//!
//! # Security
//!
//! - **Fail closed.** If the store or the block list cannot answer, the
//!   request gets `503 upstream_unavailable`; if the outcome cannot be
//!   recorded, the inner response is replaced by that 503, so an attacker
//!   never sees the result of an uncounted guess.
//!   [`LockoutLayer::insecure_fail_open`] lets requests through instead and
//!   marks every one with a critical event.
//! - **Client address.** Read from `ClientIp` (set by
//!   [`ClientIpLayer`](crate::client_ip::ClientIpLayer) with trusted
//!   proxies) or the socket peer (`PeerAddr`, axum `ConnectInfo`); a
//!   forwarding header is never read here, so a spoofed `X-Forwarded-For`
//!   cannot pick whose counter is hit. IPv6 addresses count by /64.
//! - **Parser differentials** are refused: a body field given twice, an
//!   oversized body or a header given twice is `400 invalid_request`. If the
//!   outcome names another account than the request seemed to, that account
//!   is counted too, and if it was locked the response is replaced by the
//!   lock response.
//! - **Dropped requests** (the client hangs up) count nothing: the client
//!   learnt nothing. Their reservations are released, and expire after
//!   [`AttemptPolicy::reservation_ttl`](portcullis_core::AttemptPolicy) in
//!   any case.
//! - **Memory.** The in-memory store and the rate limiter are bounded (see
//!   [`MemoryAttemptStore`],
//!   [`RateLimiterState`] and `docs/lockout.md` for bytes per key).
//! - Identifiers never appear in `Debug` output; events carry the
//!   canonical identifier for the audit layer to render (or hash).
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use portcullis::lockout::{IdentifierSource, LockoutLayer};
//! use portcullis_core::{AuthMethod, AuthOutcome, FailureReason, MemoryAttemptStore, PeerAddr};
//! use std::convert::Infallible;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! // A login handler that reports its outcome (every password is wrong).
//! let login = service_fn(|_req: Request<String>| async {
//!     let mut res = Response::builder().status(401).body(String::new()).unwrap();
//!     AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
//!         .with_identifier("alice")
//!         .attach(&mut res);
//!     Ok::<_, Infallible>(res)
//! });
//! let layer = LockoutLayer::new(MemoryAttemptStore::default())
//!     .with_identifier(IdentifierSource::field("username"));
//! let service = layer.layer(login);
//!
//! let attempt = || {
//!     let mut req = Request::post("/login")
//!         .header("content-type", "application/x-www-form-urlencoded")
//!         .body("username=Alice&password=guess".to_owned())
//!         .unwrap();
//!     req.extensions_mut().insert(PeerAddr("198.51.100.7:50000".parse().unwrap()));
//!     req
//! };
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! for _ in 0..5 {
//!     let res = service.clone().oneshot(attempt()).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! }
//! // The sixth attempt is refused before the password is looked at.
//! let res = service.clone().oneshot(attempt()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "1800");
//! assert!(res.body().contains("account_locked"));
//!
//! // An operator unlocks it.
//! let event = layer.admin().unlock("alice").await.unwrap().unwrap();
//! assert_eq!(event.kind().name(), "security.account_unlocked");
//! # });
//! ```
//!
//! # Customizing
//!
//! Seed 000's policy with a rate limit, a delay ladder, an operator block
//! list entry and a JSON body:
//!
//! ```
//! use portcullis::lockout::{IdentifierSource, LockoutLayer, RateLimit};
//! use portcullis_core::{AttemptPolicy, MemoryAttemptStore};
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let layer = LockoutLayer::new(MemoryAttemptStore::new(200_000))
//!     .with_identifier(IdentifierSource::field("email"))
//!     .with_account_policy(
//!         AttemptPolicy::new(5, Duration::from_secs(300), Duration::from_secs(1800))
//!             .with_growth(2, Duration::from_secs(6 * 3600)),
//!     )?
//!     .with_rate_limit(RateLimit::per_second(10)?.with_burst(20)?)
//!     .with_failure_delay(2, Duration::from_millis(250), Duration::from_secs(2));
//!
//! let event = layer
//!     .admin()
//!     .block("203.0.113.88".parse::<std::net::IpAddr>()?, Some(Duration::from_secs(86_400)), "Brute force attack detected")
//!     .await?;
//! assert_eq!(event.kind().name(), "security.ip_blocked");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod admin;
mod extract;
mod key;
mod layer;
mod rate_limit;
mod service;

#[cfg(test)]
mod tests;

pub use admin::{AccountAddress, HotIp, LockoutAdmin, MAX_PAIRS, Unlocked};
pub use extract::{DEFAULT_MAX_BODY, IdentifierSource};
pub use key::{IpGrouping, MAX_IDENTIFIER_CHARS, canonical_identifier};
pub use layer::{LockoutLayer, default_ip_policy};
pub use rate_limit::{DEFAULT_MAX_TRACKED_IPS, RateLimit, RateLimiterState};
pub use service::{Lockout, ResponseFuture};

#[cfg(feature = "captcha")]
pub(crate) use extract::{
    MAX_FIELD_BYTES, ReadError, body_field, body_kind, buffer, client_ip, header_value, rebuild,
};

#[doc(inline)]
pub use portcullis_core::attempt::{
    AttemptCounts, AttemptKey, AttemptPolicy, AttemptStore, BoxAttemptStore, CaptchaSolved, Lock,
    MemoryAttemptStore,
};
#[doc(inline)]
pub use portcullis_core::block_list::{BlockEntry, BlockListStore, MemoryBlockList};
