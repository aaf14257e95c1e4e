//! `AuditLayer` over real loopback HTTP: one record per decision across the
//! layers (JWT, API keys, composition, authorization, a login handler,
//! revocation store outage), none for public requests, no secret in any
//! output, and a panicking layer turned into a generic 500 by tower-http's
//! `CatchPanicLayer` while the server keeps serving.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use portcullis::api_key::{ApiKeyLayer, NewApiKey};
use portcullis::audit::{AuditLayer, Auditor, JsonLinesSink};
use portcullis::authenticate::{AuthenticateExt as _, AuthenticateLayer};
use portcullis::authorize::RequireLayer;
use portcullis::core::{
    AuditRecord, BoxAuditSink, FanOutSink, MemoryApiKeyStore, MemoryAuditSink, RevocationStore,
    StoreError, StoreErrorKind, TokenRef,
};
use portcullis::jwt::{JwtLayer, JwtVerifier};
use portcullis::{AuthMethod, AuthOutcome, EventKind, FailureReason, Principal, Rejection};
use serde_json::Value;
use tower_http::catch_panic::CatchPanicLayer;

use crate::common::{
    AUDIENCE, ISSUER, OTHER_SECRET, SECRET, client, expired_claims, hs256_keys, http_get,
    mint_hs256, request, send, spawn_axum, token,
};

const PEPPER: &[u8; 32] = b"audit-interop-pepper-0123456789a";
const PASSWORD: &str = "correct horse battery staple";
const EMAIL: &str = "carol@example.com";

/// A revocation store whose backend is down.
struct DownStore;

fn down() -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, "connection refused")
}

impl RevocationStore for DownStore {
    async fn revoke_token(&self, _: &str, _: std::time::SystemTime) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn revoke_family(&self, _: &str, _: std::time::SystemTime) -> Result<(), StoreError> {
        Err(down())
    }
    async fn revoke_subject(
        &self,
        _: &str,
        _: std::time::SystemTime,
        _: std::time::SystemTime,
    ) -> Result<(), StoreError> {
        Err(down())
    }
    async fn is_revoked(&self, _: &TokenRef<'_>) -> Result<bool, StoreError> {
        Err(down())
    }
}

/// Seed 003's login: the handler checks the password and reports the
/// outcome with the submitted identifier.
async fn login(body: String) -> Response {
    let form: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let user = form["username"].as_str().unwrap_or_default().to_owned();
    let ok = form["password"] == PASSWORD;
    let mut response = if ok {
        StatusCode::OK.into_response()
    } else {
        let mut res = StatusCode::UNAUTHORIZED.into_response();
        res.extensions_mut()
            .insert(Rejection::new(FailureReason::InvalidCredentials));
        res
    };
    let outcome = if ok {
        AuthOutcome::success(AuthMethod::Password, user)
    } else {
        AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
            .with_identifier(user)
    };
    outcome.attach(&mut response);
    response
}

async fn me(principal: Principal) -> String {
    principal.subject().to_owned()
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Audited {
    addr: std::net::SocketAddr,
    auditor: Auditor,
    memory: MemoryAuditSink,
    lines: Captured,
    api_key: String,
}

impl Audited {
    async fn start() -> Self {
        let memory = MemoryAuditSink::new(10_000);
        let lines = Captured::default();
        let auditor = Auditor::builder()
            .sink(FanOutSink::new(vec![
                BoxAuditSink::new(memory.clone()),
                BoxAuditSink::new(JsonLinesSink::new(lines.clone())),
            ]))
            .pseudonym_key(b"audit-interop-pseudonym-key".to_vec())
            .build()
            .expect("auditor");
        let verifier = || {
            JwtVerifier::builder(hs256_keys())
                .issuer(ISSUER)
                .audience(AUDIENCE)
                .build()
                .expect("verifier")
        };
        let jwt = JwtLayer::new(verifier()).with_realm("audit");
        let api_key = ApiKeyLayer::new(MemoryApiKeyStore::default())
            .with_pepper(PEPPER)
            .expect("pepper");
        let key = api_key
            .keys()
            .create(NewApiKey::new("ci-bot", "ci").with_scopes(["orders:read"]))
            .await
            .expect("create key")
            .key()
            .to_owned();
        let protected = Router::new()
            .route("/me", get(me))
            .route(
                "/orders",
                get(me).layer(RequireLayer::scopes(["orders:read"])),
            )
            .layer(AuthenticateLayer::new(
                jwt.authenticator().or(api_key.authenticator()),
            ));
        let outage = Router::new()
            .route("/outage", get(me))
            .layer(JwtLayer::new(verifier()).with_revocation(DownStore));
        let panicking = Router::new()
            .route("/panic", get(|| async { "unreachable" }))
            .layer(axum::middleware::map_request(
                |req: axum::extract::Request| async move {
                    if req.headers().contains_key("x-force-panic") {
                        panic!("a layer bug");
                    }
                    req
                },
            ));
        let app = Router::new()
            .route("/public", get(|| async { "hello" }))
            .route("/login", post(login))
            .merge(protected)
            .merge(outage)
            .merge(panicking)
            .layer(AuditLayer::new(auditor.clone()))
            .layer(CatchPanicLayer::new());
        Self {
            addr: spawn_axum(app).await,
            auditor,
            memory,
            lines,
            api_key: key,
        }
    }

    /// Sends `req` and returns the status and the records it produced.
    async fn records(
        &self,
        req: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> (StatusCode, Vec<AuditRecord>) {
        self.memory.clear();
        let reply = send(&client(), req).await;
        self.auditor.flush().await;
        (reply.status, self.memory.records())
    }

    /// Asserts exactly one record of `event` with `reason` by `layer`.
    async fn one(
        &self,
        req: http::Request<http_body_util::Full<bytes::Bytes>>,
        status: u16,
        event: EventKind,
        reason: Option<FailureReason>,
        layer: &str,
    ) -> AuditRecord {
        let (got, records) = self.records(req).await;
        assert_eq!(got.as_u16(), status, "{records:?}");
        assert_eq!(records.len(), 1, "exactly one record: {records:?}");
        let record = records.into_iter().next().expect("one record");
        assert_eq!(record.event, event);
        assert_eq!(record.failure_reason, reason);
        assert_eq!(record.layer, Some(layer));
        assert_eq!(record.trace_id.len(), 32, "a request id on every record");
        assert!(
            record.to_json()["timestamp"]
                .as_str()
                .expect("timestamp")
                .ends_with('Z')
        );
        record
    }
}

#[tokio::test]
async fn row140_one_record_per_decision_and_no_secrets() {
    let s = Audited::start().await;
    let a = s.addr;
    let good = token("alice", "orders:read");
    let no_scope = token("bob", "");
    let forged = mint_hs256(OTHER_SECRET, &crate::common::claims("mallory", ""));
    let expired = mint_hs256(SECRET, &expired_claims("alice"));
    let bearer = |t: &str| format!("Bearer {t}");

    // Nobody decided: no record.
    let (status, records) = s.records(http_get(a, "/public", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(records.is_empty(), "{records:?}");

    s.one(
        http_get(a, "/me", &[]),
        401,
        EventKind::AuthFailure,
        Some(FailureReason::MissingToken),
        // No credential at all: no authenticator of the `or` owns it.
        "authenticate",
    )
    .await;
    s.one(
        http_get(a, "/me", &[("authorization", &bearer(&forged))]),
        401,
        EventKind::AuthFailure,
        Some(FailureReason::InvalidSignature),
        "jwt",
    )
    .await;
    s.one(
        http_get(a, "/me", &[("authorization", &bearer(&expired))]),
        401,
        EventKind::TokenExpired,
        Some(FailureReason::TokenExpired),
        "jwt",
    )
    .await;
    let ok = s
        .one(
            http_get(a, "/me", &[("authorization", &bearer(&good))]),
            200,
            EventKind::AuthSuccess,
            None,
            "jwt",
        )
        .await;
    assert_eq!(ok.user_id.as_deref(), Some("alice"));
    assert_eq!(ok.token_prefix.as_deref(), Some(&good[..6]));
    assert_eq!(ok.ip_address, Some([127, 0, 0, 1].into()));
    assert_eq!(ok.endpoint.as_deref(), Some("/me"));

    let by_key = s
        .one(
            http_get(a, "/orders", &[("x-api-key", &s.api_key)]),
            200,
            EventKind::AuthSuccess,
            None,
            "api_key",
        )
        .await;
    assert_eq!(by_key.user_id.as_deref(), Some("ci-bot"));
    // The key with its last character changed (to something it is not).
    let last = if s.api_key.ends_with('x') { 'y' } else { 'x' };
    let wrong_key = format!("{}{last}", &s.api_key[..s.api_key.len() - 1]);
    assert_ne!(wrong_key, s.api_key);
    s.one(
        http_get(a, "/me", &[("x-api-key", &wrong_key)]),
        401,
        EventKind::AuthFailure,
        Some(FailureReason::InvalidApiKey),
        "api_key",
    )
    .await;
    let denied = s
        .one(
            http_get(a, "/orders", &[("authorization", &bearer(&no_scope))]),
            403,
            EventKind::AuthFailure,
            Some(FailureReason::InsufficientPermissions),
            "authorize",
        )
        .await;
    assert_eq!(denied.user_id.as_deref(), Some("bob"));
    s.one(
        http_get(a, "/outage", &[("authorization", &bearer(&good))]),
        503,
        EventKind::AuthFailure,
        Some(FailureReason::UpstreamUnavailable),
        "jwt",
    )
    .await;

    let form = |user: &str, password: &str| {
        serde_json::json!({ "username": user, "password": password }).to_string()
    };
    let failed = s
        .one(
            request("POST", a, "/login", &[], form(EMAIL, "guess")),
            401,
            EventKind::AuthFailure,
            Some(FailureReason::InvalidCredentials),
            "login",
        )
        .await;
    let pseudonym = failed.user_id.clone().expect("identifier recorded");
    assert!(pseudonym.starts_with("email:"), "{pseudonym}");
    s.one(
        request("POST", a, "/login", &[], form(EMAIL, PASSWORD)),
        200,
        EventKind::AuthSuccess,
        None,
        "login",
    )
    .await;

    // No secret in any output: tokens (whole or their signature), the API
    // key and its secret part, the password, the email, the signing secret.
    let output = String::from_utf8(s.lines.0.lock().expect("not poisoned").clone())
        .expect("JSON lines are UTF-8");
    assert_eq!(
        output.lines().count(),
        10,
        "one line per decision: {output}"
    );
    for line in output.lines() {
        serde_json::from_str::<Value>(line).expect("each line is one JSON object");
    }
    let signature = |t: &str| t.rsplit('.').next().expect("signature").to_owned();
    for secret in [
        good.clone(),
        signature(&good),
        forged.clone(),
        expired.clone(),
        s.api_key.clone(),
        s.api_key[8..].to_owned(),
        PASSWORD.to_owned(),
        "guess".to_owned(),
        EMAIL.to_owned(),
        "carol".to_owned(),
        SECRET.to_owned(),
    ] {
        assert!(!output.contains(&secret), "audit output leaks {secret:?}");
    }
}

#[tokio::test]
async fn row143_a_panicking_layer_is_a_generic_500_and_the_server_survives() {
    let s = Audited::start().await;
    let reply = send(
        &client(),
        http_get(s.addr, "/panic", &[("x-force-panic", "1")]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = String::from_utf8_lossy(&reply.body);
    assert!(
        !body.contains("a layer bug"),
        "no panic message in the body: {body}"
    );
    // The process and the server are still up.
    let reply = send(&client(), http_get(s.addr, "/public", &[])).await;
    assert_eq!(reply.status, StatusCode::OK);
}
