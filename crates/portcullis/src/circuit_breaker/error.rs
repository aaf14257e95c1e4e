//! Errors the breaker adds to the inner service's: [`Open`] and
//! [`CallTimeout`]. Both reach callers inside a
//! [`BoxError`](super::BoxError); find them with `downcast_ref`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::state::State;

/// The call was rejected without reaching the inner service: the circuit is
/// open, forced open, or half-open with every trial call taken.
///
/// Carries the breaker's name (never request data) and, when the breaker is
/// open for a known time, how long until it lets a trial call through.
#[derive(Clone, Debug)]
pub struct Open {
    pub(crate) name: Arc<str>,
    pub(crate) state: State,
    pub(crate) retry_after: Option<Duration>,
}

impl Open {
    /// The breaker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state that rejected the call: [`State::Open`],
    /// [`State::HalfOpen`] or [`State::ForcedOpen`].
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// The rest of the wait in the open state, when known (not when forced
    /// open or half-open): a `Retry-After` hint.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Open {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name;
        match self.state {
            State::HalfOpen => {
                write!(
                    f,
                    "circuit breaker {name:?} is half-open: no trial call free"
                )
            }
            State::ForcedOpen => write!(f, "circuit breaker {name:?} is forced open"),
            _ => write!(f, "circuit breaker {name:?} is open"),
        }
    }
}

impl std::error::Error for Open {}

/// The inner service did not answer within the breaker's call timeout.
///
/// The call counts as a failure (and as a slow call when the timeout exceeds
/// the slow-call duration).
#[derive(Clone, Debug)]
pub struct CallTimeout {
    pub(crate) name: Arc<str>,
    pub(crate) after: Duration,
}

impl CallTimeout {
    /// The breaker's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The timeout that elapsed.
    #[must_use]
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for CallTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "call through circuit breaker {:?} timed out after {:?}",
            self.name, self.after
        )
    }
}

impl std::error::Error for CallTimeout {}
