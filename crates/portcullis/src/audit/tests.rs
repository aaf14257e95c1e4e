//! Audit layer tests: one record per decision, redaction, batching, drops,
//! bounded metrics.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use http::{Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusRecorder;
use portcullis_core::{
    AuditRecord, AuditSink, AuthMethod, AuthOutcome, EventKind, FailureReason, FakeClock,
    MemoryAuditSink, PeerAddr, Principal, PrincipalKind, Rejection, SecurityEvent, StoreError,
};
use tower::{Service, ServiceExt as _};

use super::*;

type Handler = Arc<dyn Fn(&mut Response<String>) + Send + Sync>;

/// A service whose response is decorated by `decorate`.
fn app(
    auditor: &Auditor,
    decorate: impl Fn(&mut Response<String>) + Send + Sync + 'static,
) -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<String>, Infallible>>,
> + Clone {
    let decorate: Handler = Arc::new(decorate);
    AuditLayer::new(auditor.clone()).layer(tower::service_fn(move |_req: Request<String>| {
        let decorate = decorate.clone();
        async move {
            let mut res = Response::new(String::new());
            decorate(&mut res);
            Ok::<_, Infallible>(res)
        }
    }))
}

use tower_layer::Layer as _;

fn request(path: &str) -> Request<String> {
    let mut req = Request::post(path)
        .header("user-agent", "Mozilla/5.0 (X11)")
        .body(String::new())
        .expect("valid request");
    req.extensions_mut().insert(PeerAddr(
        "198.51.100.75:40000"
            .parse::<SocketAddr>()
            .expect("valid address"),
    ));
    req
}

fn auditor_with(sink: &MemoryAuditSink) -> Auditor {
    Auditor::builder()
        .sink(sink.clone())
        .clock(FakeClock::at_unix(1_767_018_035))
        .pseudonym_key(b"0123456789abcdef".to_vec())
        .build()
        .expect("valid auditor")
}

async fn records_after(
    auditor: &Auditor,
    sink: &MemoryAuditSink,
    svc: impl Service<Request<String>, Response = Response<String>, Error = Infallible>,
    req: Request<String>,
) -> Vec<AuditRecord> {
    sink.clear();
    svc.oneshot(req).await.unwrap();
    auditor.flush().await;
    sink.records()
}

#[tokio::test]
async fn a_failure_becomes_one_record_in_seed_000_shape() {
    let sink = MemoryAuditSink::new(100);
    let auditor = auditor_with(&sink);
    let svc = app(&auditor, |res| {
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        AuthOutcome::failure(AuthMethod::Jwt, FailureReason::InvalidToken).attach(res);
        res.extensions_mut()
            .insert(Rejection::new(FailureReason::InvalidToken));
    });
    let mut req = request("/graphql?token=secret-in-query");
    req.headers_mut().insert(
        "authorization",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
            .parse()
            .unwrap(),
    );
    req.headers_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let records = records_after(&auditor, &sink, svc, req).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let json = records[0].to_json();
    assert_eq!(json["timestamp"], "2025-12-29T14:20:35.000Z");
    assert_eq!(json["level"], "WARNING");
    assert_eq!(json["event"], "security.auth_failure");
    assert_eq!(json["message"], "Authentication failed");
    assert_eq!(json["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let context = &json["context"];
    assert_eq!(context["user_id"], serde_json::Value::Null);
    assert_eq!(context["ip_address"], "198.51.100.75");
    assert_eq!(context["failure_reason"], "invalid_token");
    assert_eq!(context["token_prefix"], "eyJhbG");
    assert_eq!(context["endpoint"], "/graphql");
    assert_eq!(context["user_agent"], "Mozilla/5.0 (X11)");
    assert_eq!(context["layer"], "jwt");
    assert_eq!(context["status"], 401);
}

#[tokio::test]
async fn success_expiry_and_public_requests() {
    let sink = MemoryAuditSink::new(100);
    let auditor = auditor_with(&sink);

    let principal = Principal::builder("user_123", PrincipalKind::User).build();
    let ok = app(&auditor, move |res| {
        AuthOutcome::authenticated(AuthMethod::Jwt, &principal).attach(res);
    });
    let records = records_after(&auditor, &sink, ok, request("/api")).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event, EventKind::AuthSuccess);
    assert_eq!(records[0].user_id.as_deref(), Some("user_123"));

    let expired = app(&auditor, |res| {
        AuthOutcome::failure(AuthMethod::Jwt, FailureReason::TokenExpired)
            .with_subject("user_123")
            .attach(res);
    });
    let records = records_after(&auditor, &sink, expired, request("/api")).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event, EventKind::TokenExpired);
    assert_eq!(records[0].to_json()["event"], "security.token_expired");

    // No layer decided anything: no record.
    let public = app(&auditor, |_| {});
    assert!(
        records_after(&auditor, &sink, public, request("/"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn authorization_refusal_after_authentication_is_the_decision() {
    let sink = MemoryAuditSink::new(100);
    let auditor = auditor_with(&sink);
    let principal = Principal::builder("user_123", PrincipalKind::User).build();
    let svc = app(&auditor, move |res| {
        *res.status_mut() = StatusCode::FORBIDDEN;
        res.extensions_mut()
            .insert(Rejection::new(FailureReason::InsufficientPermissions));
        AuthOutcome::authenticated(AuthMethod::Jwt, &principal).attach_if_absent(res);
    });
    let records = records_after(&auditor, &sink, svc, request("/admin")).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].event, EventKind::AuthFailure);
    assert_eq!(
        records[0].failure_reason,
        Some(FailureReason::InsufficientPermissions)
    );
    assert_eq!(records[0].layer, Some("authorize"));
    assert_eq!(records[0].user_id.as_deref(), Some("user_123"));
}

#[tokio::test]
async fn layer_events_are_recorded_once_each_and_not_duplicated() {
    let sink = MemoryAuditSink::new(100);
    let auditor = auditor_with(&sink);
    // The fifth wrong password: the handler's failure, then the lockout
    // layer's two events.
    let svc = app(&auditor, |res| {
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
            .with_identifier("victim@example.com")
            .attach(res);
        SecurityEvent::new(EventKind::BruteForceDetected)
            .with_identifier("victim@example.com")
            .with_count(5)
            .attach(res);
        SecurityEvent::new(EventKind::AccountLocked)
            .with_identifier("victim@example.com")
            .with_until(UNIX_EPOCH + Duration::from_secs(1_767_019_835))
            .attach(res);
    });
    let records = records_after(&auditor, &sink, svc, request("/login")).await;
    let kinds: Vec<_> = records.iter().map(|r| r.event).collect();
    assert_eq!(
        kinds,
        [
            EventKind::AuthFailure,
            EventKind::BruteForceDetected,
            EventKind::AccountLocked
        ]
    );
    // One person, one pseudonym; never the address.
    let ids: Vec<_> = records.iter().map(|r| r.user_id.clone().unwrap()).collect();
    assert!(
        ids.iter()
            .all(|id| id.starts_with("email:") && *id == ids[0])
    );
    assert!(records.iter().all(|r| !r.to_json_line().contains("victim")));
    assert_eq!(records[1].count, Some(5));
    assert_eq!(
        records[2].to_json()["context"]["until"],
        "2025-12-29T14:50:35.000Z"
    );
    assert_eq!(records[2].to_json()["level"], "ERROR");

    // A CSRF rejection whose layer reported the violation itself: one record.
    let csrf = app(&auditor, |res| {
        *res.status_mut() = StatusCode::FORBIDDEN;
        res.extensions_mut()
            .insert(Rejection::new(FailureReason::CsrfMismatch));
        SecurityEvent::new(EventKind::CsrfViolation)
            .with_reason(FailureReason::CsrfMismatch)
            .attach(res);
    });
    let records = records_after(&auditor, &sink, csrf, request("/transfer")).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event, EventKind::CsrfViolation);
    assert_eq!(records[0].layer, Some("csrf"));
}

#[tokio::test]
async fn attacker_strings_are_escaped_and_truncated() {
    let sink = MemoryAuditSink::new(100);
    let auditor = auditor_with(&sink);
    let svc = app(&auditor, |res| {
        AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
            .with_identifier("admin\n{\"event\":\"forged\"}")
            .attach(res);
    });
    let long_path = format!("/{}", "a".repeat(5000));
    let mut req = request(&long_path);
    req.headers_mut().insert(
        "user-agent",
        http::HeaderValue::from_bytes(&[b'x'; 4000]).unwrap(),
    );
    req.headers_mut().insert(
        "x-request-id",
        "not a valid id; DROP TABLE".parse().unwrap(),
    );
    req.headers_mut()
        .insert("authorization", "Bearer <script>".parse().unwrap());
    let records = records_after(&auditor, &sink, svc, req).await;
    let record = &records[0];
    assert!(!record.user_id.as_deref().unwrap().contains('\n'));
    assert!(record.endpoint.as_deref().unwrap().chars().count() <= 257);
    assert!(record.user_agent.as_deref().unwrap().chars().count() <= 257);
    assert_eq!(
        record.token_prefix, None,
        "non-token characters are not logged"
    );
    assert_eq!(
        record.trace_id.len(),
        32,
        "a malformed request id is replaced"
    );
    let line = record.to_json_line();
    assert_eq!(line.lines().count(), 1);
    let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(parsed["event"], "security.auth_failure");
}

/// A sink that never finishes writing.
#[derive(Clone, Default)]
struct StuckSink {
    calls: Arc<Mutex<u32>>,
}

impl AuditSink for StuckSink {
    async fn write_batch(&self, _batch: &[AuditRecord]) -> Result<(), StoreError> {
        *self.calls.lock().expect("not poisoned") += 1;
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_stuck_sink_never_blocks_requests_and_overflow_is_counted() {
    let stuck = StuckSink::default();
    let auditor = Auditor::builder()
        .sink(stuck.clone())
        .capacity(8)
        .batch_size(4)
        .build()
        .unwrap();
    let svc = app(&auditor, |res| {
        AuthOutcome::failure(AuthMethod::Jwt, FailureReason::MissingToken).attach(res);
    });
    for _ in 0..50 {
        let res = svc.clone().oneshot(request("/")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        tokio::task::yield_now().await;
    }
    // The consumer took one batch of 4 and is stuck writing it; the queue
    // holds 8 more; the rest were dropped and counted.
    assert_eq!(*stuck.calls.lock().unwrap(), 1);
    assert_eq!(auditor.dropped(), 50 - 4 - 8);
    assert_eq!(auditor.written(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_wakes_the_consumer_without_a_flush() {
    let sink = MemoryAuditSink::new(100);
    let auditor = Auditor::builder()
        .sink(sink.clone())
        .batch_size(3)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let svc = app(&auditor, |res| {
        AuthOutcome::failure(AuthMethod::Jwt, FailureReason::MissingToken).attach(res);
    });
    for _ in 0..2 {
        svc.clone().oneshot(request("/")).await.unwrap();
    }
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(sink.len(), 0, "below a batch, records wait for the timer");
    svc.clone().oneshot(request("/")).await.unwrap();
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(sink.len(), 3);
    // Below a batch again: the timer drains it.
    svc.clone().oneshot(request("/")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3601)).await;
    assert_eq!(sink.len(), 4);
}

fn local_recorder() -> PrometheusRecorder {
    super::prometheus::builder().build_recorder()
}

#[tokio::test]
async fn metrics_count_by_reason_and_method_with_bounded_labels() {
    let recorder = local_recorder();
    let handle = recorder.handle();
    let sink = MemoryAuditSink::new(100_000);
    let auditor = ::metrics::with_local_recorder(&recorder, || {
        Auditor::builder().sink(sink.clone()).build().unwrap()
    });
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();

    let fail = app(&auditor, |res| {
        AuthOutcome::failure(AuthMethod::Jwt, FailureReason::TokenExpired).attach(res);
    });
    fail.oneshot(request("/a")).await.unwrap();
    let text = handle.render();
    assert!(
        text.contains(r#"portcullis_auth_failures_total{reason="token_expired",method="jwt"} 1"#),
        "{text}"
    );
    assert!(text.contains("portcullis_requests_total 1"), "{text}");
    assert!(
        text.contains("portcullis_auth_duration_seconds_bucket"),
        "{text}"
    );
    let before = series(&text);

    // 10 000 distinct users, IPs and paths: not one new series.
    let svc = AuditLayer::new(auditor.clone()).layer(tower::service_fn(
        |req: Request<String>| async move {
            let user = req.uri().path().trim_start_matches('/').to_owned();
            let mut res = Response::new(String::new());
            AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
                .with_identifier(user)
                .attach(&mut res);
            Ok::<_, Infallible>(res)
        },
    ));
    for i in 0..10_000_u32 {
        let mut req = request(&format!("/user-{i}"));
        let [a, b, c, d] = i.to_be_bytes();
        req.extensions_mut().insert(PeerAddr(SocketAddr::from((
            [10, b.wrapping_add(a), c, d],
            1000,
        ))));
        svc.clone().oneshot(req).await.unwrap();
    }
    auditor.flush().await;
    let text = handle.render();
    assert_eq!(series(&text), before, "{text}");
    assert!(!text.contains("user-"), "no user in any label");
    assert!(!text.contains("10.0."), "no IP in any label");
    assert!(text.contains(
        r#"portcullis_auth_failures_total{reason="invalid_credentials",method="password"} 10000"#
    ));
    // The top offenders are exported by rank, not by name. With 10 000
    // keys seen once each in 256 slots the counts are upper bounds
    // (Space-Saving over-estimates by at most total / slots).
    assert!(text.contains(r#"portcullis_top_offender_failures{kind="ip",rank="1"} "#));
    let top = auditor.top_offenders().ips(1);
    assert!(top[0].failures - top[0].error <= 1 && top[0].failures <= 1 + 10_000 / 256);
}

#[tokio::test]
async fn lockout_captcha_and_shadow_metrics() {
    let recorder = local_recorder();
    let handle = recorder.handle();
    let auditor = ::metrics::with_local_recorder(&recorder, || {
        Auditor::builder()
            .sink(MemoryAuditSink::new(100))
            .build()
            .unwrap()
    });
    let svc = app(&auditor, |res| {
        SecurityEvent::new(EventKind::BruteForceDetected).attach(res);
        SecurityEvent::new(EventKind::AccountLocked).attach(res);
        SecurityEvent::new(EventKind::CaptchaChallenge)
            .with_reason(FailureReason::CaptchaRequired)
            .attach(res);
        SecurityEvent::new(EventKind::CsrfViolation)
            .with_reason(FailureReason::CrossOrigin)
            .shadow()
            .attach(res);
    });
    svc.oneshot(request("/login")).await.unwrap();
    let text = handle.render();
    assert!(
        text.contains("portcullis_account_lockouts_total 1"),
        "{text}"
    );
    assert!(text.contains(r#"portcullis_captcha_challenges_total{outcome="required"} 1"#));
    assert!(text.contains(r#"portcullis_shadow_decisions_total{reason="cross_origin"} 1"#));
    assert!(text.contains(r#"portcullis_csrf_rejections_total{reason="cross_origin"} 0"#));
}

#[tokio::test]
async fn top_offenders_find_the_attacker() {
    let sink = MemoryAuditSink::new(100_000);
    let auditor = auditor_with(&sink);
    let svc = app(&auditor, |res| {
        AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
            .with_identifier("user_target")
            .attach(res);
    });
    for i in 0..300_u16 {
        let mut req = request("/login");
        let ip = if i % 3 == 0 {
            [203, 0, 113, 88]
        } else {
            [192, 0, (i >> 8) as u8, i as u8]
        };
        req.extensions_mut()
            .insert(PeerAddr(SocketAddr::from((ip, 1000))));
        svc.clone().oneshot(req).await.unwrap();
    }
    auditor.flush().await;
    let ips = auditor.top_offenders().ips(3);
    assert_eq!(&*ips[0].key, "203.0.113.88");
    assert_eq!(ips[0].failures, 100);
    let accounts = auditor.top_offenders().accounts(1);
    assert_eq!(&*accounts[0].key, "user_target");
    assert_eq!(accounts[0].failures, 300);
}

#[tokio::test]
async fn reported_events_go_through_the_same_pipeline() {
    let sink = MemoryAuditSink::new(100);
    let auditor = auditor_with(&sink);
    auditor.report(
        &SecurityEvent::new(EventKind::AccountUnlocked).with_identifier("alice@example.com"),
    );
    auditor.flush().await;
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event, EventKind::AccountUnlocked);
    assert!(records[0].user_id.as_deref().unwrap().starts_with("email:"));
    assert_eq!(records[0].trace_id.len(), 32);
}

#[tokio::test]
async fn generated_trace_ids_are_a_fixed_prefix_and_a_counter_in_hex() {
    let sink = MemoryAuditSink::new(100);
    let auditor = auditor_with(&sink);
    for _ in 0..3 {
        auditor.report(&SecurityEvent::new(EventKind::AccountUnlocked));
    }
    auditor.flush().await;
    let ids: Vec<String> = sink
        .records()
        .iter()
        .map(|r| r.trace_id.to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{id}"
        );
        assert_eq!(id[..16], ids[0][..16]);
    }
    let counter = |id: &str| u64::from_str_radix(&id[16..], 16).unwrap();
    assert_eq!(counter(&ids[1]), counter(&ids[0]) + 1);
    assert_eq!(counter(&ids[2]), counter(&ids[0]) + 2);
}

#[tokio::test]
async fn json_lines_sink_writes_one_parsable_line_per_record() {
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Shared::default();
    let auditor = Auditor::builder()
        .sink(JsonLinesSink::new(out.clone()))
        .build()
        .unwrap();
    let svc = app(&auditor, |res| {
        AuthOutcome::failure(AuthMethod::Jwt, FailureReason::InvalidSignature).attach(res);
    });
    for _ in 0..3 {
        svc.clone().oneshot(request("/graphql")).await.unwrap();
    }
    auditor.flush().await;
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let reasons: Vec<String> = text
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["context"]["failure_reason"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(reasons, ["invalid_signature"; 3]);
}

#[tokio::test]
async fn builder_refuses_nonsense() {
    assert!(Auditor::builder().capacity(0).build().is_err());
    assert!(
        Auditor::builder()
            .capacity(4)
            .batch_size(8)
            .build()
            .is_err()
    );
    assert!(
        Auditor::builder()
            .pseudonym_key(b"short".to_vec())
            .build()
            .is_err()
    );
    assert!(Auditor::builder().top_offenders(10, 5).build().is_err());
}

#[test]
fn building_outside_a_runtime_is_a_config_error() {
    assert!(Auditor::builder().build().is_err());
}

#[test]
fn debug_output_hides_the_pseudonym_key() {
    let builder = Auditor::builder().pseudonym_key(b"super-secret-pseudonym-key".to_vec());
    assert!(!format!("{builder:?}").contains("super-secret"));
}

#[tokio::test]
async fn breaker_transitions_set_the_gauge_count_and_report() {
    use crate::circuit_breaker::CircuitBreakerLayer;

    let recorder = local_recorder();
    let handle = recorder.handle();
    let sink = MemoryAuditSink::new(100);
    let auditor = auditor_with(&sink);
    let listener = ::metrics::with_local_recorder(&recorder, || auditor.breaker_listener("jwks"));
    let layer = CircuitBreakerLayer::consecutive_failures(1, Duration::from_secs(60))
        .unwrap()
        .with_name("jwks")
        .on_transition(listener);
    let failing = layer.layer(tower::service_fn(|_req: Request<String>| async {
        let mut res = Response::new(String::new());
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        Ok::<_, Infallible>(res)
    }));
    let text = handle.render();
    assert!(
        text.contains(r#"portcullis_circuit_state{breaker="jwks"} 0"#),
        "{text}"
    );
    let _ = failing.oneshot(Request::new(String::new())).await;
    let text = handle.render();
    assert!(
        text.contains(r#"portcullis_circuit_state{breaker="jwks"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"portcullis_circuit_transitions_total{breaker="jwks",to="open"} 1"#));
    auditor.flush().await;
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event, EventKind::CircuitStateChanged);
    assert_eq!(records[0].detail.as_deref(), Some("jwks: closed -> open"));
}

#[test]
fn dashboards_and_alerts_only_use_metrics_we_emit() {
    use super::metrics::names;
    let known = [
        names::REQUESTS,
        names::AUTH_SUCCESS,
        names::AUTH_FAILURES,
        names::ACCOUNT_LOCKOUTS,
        names::BRUTE_FORCE,
        names::IP_BLOCKS,
        names::CSRF_REJECTIONS,
        names::CAPTCHA_CHALLENGES,
        names::SHADOW_DECISIONS,
        names::CIRCUIT_STATE,
        names::CIRCUIT_TRANSITIONS,
        names::AUTH_DURATION,
        names::AUDIT_DROPPED,
        names::TOP_OFFENDER_FAILURES,
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/observability");
    let mut seen = 0;
    for file in ["alerts.yml", "alerts.test.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("observability kit file");
        for (i, _) in text.match_indices("portcullis_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "portcullis_authentication" {
                continue; // the rule group's name
            }
            let base = name.strip_suffix("_bucket").unwrap_or(&name);
            assert!(known.contains(&base), "{file} uses unknown metric {name}");
            seen += 1;
        }
    }
    assert!(seen > 20, "the kit references the metrics ({seen})");
}
