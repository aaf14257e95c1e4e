//! The state machine against a deliberately naive model of resilience4j's
//! semantics: random configurations, random sequences of successful,
//! failed and slow calls and of time passing. After every event the
//! admission decision, the state, the counts and the reported transitions
//! must agree.

use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::config::{Config, WindowKind};
use super::state::{CallResult, Change, Counts, Machine, Now, Refusal, State};

#[derive(Clone, Copy, Debug)]
enum Event {
    Call { failed: bool, slow: bool },
    Advance(u64),
}

#[derive(Clone, Debug)]
struct ModelConfig {
    window: WindowKind,
    failure_rate: u32,
    slow_rate: u32,
    minimum: u32,
    wait_ms: u64,
    probes: u32,
}

impl ModelConfig {
    fn config(&self) -> Config {
        Config {
            window: self.window,
            #[allow(clippy::cast_precision_loss)]
            failure_rate: self.failure_rate as f32,
            #[allow(clippy::cast_precision_loss)]
            slow_rate: self.slow_rate as f32,
            minimum_calls: self.minimum,
            wait_in_open: Duration::from_millis(self.wait_ms),
            half_open_calls: self.probes,
            ..Config::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum ModelState {
    Closed,
    Open {
        until_ms: u64,
        snapshot: Vec<(bool, bool)>,
    },
    HalfOpen {
        results: Vec<(bool, bool)>,
    },
}

/// The model: every recorded call kept in a list, rates recomputed from
/// scratch with integer arithmetic.
struct Model {
    cfg: ModelConfig,
    state: ModelState,
    /// Closed-state calls: (second, failed, slow).
    calls: Vec<(u64, bool, bool)>,
    transitions: Vec<(State, State)>,
}

impl Model {
    fn name(&self) -> State {
        match self.state {
            ModelState::Closed => State::Closed,
            ModelState::Open { .. } => State::Open,
            ModelState::HalfOpen { .. } => State::HalfOpen,
        }
    }

    fn go(&mut self, to: ModelState) {
        let from = self.name();
        self.state = to;
        self.transitions.push((from, self.name()));
        if self.state == ModelState::Closed {
            self.calls.clear();
        }
    }

    /// The closed-state calls still inside the window at `now_ms`.
    fn window(&self, now_ms: u64) -> Vec<(bool, bool)> {
        let all = self.calls.iter().map(|&(_, f, s)| (f, s));
        match self.cfg.window {
            WindowKind::Count(n) => {
                let skip = self.calls.len().saturating_sub(n as usize);
                all.skip(skip).collect()
            }
            WindowKind::Time(n) => {
                let now = now_ms / 1000;
                self.calls
                    .iter()
                    .filter(|&&(second, _, _)| now - second < u64::from(n))
                    .map(|&(_, f, s)| (f, s))
                    .collect()
            }
            WindowKind::Consecutive(_) => all.collect(),
        }
    }

    fn exceeds(&self, outcomes: &[(bool, bool)]) -> bool {
        let total = outcomes.len() as u64;
        let failed = outcomes.iter().filter(|o| o.0).count() as u64;
        let slow = outcomes.iter().filter(|o| o.1).count() as u64;
        total > 0
            && (failed * 100 >= u64::from(self.cfg.failure_rate) * total
                || slow * 100 >= u64::from(self.cfg.slow_rate) * total)
    }

    fn trailing_failures(&self) -> u32 {
        u32::try_from(self.calls.iter().rev().take_while(|c| c.1).count()).unwrap()
    }

    /// Returns the refusal, if the call was rejected.
    fn call(&mut self, now_ms: u64, failed: bool, slow: bool) -> Option<Refusal> {
        // In consecutive mode the service never marks calls slow.
        let consecutive = matches!(self.cfg.window, WindowKind::Consecutive(_));
        let slow = slow && !consecutive;
        if let ModelState::Open { until_ms, .. } = self.state
            && now_ms >= until_ms
        {
            self.go(ModelState::HalfOpen {
                results: Vec::new(),
            });
        }
        match &mut self.state {
            ModelState::Open { until_ms, .. } => Some(Refusal {
                state: State::Open,
                retry_after: Some(Duration::from_millis(*until_ms - now_ms)),
            }),
            ModelState::HalfOpen { results } => {
                results.push((failed, slow));
                let results = results.clone();
                let done = results.len() as u32 >= self.cfg.probes;
                let reopen = if consecutive {
                    failed
                } else {
                    done && self.exceeds(&results)
                };
                if reopen {
                    self.go(ModelState::Open {
                        until_ms: now_ms + self.cfg.wait_ms,
                        snapshot: results,
                    });
                } else if done {
                    self.go(ModelState::Closed);
                }
                None
            }
            ModelState::Closed => {
                self.calls.push((now_ms / 1000, failed, slow));
                let window = self.window(now_ms);
                let trip = match self.cfg.window {
                    WindowKind::Consecutive(n) => self.trailing_failures() >= n,
                    WindowKind::Count(size) => {
                        window.len() as u64 >= u64::from(self.cfg.minimum.min(size))
                            && self.exceeds(&window)
                    }
                    WindowKind::Time(_) => {
                        window.len() as u64 >= u64::from(self.cfg.minimum) && self.exceeds(&window)
                    }
                };
                if trip {
                    self.go(ModelState::Open {
                        until_ms: now_ms + self.cfg.wait_ms,
                        snapshot: window,
                    });
                }
                None
            }
        }
    }

    fn counts(&self, now_ms: u64) -> (u64, u64, u64) {
        let outcomes = match &self.state {
            ModelState::Closed => self.window(now_ms),
            ModelState::Open { snapshot, .. } => snapshot.clone(),
            ModelState::HalfOpen { results } => results.clone(),
        };
        (
            outcomes.len() as u64,
            outcomes.iter().filter(|o| o.0).count() as u64,
            outcomes.iter().filter(|o| o.1).count() as u64,
        )
    }
}

fn config_strategy() -> impl Strategy<Value = ModelConfig> {
    let window = prop_oneof![
        (1u32..=12).prop_map(WindowKind::Count),
        (1u32..=8).prop_map(WindowKind::Time),
        (1u32..=5).prop_map(WindowKind::Consecutive),
    ];
    let rate = prop::sample::select(vec![10u32, 25, 50, 75, 100]);
    (
        window,
        rate.clone(),
        rate,
        1u32..=15,
        0u64..=5_000,
        1u32..=4,
    )
        .prop_map(
            |(window, failure_rate, slow_rate, minimum, wait_ms, probes)| ModelConfig {
                window,
                failure_rate,
                slow_rate,
                minimum,
                wait_ms,
                probes,
            },
        )
}

fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(failed, slow)| Event::Call { failed, slow }),
        1 => (0u64..=3_000).prop_map(Event::Advance),
    ]
}

fn counts_tuple(c: Counts) -> (u64, u64, u64) {
    (c.calls, c.failed, c.slow)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn machine_agrees_with_the_model(
        cfg in config_strategy(),
        events in prop::collection::vec(event_strategy(), 0..200),
    ) {
        let config = cfg.config();
        let base = Instant::now();
        let mut machine = Machine::new(&config, base);
        let mut model = Model {
            cfg: cfg.clone(),
            state: ModelState::Closed,
            calls: Vec::new(),
            transitions: Vec::new(),
        };
        let mut changes: Vec<Change> = Vec::new();
        let mut now_ms = 0u64;

        for event in events {
            match event {
                Event::Advance(ms) => now_ms += ms,
                Event::Call { failed, slow } => {
                    let now = base + Duration::from_millis(now_ms);
                    let mut change = None;
                    let admitted = machine.admit(&config, now, &mut change);
                    changes.extend(change);
                    let expected = model.call(now_ms, failed, slow);
                    match admitted {
                        Ok(ticket) => {
                            prop_assert_eq!(expected, None, "machine admitted, model refused");
                            let slow = slow && config.consecutive().is_none();
                            changes.extend(machine.record(&config, ticket, CallResult { failed, slow }, &mut Now::at(now)));
                        }
                        Err(refusal) => prop_assert_eq!(Some(refusal), expected),
                    }
                }
            }
            let now = base + Duration::from_millis(now_ms);
            prop_assert_eq!(machine.state(), model.name());
            let (counts, run) = machine.counts(now);
            prop_assert_eq!(counts_tuple(counts), model.counts(now_ms));
            if let (WindowKind::Consecutive(_), ModelState::Closed) = (cfg.window, &model.state) {
                prop_assert_eq!(run, model.trailing_failures());
            }
            let reported: Vec<(State, State)> = changes.iter().map(|c| (c.from, c.to)).collect();
            prop_assert_eq!(&reported, &model.transitions);
        }
    }
}

/// A call admitted before a transition cannot decide the next state.
#[test]
fn outcomes_of_calls_admitted_before_a_transition_are_ignored() {
    let config = Config {
        window: WindowKind::Consecutive(1),
        half_open_calls: 1,
        wait_in_open: Duration::from_secs(10),
        ..Config::default()
    };
    let t0 = Instant::now();
    let mut machine = Machine::new(&config, t0);
    let mut change = None;
    let slow_call = machine.admit(&config, t0, &mut change).unwrap();
    let failing = machine.admit(&config, t0, &mut change).unwrap();
    let fail = CallResult {
        failed: true,
        slow: false,
    };
    assert!(
        machine
            .record(&config, failing, fail, &mut Now::at(t0))
            .is_some()
    );
    assert_eq!(machine.state(), State::Open);

    let later = t0 + Duration::from_secs(10);
    let probe = machine.admit(&config, later, &mut change).unwrap();
    assert_eq!(machine.state(), State::HalfOpen);
    // The call from the closed state finishes now, failed: ignored.
    assert_eq!(
        machine.record(&config, slow_call, fail, &mut Now::at(later)),
        None
    );
    assert_eq!(machine.state(), State::HalfOpen);
    let ok = CallResult {
        failed: false,
        slow: false,
    };
    let closed = machine
        .record(&config, probe, ok, &mut Now::at(later))
        .unwrap();
    assert_eq!((closed.from, closed.to), (State::HalfOpen, State::Closed));
}
