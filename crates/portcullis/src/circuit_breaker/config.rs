//! Settings of one breaker: window, thresholds, durations, listeners.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::state::Transition;
use crate::ConfigError;

/// resilience4j's defaults (`CircuitBreakerConfig.ofDefaults()`).
pub(crate) const DEFAULT_WINDOW: u32 = 100;
pub(crate) const DEFAULT_FAILURE_RATE: f32 = 50.0;
pub(crate) const DEFAULT_SLOW_RATE: f32 = 100.0;
pub(crate) const DEFAULT_SLOW_CALL: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_MINIMUM_CALLS: u32 = 100;
pub(crate) const DEFAULT_WAIT_IN_OPEN: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_HALF_OPEN_CALLS: u32 = 10;
/// Not in resilience4j (its `TimeLimiter` is separate); here so that a hung
/// call cannot keep a half-open breaker waiting (resilience4j #903).
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How the breaker remembers recent calls while it is closed.
///
/// See [`CircuitBreakerLayer::with_sliding_window`](super::CircuitBreakerLayer::with_sliding_window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlidingWindow(pub(crate) WindowKind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WindowKind {
    /// The last `n` calls (resilience4j `COUNT_BASED`).
    Count(u32),
    /// The calls of the last `n` seconds, in one-second buckets
    /// (resilience4j `TIME_BASED`).
    Time(u32),
    /// Opens after `n` failures in a row; rates do not apply.
    Consecutive(u32),
}

impl SlidingWindow {
    /// The outcomes of the last `calls` calls (resilience4j `COUNT_BASED`,
    /// the default, with 100 calls).
    #[must_use]
    pub const fn count_based(calls: u32) -> Self {
        Self(WindowKind::Count(calls))
    }

    /// The outcomes of the calls that completed in the last `seconds`
    /// seconds, aggregated in one-second buckets (resilience4j `TIME_BASED`).
    #[must_use]
    pub const fn time_based(seconds: u32) -> Self {
        Self(WindowKind::Time(seconds))
    }
}

impl Default for SlidingWindow {
    fn default() -> Self {
        Self::count_based(DEFAULT_WINDOW)
    }
}

pub(crate) type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) name: Arc<str>,
    pub(crate) window: WindowKind,
    pub(crate) failure_rate: f32,
    pub(crate) slow_rate: f32,
    pub(crate) slow_call: Duration,
    pub(crate) minimum_calls: u32,
    pub(crate) wait_in_open: Duration,
    pub(crate) half_open_calls: u32,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) listeners: Vec<Listener>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: Arc::from("default"),
            window: WindowKind::Count(DEFAULT_WINDOW),
            failure_rate: DEFAULT_FAILURE_RATE,
            slow_rate: DEFAULT_SLOW_RATE,
            slow_call: DEFAULT_SLOW_CALL,
            minimum_calls: DEFAULT_MINIMUM_CALLS,
            wait_in_open: DEFAULT_WAIT_IN_OPEN,
            half_open_calls: DEFAULT_HALF_OPEN_CALLS,
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
            listeners: Vec::new(),
        }
    }
}

impl Config {
    /// Calls needed before the rates count. As in resilience4j, a
    /// count-based window caps it at its size.
    pub(crate) fn effective_minimum(&self) -> u64 {
        let minimum = match self.window {
            WindowKind::Count(size) => self.minimum_calls.min(size),
            WindowKind::Time(_) | WindowKind::Consecutive(_) => self.minimum_calls,
        };
        u64::from(minimum)
    }

    pub(crate) fn consecutive(&self) -> Option<u32> {
        match self.window {
            WindowKind::Consecutive(n) => Some(n),
            WindowKind::Count(_) | WindowKind::Time(_) => None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("failure_rate", &self.failure_rate)
            .field("slow_rate", &self.slow_rate)
            .field("slow_call", &self.slow_call)
            .field("minimum_calls", &self.minimum_calls)
            .field("wait_in_open", &self.wait_in_open)
            .field("half_open_calls", &self.half_open_calls)
            .field("call_timeout", &self.call_timeout)
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

/// A percentage in `(0, 100]`.
pub(crate) fn percentage(setting: &'static str, value: f32) -> Result<f32, ConfigError> {
    if value > 0.0 && value <= 100.0 {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            setting,
            "must be a percentage above 0 and at most 100",
        ))
    }
}

/// A count of at least one.
pub(crate) fn at_least_one(setting: &'static str, value: u32) -> Result<u32, ConfigError> {
    if value == 0 {
        Err(ConfigError::invalid(setting, "must be at least 1"))
    } else {
        Ok(value)
    }
}
