//! Prometheus-style metrics through the `metrics` facade.
//!
//! Labels are bounded enums only (failure reasons, auth methods, breaker
//! names chosen in code, offender ranks): never users, IPs or paths, so an
//! attacker cannot grow the series count. Handles are registered once, when
//! the [`Auditor`](super::Auditor) is built — a labelled `counter!` call
//! costs about 80 ns and an allocation, a held handle about 12 ns — so the
//! metrics recorder must be installed before the auditor is built.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use portcullis_core::{AuthMethod, FailureReason};

/// Metric names, for dashboards and alert rules.
pub mod names {
    /// Requests seen by the audit layer.
    pub const REQUESTS: &str = "portcullis_requests_total";
    /// Successful authentications, by `method`.
    pub const AUTH_SUCCESS: &str = "portcullis_auth_success_total";
    /// Refused requests, by `reason` and `method` (`none` when no
    /// authenticator was involved).
    pub const AUTH_FAILURES: &str = "portcullis_auth_failures_total";
    /// Accounts locked.
    pub const ACCOUNT_LOCKOUTS: &str = "portcullis_account_lockouts_total";
    /// Brute-force detections reported by the lockout layer.
    pub const BRUTE_FORCE: &str = "portcullis_brute_force_detections_total";
    /// IP block-list events (an address blocked, or a request from one refused).
    pub const IP_BLOCKS: &str = "portcullis_ip_blocks_total";
    /// CSRF rejections, by `reason`.
    pub const CSRF_REJECTIONS: &str = "portcullis_csrf_rejections_total";
    /// CAPTCHA challenges, by `outcome` (`required`, `failed`, `passed`).
    pub const CAPTCHA_CHALLENGES: &str = "portcullis_captcha_challenges_total";
    /// Decisions taken in shadow mode (reported, not enforced), by `reason`.
    pub const SHADOW_DECISIONS: &str = "portcullis_shadow_decisions_total";
    /// Current breaker state, by `breaker`: 0 closed, 1 open, 2 half-open,
    /// 3 forced open, 4 disabled.
    pub const CIRCUIT_STATE: &str = "portcullis_circuit_state";
    /// Breaker transitions, by `breaker` and `to`.
    pub const CIRCUIT_TRANSITIONS: &str = "portcullis_circuit_transitions_total";
    /// Time spent below the audit layer, in seconds.
    pub const AUTH_DURATION: &str = "portcullis_auth_duration_seconds";
    /// Audit records dropped because the queue was full or a sink failed.
    pub const AUDIT_DROPPED: &str = "portcullis_audit_dropped_total";
    /// Failures of the top offenders, by `kind` (`ip`, `account`) and `rank`.
    pub const TOP_OFFENDER_FAILURES: &str = "portcullis_top_offender_failures";
}

/// Method labels, in index order; the last is used when no method applies.
const METHODS: [&str; 5] = ["jwt", "api_key", "password", "other", "none"];
const CSRF_REASONS: [FailureReason; 3] = [
    FailureReason::CsrfMissing,
    FailureReason::CsrfMismatch,
    FailureReason::CrossOrigin,
];

/// What a CAPTCHA event says happened.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CaptchaOutcome {
    Required,
    Failed,
    Passed,
}

/// Every handle the audit layer uses, registered once.
#[derive(Debug)]
pub(crate) struct AuditMetrics {
    requests: Counter,
    duration: Histogram,
    success: Vec<Counter>,
    failures: Vec<Counter>,
    shadow: Vec<Counter>,
    lockouts: Counter,
    brute_force: Counter,
    ip_blocks: Counter,
    csrf: Vec<Counter>,
    captcha: [Counter; 3],
    pub(crate) dropped: Counter,
    top_ips: Vec<Gauge>,
    top_accounts: Vec<Gauge>,
}

fn method_index(method: Option<AuthMethod>) -> usize {
    match method {
        Some(AuthMethod::Jwt) => 0,
        Some(AuthMethod::ApiKey) => 1,
        Some(AuthMethod::Password) => 2,
        Some(_) => 3,
        None => 4,
    }
}

fn reason_index(reason: FailureReason) -> usize {
    FailureReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

impl AuditMetrics {
    /// Registers every handle with the current recorder.
    pub(crate) fn register(top_k: usize) -> Self {
        describe();
        let success = METHODS[..4]
            .iter()
            .map(|&method| counter!(names::AUTH_SUCCESS, "method" => method))
            .collect();
        let mut failures = Vec::with_capacity(FailureReason::ALL.len() * METHODS.len());
        for reason in FailureReason::ALL {
            for method in METHODS {
                failures.push(counter!(
                    names::AUTH_FAILURES,
                    "reason" => reason.as_str(),
                    "method" => method
                ));
            }
        }
        let shadow = FailureReason::ALL
            .iter()
            .map(|reason| counter!(names::SHADOW_DECISIONS, "reason" => reason.as_str()))
            .collect();
        let csrf = CSRF_REASONS
            .iter()
            .map(|reason| counter!(names::CSRF_REJECTIONS, "reason" => reason.as_str()))
            .collect();
        let rank_gauges = |kind: &'static str| -> Vec<Gauge> {
            (1..=top_k)
                .map(|rank| {
                    gauge!(names::TOP_OFFENDER_FAILURES, "kind" => kind, "rank" => rank.to_string())
                })
                .collect()
        };
        Self {
            requests: counter!(names::REQUESTS),
            duration: histogram!(names::AUTH_DURATION),
            success,
            failures,
            shadow,
            lockouts: counter!(names::ACCOUNT_LOCKOUTS),
            brute_force: counter!(names::BRUTE_FORCE),
            ip_blocks: counter!(names::IP_BLOCKS),
            csrf,
            captcha: [
                counter!(names::CAPTCHA_CHALLENGES, "outcome" => "required"),
                counter!(names::CAPTCHA_CHALLENGES, "outcome" => "failed"),
                counter!(names::CAPTCHA_CHALLENGES, "outcome" => "passed"),
            ],
            dropped: counter!(names::AUDIT_DROPPED),
            top_ips: rank_gauges("ip"),
            top_accounts: rank_gauges("account"),
        }
    }

    pub(crate) fn request(&self, seconds: f64) {
        self.requests.increment(1);
        self.duration.record(seconds);
    }

    pub(crate) fn success(&self, method: AuthMethod) {
        self.success[method_index(Some(method)).min(3)].increment(1);
    }

    pub(crate) fn failure(&self, reason: FailureReason, method: Option<AuthMethod>) {
        self.failures[reason_index(reason) * METHODS.len() + method_index(method)].increment(1);
        if let Some(i) = CSRF_REASONS.iter().position(|r| *r == reason) {
            self.csrf[i].increment(1);
        }
    }

    pub(crate) fn shadow(&self, reason: FailureReason) {
        self.shadow[reason_index(reason)].increment(1);
    }

    pub(crate) fn lockout(&self) {
        self.lockouts.increment(1);
    }

    pub(crate) fn brute_force(&self) {
        self.brute_force.increment(1);
    }

    pub(crate) fn ip_block(&self) {
        self.ip_blocks.increment(1);
    }

    pub(crate) fn captcha(&self, outcome: CaptchaOutcome) {
        self.captcha[outcome as usize].increment(1);
    }

    /// Publishes the current top offenders; ranks without one read 0.
    pub(crate) fn top_offenders(&self, ips: &[u64], accounts: &[u64]) {
        for (i, gauge) in self.top_ips.iter().enumerate() {
            gauge.set(ips.get(i).copied().unwrap_or(0) as f64);
        }
        for (i, gauge) in self.top_accounts.iter().enumerate() {
            gauge.set(accounts.get(i).copied().unwrap_or(0) as f64);
        }
    }
}

/// Gives every metric its `# HELP` text (`promtool check metrics` wants
/// one) and unit.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        names::REQUESTS,
        "Requests seen by the Portcullis audit layer."
    );
    describe_counter!(
        names::AUTH_SUCCESS,
        "Successful authentications, by method."
    );
    describe_counter!(
        names::AUTH_FAILURES,
        "Requests refused by a Portcullis layer, by failure reason and auth method."
    );
    describe_counter!(
        names::ACCOUNT_LOCKOUTS,
        "Accounts locked by the lockout layer."
    );
    describe_counter!(
        names::BRUTE_FORCE,
        "Brute-force detections by the lockout layer."
    );
    describe_counter!(names::IP_BLOCKS, "IP block-list events.");
    describe_counter!(names::CSRF_REJECTIONS, "CSRF rejections, by reason.");
    describe_counter!(names::CAPTCHA_CHALLENGES, "CAPTCHA challenges, by outcome.");
    describe_counter!(
        names::SHADOW_DECISIONS,
        "Decisions taken in shadow mode (reported, not enforced), by reason."
    );
    describe_counter!(
        names::AUDIT_DROPPED,
        "Audit records dropped because the queue was full or the sink failed."
    );
    describe_histogram!(
        names::AUTH_DURATION,
        Unit::Seconds,
        "Time spent below the audit layer per request."
    );
    describe_gauge!(
        names::TOP_OFFENDER_FAILURES,
        "Failures of the top offending IPs and accounts, by rank (upper bounds)."
    );
    describe_gauge!(
        names::CIRCUIT_STATE,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled."
    );
    describe_counter!(
        names::CIRCUIT_TRANSITIONS,
        "Circuit breaker transitions, by target state."
    );
}

/// The `portcullis_circuit_state` value for a breaker state.
#[cfg(feature = "circuit-breaker")]
pub(crate) fn circuit_state_value(state: crate::circuit_breaker::State) -> f64 {
    use crate::circuit_breaker::State;
    match state {
        State::Closed => 0.0,
        State::Open => 1.0,
        State::HalfOpen => 2.0,
        State::ForcedOpen => 3.0,
        _ => 4.0,
    }
}
