//! The Portcullis reference server, as a library so tests can serve it.
//!
//! An axum application protected by [`JwtLayer`], issuing its own tokens
//! with [`TokenIssuer`] and keeping revocations in the embedded
//! [`MemoryRevocationStore`]. Routes:
//!
//! | route | auth | what |
//! | --- | --- | --- |
//! | `GET /health` | none | liveness |
//! | `GET /metrics` | none | Prometheus exposition (bind to loopback or protect it in production) |
//! | `POST /auth/login` | none | `{"username","password"}` → access + refresh tokens |
//! | `POST /auth/refresh` | none | `{"refresh_token"}` → a new pair (rotation, reuse detection) |
//! | `POST /auth/logout` | none | `{"refresh_token"}` → ends that session |
//! | `POST /auth/logout-all` | bearer | revokes every token of the caller |
//! | `GET /api/me` | bearer | the caller's principal |
//! | `GET /api/orders` | bearer + scope `orders:read` | sample data |
//! | `GET /api/admin` | bearer + role `admin` | sample data |
//!
//! Every decision is audited ([`AuditLayer`], outermost): one seed-000-shaped
//! JSON event per decision, written by the binary to stdout as JSON lines.
//!
//! The two demo accounts (`alice` / `wonderland`, `admin` / `portcullis`)
//! exist only to make the server usable out of the box.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use portcullis::audit::prometheus::PrometheusHandle;
use portcullis::audit::{AuditLayer, Auditor};
use portcullis::authorize::RequireLayer;
use portcullis::core::{AuditSink, MemoryAuditSink};
use portcullis::jwt::{Algorithm, JwtLayer, SigningKey, TokenIssuer};
use portcullis::rejection::{DefaultRejection, RespondToRejection};
use portcullis::{
    AuthMethod, AuthOutcome, ConfigError, FailureReason, MemoryRevocationStore, Principal,
    PrincipalKind, Rejection,
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// The issuer name the demo signs tokens as.
pub const ISSUER: &str = "portcullis-demo";
/// The audience of the demo's access tokens.
pub const AUDIENCE: &str = "demo-api";

/// Shared state: the token issuer (which owns the revocation store).
#[derive(Clone, Debug)]
pub struct AppState {
    issuer: Arc<TokenIssuer>,
}

/// The process-wide Prometheus recorder, installed on first use.
///
/// # Errors
///
/// When another global `metrics` recorder was installed first.
pub fn metrics_handle() -> Result<PrometheusHandle, ConfigError> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*slot {
        return Ok(handle.clone());
    }
    let handle = portcullis::audit::prometheus::install()?;
    *slot = Some(handle.clone());
    Ok(handle)
}

/// Builds the application around an HMAC `secret` (at least 32 bytes),
/// keeping audit records in a bounded in-memory sink.
///
/// Must be called inside a Tokio runtime (the auditor spawns its writer).
///
/// # Errors
///
/// When the secret is weak or the layers cannot be configured.
pub fn app(secret: &[u8]) -> Result<Router, ConfigError> {
    app_with_audit(secret, MemoryAuditSink::new(1000))
}

/// Builds the application, sending audit records to `sink`.
///
/// # Errors
///
/// When the secret is weak or the layers cannot be configured.
pub fn app_with_audit(secret: &[u8], sink: impl AuditSink) -> Result<Router, ConfigError> {
    let metrics = metrics_handle()?;
    let auditor = Auditor::builder().sink(sink).build()?;
    let store = Arc::new(MemoryRevocationStore::default());
    let issuer = TokenIssuer::builder(
        SigningKey::hmac(Algorithm::HS256, secret)?.with_kid("demo-1"),
        ISSUER,
    )
    .audience(AUDIENCE)
    .build(Arc::clone(&store))?;
    let jwt = JwtLayer::new(issuer.access_verifier().build()?)
        .with_realm("portcullis-demo")
        .with_revocation(store);
    let state = AppState {
        issuer: Arc::new(issuer),
    };

    let api = Router::new()
        .route("/api/me", get(me))
        .route(
            "/api/orders",
            get(orders).layer(RequireLayer::scopes(["orders:read"])),
        )
        .route(
            "/api/admin",
            get(admin).layer(RequireLayer::roles(["admin"])),
        )
        .route("/auth/logout-all", post(logout_all))
        .layer(jwt);

    Ok(Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .merge(api)
        .with_state(state)
        .route(
            "/metrics",
            portcullis::audit::prometheus::metrics_route(metrics),
        )
        .layer(AuditLayer::new(auditor)))
}

/// A fresh random 256-bit secret, base64url-encoded.
///
/// # Panics
///
/// If the system random number generator fails.
#[must_use]
pub fn generate_secret() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("system RNG");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh_token: String,
}

/// Demo accounts: (username, password, scopes, roles).
const USERS: &[(&str, &str, &[&str], &[&str])] = &[
    ("alice", "wonderland", &["orders:read"], &["user"]),
    (
        "admin",
        "portcullis",
        &["orders:read", "orders:write"],
        &["admin"],
    ),
];

fn reject(rejection: &Rejection) -> Response {
    let mut response: Response =
        DefaultRejection::new().respond(&axum::http::HeaderMap::new(), rejection);
    response.extensions_mut().insert(rejection.clone());
    response
}

async fn login(State(state): State<AppState>, Json(login): Json<Login>) -> Response {
    // Compare against every account so timing does not reveal which exist.
    let mut found = None;
    for (user, password, scopes, roles) in USERS {
        let user_ok = user.as_bytes().ct_eq(login.username.as_bytes());
        let password_ok = password.as_bytes().ct_eq(login.password.as_bytes());
        if bool::from(user_ok & password_ok) {
            found = Some((*user, *scopes, *roles));
        }
    }
    let Some((user, scopes, roles)) = found else {
        let outcome = AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
            .with_identifier(login.username.chars().take(128).collect::<String>());
        return (
            Extension(outcome),
            reject(&Rejection::new(FailureReason::InvalidCredentials)),
        )
            .into_response();
    };
    let principal = Principal::new(user, PrincipalKind::User)
        .with_scopes(scopes.iter().copied())
        .with_roles(roles.iter().copied());
    match state.issuer.issue(&principal) {
        Ok(pair) => (
            Extension(AuthOutcome::success(AuthMethod::Password, user)),
            Json(pair),
        )
            .into_response(),
        Err(err) => reject(&err.to_rejection()),
    }
}

async fn refresh(State(state): State<AppState>, Json(body): Json<RefreshRequest>) -> Response {
    match state.issuer.refresh(&body.refresh_token).await {
        Ok(pair) => Json(pair).into_response(),
        Err(err) => reject(&err.to_rejection()),
    }
}

async fn logout(State(state): State<AppState>, Json(body): Json<RefreshRequest>) -> Response {
    match state.issuer.logout(&body.refresh_token).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => reject(&err.to_rejection()),
    }
}

async fn logout_all(State(state): State<AppState>, principal: Principal) -> Response {
    match state
        .issuer
        .revoke_all_for_subject(principal.subject())
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => reject(&Rejection::new(FailureReason::UpstreamUnavailable)),
    }
}

async fn me(principal: Principal) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "subject": principal.subject(),
        "kind": principal.kind().as_str(),
        "scopes": principal.scopes().collect::<Vec<_>>(),
        "roles": principal.roles().collect::<Vec<_>>(),
    }))
}

async fn orders(principal: Principal) -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"owner": principal.subject(), "orders": [{"id": 1, "item": "portcullis"}]}),
    )
}

async fn admin(principal: Principal) -> Json<serde_json::Value> {
    Json(serde_json::json!({"admin": principal.subject(), "message": "welcome to the gatehouse"}))
}
