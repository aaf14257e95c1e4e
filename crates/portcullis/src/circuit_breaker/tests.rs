//! Service tests: SECURITY.md section L (rows 124, 125, 126, 128, 131),
//! resilience4j semantics, readiness, operator controls. Time is paused
//! (`start_paused`) and moved with `tokio::time::advance` or by the
//! runtime's auto-advance when every task waits on a timer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use portcullis_core::{FailureReason, Rejection};
use tokio::sync::Semaphore;
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

use super::classify::GrpcErrorsAsFailures;
use super::error::{CallTimeout, Open};
use super::*;

/// What the fake upstream does with the next calls.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Status(u16),
    Error,
    /// Answers 200 after this long.
    Slow(Duration),
    /// Never answers.
    Hang,
    /// Answers 200 once the gate gives it a permit.
    Gated,
}

#[derive(Clone)]
struct Upstream {
    mode: Arc<Mutex<Mode>>,
    calls: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Upstream {
    fn new(mode: Mode) -> Self {
        Self {
            mode: Arc::new(Mutex::new(mode)),
            calls: Arc::new(AtomicUsize::new(0)),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<String>,
        Response = Response<String>,
        Error = BoxError,
        Future = BoxFuture<Result<Response<String>, BoxError>>,
    > + Clone
    + Send
    + Sync
    + 'static {
        let this = self.clone();
        service_fn(move |_: Request<String>| {
            this.calls.fetch_add(1, Ordering::SeqCst);
            let mode = *this.mode.lock().unwrap();
            let gate = Arc::clone(&this.gate);
            Box::pin(async move {
                match mode {
                    Mode::Status(code) => Ok(status(code)),
                    Mode::Error => Err::<_, BoxError>("connection refused".into()),
                    Mode::Slow(delay) => {
                        tokio::time::sleep(delay).await;
                        Ok(status(200))
                    }
                    Mode::Hang => std::future::pending().await,
                    Mode::Gated => {
                        gate.acquire().await.unwrap().forget();
                        Ok(status(200))
                    }
                }
            }) as BoxFuture<_>
        })
    }
}

fn status(code: u16) -> Response<String> {
    let mut response = Response::new(String::new());
    *response.status_mut() = StatusCode::from_u16(code).unwrap();
    response
}

/// How one call through the breaker ended.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Status(u16),
    Rejected(State),
    TimedOut,
    Failed,
}

async fn call<S, B>(service: &mut S) -> Outcome
where
    S: Service<Request<String>, Response = Response<B>, Error = BoxError>,
{
    let result = match service.ready().await {
        Ok(ready) => ready.call(Request::new(String::new())).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(response) => Outcome::Status(response.status().as_u16()),
        Err(err) if err.is::<Open>() => {
            Outcome::Rejected(err.downcast_ref::<Open>().unwrap().state())
        }
        Err(err) if err.is::<CallTimeout>() => Outcome::TimedOut,
        Err(_) => Outcome::Failed,
    }
}

async fn call_n<S, B>(service: &mut S, n: usize) -> Vec<Outcome>
where
    S: Service<Request<String>, Response = Response<B>, Error = BoxError>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(call(service).await);
    }
    out
}

/// Records every transition as `(from, to)`.
fn recorder() -> (
    Arc<Mutex<Vec<(State, State)>>>,
    impl Fn(&Transition) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    (seen, move |t: &Transition| {
        log.lock().unwrap().push((t.from(), t.to()))
    })
}

fn count_window(size: u32, minimum: u32) -> CircuitBreakerLayer {
    CircuitBreakerLayer::new()
        .with_name("test")
        .with_sliding_window(SlidingWindow::count_based(size))
        .unwrap()
        .with_minimum_calls(minimum)
        .unwrap()
}

// Row 125: the rates count only from the minimum number of calls.
#[tokio::test(start_paused = true)]
async fn nine_failures_below_a_minimum_of_ten_stay_closed() {
    let upstream = Upstream::new(Mode::Status(500));
    let layer = count_window(10, 10);
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());

    let outcomes = call_n(&mut svc, 9).await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Status(500)));
    assert_eq!(breaker.state(), State::Closed);
    let metrics = breaker.metrics();
    assert_eq!((metrics.calls(), metrics.failed_calls()), (9, 9));
    assert_eq!(metrics.failure_rate(), None, "below the minimum");

    // The tenth call reaches the minimum: 100 % failures opens.
    assert_eq!(call(&mut svc).await, Outcome::Status(500));
    assert_eq!(breaker.state(), State::Open);
}

// Row 124: failure rate at the threshold after the minimum → open, and
// then no upstream calls at all.
#[tokio::test(start_paused = true)]
async fn opens_at_the_failure_rate_threshold_then_rejects_without_calling() {
    let upstream = Upstream::new(Mode::Status(200));
    let (seen, listener) = recorder();
    let layer = count_window(10, 10)
        .with_failure_rate_threshold(50.0)
        .unwrap()
        .on_transition(listener);
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());

    call_n(&mut svc, 5).await;
    upstream.set(Mode::Error);
    call_n(&mut svc, 4).await;
    upstream.set(Mode::Status(503));
    // 5 ok, 4 failed: 44 % of 9 calls, and below the minimum anyway.
    assert_eq!(breaker.state(), State::Closed);
    // The tenth call: 5 failures of 10 = 50 %.
    assert_eq!(call(&mut svc).await, Outcome::Status(503));
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.metrics().failure_rate(), Some(50.0));
    assert_eq!(*seen.lock().unwrap(), [(State::Closed, State::Open)]);

    let before = upstream.calls();
    let outcomes = call_n(&mut svc, 20).await;
    assert!(
        outcomes
            .iter()
            .all(|o| *o == Outcome::Rejected(State::Open))
    );
    assert_eq!(upstream.calls(), before, "an open breaker calls nothing");
    assert_eq!(breaker.metrics().not_permitted_calls(), 20);
    // A clone shares the breaker.
    assert_eq!(call(&mut svc.clone()).await, Outcome::Rejected(State::Open));
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_not_failures_but_inner_errors_are() {
    let upstream = Upstream::new(Mode::Status(404));
    let layer = count_window(5, 5);
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());

    for code in [400, 401, 403, 404, 429] {
        upstream.set(Mode::Status(code));
        assert_eq!(call(&mut svc).await, Outcome::Status(code));
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().failure_rate(), Some(0.0));

    upstream.set(Mode::Error);
    assert_eq!(call_n(&mut svc, 3).await, vec![Outcome::Failed; 3]);
    assert_eq!(breaker.state(), State::Open, "3 errors of 5 calls");
}

// Row 126: successful but slow calls open the breaker on the slow-call rate.
#[tokio::test(start_paused = true)]
async fn opens_on_the_slow_call_rate_when_every_call_succeeds_slowly() {
    let upstream = Upstream::new(Mode::Slow(Duration::from_secs(3)));
    let layer = count_window(5, 5)
        .with_slow_call_duration(Duration::from_secs(2))
        .with_slow_call_rate_threshold(100.0)
        .unwrap();
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());

    let outcomes = call_n(&mut svc, 4).await;
    assert!(outcomes.iter().all(|o| *o == Outcome::Status(200)));
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(call(&mut svc).await, Outcome::Status(200));
    assert_eq!(breaker.state(), State::Open);
    let metrics = breaker.metrics();
    assert_eq!(metrics.failure_rate(), Some(0.0));
    assert_eq!(metrics.slow_call_rate(), Some(100.0));
    assert_eq!((metrics.slow_calls(), metrics.slow_failed_calls()), (5, 0));

    // Fast calls are not slow.
    breaker.reset();
    upstream.set(Mode::Slow(Duration::from_secs(1)));
    call_n(&mut svc, 10).await;
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn time_based_window_forgets_calls_older_than_the_window() {
    let upstream = Upstream::new(Mode::Status(500));
    let layer = CircuitBreakerLayer::new()
        .with_sliding_window(SlidingWindow::time_based(10))
        .unwrap()
        .with_minimum_calls(4)
        .unwrap();
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());

    call_n(&mut svc, 3).await;
    assert_eq!(breaker.metrics().calls(), 3);
    advance(Duration::from_secs(11)).await;
    assert_eq!(breaker.metrics().calls(), 0, "the failures left the window");
    call(&mut svc).await;
    assert_eq!(breaker.state(), State::Closed, "1 call, minimum 4");
    call_n(&mut svc, 3).await;
    assert_eq!(breaker.state(), State::Open);
}

// The seed's policy: 5 failures in a row, open for 60 s.
#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_and_a_success_resets_the_run() {
    let upstream = Upstream::new(Mode::Status(502));
    let layer = CircuitBreakerLayer::consecutive_failures(5, Duration::from_secs(60)).unwrap();
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());

    call_n(&mut svc, 4).await;
    assert_eq!(breaker.metrics().consecutive_failures(), 4);
    upstream.set(Mode::Status(200));
    call(&mut svc).await;
    assert_eq!(breaker.metrics().consecutive_failures(), 0);
    upstream.set(Mode::Status(502));
    call_n(&mut svc, 4).await;
    assert_eq!(breaker.state(), State::Closed);
    call(&mut svc).await;
    assert_eq!(breaker.state(), State::Open);

    let Outcome::Rejected(State::Open) = call(&mut svc).await else {
        panic!("open breaker let a call through");
    };
    advance(Duration::from_secs(59)).await;
    assert_eq!(call(&mut svc).await, Outcome::Rejected(State::Open));
    assert_eq!(upstream.calls(), 10, "rejections never reach upstream");
}

#[tokio::test(start_paused = true)]
async fn half_open_after_the_wait_then_closed_on_success() {
    let upstream = Upstream::new(Mode::Error);
    let (seen, listener) = recorder();
    let layer = CircuitBreakerLayer::consecutive_failures(2, Duration::from_secs(30))
        .unwrap()
        .on_transition(listener);
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());

    call_n(&mut svc, 2).await;
    assert_eq!(breaker.state(), State::Open);

    advance(Duration::from_secs(29)).await;
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(String::new()))
        .await
        .unwrap_err();
    let open = err.downcast_ref::<Open>().unwrap();
    assert_eq!(open.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(open.to_string(), r#"circuit breaker "default" is open"#);

    advance(Duration::from_secs(1)).await;
    upstream.set(Mode::Status(200));
    assert_eq!(call(&mut svc).await, Outcome::Status(200));
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_failure_reopens_for_another_wait() {
    let upstream = Upstream::new(Mode::Status(500));
    let layer = count_window(4, 4)
        .with_wait_in_open(Duration::from_secs(10))
        .with_permitted_calls_in_half_open(2)
        .unwrap();
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());

    call_n(&mut svc, 4).await;
    assert_eq!(breaker.state(), State::Open);
    advance(Duration::from_secs(10)).await;

    // Two trial calls, one failed: 50 % reaches the threshold.
    upstream.set(Mode::Status(200));
    assert_eq!(call(&mut svc).await, Outcome::Status(200));
    assert_eq!(breaker.state(), State::HalfOpen);
    upstream.set(Mode::Status(500));
    assert_eq!(call(&mut svc).await, Outcome::Status(500));
    assert_eq!(breaker.state(), State::Open);
    let metrics = breaker.metrics();
    assert_eq!((metrics.calls(), metrics.failed_calls()), (2, 1));
    assert_eq!(call(&mut svc).await, Outcome::Rejected(State::Open));

    // A full new wait, then two good trial calls close it.
    advance(Duration::from_secs(10)).await;
    upstream.set(Mode::Status(200));
    call_n(&mut svc, 2).await;
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().calls(), 0, "a fresh window");
}

/// Opens a breaker with `probes` trial calls and no wait, over `upstream`.
async fn opened(
    probes: u32,
    upstream: &Upstream,
    listener: impl Fn(&Transition) + Send + Sync + 'static,
) -> CircuitBreakerLayer {
    let layer = CircuitBreakerLayer::consecutive_failures(1, Duration::from_secs(5))
        .unwrap()
        .with_permitted_calls_in_half_open(probes)
        .unwrap()
        .on_transition(listener);
    upstream.set(Mode::Error);
    let mut svc = layer.layer(upstream.service());
    assert_eq!(call(&mut svc).await, Outcome::Failed);
    assert_eq!(layer.handle().state(), State::Open);
    layer
}

// Breaker dynamics: exactly N trial calls under 100 concurrent callers.
#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_n_of_100_concurrent_callers() {
    let upstream = Upstream::new(Mode::Error);
    let (seen, listener) = recorder();
    let layer = opened(3, &upstream, listener).await;
    let breaker = layer.handle();
    let svc = layer.layer(upstream.service());
    advance(Duration::from_secs(5)).await;
    upstream.set(Mode::Gated);

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let mut svc = svc.clone();
        tasks.spawn(async move { call(&mut svc).await });
    }
    // The 97 rejected callers finish without the gate opening.
    for _ in 0..97 {
        let outcome = tasks.join_next().await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Rejected(State::HalfOpen));
    }
    assert_eq!(
        upstream.calls(),
        1 + 3,
        "exactly 3 trial calls reached upstream"
    );
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(breaker.metrics().not_permitted_calls(), 97);

    upstream.gate.add_permits(3);
    for _ in 0..3 {
        assert_eq!(
            tasks.join_next().await.unwrap().unwrap(),
            Outcome::Status(200)
        );
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
        ],
        "one event per transition, however many callers raced"
    );
}

// The same on two worker threads, with real concurrency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_probe_limit_holds_across_threads() {
    let upstream = Upstream::new(Mode::Error);
    let transitions = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&transitions);
    let layer = CircuitBreakerLayer::consecutive_failures(1, Duration::ZERO)
        .unwrap()
        .with_permitted_calls_in_half_open(5)
        .unwrap()
        .on_transition(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
    let breaker = layer.handle();
    let svc = layer.layer(upstream.service());
    assert_eq!(call(&mut svc.clone()).await, Outcome::Failed);
    assert_eq!(breaker.state(), State::Open);
    upstream.set(Mode::Gated);

    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let mut svc = svc.clone();
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            barrier.wait().await;
            call(&mut svc).await
        });
    }
    for _ in 0..95 {
        let outcome = tasks.join_next().await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Rejected(State::HalfOpen));
    }
    assert_eq!(upstream.calls(), 1 + 5);
    upstream.gate.add_permits(5);
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.unwrap(), Outcome::Status(200));
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(transitions.load(Ordering::SeqCst), 3);
}

// Row 128 (resilience4j #903): a hung trial call is ended by the call
// timeout, counts as a failure, and the breaker does not stay half-open.
#[tokio::test(start_paused = true)]
async fn a_hung_trial_call_is_ended_by_the_call_timeout() {
    let upstream = Upstream::new(Mode::Error);
    let (seen, listener) = recorder();
    let layer = CircuitBreakerLayer::consecutive_failures(1, Duration::from_secs(10))
        .unwrap()
        .with_call_timeout(Duration::from_secs(5))
        .on_transition(listener);
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());
    call(&mut svc).await;
    assert_eq!(breaker.state(), State::Open);

    advance(Duration::from_secs(10)).await;
    upstream.set(Mode::Hang);
    let started = tokio::time::Instant::now();
    // Paused time auto-advances to the call timeout.
    assert_eq!(call(&mut svc).await, Outcome::TimedOut);
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(breaker.state(), State::Open, "not stuck half-open");

    advance(Duration::from_secs(10)).await;
    upstream.set(Mode::Status(200));
    assert_eq!(call(&mut svc).await, Outcome::Status(200));
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_caller_giving_up_frees_its_trial_slot() {
    let upstream = Upstream::new(Mode::Error);
    let layer = CircuitBreakerLayer::consecutive_failures(1, Duration::from_secs(1))
        .unwrap()
        .without_call_timeout();
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());
    call(&mut svc).await;
    advance(Duration::from_secs(1)).await;

    upstream.set(Mode::Hang);
    let gave_up = tokio::time::timeout(Duration::from_secs(3), call(&mut svc)).await;
    assert!(gave_up.is_err());
    assert_eq!(breaker.state(), State::HalfOpen);
    // The slot is free again: the next caller is a trial call, not rejected.
    upstream.set(Mode::Status(200));
    assert_eq!(call(&mut svc).await, Outcome::Status(200));
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(upstream.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn timeouts_in_the_closed_state_are_failures() {
    let upstream = Upstream::new(Mode::Hang);
    let layer = count_window(2, 2).with_call_timeout(Duration::from_millis(100));
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());
    assert_eq!(call_n(&mut svc, 2).await, vec![Outcome::TimedOut; 2]);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.metrics().failed_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn operator_controls_force_open_force_closed_and_reset() {
    let upstream = Upstream::new(Mode::Status(200));
    let (seen, listener) = recorder();
    let layer = count_window(2, 2).on_transition(listener);
    let breaker = layer.handle();
    let mut svc = layer.layer(upstream.service());

    breaker.force_open();
    assert_eq!(breaker.state(), State::ForcedOpen);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(String::new()))
        .await
        .unwrap_err();
    let open = err.downcast_ref::<Open>().unwrap();
    assert_eq!(
        (open.state(), open.retry_after()),
        (State::ForcedOpen, None)
    );
    // No wait ends a forced open.
    advance(Duration::from_secs(3600)).await;
    assert_eq!(call(&mut svc).await, Outcome::Rejected(State::ForcedOpen));
    assert_eq!(upstream.calls(), 0);

    breaker.force_closed();
    assert_eq!(breaker.state(), State::Disabled);
    upstream.set(Mode::Status(500));
    call_n(&mut svc, 50).await;
    assert_eq!(breaker.state(), State::Disabled);
    assert_eq!(
        breaker.metrics().calls(),
        0,
        "nothing recorded while disabled"
    );
    assert_eq!(upstream.calls(), 50);

    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    breaker.reset(); // not a transition: no event
    call_n(&mut svc, 2).await;
    assert_eq!(breaker.state(), State::Open);
    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().calls(), 0);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::Disabled),
            (State::Disabled, State::Closed),
            (State::Closed, State::Open),
            (State::Open, State::Closed),
        ]
    );
}

// Row 131: one event per transition, carrying what caused it.
#[tokio::test(start_paused = true)]
async fn every_transition_is_reported_once_with_its_cause() {
    let upstream = Upstream::new(Mode::Status(503));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let second = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&second);
    let layer = count_window(4, 4)
        .with_name("jwks")
        .on_transition(move |t| log.lock().unwrap().push(t.clone()))
        .on_transition(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
    let mut svc = layer.layer(upstream.service());
    call_n(&mut svc, 4).await;
    // Rejections are not transitions.
    call_n(&mut svc, 10).await;

    let transitions = seen.lock().unwrap().clone();
    assert_eq!(transitions.len(), 1);
    assert_eq!(second.load(Ordering::SeqCst), 1, "every listener is called");
    let t = &transitions[0];
    assert_eq!(
        (t.name(), t.from(), t.to()),
        ("jwks", State::Closed, State::Open)
    );
    assert_eq!(t.metrics().calls(), 4);
    assert_eq!(t.metrics().failure_rate(), Some(100.0));
}

// Readiness (tower-test): an open circuit answers `poll_ready` without
// polling the inner service, which may never become ready.
#[tokio::test(start_paused = true)]
async fn open_circuit_is_ready_without_polling_the_inner_service() {
    let layer = CircuitBreakerLayer::consecutive_failures(1, Duration::from_secs(60)).unwrap();
    let breaker = layer.handle();
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<Request<String>, Response<String>, _>(layer);

    handle.allow(1);
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    let response = svc.call(Request::new(String::new()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_error("connection reset");
    assert!(response.await.is_err());
    assert_eq!(breaker.state(), State::Open);

    // The inner service is not ready (and never will be); the breaker is.
    handle.allow(0);
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    let err = svc.call(Request::new(String::new())).await.unwrap_err();
    assert!(err.is::<Open>());
    // A mock called without readiness would have panicked; none reached it.
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
}

#[tokio::test(start_paused = true)]
async fn closed_circuit_delegates_readiness() {
    let layer = CircuitBreakerLayer::new();
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<Request<String>, Response<String>, _>(layer);

    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(svc.is_woken());
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    let response = svc.call(Request::new(String::new()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(status(200));
    assert_eq!(response.await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn full_half_open_is_ready_without_polling_the_inner_service() {
    let layer = CircuitBreakerLayer::consecutive_failures(1, Duration::from_secs(1)).unwrap();
    let (mut svc, mut handle) =
        tower_test::mock::spawn_layer::<Request<String>, Response<String>, _>(layer);
    handle.allow(1);
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    let first = svc.call(Request::new(String::new()));
    handle.next_request().await.unwrap().1.send_error("down");
    assert!(first.await.is_err());
    advance(Duration::from_secs(1)).await;

    // The one trial call is in flight.
    handle.allow(1);
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    let probe = svc.call(Request::new(String::new()));
    let (_, send) = handle.next_request().await.unwrap();

    handle.allow(0);
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    let err = svc.call(Request::new(String::new())).await.unwrap_err();
    assert_eq!(err.downcast_ref::<Open>().unwrap().state(), State::HalfOpen);

    send.send_response(status(204));
    assert_eq!(probe.await.unwrap().status(), 204);
    assert_eq!(svc.get_ref().handle().state(), State::Closed);
}

/// A gRPC response body: no data, then trailers.
struct Trailers(Option<HeaderMap>);

impl Body for Trailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|t| Ok(Frame::trailers(t))))
    }
}

fn grpc_response(code: &'static str) -> Response<Trailers> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", code.parse().unwrap());
    let mut response = Response::new(Trailers(Some(trailers)));
    response
        .headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    response
}

#[tokio::test(start_paused = true)]
async fn grpc_status_in_trailers_is_classified_at_the_end_of_the_stream() {
    let next = Arc::new(Mutex::new("14"));
    let code = Arc::clone(&next);
    let layer = CircuitBreakerLayer::consecutive_failures(2, Duration::from_secs(60))
        .unwrap()
        .with_classifier(GrpcErrorsAsFailures::new());
    let breaker = layer.handle();
    let svc = layer.layer(service_fn(move |_: Request<String>| {
        let code = *code.lock().unwrap();
        async move { Ok::<_, Infallible>(grpc_response(code)) }
    }));

    // UNAVAILABLE in trailers: recorded once the body is read.
    let response = svc
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        breaker.metrics().calls(),
        0,
        "not decided before the trailers"
    );
    let trailers = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned();
    assert_eq!(trailers.unwrap()["grpc-status"], "14");
    assert_eq!(breaker.metrics().failed_calls(), 1);

    // A body dropped before its end records nothing.
    drop(
        svc.clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap(),
    );
    assert_eq!(breaker.metrics().calls(), 1);

    // OK in trailers resets the run; two failures in a row open.
    *next.lock().unwrap() = "0";
    let ok = svc
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    ok.into_body().collect().await.unwrap();
    assert_eq!(breaker.metrics().consecutive_failures(), 0);
    *next.lock().unwrap() = "13";
    for _ in 0..2 {
        let res = svc
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap();
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn grpc_trailers_only_responses_are_classified_from_the_head() {
    let layer = CircuitBreakerLayer::consecutive_failures(1, Duration::from_secs(60))
        .unwrap()
        .with_classifier(GrpcErrorsAsFailures::new());
    let breaker = layer.handle();
    let svc = layer.layer(service_fn(|_: Request<String>| async {
        let mut response = Response::new(http_body_util::Empty::<Bytes>::new());
        response
            .headers_mut()
            .insert("grpc-status", "14".parse().unwrap());
        Ok::<_, Infallible>(response)
    }));
    let _response = svc.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(
        breaker.state(),
        State::Open,
        "decided without reading the body"
    );
}

#[tokio::test(start_paused = true)]
async fn error_response_is_503_upstream_unavailable_with_retry_after() {
    let upstream = Upstream::new(Mode::Error);
    let layer = CircuitBreakerLayer::consecutive_failures(1, Duration::from_millis(1500))
        .unwrap()
        .with_name("jwks");
    let mut svc = layer.layer(upstream.service());
    let inner_error = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(String::new()))
        .await
        .unwrap_err();
    let open = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(String::new()))
        .await
        .unwrap_err();

    let res: Response<String> = error_response(&open);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "2");
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    assert!(!res.body().contains("jwks"), "no internals in the body");
    let rejection = res.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.reason(), FailureReason::UpstreamUnavailable);
    assert_eq!(rejection.detail(), Some("circuit open"));

    let res: Response<String> = error_response(&inner_error);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get("retry-after").is_none());
    assert!(!res.body().contains("connection refused"));

    let timeout: BoxError = Box::new(CallTimeout {
        name: Arc::from("jwks"),
        after: Duration::from_secs(1),
    });
    let res: Response<String> = error_response(&timeout);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().detail(),
        Some("upstream call timed out")
    );
}

#[cfg(feature = "tonic")]
#[test]
fn open_is_unavailable_for_tonic() {
    let open = Open {
        name: Arc::from("users"),
        state: State::Open,
        retry_after: Some(Duration::from_secs(3)),
    };
    let status = tonic::Status::from(open);
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(!status.message().contains("users"));
    let source = std::error::Error::source(&status).unwrap();
    assert_eq!(source.downcast_ref::<Open>().unwrap().name(), "users");
}

#[test]
fn configuration_is_validated() {
    assert!(CircuitBreakerLayer::consecutive_failures(0, Duration::from_secs(1)).is_err());
    for bad in [0.0, -1.0, 100.5, f32::NAN] {
        assert!(
            CircuitBreakerLayer::new()
                .with_failure_rate_threshold(bad)
                .is_err()
        );
        assert!(
            CircuitBreakerLayer::new()
                .with_slow_call_rate_threshold(bad)
                .is_err()
        );
    }
    assert!(
        CircuitBreakerLayer::new()
            .with_failure_rate_threshold(100.0)
            .is_ok()
    );
    assert!(CircuitBreakerLayer::new().with_minimum_calls(0).is_err());
    assert!(
        CircuitBreakerLayer::new()
            .with_permitted_calls_in_half_open(0)
            .is_err()
    );
    for window in [
        SlidingWindow::count_based(0),
        SlidingWindow::time_based(0),
        SlidingWindow::count_based(MAX_WINDOW_CALLS + 1),
        SlidingWindow::time_based(MAX_WINDOW_SECONDS + 1),
    ] {
        let err = CircuitBreakerLayer::new()
            .with_sliding_window(window)
            .unwrap_err();
        assert!(
            err.to_string().starts_with("invalid sliding window"),
            "{err}"
        );
    }
}

#[test]
fn defaults_are_resilience4j_defaults() {
    let layer = CircuitBreakerLayer::new();
    let config = &layer.handle().shared.config;
    assert_eq!(&*config.name, "default");
    assert_eq!(config.window, super::config::WindowKind::Count(100));
    assert_eq!((config.failure_rate, config.slow_rate), (50.0, 100.0));
    assert_eq!(config.slow_call, Duration::from_secs(60));
    assert_eq!(config.minimum_calls, 100);
    assert_eq!(config.wait_in_open, Duration::from_secs(60));
    assert_eq!(config.half_open_calls, 10);
    let simple = CircuitBreakerLayer::consecutive_failures(5, Duration::from_secs(60)).unwrap();
    assert_eq!(
        simple.handle().shared.config.half_open_calls,
        1,
        "one trial call"
    );
}

#[test]
fn debug_output_names_the_breaker_and_state() {
    let layer = CircuitBreakerLayer::new().with_name("siteverify");
    let debug = format!("{:?}", layer.handle());
    assert_eq!(
        debug,
        r#"BreakerHandle { name: "siteverify", state: Closed }"#
    );
    let svc = layer.layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(status(200))
    }));
    assert!(format!("{svc:?}").contains("siteverify"));
}

/// Never ready; counts how often its readiness is polled.
#[derive(Clone, Default)]
struct NeverReady {
    polls: Arc<AtomicUsize>,
}

impl Service<Request<String>> for NeverReady {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        panic!("called without readiness");
    }
}

// tower-resilience #381/#386: the state is checked before the inner
// service's readiness, which is not polled at all while open.
#[test]
fn open_circuit_never_polls_the_inner_readiness() {
    let inner = NeverReady::default();
    let polls = Arc::clone(&inner.polls);
    let layer = CircuitBreakerLayer::new();
    let breaker = layer.handle();
    let mut svc = layer.layer(inner);
    let mut cx = Context::from_waker(std::task::Waker::noop());

    assert!(svc.poll_ready(&mut cx).is_pending(), "closed: delegated");
    assert_eq!(polls.load(Ordering::SeqCst), 1);

    breaker.force_open();
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut rejected = std::pin::pin!(svc.call(Request::new(String::new())));
    let Poll::Ready(Err(err)) = rejected.as_mut().poll(&mut cx) else {
        panic!("an open circuit answers at once");
    };
    assert!(err.is::<Open>());
    assert_eq!(
        polls.load(Ordering::SeqCst),
        1,
        "inner readiness not polled"
    );
}
