//! [`CircuitBreakerLayer`]: configuration and `impl Layer`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_http::classify::{ClassifyResponse, ServerErrorsAsFailures};
use tower_layer::Layer;

use super::config::{self, Config, SlidingWindow, WindowKind};
use super::service::CircuitBreaker;
use super::shared::{BreakerHandle, Shared};
use super::state::Transition;
use crate::ConfigError;

/// Largest count-based window (one byte per call).
pub const MAX_WINDOW_CALLS: u32 = 1_000_000;
/// Largest time-based window: one day of one-second buckets.
pub const MAX_WINDOW_SECONDS: u32 = 86_400;

/// Layer that applies the [`CircuitBreaker`] middleware.
///
/// One layer is one breaker: every service it makes, and every clone of
/// those, shares the same state. Use one layer per dependency.
///
/// Defaults are resilience4j's: a count-based window of 100 calls, failure
/// rate 50 %, slow-call rate 100 % with calls slower than 60 s counted as
/// slow, a minimum of 100 calls before the rates count, 60 s in the open
/// state, 10 trial calls when half-open; plus a 60 s call timeout. Responses
/// are classified with tower-http's [`ServerErrorsAsFailures`] (5xx are
/// failures, 4xx are not); inner service errors are always failures.
///
/// Every `with_*` method returns a layer with a *new* breaker: take the
/// [`handle`](Self::handle) after configuring.
///
/// See the [module docs](crate::circuit_breaker) for an example.
#[must_use]
pub struct CircuitBreakerLayer<C = ServerErrorsAsFailures> {
    shared: Arc<Shared>,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A breaker with resilience4j's defaults, named `default`.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared::new(Config::default())),
            classifier: ServerErrorsAsFailures::new(),
        }
    }

    /// A breaker that opens after `failures` failures in a row and stays
    /// open for `open_for`, then lets one trial call through: its success
    /// closes the breaker, its failure reopens it.
    ///
    /// Rates, the sliding window and the slow-call settings do not apply
    /// (a timed-out call is a failure); [`with_sliding_window`] switches
    /// back to rates.
    ///
    /// # Errors
    ///
    /// When `failures` is 0.
    ///
    /// [`with_sliding_window`]: Self::with_sliding_window
    pub fn consecutive_failures(failures: u32, open_for: Duration) -> Result<Self, ConfigError> {
        let failures = config::at_least_one("consecutive failures", failures)?;
        Ok(Self::new().reconfigure(|c| {
            c.window = WindowKind::Consecutive(failures);
            c.wait_in_open = open_for;
            c.half_open_calls = 1;
        }))
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> CircuitBreakerLayer<C> {
    fn reconfigure(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        change(&mut config);
        Self {
            shared: Arc::new(Shared::new(config)),
            classifier: self.classifier,
        }
    }

    /// Names the breaker (default `default`). The name appears in errors,
    /// transitions and logs: keep it short, fixed and free of secrets
    /// (`"jwks"`, `"siteverify"`).
    pub fn with_name(self, name: impl Into<String>) -> Self {
        let name: Arc<str> = Arc::from(name.into());
        self.reconfigure(|c| c.name = name)
    }

    /// Opens when this percentage of the recorded calls failed
    /// (default 50).
    ///
    /// # Errors
    ///
    /// Unless `0 < percent <= 100`.
    pub fn with_failure_rate_threshold(self, percent: f32) -> Result<Self, ConfigError> {
        let percent = config::percentage("failure rate threshold", percent)?;
        Ok(self.reconfigure(|c| c.failure_rate = percent))
    }

    /// Opens when this percentage of the recorded calls were slow
    /// (default 100).
    ///
    /// # Errors
    ///
    /// Unless `0 < percent <= 100`.
    pub fn with_slow_call_rate_threshold(self, percent: f32) -> Result<Self, ConfigError> {
        let percent = config::percentage("slow call rate threshold", percent)?;
        Ok(self.reconfigure(|c| c.slow_rate = percent))
    }

    /// Calls taking longer than `duration` to produce a response head are
    /// slow (default 60 s).
    pub fn with_slow_call_duration(self, duration: Duration) -> Self {
        self.reconfigure(|c| c.slow_call = duration)
    }

    /// What the closed state remembers (default: the last 100 calls).
    ///
    /// # Errors
    ///
    /// When the window is empty, or larger than [`MAX_WINDOW_CALLS`] calls
    /// or [`MAX_WINDOW_SECONDS`] seconds.
    pub fn with_sliding_window(self, window: SlidingWindow) -> Result<Self, ConfigError> {
        let kind = match window.0 {
            WindowKind::Count(n) if n > MAX_WINDOW_CALLS => {
                return Err(ConfigError::invalid(
                    "sliding window",
                    "at most 1000000 calls",
                ));
            }
            WindowKind::Time(n) if n > MAX_WINDOW_SECONDS => {
                return Err(ConfigError::invalid(
                    "sliding window",
                    "at most 86400 seconds",
                ));
            }
            WindowKind::Count(n) => WindowKind::Count(config::at_least_one("sliding window", n)?),
            WindowKind::Time(n) => WindowKind::Time(config::at_least_one("sliding window", n)?),
            WindowKind::Consecutive(n) => {
                WindowKind::Consecutive(config::at_least_one("sliding window", n)?)
            }
        };
        Ok(self.reconfigure(|c| c.window = kind))
    }

    /// Calls to record before the rates count (default 100; a count-based
    /// window caps it at its size).
    ///
    /// # Errors
    ///
    /// When `calls` is 0.
    pub fn with_minimum_calls(self, calls: u32) -> Result<Self, ConfigError> {
        let calls = config::at_least_one("minimum calls", calls)?;
        Ok(self.reconfigure(|c| c.minimum_calls = calls))
    }

    /// How long the breaker stays open before letting trial calls through
    /// (default 60 s).
    pub fn with_wait_in_open(self, wait: Duration) -> Self {
        self.reconfigure(|c| c.wait_in_open = wait)
    }

    /// Trial calls let through when half-open (default 10; 1 for
    /// [`consecutive_failures`](CircuitBreakerLayer::consecutive_failures)).
    /// Exactly this many are admitted, however many callers race; the
    /// others are rejected.
    ///
    /// # Errors
    ///
    /// When `calls` is 0.
    pub fn with_permitted_calls_in_half_open(self, calls: u32) -> Result<Self, ConfigError> {
        let calls = config::at_least_one("permitted calls in half-open state", calls)?;
        Ok(self.reconfigure(|c| c.half_open_calls = calls))
    }

    /// Fails a call whose response head has not arrived after `timeout`
    /// with [`CallTimeout`](super::error::CallTimeout), recorded as a
    /// failure (default 60 s). This is what frees a half-open breaker from
    /// a hung trial call. The timer is tokio's: a call that does not
    /// complete on its first poll needs a tokio runtime with time enabled.
    pub fn with_call_timeout(self, timeout: Duration) -> Self {
        self.reconfigure(|c| c.call_timeout = Some(timeout))
    }

    /// No call timeout: a hung call then holds its half-open trial slot
    /// until its caller gives up (drops the future).
    pub fn without_call_timeout(self) -> Self {
        self.reconfigure(|c| c.call_timeout = None)
    }

    /// Calls `listener` once for every state transition, after the
    /// breaker's lock is released, on the task that caused the transition.
    /// Listeners are called in the order they were added.
    ///
    /// This is the one place transitions are reported (besides the
    /// `tracing` event): audit events and metrics hook in here. Keep
    /// listeners quick and non-blocking.
    pub fn on_transition<F>(self, listener: F) -> Self
    where
        F: Fn(&Transition) + Send + Sync + 'static,
    {
        let listener: config::Listener = Arc::new(listener);
        self.reconfigure(|c| c.listeners.push(listener))
    }

    /// Decides which responses are failures with `classifier`, one of
    /// tower-http's [`classify`](tower_http::classify) strategies
    /// (`GrpcErrorsAsFailures`, `StatusInRangeAsFailures`, …) or your own.
    /// Inner service errors are failures whatever the classifier says.
    pub fn with_classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2>
    where
        C2: ClassifyResponse + Clone,
    {
        CircuitBreakerLayer {
            shared: self.shared,
            classifier,
        }
    }

    /// The handle of this layer's breaker: state, metrics, operator
    /// controls.
    #[must_use]
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

// Hand-written: the breaker is shared, the classifier cloned.
impl<C: Clone> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            classifier: self.classifier.clone(),
        }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, Arc::clone(&self.shared), self.classifier.clone())
    }
}
