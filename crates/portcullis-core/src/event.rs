//! Security events: what a layer saw that an operator must hear about.
//!
//! Layers do not log or page anyone themselves. When something happens that
//! the seeds' runbooks react to (an account locked, an IP blocked, a CSRF
//! violation), the layer pushes a [`SecurityEvent`] onto the **response**
//! extensions, next to the [`AuthOutcome`](crate::AuthOutcome). The audit
//! layer, outermost, turns them into structured log lines, sink records and
//! metrics. A response may carry several events (`brute_force_detected`
//! followed by `account_locked`), so they travel as a list,
//! [`SecurityEvents`].
//!
//! ```
//! use http::Response;
//! use portcullis_core::{EventKind, FailureReason, SecurityEvent, SecurityEvents};
//!
//! let mut response = Response::new(());
//! SecurityEvent::new(EventKind::AccountLocked)
//!     .with_reason(FailureReason::AccountLocked)
//!     .with_identifier("alice")
//!     .with_count(5)
//!     .attach(&mut response);
//!
//! let events = SecurityEvents::of(&response);
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].kind().name(), "security.account_locked");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::FailureReason;

/// Which event happened; the names are DESIGN.md's observability contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A credential was accepted.
    AuthSuccess,
    /// A credential was refused.
    AuthFailure,
    /// A token was refused because it expired.
    TokenExpired,
    /// Failures for one account or address crossed a threshold.
    BruteForceDetected,
    /// An account was locked.
    AccountLocked,
    /// An account was unlocked (by an operator, or a lock expired).
    AccountUnlocked,
    /// An address was put on the block list, or a request from a blocked
    /// address was refused.
    IpBlocked,
    /// A state-changing request failed the CSRF checks.
    CsrfViolation,
    /// A CAPTCHA was required, passed or failed.
    CaptchaChallenge,
    /// A token, a token family or every token of a subject was revoked.
    TokenRevoked,
    /// An API key was created.
    ApiKeyCreated,
    /// An API key was revoked.
    ApiKeyRevoked,
    /// A circuit breaker changed state.
    CircuitStateChanged,
}

/// How loud an event is; audit sinks map it to their own levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventLevel {
    /// Routine: successes.
    Info,
    /// Worth a look: single failures, violations.
    Warning,
    /// Worth a page: attacks in progress, locks, blocks.
    Error,
}

impl EventLevel {
    /// Name as in seed 000's JSON events (`INFO`, `WARNING`, `ERROR`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
        }
    }
}

impl EventKind {
    /// The event name (`security.account_locked`, …); a bounded label.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::AuthSuccess => "security.auth_success",
            Self::AuthFailure => "security.auth_failure",
            Self::TokenExpired => "security.token_expired",
            Self::BruteForceDetected => "security.brute_force_detected",
            Self::AccountLocked => "security.account_locked",
            Self::AccountUnlocked => "security.account_unlocked",
            Self::IpBlocked => "security.ip_blocked",
            Self::CsrfViolation => "security.csrf_violation",
            Self::CaptchaChallenge => "security.captcha_challenge",
            Self::TokenRevoked => "security.token_revoked",
            Self::ApiKeyCreated => "security.api_key_created",
            Self::ApiKeyRevoked => "security.api_key_revoked",
            Self::CircuitStateChanged => "security.circuit_state_changed",
        }
    }

    /// The default level of this kind of event.
    #[must_use]
    pub const fn level(self) -> EventLevel {
        match self {
            Self::AuthSuccess
            | Self::AccountUnlocked
            | Self::ApiKeyCreated
            | Self::ApiKeyRevoked
            | Self::TokenRevoked => EventLevel::Info,
            Self::AuthFailure
            | Self::TokenExpired
            | Self::CsrfViolation
            | Self::CaptchaChallenge
            | Self::CircuitStateChanged => EventLevel::Warning,
            Self::BruteForceDetected | Self::AccountLocked | Self::IpBlocked => EventLevel::Error,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One security event, attached to a response for the audit layer.
///
/// The identifier is what the client submitted (often an email address) and
/// is never printed by `Debug`; the audit layer decides how to render it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    kind: EventKind,
    level: EventLevel,
    reason: Option<FailureReason>,
    identifier: Option<Arc<str>>,
    ip: Option<IpAddr>,
    until: Option<SystemTime>,
    count: Option<u32>,
    detail: Option<Cow<'static, str>>,
    shadow: bool,
}

impl SecurityEvent {
    /// An event of `kind` at its default level.
    #[must_use]
    pub const fn new(kind: EventKind) -> Self {
        Self {
            kind,
            level: kind.level(),
            reason: None,
            identifier: None,
            ip: None,
            until: None,
            count: None,
            detail: None,
            shadow: false,
        }
    }

    /// Overrides the level.
    #[must_use]
    pub const fn with_level(mut self, level: EventLevel) -> Self {
        self.level = level;
        self
    }

    /// The failure reason behind the event.
    #[must_use]
    pub const fn with_reason(mut self, reason: FailureReason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// The account the event is about, as submitted (canonicalised by the
    /// layer that counted it).
    #[must_use]
    pub fn with_identifier(mut self, identifier: impl Into<Arc<str>>) -> Self {
        self.identifier = Some(identifier.into());
        self
    }

    /// The client address the event is about.
    #[must_use]
    pub const fn with_ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// When a lock or block ends.
    #[must_use]
    pub const fn with_until(mut self, until: SystemTime) -> Self {
        self.until = Some(until);
        self
    }

    /// A count that explains the event (failures in the window, …).
    #[must_use]
    pub const fn with_count(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }

    /// A short human-readable note. It must not contain secrets or
    /// attacker-controlled text; prefer fixed strings.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Marks an event decided in shadow mode: reported, not enforced.
    #[must_use]
    pub const fn shadow(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// Appends this event to the response's [`SecurityEvents`].
    pub fn attach<B>(self, response: &mut http::Response<B>) {
        let extensions = response.extensions_mut();
        match extensions.get_mut::<SecurityEvents>() {
            Some(events) => events.0.push(self),
            None => {
                extensions.insert(SecurityEvents(vec![self]));
            }
        }
    }

    /// The kind.
    #[must_use]
    pub const fn kind(&self) -> EventKind {
        self.kind
    }

    /// The level.
    #[must_use]
    pub const fn level(&self) -> EventLevel {
        self.level
    }

    /// The failure reason, if any.
    #[must_use]
    pub const fn reason(&self) -> Option<FailureReason> {
        self.reason
    }

    /// The account identifier, if any.
    #[must_use]
    pub fn identifier(&self) -> Option<&str> {
        self.identifier.as_deref()
    }

    /// The client address, if any.
    #[must_use]
    pub const fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// When a lock or block ends, if the event is about one.
    #[must_use]
    pub const fn until(&self) -> Option<SystemTime> {
        self.until
    }

    /// The count, if any.
    #[must_use]
    pub const fn count(&self) -> Option<u32> {
        self.count
    }

    /// The note, if any.
    #[must_use]
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// Whether the event was decided in shadow mode.
    #[must_use]
    pub const fn is_shadow(&self) -> bool {
        self.shadow
    }
}

impl fmt::Debug for SecurityEvent {
    // Identifiers are often email addresses: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityEvent")
            .field("kind", &self.kind)
            .field("level", &self.level)
            .field("reason", &self.reason)
            .field("identifier", &self.identifier.as_ref().map(|_| "<set>"))
            .field("ip", &self.ip)
            .field("until", &self.until)
            .field("count", &self.count)
            .field("detail", &self.detail)
            .field("shadow", &self.shadow)
            .finish()
    }
}

/// The events a response carries, in the order layers added them (inner
/// layers first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecurityEvents(Vec<SecurityEvent>);

impl SecurityEvents {
    /// The events `response` carries; empty when there are none.
    #[must_use]
    pub fn of<B>(response: &http::Response<B>) -> &[SecurityEvent] {
        response
            .extensions()
            .get::<Self>()
            .map_or(&[], |events| events.0.as_slice())
    }

    /// Removes and returns the events, for a sink that consumes them.
    pub fn take<B>(response: &mut http::Response<B>) -> Vec<SecurityEvent> {
        response
            .extensions_mut()
            .remove::<Self>()
            .map(|events| events.0)
            .unwrap_or_default()
    }

    /// The events, in order.
    #[must_use]
    pub fn as_slice(&self) -> &[SecurityEvent] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_accumulate_in_order() {
        let mut res = http::Response::new(());
        assert!(SecurityEvents::of(&res).is_empty());
        SecurityEvent::new(EventKind::BruteForceDetected).attach(&mut res);
        SecurityEvent::new(EventKind::AccountLocked).attach(&mut res);
        let kinds: Vec<_> = SecurityEvents::of(&res).iter().map(|e| e.kind()).collect();
        assert_eq!(
            kinds,
            [EventKind::BruteForceDetected, EventKind::AccountLocked]
        );
        assert_eq!(SecurityEvents::take(&mut res).len(), 2);
        assert!(SecurityEvents::of(&res).is_empty());
    }

    #[test]
    fn debug_never_prints_identifiers() {
        let event = SecurityEvent::new(EventKind::AccountLocked).with_identifier("bob@example.com");
        assert!(!format!("{event:?}").contains("bob"));
    }

    #[test]
    fn levels_follow_the_kind_unless_overridden() {
        assert_eq!(
            SecurityEvent::new(EventKind::AccountLocked).level(),
            EventLevel::Error
        );
        assert_eq!(
            SecurityEvent::new(EventKind::AccountLocked)
                .with_level(EventLevel::Warning)
                .level(),
            EventLevel::Warning
        );
    }
}
