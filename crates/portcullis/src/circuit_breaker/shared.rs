//! The state every clone of a breaker shares, the permit an admitted call
//! holds, and the operator's [`BreakerHandle`].
//!
//! The hot path (closed or disabled, or open within its wait) reads two
//! atomics and takes no lock. The mutex guards the window and transitions;
//! its critical sections are short, never span an `.await`, and listeners
//! run after it is released.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::config::Config;
use super::error::Open;
use super::state::{
    CallResult, Change, Counts, Machine, Metrics, Now, Refusal, State, Ticket, Transition,
};

/// `open_until` value for "open until reset".
const FOREVER: u64 = u64::MAX;

pub(crate) struct Shared {
    pub(crate) config: Config,
    /// `epoch << 3 | state code`, mirrored from the machine after each
    /// transition.
    word: AtomicU64,
    /// While open: nanoseconds since `base` when the wait ends.
    open_until: AtomicU64,
    base: Instant,
    machine: Mutex<Machine>,
    not_permitted: AtomicU64,
}

fn pack(epoch: u64, state: State) -> u64 {
    (epoch << 3) | state.code()
}

fn unpack(word: u64) -> (u64, State) {
    (word >> 3, State::from_code(word & 0b111))
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        let now = Instant::now();
        let machine = Machine::new(&config, now);
        Self {
            config,
            word: AtomicU64::new(pack(machine.epoch(), machine.state())),
            open_until: AtomicU64::new(FOREVER),
            base: machine.base(),
            machine: Mutex::new(machine),
            not_permitted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // The machine stays consistent if a thread panicked while holding
        // the lock: every method completes its updates before returning.
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos_since_base(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(FOREVER - 1)
    }

    /// Mirrors the machine into the atomics. Called with the lock held,
    /// after a transition.
    fn publish(&self, machine: &Machine) {
        let until = machine
            .open_until()
            .map_or(FOREVER, |until| self.nanos_since_base(until));
        self.open_until.store(until, Ordering::Release);
        self.word
            .store(pack(machine.epoch(), machine.state()), Ordering::Release);
    }

    /// Refusal without the lock while open within the wait.
    fn refuse_while_open(&self) -> Option<Refusal> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == FOREVER {
            return Some(Refusal {
                state: State::Open,
                retry_after: None,
            });
        }
        let now = self.nanos_since_base(Instant::now());
        (now < until).then(|| Refusal {
            state: State::Open,
            retry_after: Some(Duration::from_nanos(until - now)),
        })
    }

    /// Whether a call would be admitted now (for `poll_ready`).
    pub(crate) fn check(&self) -> Result<(), Refusal> {
        let (_, state) = unpack(self.word.load(Ordering::Acquire));
        match state {
            State::Closed | State::Disabled => return Ok(()),
            State::ForcedOpen => {
                return Err(Refusal {
                    state,
                    retry_after: None,
                });
            }
            State::Open => {
                if let Some(refusal) = self.refuse_while_open() {
                    return Err(refusal);
                }
            }
            State::HalfOpen => {}
        }
        let mut change = None;
        let result = {
            let mut machine = self.lock();
            let result = machine.check(&self.config, Instant::now(), &mut change);
            if change.is_some() {
                self.publish(&machine);
            }
            result
        };
        self.emit(change);
        result
    }

    /// Admits a call (for `call`), taking a trial slot when half-open.
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<Permit, Refusal> {
        let (epoch, state) = unpack(self.word.load(Ordering::Acquire));
        match state {
            State::Closed | State::Disabled => {
                return Ok(Permit::new(Arc::clone(self), Ticket { epoch, state }));
            }
            State::ForcedOpen => {
                return Err(Refusal {
                    state,
                    retry_after: None,
                });
            }
            State::Open => {
                if let Some(refusal) = self.refuse_while_open() {
                    return Err(refusal);
                }
            }
            State::HalfOpen => {}
        }
        let mut change = None;
        let result = {
            let mut machine = self.lock();
            let result = machine.admit(&self.config, Instant::now(), &mut change);
            if change.is_some() {
                self.publish(&machine);
            }
            result
        };
        self.emit(change);
        result.map(|ticket| Permit::new(Arc::clone(self), ticket))
    }

    fn record(&self, ticket: Ticket, result: CallResult, mut now: Now) {
        if ticket.state == State::Disabled
            || unpack(self.word.load(Ordering::Acquire)).0 != ticket.epoch
        {
            return;
        }
        let change = {
            let mut machine = self.lock();
            let change = machine.record(&self.config, ticket, result, &mut now);
            if change.is_some() {
                self.publish(&machine);
            }
            change
        };
        self.emit(change);
    }

    fn release(&self, ticket: Ticket) {
        if ticket.state == State::HalfOpen {
            self.lock().release(ticket);
        }
    }

    pub(crate) fn force(&self, to: State) {
        let change = {
            let mut machine = self.lock();
            let change = machine.force(&self.config, to, Instant::now());
            if change.is_some() {
                self.publish(&machine);
            }
            change
        };
        self.emit(change);
    }

    pub(crate) fn state(&self) -> State {
        unpack(self.word.load(Ordering::Acquire)).1
    }

    pub(crate) fn count_rejection(&self) {
        self.not_permitted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn open_error(&self, refusal: Refusal) -> Open {
        Open {
            name: Arc::clone(&self.config.name),
            state: refusal.state,
            retry_after: refusal.retry_after,
        }
    }

    fn metrics_of(&self, state: State, counts: Counts, run: u32) -> Metrics {
        Metrics {
            state,
            counts,
            run,
            minimum: match state {
                State::HalfOpen => u64::from(self.config.half_open_calls),
                _ => self.config.effective_minimum(),
            },
            rates_apply: self.config.consecutive().is_none(),
            not_permitted: self.not_permitted.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn metrics(&self) -> Metrics {
        let (state, counts, run) = {
            let mut machine = self.lock();
            let (counts, run) = machine.counts(Instant::now());
            (machine.state(), counts, run)
        };
        self.metrics_of(state, counts, run)
    }

    /// Reports a transition to the listeners and `tracing`, outside the lock.
    fn emit(&self, change: Option<Change>) {
        let Some(change) = change else {
            return;
        };
        let transition = Transition {
            name: Arc::clone(&self.config.name),
            from: change.from,
            to: change.to,
            metrics: self.metrics_of(change.from, change.counts, change.run),
        };
        #[cfg(feature = "tracing")]
        trace_transition(&transition);
        for listener in &self.config.listeners {
            listener(&transition);
        }
    }
}

#[cfg(feature = "tracing")]
fn trace_transition(t: &Transition) {
    let (from, to) = (t.from().as_str(), t.to().as_str());
    let failure_rate = t.metrics().failure_rate().map(f64::from);
    let slow_call_rate = t.metrics().slow_call_rate().map(f64::from);
    if matches!(t.to(), State::Open | State::ForcedOpen) {
        tracing::warn!(
            target: "portcullis::circuit_breaker",
            event = "security.circuit_state_changed",
            breaker = t.name(), from, to, failure_rate, slow_call_rate,
            "circuit breaker opened"
        );
    } else {
        tracing::info!(
            target: "portcullis::circuit_breaker",
            event = "security.circuit_state_changed",
            breaker = t.name(), from, to,
            "circuit breaker state changed"
        );
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// What an admitted call holds until it reports its outcome. Dropped
/// without an outcome (the caller gave up), it gives its trial slot back.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    ticket: Ticket,
    /// When the call was admitted; only read from the clock when slow
    /// calls are measured (not for consecutive-failures breakers).
    start: Option<Instant>,
    done: bool,
}

impl Permit {
    fn new(shared: Arc<Shared>, ticket: Ticket) -> Self {
        let start = shared.config.consecutive().is_none().then(Instant::now);
        Self {
            shared,
            ticket,
            start,
            done: false,
        }
    }

    /// When the call was admitted, if measured.
    pub(crate) fn start(&self) -> Option<Instant> {
        self.start
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Time from admission to `now` (`None` when not measured).
    pub(crate) fn elapsed(&self, now: &mut Now) -> Option<Duration> {
        self.start
            .map(|start| now.get().saturating_duration_since(start))
    }

    /// Records the outcome of a call that has just ended.
    pub(crate) fn finish(self, failed: bool) {
        let mut now = Now::lazy();
        let elapsed = self.elapsed(&mut now);
        self.record(failed, elapsed, now);
    }

    /// Records the outcome, at `now`, of a call whose response head took
    /// `elapsed`.
    pub(crate) fn record(mut self, failed: bool, elapsed: Option<Duration>, now: Now) {
        self.done = true;
        let slow = elapsed.is_some_and(|elapsed| elapsed > self.shared.config.slow_call);
        self.shared
            .record(self.ticket, CallResult { failed, slow }, now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.shared.release(self.ticket);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

/// Reads and controls one breaker: its state, its counters, and the
/// operator's overrides. Cheap to clone; every clone, every service made by
/// the layer and every clone of those services share the breaker.
///
/// Get it with [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle)
/// or [`CircuitBreaker::handle`](super::CircuitBreaker::handle).
#[derive(Clone)]
pub struct BreakerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl BreakerHandle {
    /// The breaker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The current state, read without locking.
    ///
    /// An open breaker becomes half-open when the first call arrives after
    /// the wait (as resilience4j does by default), so it reads
    /// [`State::Open`] until then.
    #[must_use]
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics()
    }

    /// Rejects every call until [`reset`](Self::reset) or
    /// [`force_closed`](Self::force_closed) ([`State::ForcedOpen`]).
    pub fn force_open(&self) {
        self.shared.force(State::ForcedOpen);
    }

    /// Lets every call through and records nothing until
    /// [`reset`](Self::reset) or [`force_open`](Self::force_open)
    /// ([`State::Disabled`]).
    pub fn force_closed(&self) {
        self.shared.force(State::Disabled);
    }

    /// Returns to [`State::Closed`] with an empty window, from any state.
    pub fn reset(&self) {
        self.shared.force(State::Closed);
    }
}

impl fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}
