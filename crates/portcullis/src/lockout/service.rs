//! `Lockout`: the middleware service and its per-request flow.
//!
//! One request, in order:
//!
//! 1. the client address (`ClientIp`, else the socket peer);
//! 2. block list → `403 ip_blocked`;
//! 3. rate limit → `429 rate_limited`;
//! 4. the submitted identifier (header or body field) → `400
//!    invalid_request` when it cannot be read unambiguously;
//! 5. the address counter (locked → `429 rate_limited`), then the account
//!    and account+address counters, each **reserving** an attempt
//!    atomically (locked or full → `429 account_locked`);
//! 6. [`AttemptCounts`] into the request extensions, the optional delay,
//!    the inner service;
//! 7. the [`AuthOutcome`] on the response: a failure is recorded on every
//!    counter (and may lock), a success resets the account+address counter
//!    and the account's consecutive count, anything else releases the
//!    reservations.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use portcullis_core::{
    Admission, AttemptCounts, AttemptKey, AttemptPolicy, AttemptStore, AuthOutcome,
    BlockListStore as _, CaptchaSolved, EventKind, EventLevel, FailureReason, FailureRecord, Lock,
    RateDecision, RateLimitStore as _, Rejection, ResetScope, SecurityEvent, SharedClock,
    StoreError,
};
use tower_service::Service;

use super::extract::{self, ReadError};
use super::key::canonical_identifier;
use super::layer::Config;
use super::{BlockEntry, MemoryBlockList};
use crate::rejection::{RejectionBody, RespondToRejection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Middleware that defends a login route against brute force.
///
/// Rejected requests never reach the inner service: they get the
/// responder's answer with the [`Rejection`] (and any [`SecurityEvent`]s)
/// in the response extensions. State (counters, locks, the rate limiter) is
/// shared by every clone.
///
/// See the [module docs](crate::lockout) for an example.
pub struct Lockout<S, St, R> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config<St>>,
    pub(crate) respond: R,
}

impl<S: Clone, St, R: Clone> Clone for Lockout<S, St, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            respond: self.respond.clone(),
        }
    }
}

impl<S: fmt::Debug, St, R: fmt::Debug> fmt::Debug for Lockout<S, St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lockout")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("respond", &self.respond)
            .finish()
    }
}

crate::macros::define_inner_service_accessors!(Lockout<S, St, R>);

pin_project! {
    /// Response future of [`Lockout`].
    ///
    /// A refusal decided in `call` and a request only the in-process checks
    /// looked at (block list and rate limit, nothing to count) are carried
    /// without a heap allocation; the full flow — reading the identifier,
    /// awaiting the store before and after the inner service — is boxed
    /// once.
    pub struct ResponseFuture<F, St, R>
    where
        F: Future,
    {
        #[pin]
        state: State<F, St, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, St, R>
    where
        F: Future,
    {
        /// Refused in `call`.
        Decided { response: Option<F::Output> },
        /// Passed by the in-process checks: awaits the inner service, then
        /// settles only if the response names an account or events were
        /// noted.
        Local {
            #[pin]
            future: F,
            rest: Option<LocalRest<St, R>>,
        },
        /// The full flow, or the settling step after `Local`.
        Boxed { future: Pin<Box<dyn Future<Output = F::Output> + Send>> },
    }
}

/// What a `Local` request keeps for the (rare) settling step.
struct LocalRest<St, R> {
    flow: Flow<St, R>,
    now: SystemTime,
    ip: Option<IpAddr>,
    noted: Noted,
    headers: FormatHeaders,
}

impl<F: Future, St, R> fmt::Debug for ResponseFuture<F, St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, St, R, B, E> Future for ResponseFuture<F, St, R>
where
    F: Future<Output = Result<Response<B>, E>>,
    St: AttemptStore,
    R: RespondToRejection<B>,
    B: Send + 'static,
    E: Send + 'static,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let settle = match state.as_mut().project() {
                StateProj::Decided { response } => {
                    return Poll::Ready(response.take().expect("polled after completion"));
                }
                StateProj::Boxed { future } => return future.as_mut().poll(cx),
                StateProj::Local { future, rest } => {
                    let response = ready!(future.poll(cx))?;
                    let rest = rest.take().expect("polled after completion");
                    if rest.noted.events.is_empty()
                        && AuthOutcome::of(&response)
                            .and_then(AuthOutcome::identifier)
                            .is_none()
                    {
                        return Poll::Ready(Ok(response));
                    }
                    rest.settle(response)
                }
            };
            state.set(State::Boxed { future: settle });
        }
    }
}

impl<St: AttemptStore, R> LocalRest<St, R> {
    /// Nothing was reserved or counted: the context is rebuilt from what
    /// the pre-check saw, and the response settled as the full flow would.
    fn settle<B, E>(
        self,
        response: Response<B>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>
    where
        R: RespondToRejection<B>,
        B: Send + 'static,
        E: Send + 'static,
    {
        let Self {
            flow,
            now,
            ip,
            noted,
            headers,
        } = self;
        Box::pin(async move {
            let mut ctx = flow.context(now, ip, None);
            ctx.events = noted.events;
            ctx.failed_open = noted.failed_open;
            Ok(flow.after(ctx, &headers, false, response).await)
        })
    }
}

impl<S, St, R, ReqBody, ResBody> Service<Request<ReqBody>> for Lockout<S, St, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    St: AttemptStore,
    R: RespondToRejection<ResBody>,
    ReqBody: Body + RejectionBody + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, St, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // Hand the service that was driven to readiness to the future and
        // keep a fresh clone; see tower's "Be careful when cloning inner
        // services".
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let flow = Flow {
            config: Arc::clone(&self.config),
            respond: self.respond.clone(),
        };
        if let Some(block_list) = self.config.local_precheck() {
            // Nothing to read from the body, nothing to await before the
            // inner service: the block list and the in-process rate limit
            // are checked here, and the future only awaits the response.
            let now = self.config.clock.now();
            let ip = extract::client_ip(&request);
            let (verdict, noted) = flow.local_checks(now, ip, block_list);
            if let Verdict::Reject(rejection) = verdict {
                let response =
                    respond_with(&flow.respond, request.headers(), rejection, noted.events);
                return ResponseFuture {
                    state: State::Decided {
                        response: Some(Ok(response)),
                    },
                };
            }
            request.extensions_mut().insert(AttemptCounts::default());
            let headers = FormatHeaders::of(request.headers());
            return ResponseFuture {
                state: State::Local {
                    future: inner.call(request),
                    rest: Some(LocalRest {
                        flow,
                        now,
                        ip,
                        noted,
                        headers,
                    }),
                },
            };
        }
        ResponseFuture {
            state: State::Boxed {
                future: Box::pin(flow.run(inner, request)),
            },
        }
    }
}

/// Reservations to release if the request is dropped before it reports.
struct Reservations<St: AttemptStore> {
    keys: Vec<AttemptKey>,
    /// Where to release them: set with the first reservation, so that a
    /// request that reserves nothing clones nothing.
    store: Option<(Arc<St>, SharedClock)>,
}

impl<St: AttemptStore> Reservations<St> {
    fn new() -> Self {
        Self {
            keys: Vec::new(),
            store: None,
        }
    }

    /// Notes a reservation made on `config`'s store.
    fn push(&mut self, key: AttemptKey, config: &Config<St>) {
        if self.store.is_none() {
            self.store = Some((Arc::clone(&config.store), Arc::clone(&config.clock)));
        }
        self.keys.push(key);
    }

    /// Hands the keys over: the caller settles them.
    fn take(&mut self) -> Vec<AttemptKey> {
        std::mem::take(&mut self.keys)
    }
}

impl<St: AttemptStore> Drop for Reservations<St> {
    fn drop(&mut self) {
        // The client went away mid-request: it learnt nothing, so nothing is
        // counted; the reservations are released off the request path (and
        // expire by themselves after the policy's reservation TTL anyway).
        if self.keys.is_empty() {
            return;
        }
        let Some((store, clock)) = self.store.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let keys = std::mem::take(&mut self.keys);
        let now = clock.now();
        runtime.spawn(async move {
            for key in keys {
                let _ = store.release(&key, now).await;
            }
        });
    }
}

struct Flow<St, R> {
    config: Arc<Config<St>>,
    respond: R,
}

/// What the pre-check decided.
enum Verdict {
    Continue,
    Reject(Rejection),
}

/// How the outcome on the response reads.
enum Reported {
    Failure(Option<Arc<str>>),
    Success(Option<Arc<str>>),
    Neutral,
}

impl Reported {
    fn of<B>(response: &Response<B>) -> Self {
        match AuthOutcome::of(response) {
            // A shadow outcome was not enforced by its layer: it still says
            // what happened to the credential.
            Some(outcome) => {
                let id = outcome.identifier().and_then(canonical_identifier);
                match outcome.reason() {
                    None => Self::Success(id),
                    Some(reason) if reason.is_authentication_failure() => Self::Failure(id),
                    Some(_) => Self::Neutral,
                }
            }
            None => Self::Neutral,
        }
    }
}

/// What the synchronous pre-check noted besides its verdict.
#[derive(Default)]
struct Noted {
    events: Vec<SecurityEvent>,
    failed_open: bool,
}

impl Noted {
    fn of<St: AttemptStore>(ctx: Option<Request2<St>>) -> Self {
        ctx.map_or_else(Self::default, |mut ctx| Self {
            events: std::mem::take(&mut ctx.events),
            failed_open: ctx.failed_open,
        })
    }
}

struct Request2<St: AttemptStore> {
    now: SystemTime,
    ip: Option<IpAddr>,
    identifier: Option<Arc<str>>,
    account: Option<AttemptKey>,
    pair: Option<AttemptKey>,
    ip_key: Option<AttemptKey>,
    reservations: Reservations<St>,
    events: Vec<SecurityEvent>,
    captcha_unlock: Option<Lock>,
    failed_open: bool,
}

/// What the responder looks at to pick a format (`content-type` for gRPC,
/// `accept` for problem details), kept without allocating so that a
/// response built after the request was handed on looks exactly like one
/// built before: the first `content-type` value, then up to three
/// `accept` values.
struct FormatHeaders([Option<HeaderValue>; 4]);

impl FormatHeaders {
    fn of(headers: &HeaderMap) -> Self {
        let mut kept: [Option<HeaderValue>; 4] = Default::default();
        kept[0] = headers.get(CONTENT_TYPE).cloned();
        for (slot, value) in kept[1..].iter_mut().zip(headers.get_all(ACCEPT)) {
            *slot = Some(value.clone());
        }
        Self(kept)
    }

    fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        let [content_type, accept @ ..] = &self.0;
        if let Some(value) = content_type {
            map.append(CONTENT_TYPE, value.clone());
        }
        for value in accept.iter().flatten() {
            map.append(ACCEPT, value.clone());
        }
        map
    }
}

impl<St: AttemptStore, R> Flow<St, R> {
    fn event(
        &self,
        kind: EventKind,
        ctx_ip: Option<IpAddr>,
        id: Option<&Arc<str>>,
    ) -> SecurityEvent {
        let mut event = SecurityEvent::new(kind);
        if let Some(ip) = ctx_ip {
            event = event.with_ip(ip);
        }
        if let Some(id) = id {
            event = event.with_identifier(Arc::clone(id));
        }
        if self.config.shadow {
            event = event.shadow();
        }
        event
    }

    /// Events for one failure recorded on an account's counter and on its
    /// counter from the client's address: one lock decision is one pair of
    /// events (`brute_force_detected`, `account_locked`), even when both
    /// counters locked at once (then the account's lock speaks for both,
    /// and its detail says so), so lockout metrics count decisions, not
    /// counters.
    fn account_lock_events(
        &self,
        account: Option<(&AttemptKey, &FailureRecord)>,
        pair: Option<(&AttemptKey, &FailureRecord)>,
        ip: Option<IpAddr>,
        events: &mut Vec<SecurityEvent>,
    ) {
        match (account, pair) {
            (Some((key, record)), Some((_, both))) if record.newly_locked && both.newly_locked => {
                self.lock_events(key, record, true, ip, events);
            }
            (account, pair) => {
                for (key, record) in account.into_iter().chain(pair) {
                    self.lock_events(key, record, false, ip, events);
                }
            }
        }
    }

    /// Events for a failure that locked a key; `with_pair`: the account's
    /// counter from this address locked with it.
    fn lock_events(
        &self,
        key: &AttemptKey,
        record: &FailureRecord,
        with_pair: bool,
        ip: Option<IpAddr>,
        events: &mut Vec<SecurityEvent>,
    ) {
        if !record.newly_locked {
            return;
        }
        let id = key.account().map(Arc::<str>::from);
        let mut detected = self
            .event(EventKind::BruteForceDetected, ip, id.as_ref())
            .with_count(record.failures.max(record.consecutive))
            .with_detail(match record.lock {
                Some(Lock::UntilUnlocked) => "consecutive-failure cap reached",
                _ => match key {
                    AttemptKey::Account(_) if with_pair => {
                        "failures for the account within the window (from this address too)"
                    }
                    AttemptKey::Account(_) => "failures for the account within the window",
                    AttemptKey::AccountIp(..) => {
                        "failures for the account from one address within the window"
                    }
                    AttemptKey::Ip(_) => "failures from one address within the window",
                },
            });
        let mut locked = match key {
            AttemptKey::Ip(_) => self
                .event(EventKind::IpBlocked, ip, None)
                .with_reason(FailureReason::RateLimited)
                .with_detail("address locked automatically after repeated failures"),
            _ => self
                .event(EventKind::AccountLocked, ip, id.as_ref())
                .with_reason(FailureReason::AccountLocked)
                .with_detail(if key.ip().is_some() {
                    "account locked for one address"
                } else if with_pair {
                    "account locked (and for this address)"
                } else {
                    "account locked"
                }),
        }
        .with_count(record.locks);
        if let Some(Lock::Until(until)) = record.lock {
            locked = locked.with_until(until);
            detected = detected.with_until(until);
        }
        events.push(detected);
        events.push(locked);
    }

    /// Handles a store error in the pre-check: fail closed, or (insecure)
    /// note it and go on.
    fn store_error(&self, err: StoreError, ctx: &mut Request2<St>) -> Verdict {
        if self.config.fail_open {
            if !ctx.failed_open {
                ctx.events.push(fail_open_event());
                ctx.failed_open = true;
            }
            Verdict::Continue
        } else {
            Verdict::Reject(unavailable(err))
        }
    }

    fn reject_or_shadow(&self, rejection: Rejection, ctx: &mut Request2<St>) -> Verdict {
        if self.config.shadow {
            let mut event = self
                .event(EventKind::AuthFailure, ctx.ip, ctx.identifier.as_ref())
                .with_reason(rejection.reason())
                .with_detail("lockout would have rejected this request");
            if let Some(after) = rejection.retry_after() {
                event = event.with_until(ctx.now + after);
            }
            ctx.events.push(event);
            Verdict::Continue
        } else {
            Verdict::Reject(rejection)
        }
    }

    /// The per-request state of a request from `ip` (the counters' keys
    /// follow from the address and the `identifier`).
    fn context(
        &self,
        now: SystemTime,
        ip: Option<IpAddr>,
        identifier: Option<Arc<str>>,
    ) -> Request2<St> {
        let config = &self.config;
        let grouped = ip.map(|ip| config.grouping.key(ip));
        Request2 {
            now,
            ip,
            account: identifier.clone().map(AttemptKey::Account),
            pair: identifier
                .clone()
                .zip(grouped)
                .filter(|_| config.pair.is_some())
                .map(|(id, ip)| AttemptKey::AccountIp(id, ip)),
            ip_key: grouped.filter(|_| config.ip.is_some()).map(AttemptKey::Ip),
            identifier,
            reservations: Reservations::new(),
            events: Vec::new(),
            captcha_unlock: None,
            failed_open: false,
        }
    }

    /// The block-list entry found for the address (step 2).
    fn blocked(
        &self,
        ip: IpAddr,
        found: Result<Option<BlockEntry>, StoreError>,
        ctx: &mut Request2<St>,
    ) -> Verdict {
        match found {
            Ok(Some(entry)) => {
                let mut event = self
                    .event(EventKind::IpBlocked, Some(ip), None)
                    .with_reason(FailureReason::IpBlocked)
                    .with_detail("request from a blocked address refused");
                if let Some(until) = entry.until {
                    event = event.with_until(until);
                }
                ctx.events.push(event);
                let rejection = Rejection::new(FailureReason::IpBlocked)
                    .with_detail("address on the block list");
                self.reject_or_shadow(rejection, ctx)
            }
            Ok(None) => Verdict::Continue,
            Err(err) => self.store_error(err, ctx),
        }
    }

    /// The in-process rate limit (step 3).
    fn rate_limited(&self, ip: IpAddr, ctx: &mut Request2<St>) -> Verdict {
        match self.rate_check(ip, ctx.now) {
            Ok(()) => Verdict::Continue,
            Err(wait) => self.rate_rejection(wait, ctx),
        }
    }

    /// `Err(wait)` when the address is over the in-process rate limit.
    fn rate_check(&self, ip: IpAddr, now: SystemTime) -> Result<(), Duration> {
        let config = &self.config;
        match &config.rate {
            Some(rate) => rate.check(config.grouping.key(ip), now),
            None => Ok(()),
        }
    }

    fn rate_rejection(&self, wait: Duration, ctx: &mut Request2<St>) -> Verdict {
        let rejection = Rejection::new(FailureReason::RateLimited)
            .with_retry_after(wait.max(Duration::from_secs(1)))
            .with_detail("per-address rate limit");
        self.reject_or_shadow(rejection, ctx)
    }

    /// Steps 2 and 3 with the in-memory block list, without awaiting: the
    /// whole pre-check of a [`Config::local_precheck`] configuration. The
    /// context is built only when there is something to note (a block-list
    /// entry, a rate refusal, in shadow mode their events).
    fn local_checks(
        &self,
        now: SystemTime,
        ip: Option<IpAddr>,
        block_list: &MemoryBlockList,
    ) -> (Verdict, Noted) {
        let Some(ip) = ip else {
            return (Verdict::Continue, Noted::default());
        };
        let mut ctx = None;
        if let Some(entry) = block_list.find_now(ip, now) {
            let noted = ctx.insert(self.context(now, Some(ip), None));
            if let Verdict::Reject(r) = self.blocked(ip, Ok(Some(entry)), noted) {
                return (Verdict::Reject(r), Noted::of(ctx));
            }
        }
        if let Err(wait) = self.rate_check(ip, now) {
            let noted = ctx.get_or_insert_with(|| self.context(now, Some(ip), None));
            let verdict = self.rate_rejection(wait, noted);
            return (verdict, Noted::of(ctx));
        }
        (Verdict::Continue, Noted::of(ctx))
    }

    /// Steps 2, 3 and 5 of the module docs.
    async fn precheck(&self, ctx: &mut Request2<St>, counts: &mut AttemptCounts) -> Verdict {
        let config = &self.config;
        let now = ctx.now;

        if let Some(ip) = ctx.ip {
            let found = config.block_list.find(ip, now).await;
            if let Verdict::Reject(r) = self.blocked(ip, found, ctx) {
                return Verdict::Reject(r);
            }
            if let Verdict::Reject(r) = self.rate_limited(ip, ctx) {
                return Verdict::Reject(r);
            }
            if let Some((quota, store)) = &config.shared_rate {
                let key = format!("ip:{}", config.grouping.key(ip));
                let verdict = match store.check(&key, quota, now).await {
                    Ok(RateDecision::Allowed) => Verdict::Continue,
                    Ok(RateDecision::Limited { retry_after }) => {
                        let rejection = Rejection::new(FailureReason::RateLimited)
                            .with_retry_after(retry_after.max(Duration::from_secs(1)))
                            .with_detail("shared per-address rate limit");
                        self.reject_or_shadow(rejection, ctx)
                    }
                    Err(err) => self.store_error(err, ctx),
                };
                if let Verdict::Reject(r) = verdict {
                    return Verdict::Reject(r);
                }
            }
        }

        if let (Some(key), Some(policy)) = (&ctx.ip_key, &config.ip) {
            match config.store.begin(key, policy, false, now).await {
                Ok(Admission::Admitted { failures, .. }) => counts.ip = Some(failures),
                Ok(Admission::Locked(lock)) => {
                    let after = lock.remaining(now).unwrap_or(policy.max_lock);
                    let rejection = Rejection::new(FailureReason::RateLimited)
                        .with_retry_after(after.max(Duration::from_secs(1)))
                        .with_detail("address locked after repeated failures");
                    if let Verdict::Reject(r) = self.reject_or_shadow(rejection, ctx) {
                        return Verdict::Reject(r);
                    }
                }
                Ok(Admission::Busy) => {}
                Err(err) => {
                    if let Verdict::Reject(r) = self.store_error(err, ctx) {
                        return Verdict::Reject(r);
                    }
                }
            }
        }

        if let Some(key) = ctx.account.clone() {
            let policy = &config.account;
            match config.store.begin(&key, policy, true, now).await {
                Ok(Admission::Admitted {
                    failures,
                    consecutive,
                }) => {
                    ctx.reservations.push(key, config);
                    counts.account = Some(failures.max(consecutive));
                }
                Ok(Admission::Locked(lock @ Lock::Until(_))) if config.captcha_unlock => {
                    // Row 108: an inner CAPTCHA layer must prove a human.
                    ctx.captcha_unlock = Some(lock);
                    counts.captcha_unlock = true;
                    counts.account = Some(policy.limit);
                }
                Ok(Admission::Locked(lock)) => {
                    let rejection = lock_rejection(lock, policy, now, ctx.identifier.as_ref());
                    if let Verdict::Reject(r) = self.reject_or_shadow(rejection, ctx) {
                        return Verdict::Reject(r);
                    }
                }
                Ok(Admission::Busy) => {
                    // Concurrent attempts already fill the window: whatever
                    // they report, this one could exceed the limit.
                    let rejection = busy_rejection(ctx.identifier.as_ref());
                    if let Verdict::Reject(r) = self.reject_or_shadow(rejection, ctx) {
                        return Verdict::Reject(r);
                    }
                }
                Err(err) => {
                    if let Verdict::Reject(r) = self.store_error(err, ctx) {
                        return Verdict::Reject(r);
                    }
                }
            }
        }

        if let (Some(key), Some(policy)) = (ctx.pair.clone(), &config.pair) {
            match config.store.begin(&key, policy, true, now).await {
                Ok(Admission::Admitted { failures, .. }) => {
                    ctx.reservations.push(key, config);
                    counts.account = Some(counts.account.unwrap_or(0).max(failures));
                }
                Ok(Admission::Locked(lock)) => {
                    let rejection = lock_rejection(lock, policy, now, ctx.identifier.as_ref());
                    if let Verdict::Reject(r) = self.reject_or_shadow(rejection, ctx) {
                        return Verdict::Reject(r);
                    }
                }
                Ok(Admission::Busy) => {
                    let rejection = busy_rejection(ctx.identifier.as_ref());
                    if let Verdict::Reject(r) = self.reject_or_shadow(rejection, ctx) {
                        return Verdict::Reject(r);
                    }
                }
                Err(err) => {
                    if let Verdict::Reject(r) = self.store_error(err, ctx) {
                        return Verdict::Reject(r);
                    }
                }
            }
        }
        Verdict::Continue
    }

    /// Step 7: records what the response reports. Returns a lock (and the
    /// account it holds) when the response must be replaced by the lock
    /// response.
    async fn settle(
        &self,
        ctx: &mut Request2<St>,
        reported: Reported,
        proven: bool,
    ) -> Result<Option<(Lock, AttemptPolicy, Option<Arc<str>>)>, StoreError> {
        let config = &self.config;
        let store = &config.store;
        let now = config.clock.now();
        let reserved = ctx.reservations.take();
        let held = |key: &AttemptKey| reserved.contains(key);
        let mut mask = None;

        // The CAPTCHA unlock path (row 108) needs proof that a CAPTCHA was
        // solved for this very request.
        if let Some(lock) = ctx.captcha_unlock
            && !proven
        {
            mask = Some((lock, config.account.clone(), ctx.identifier.clone()));
            ctx.events.push(
                self.event(EventKind::AccountLocked, ctx.ip, ctx.identifier.as_ref())
                    .with_reason(FailureReason::AccountLocked)
                    .with_detail(
                        "CAPTCHA unlock without a solved CAPTCHA: is CaptchaLayer inside LockoutLayer?",
                    ),
            );
        }

        let (same, other) = match &reported {
            Reported::Failure(id) | Reported::Success(id) => match id {
                Some(id) if ctx.identifier.as_ref() != Some(id) => (false, Some(Arc::clone(id))),
                _ => (true, None),
            },
            Reported::Neutral => (true, None),
        };

        match reported {
            Reported::Failure(_) => {
                let mut account = None;
                if let Some(key) = &ctx.account {
                    let record = store
                        .record_failure(key, &config.account, held(key), now)
                        .await?;
                    account = Some((key, record));
                }
                let mut pair = None;
                if let (Some(key), Some(policy)) = (&ctx.pair, &config.pair) {
                    let record = store.record_failure(key, policy, held(key), now).await?;
                    pair = Some((key, record));
                }
                self.account_lock_events(
                    account.as_ref().map(|(k, r)| (*k, r)),
                    pair.as_ref().map(|(k, r)| (*k, r)),
                    ctx.ip,
                    &mut ctx.events,
                );
                if let (Some(key), Some(policy)) = (&ctx.ip_key, &config.ip) {
                    let record = store.record_failure(key, policy, false, now).await?;
                    self.lock_events(key, &record, false, ctx.ip, &mut ctx.events);
                }
                if let Some(id) = other.filter(|_| !same) {
                    // The outcome names another account than the request
                    // seemed to: count it there too, and if that account
                    // was already locked, answer as if it had been refused.
                    let key = AttemptKey::Account(Arc::clone(&id));
                    let record = store
                        .record_failure(&key, &config.account, false, now)
                        .await?;
                    if let Some(lock) = record.lock.filter(|_| !record.newly_locked) {
                        mask = Some((lock, config.account.clone(), Some(Arc::clone(&id))));
                    }
                    let mut pair = None;
                    if let (Some(ip), Some(policy)) = (ctx.ip, &config.pair) {
                        let pair_key =
                            AttemptKey::AccountIp(Arc::clone(&id), config.grouping.key(ip));
                        let pair_record =
                            store.record_failure(&pair_key, policy, false, now).await?;
                        if let Some(lock) = pair_record.lock.filter(|_| !pair_record.newly_locked) {
                            mask = Some((lock, policy.clone(), Some(Arc::clone(&id))));
                        }
                        pair = Some((pair_key, pair_record));
                    }
                    self.account_lock_events(
                        Some((&key, &record)),
                        pair.as_ref().map(|(k, r)| (k, r)),
                        ctx.ip,
                        &mut ctx.events,
                    );
                }
            }
            Reported::Success(_) if same => {
                if let Some(key) = &ctx.pair {
                    store
                        .record_success(key, ResetScope::All, held(key), now)
                        .await?;
                }
                if let Some(key) = &ctx.account {
                    store
                        .record_success(key, ResetScope::Consecutive, held(key), now)
                        .await?;
                }
            }
            Reported::Success(_) => {
                for key in &reserved {
                    store.release(key, now).await?;
                }
                let id = other.unwrap_or_else(|| Arc::from(""));
                let key = AttemptKey::Account(Arc::clone(&id));
                if let Admission::Locked(lock) =
                    store.begin(&key, &config.account, false, now).await?
                {
                    mask = Some((lock, config.account.clone(), Some(Arc::clone(&id))));
                } else {
                    store
                        .record_success(&key, ResetScope::Consecutive, false, now)
                        .await?;
                    if let Some(ip) = ctx.ip {
                        let pair = AttemptKey::AccountIp(id, config.grouping.key(ip));
                        store
                            .record_success(&pair, ResetScope::All, false, now)
                            .await?;
                    }
                }
            }
            Reported::Neutral => {
                for key in &reserved {
                    store.release(key, now).await?;
                }
            }
        }
        Ok(mask)
    }
}

/// The refusal of an attempt on a locked account. It names the account
/// (canonical, as counted) for the audit trail only — the
/// `security.account_locked` record of a refused attempt says which
/// account was hammered; responders never render it.
fn lock_rejection(
    lock: Lock,
    policy: &AttemptPolicy,
    now: SystemTime,
    account: Option<&Arc<str>>,
) -> Rejection {
    let after = lock.remaining(now).unwrap_or(policy.max_lock);
    let rejection = Rejection::new(FailureReason::AccountLocked)
        .with_retry_after(after.max(Duration::from_secs(1)))
        .with_detail("account locked");
    match account {
        Some(account) => rejection.with_subject(Arc::clone(account)),
        None => rejection,
    }
}

/// Attempts in flight already fill the window (see [`lock_rejection`] for
/// the account it names).
fn busy_rejection(account: Option<&Arc<str>>) -> Rejection {
    let rejection = Rejection::new(FailureReason::AccountLocked)
        .with_retry_after(Duration::from_secs(1))
        .with_detail("attempts in flight fill the window");
    match account {
        Some(account) => rejection.with_subject(Arc::clone(account)),
        None => rejection,
    }
}

fn unavailable(err: StoreError) -> Rejection {
    Rejection::new(FailureReason::UpstreamUnavailable)
        .with_detail("lockout store unavailable")
        .with_source(err)
}

fn fail_open_event() -> SecurityEvent {
    SecurityEvent::new(EventKind::AuthFailure)
        .with_reason(FailureReason::UpstreamUnavailable)
        .with_level(EventLevel::Error)
        .with_detail("lockout failed open: store unavailable, attempt not counted")
}

/// A refusal by the CAPTCHA layer itself: the credential was not evaluated.
fn is_captcha_rejection<B>(response: &Response<B>) -> bool {
    AuthOutcome::of(response).is_none()
        && response.extensions().get::<Rejection>().is_some_and(|r| {
            matches!(
                r.reason(),
                FailureReason::CaptchaRequired
                    | FailureReason::CaptchaInvalid
                    | FailureReason::UpstreamUnavailable
            )
        })
}

fn respond_with<B, R: RespondToRejection<B>>(
    respond: &R,
    headers: &HeaderMap,
    rejection: Rejection,
    events: Vec<SecurityEvent>,
) -> Response<B> {
    #[cfg(feature = "tracing")]
    tracing::trace!(target: "portcullis::rejection", reason = rejection.reason().as_str(), detail = rejection.detail(), "request rejected");
    let mut response = respond.respond(headers, &rejection);
    response.extensions_mut().insert(rejection);
    for event in events {
        event.attach(&mut response);
    }
    response
}

impl<St: AttemptStore, R> Flow<St, R> {
    // Not an `async fn`, for the reason `after` gives.
    #[allow(clippy::manual_async_fn)]
    fn run<S, ReqBody, ResBody>(
        self,
        mut inner: S,
        request: Request<ReqBody>,
    ) -> impl Future<Output = Result<Response<ResBody>, S::Error>>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        R: RespondToRejection<ResBody>,
        ReqBody: Body + RejectionBody,
        ReqBody::Error: Into<BoxError>,
    {
        async move {
            let config = Arc::clone(&self.config);
            let now = config.clock.now();
            let ip = extract::client_ip(&request);

            // Step 4: the identifier, possibly from the body.
            let (mut request, identifier) = match read_identifier(&config, request).await {
                Ok(read) => read,
                Err((headers, why)) => {
                    let rejection = Rejection::new(FailureReason::InvalidRequest).with_detail(why);
                    return Ok(respond_with(&self.respond, &headers, rejection, Vec::new()));
                }
            };

            let mut ctx = self.context(now, ip, identifier);

            let mut counts = AttemptCounts::default();
            if let Verdict::Reject(rejection) = self.precheck(&mut ctx, &mut counts).await {
                // Release what was reserved before the refusal.
                for key in ctx.reservations.take() {
                    let _ = config.store.release(&key, now).await;
                }
                let events = std::mem::take(&mut ctx.events);
                return Ok(respond_with(
                    &self.respond,
                    request.headers(),
                    rejection,
                    events,
                ));
            }
            request.extensions_mut().insert(counts);

            if let Some(delay) = config.delay
                && !config.shadow
            {
                let wait = delay.for_failures(counts.account.unwrap_or(0));
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }

            let tracked =
                ctx.account.is_some() || ctx.ip_key.is_some() || ctx.captcha_unlock.is_some();
            let headers = FormatHeaders::of(request.headers());
            let response = inner.call(request).await?;
            Ok(self.after(ctx, &headers, tracked, response).await)
        }
    }

    /// Step 7 and the response: settles what the response reports (when
    /// anything was tracked or it names an account) and attaches the
    /// events.
    // Not an `async fn`: its arguments would be stored twice in the future
    // (rust-lang/rust#62958), and this future lives inside every boxed flow.
    #[allow(clippy::manual_async_fn)]
    fn after<B>(
        self,
        mut ctx: Request2<St>,
        headers: &FormatHeaders,
        tracked: bool,
        response: Response<B>,
    ) -> impl Future<Output = Response<B>>
    where
        R: RespondToRejection<B>,
    {
        async move {
            let config = Arc::clone(&self.config);
            if !tracked
                && AuthOutcome::of(&response)
                    .and_then(AuthOutcome::identifier)
                    .is_none()
            {
                return attach(response, ctx.events);
            }

            // Read what the response says before awaiting: the body type need
            // not be `Sync`.
            let reported = Reported::of(&response);
            let proven = response.extensions().get::<CaptchaSolved>().is_some()
                || is_captcha_rejection(&response);
            match self.settle(&mut ctx, reported, proven).await {
                Ok(None) => {}
                Ok(Some((lock, policy, account))) if !config.shadow => {
                    // The credential was evaluated for an account that was
                    // locked: answer exactly what the pre-check would have.
                    let rejection =
                        lock_rejection(lock, &policy, config.clock.now(), account.as_ref());
                    let events = std::mem::take(&mut ctx.events);
                    return respond_with(&self.respond, &headers.to_map(), rejection, events);
                }
                Ok(Some(_)) => {}
                Err(err) if config.fail_open => {
                    if !ctx.failed_open {
                        ctx.events.push(fail_open_event());
                    }
                    let _ = err;
                }
                Err(err) => {
                    // The outcome could not be counted: do not hand the attacker
                    // an answer that was not counted.
                    let events = std::mem::take(&mut ctx.events);
                    return respond_with(
                        &self.respond,
                        &headers.to_map(),
                        unavailable(err),
                        events,
                    );
                }
            }
            attach(response, ctx.events)
        }
    }
}

fn attach<B>(mut response: Response<B>, events: Vec<SecurityEvent>) -> Response<B> {
    for event in events {
        event.attach(&mut response);
    }
    response
}

/// Reads the identifier the configuration names; on a refusal, hands back
/// the request headers for the responder.
// Not an `async fn`, for the reason `Flow::after` gives.
#[allow(clippy::manual_async_fn)]
fn read_identifier<St, B>(
    config: &Config<St>,
    request: Request<B>,
) -> impl Future<Output = Result<(Request<B>, Option<Arc<str>>), (HeaderMap, &'static str)>>
where
    B: Body + RejectionBody,
    B::Error: Into<BoxError>,
{
    async move {
        let Some(source) = &config.identifier else {
            return Ok((request, None));
        };
        let mut found = None;
        if let (Some(field), Some(kind)) = (
            &source.field,
            extract::body_kind(request.method(), request.headers()),
        ) {
            let headers = FormatHeaders::of(request.headers()).to_map();
            // Boxed: buffering a body is the largest state of the flow (about
            // 1.3 KiB), and only login requests with a body field need it.
            let (parts, bytes) = match Box::pin(extract::buffer(request, source.max_body)).await {
                Ok(buffered) => buffered,
                Err(ReadError::Invalid(why)) => return Err((headers, why)),
                Err(ReadError::Body) => return Err((headers, "request body could not be read")),
            };
            match extract::body_field(kind, &bytes, field) {
                Ok(value) => found = value,
                Err(ReadError::Invalid(why)) => return Err((parts.headers, why)),
                Err(ReadError::Body) => {
                    return Err((parts.headers, "request body could not be read"));
                }
            }
            let request = extract::rebuild(parts, bytes);
            return finish_identifier(source, request, found);
        }
        finish_identifier(source, request, found)
    }
}

fn finish_identifier<B>(
    source: &super::extract::IdentifierSource,
    request: Request<B>,
    found: Option<String>,
) -> Result<(Request<B>, Option<Arc<str>>), (HeaderMap, &'static str)> {
    let mut found = found;
    if found.is_none()
        && let Some(header) = &source.header
    {
        match extract::header_value(request.headers(), header) {
            Ok(value) => found = value.map(str::to_owned),
            Err(ReadError::Invalid(why)) => return Err((request.headers().clone(), why)),
            Err(ReadError::Body) => {
                return Err((request.headers().clone(), "request could not be read"));
            }
        }
    }
    let identifier = found.as_deref().and_then(canonical_identifier);
    Ok((request, identifier))
}
