//! The state machine: states, sliding windows, transitions and metrics.
//!
//! [`Machine`] is plain data behind the breaker's mutex: every method takes
//! the time as an argument, so it is tested (and property-tested) without a
//! runtime.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::config::{Config, WindowKind};

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls go through; their outcomes are recorded.
    Closed,
    /// Calls are rejected until the wait in the open state has passed.
    Open,
    /// A fixed number of trial calls go through; their outcomes decide
    /// between closed and open. Other calls are rejected.
    HalfOpen,
    /// Set by an operator: every call is rejected until [`reset`].
    ///
    /// [`reset`]: super::BreakerHandle::reset
    ForcedOpen,
    /// Set by an operator ("forced closed"): every call goes through and
    /// nothing is recorded until [`reset`].
    ///
    /// [`reset`]: super::BreakerHandle::reset
    Disabled,
}

impl State {
    /// A stable lowercase name, for metric labels and logs:
    /// `closed`, `open`, `half_open`, `forced_open`, `disabled`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
        }
    }

    pub(crate) const fn code(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::Disabled => 4,
        }
    }

    pub(crate) const fn from_code(code: u64) -> Self {
        match code {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            _ => Self::Disabled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The time of an event, read from the clock at most once and only if
/// needed: count-based and consecutive windows record a call without it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now(Option<Instant>);

impl Now {
    #[cfg(test)]
    pub(crate) fn at(instant: Instant) -> Self {
        Self(Some(instant))
    }

    pub(crate) fn lazy() -> Self {
        Self(None)
    }

    pub(crate) fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// How one call ended, as the windows record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CallResult {
    pub(crate) failed: bool,
    pub(crate) slow: bool,
}

impl CallResult {
    const FAILED: u8 = 1;
    const SLOW: u8 = 2;
    /// Marks a recorded slot in a count-based window.
    const SET: u8 = 4;

    fn bits(self) -> u8 {
        Self::SET | (u8::from(self.failed) * Self::FAILED) | (u8::from(self.slow) * Self::SLOW)
    }

    fn from_bits(bits: u8) -> Option<Self> {
        (bits & Self::SET != 0).then_some(Self {
            failed: bits & Self::FAILED != 0,
            slow: bits & Self::SLOW != 0,
        })
    }
}

/// Aggregated outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) slow: u64,
    pub(crate) slow_failed: u64,
}

impl Counts {
    fn add(&mut self, r: CallResult) {
        self.calls = self.calls.saturating_add(1);
        self.failed = self.failed.saturating_add(u64::from(r.failed));
        self.slow = self.slow.saturating_add(u64::from(r.slow));
        self.slow_failed = self
            .slow_failed
            .saturating_add(u64::from(r.slow && r.failed));
    }

    fn sub(&mut self, other: Self) {
        self.calls = self.calls.saturating_sub(other.calls);
        self.failed = self.failed.saturating_sub(other.failed);
        self.slow = self.slow.saturating_sub(other.slow);
        self.slow_failed = self.slow_failed.saturating_sub(other.slow_failed);
    }

    fn rate(part: u64, calls: u64) -> f32 {
        // Counts stay far below 2^24 in any realistic window, where f32 is
        // exact; the rate is a percentage.
        #[allow(clippy::cast_precision_loss)]
        let rate = (part as f64 * 100.0 / calls as f64) as f32;
        rate
    }

    pub(crate) fn failure_rate(&self) -> f32 {
        Self::rate(self.failed, self.calls)
    }

    pub(crate) fn slow_rate(&self) -> f32 {
        Self::rate(self.slow, self.calls)
    }

    /// Whether either rate reaches its threshold, compared exactly
    /// (`part * 100 >= threshold * calls`) so that rounding can never move
    /// a window across the threshold.
    fn exceeds(&self, config: &Config) -> bool {
        #[allow(clippy::cast_precision_loss)] // counts below 2^53 are exact
        let reaches = |part: u64, threshold: f32| {
            part as f64 * 100.0 >= f64::from(threshold) * self.calls as f64
        };
        self.calls > 0
            && (reaches(self.failed, config.failure_rate) || reaches(self.slow, config.slow_rate))
    }
}

/// The closed state's memory of recent calls.
#[derive(Debug)]
enum Window {
    Count {
        slots: Box<[u8]>,
        next: usize,
        totals: Counts,
    },
    Time {
        buckets: Box<[Counts]>,
        /// The latest second (since the machine's base) with a bucket.
        head: u64,
        totals: Counts,
    },
    Consecutive {
        run: u32,
        totals: Counts,
    },
}

impl Window {
    fn new(kind: WindowKind, second: u64) -> Self {
        match kind {
            WindowKind::Count(size) => Self::Count {
                slots: vec![0; size.max(1) as usize].into_boxed_slice(),
                next: 0,
                totals: Counts::default(),
            },
            WindowKind::Time(seconds) => Self::Time {
                buckets: vec![Counts::default(); seconds.max(1) as usize].into_boxed_slice(),
                head: second,
                totals: Counts::default(),
            },
            WindowKind::Consecutive(_) => Self::Consecutive {
                run: 0,
                totals: Counts::default(),
            },
        }
    }

    /// Drops the buckets that left a time-based window by `second`.
    fn advance(&mut self, second: u64) {
        if let Self::Time {
            buckets,
            head,
            totals,
        } = self
        {
            if second <= *head {
                return;
            }
            let len = buckets.len() as u64;
            if second - *head >= len {
                buckets.fill(Counts::default());
                *totals = Counts::default();
            } else {
                for s in *head + 1..=second {
                    #[allow(clippy::cast_possible_truncation)] // < len
                    let bucket = &mut buckets[(s % len) as usize];
                    totals.sub(*bucket);
                    *bucket = Counts::default();
                }
            }
            *head = second;
        }
    }

    fn record(&mut self, r: CallResult, second: u64) {
        self.advance(second);
        match self {
            Self::Count {
                slots,
                next,
                totals,
            } => {
                if let Some(old) = CallResult::from_bits(slots[*next]) {
                    let mut gone = Counts::default();
                    gone.add(old);
                    totals.sub(gone);
                }
                slots[*next] = r.bits();
                *next += 1;
                if *next == slots.len() {
                    *next = 0;
                }
                totals.add(r);
            }
            Self::Time {
                buckets,
                head,
                totals,
            } => {
                // Calls finishing on two threads may reach the lock out of
                // order by a second: count the late one in the newest bucket.
                let len = buckets.len() as u64;
                #[allow(clippy::cast_possible_truncation)] // < len
                buckets[(*head % len) as usize].add(r);
                totals.add(r);
            }
            Self::Consecutive { run, totals } => {
                *run = if r.failed { run.saturating_add(1) } else { 0 };
                totals.add(r);
            }
        }
    }

    fn totals(&self) -> Counts {
        match self {
            Self::Count { totals, .. }
            | Self::Time { totals, .. }
            | Self::Consecutive { totals, .. } => *totals,
        }
    }

    fn run(&self) -> u32 {
        match self {
            Self::Consecutive { run, .. } => *run,
            Self::Count { .. } | Self::Time { .. } => 0,
        }
    }
}

/// What an admitted call carries back when it reports its outcome: the
/// state it was admitted in, and in which epoch (outcomes of calls admitted
/// before a transition are ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) epoch: u64,
    pub(crate) state: State,
}

/// Why a call was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) state: State,
    pub(crate) retry_after: Option<Duration>,
}

/// One transition, as the machine reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Change {
    pub(crate) from: State,
    pub(crate) to: State,
    /// The counts that led to it (the window that tripped, the trial calls
    /// that closed or reopened it), empty for operator actions.
    pub(crate) counts: Counts,
    pub(crate) run: u32,
}

/// The state machine of one breaker.
#[derive(Debug)]
pub(crate) struct Machine {
    state: State,
    epoch: u64,
    base: Instant,
    /// `Some` while open; `None` while open means "until reset" (a wait too
    /// long to represent).
    open_until: Option<Instant>,
    window: Window,
    probes_admitted: u32,
    probes: Counts,
    /// What the state shows in its metrics while open.
    tripped: Counts,
    tripped_run: u32,
}

impl Machine {
    pub(crate) fn new(config: &Config, now: Instant) -> Self {
        Self {
            state: State::Closed,
            epoch: 0,
            base: now,
            open_until: None,
            window: Window::new(config.window, 0),
            probes_admitted: 0,
            probes: Counts::default(),
            tripped: Counts::default(),
            tripped_run: 0,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn base(&self) -> Instant {
        self.base
    }

    pub(crate) fn open_until(&self) -> Option<Instant> {
        self.open_until
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_secs()
    }

    fn transition(&mut self, config: &Config, to: State, now: Instant) -> Change {
        let from = self.state;
        let (counts, run) = match from {
            State::Closed => (self.window.totals(), self.window.run()),
            State::HalfOpen => (self.probes, 0),
            State::Open | State::ForcedOpen | State::Disabled => (Counts::default(), 0),
        };
        self.state = to;
        self.epoch += 1;
        self.open_until = None;
        self.probes_admitted = 0;
        self.probes = Counts::default();
        match to {
            State::Closed => self.window = Window::new(config.window, self.second(now)),
            State::Open => {
                self.open_until = now.checked_add(config.wait_in_open);
                self.tripped = counts;
                self.tripped_run = run;
            }
            State::HalfOpen | State::ForcedOpen | State::Disabled => {}
        }
        Change {
            from,
            to,
            counts,
            run,
        }
    }

    /// Moves an open breaker whose wait has passed to half-open.
    fn expire(&mut self, config: &Config, now: Instant) -> Option<Change> {
        let due = self.state == State::Open && self.open_until.is_some_and(|until| now >= until);
        due.then(|| self.transition(config, State::HalfOpen, now))
    }

    fn refusal(&self, now: Instant) -> Refusal {
        Refusal {
            state: self.state,
            retry_after: match self.state {
                State::Open => self
                    .open_until
                    .map(|until| until.saturating_duration_since(now)),
                _ => None,
            },
        }
    }

    /// Whether a call would be admitted now, without taking a trial slot.
    /// Moves an expired open breaker to half-open.
    pub(crate) fn check(
        &mut self,
        config: &Config,
        now: Instant,
        change: &mut Option<Change>,
    ) -> Result<(), Refusal> {
        *change = self.expire(config, now);
        match self.state {
            State::Closed | State::Disabled => Ok(()),
            State::HalfOpen if self.probes_admitted < config.half_open_calls => Ok(()),
            State::HalfOpen | State::Open | State::ForcedOpen => Err(self.refusal(now)),
        }
    }

    /// Admits a call, taking a trial slot when half-open.
    pub(crate) fn admit(
        &mut self,
        config: &Config,
        now: Instant,
        change: &mut Option<Change>,
    ) -> Result<Ticket, Refusal> {
        self.check(config, now, change)?;
        if self.state == State::HalfOpen {
            self.probes_admitted += 1;
        }
        Ok(Ticket {
            epoch: self.epoch,
            state: self.state,
        })
    }

    /// Records the outcome of an admitted call.
    pub(crate) fn record(
        &mut self,
        config: &Config,
        ticket: Ticket,
        result: CallResult,
        now: &mut Now,
    ) -> Option<Change> {
        if ticket.epoch != self.epoch {
            return None;
        }
        match self.state {
            State::Closed => {
                let second = match self.window {
                    Window::Time { .. } => self.second(now.get()),
                    Window::Count { .. } | Window::Consecutive { .. } => 0,
                };
                self.window.record(result, second);
                let trip = match config.consecutive() {
                    Some(failures) => self.window.run() >= failures,
                    None => {
                        let totals = self.window.totals();
                        totals.calls >= config.effective_minimum() && totals.exceeds(config)
                    }
                };
                trip.then(|| self.transition(config, State::Open, now.get()))
            }
            State::HalfOpen => {
                self.probes.add(result);
                let done = self.probes.calls >= u64::from(config.half_open_calls);
                let to = match config.consecutive() {
                    // One failure reopens; all trial calls must succeed.
                    Some(_) if result.failed => Some(State::Open),
                    Some(_) => done.then_some(State::Closed),
                    None if done && self.probes.exceeds(config) => Some(State::Open),
                    None => done.then_some(State::Closed),
                };
                to.map(|to| self.transition(config, to, now.get()))
            }
            State::Open | State::ForcedOpen | State::Disabled => None,
        }
    }

    /// Gives back the trial slot of a call that ended without an outcome
    /// (its future or body was dropped).
    pub(crate) fn release(&mut self, ticket: Ticket) {
        if ticket.epoch == self.epoch && self.state == State::HalfOpen {
            self.probes_admitted = self.probes_admitted.saturating_sub(1);
        }
    }

    /// An operator action: `ForcedOpen`, `Disabled`, or `Closed` (reset).
    /// Reset always clears the window; a change is reported only when the
    /// state changes.
    pub(crate) fn force(&mut self, config: &Config, to: State, now: Instant) -> Option<Change> {
        if self.state == to {
            if to == State::Closed {
                self.window = Window::new(config.window, self.second(now));
            }
            return None;
        }
        let mut change = self.transition(config, to, now);
        // Operator actions are not caused by recorded calls.
        change.counts = Counts::default();
        change.run = 0;
        Some(change)
    }

    /// The counts shown for the current state, and the failure run.
    pub(crate) fn counts(&mut self, now: Instant) -> (Counts, u32) {
        match self.state {
            State::Closed => {
                let second = self.second(now);
                self.window.advance(second);
                (self.window.totals(), self.window.run())
            }
            State::HalfOpen => (self.probes, 0),
            State::Open => (self.tripped, self.tripped_run),
            State::ForcedOpen | State::Disabled => (Counts::default(), 0),
        }
    }
}

/// A snapshot of a breaker's counters.
///
/// The counts are those of the current state: the sliding window while
/// closed, the window that tripped the breaker while open, the trial calls
/// while half-open, nothing while forced open or disabled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    pub(crate) state: State,
    pub(crate) counts: Counts,
    pub(crate) run: u32,
    pub(crate) minimum: u64,
    pub(crate) rates_apply: bool,
    pub(crate) not_permitted: u64,
}

impl Metrics {
    /// The state when the snapshot was taken.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// Calls recorded.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.counts.calls
    }

    /// Calls recorded as failures (inner errors, failure responses, call
    /// timeouts).
    #[must_use]
    pub fn failed_calls(&self) -> u64 {
        self.counts.failed
    }

    /// Calls slower than the slow-call duration, failed or not.
    #[must_use]
    pub fn slow_calls(&self) -> u64 {
        self.counts.slow
    }

    /// Calls that were both slow and failed.
    #[must_use]
    pub fn slow_failed_calls(&self) -> u64 {
        self.counts.slow_failed
    }

    /// Failures in a row (consecutive-failures breakers; 0 otherwise).
    #[must_use]
    pub fn consecutive_failures(&self) -> u32 {
        self.run
    }

    /// The failure rate in percent, once the minimum number of calls is
    /// recorded (`None` before, and for consecutive-failures breakers).
    #[must_use]
    pub fn failure_rate(&self) -> Option<f32> {
        self.rates_known().then(|| self.counts.failure_rate())
    }

    /// The slow-call rate in percent, once the minimum number of calls is
    /// recorded (`None` before, and for consecutive-failures breakers).
    #[must_use]
    pub fn slow_call_rate(&self) -> Option<f32> {
        self.rates_known().then(|| self.counts.slow_rate())
    }

    /// Calls rejected without reaching the inner service since the breaker
    /// was built.
    #[must_use]
    pub fn not_permitted_calls(&self) -> u64 {
        self.not_permitted
    }

    fn rates_known(&self) -> bool {
        self.rates_apply && self.counts.calls > 0 && self.counts.calls >= self.minimum
    }
}

/// One state transition of a breaker, as listeners receive it.
///
/// Exactly one `Transition` is reported per transition, to every listener
/// registered with
/// [`CircuitBreakerLayer::on_transition`](super::CircuitBreakerLayer::on_transition)
/// and, with the `tracing` feature, as one event.
#[derive(Clone, Debug)]
pub struct Transition {
    pub(crate) name: Arc<str>,
    pub(crate) from: State,
    pub(crate) to: State,
    pub(crate) metrics: Metrics,
}

impl Transition {
    /// The breaker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state left.
    #[must_use]
    pub fn from(&self) -> State {
        self.from
    }

    /// The state entered.
    #[must_use]
    pub fn to(&self) -> State {
        self.to
    }

    /// The counts that led to the transition: the window that tripped the
    /// breaker, or the trial calls that closed or reopened it (empty for
    /// operator actions and for open → half-open). Their
    /// [`state`](Metrics::state) is the state left.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
