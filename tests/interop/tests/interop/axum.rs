//! `JwtLayer` and `RequireLayer` in an axum 0.8 router served by
//! `axum::serve`, called over loopback HTTP/1.1 with hyper-util's client.
//!
//! An outer tower layer (`MapResponseLayer`, outside `JwtLayer`) copies the
//! `AuthOutcome` and `Rejection` it finds in the response extensions into
//! `x-outcome-*` / `x-rejection-reason` headers, so every test also checks
//! that the outcome protocol survives axum's routing and response conversion.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::{HeaderValue, StatusCode};
use portcullis::authorize::RequireLayer;
use portcullis::jwt::{Algorithm, JwtLayer, JwtVerifier, SigningKey, TokenIssuer};
use portcullis::{
    AuthMethod, AuthOutcome, FailureReason, MemoryRevocationStore, Principal, Rejection,
};
use serde_json::{Value, json};
use tower::util::MapResponseLayer;

use crate::common::{
    AUDIENCE, ISSUER, OTHER_SECRET, Reply, SECRET, assert_invalid_token, claims, client,
    expired_claims, get_with_token, hs256_keys, http_get, mint_hs256, request, send, spawn_axum,
    token,
};

/// `GET /me`: echoes the authenticated principal.
async fn me(principal: Principal) -> Json<Value> {
    Json(json!({
        "sub": principal.subject(),
        "scopes": principal.scopes().collect::<Vec<_>>(),
    }))
}

/// `GET /orders`: behind `RequireLayer::scopes(["orders:read"])`.
async fn orders(principal: Principal) -> Json<Value> {
    Json(json!({ "orders": [], "owner": principal.subject() }))
}

/// `POST /login` (public): checks a password itself and reports the outcome
/// the way the design says a login route does. A good password gets a token
/// pair from `TokenIssuer`.
async fn login(State(issuer): State<Arc<TokenIssuer>>, Json(form): Json<Value>) -> Response {
    let username = form["username"].as_str().unwrap_or_default().to_owned();
    if form["password"] != "correct horse battery staple" {
        let outcome = AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
            .with_identifier(username);
        return (
            StatusCode::UNAUTHORIZED,
            Extension(outcome),
            Json(json!({ "error": "invalid_credentials" })),
        )
            .into_response();
    }
    let principal = Principal::new(username.as_str(), portcullis::PrincipalKind::User)
        .with_scopes(["orders:read"]);
    let pair = issuer.issue(&principal).expect("issue token pair");
    (
        Extension(AuthOutcome::success(AuthMethod::Password, username)),
        Json(json!({
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_in": pair.expires_in,
        })),
    )
        .into_response()
}

/// `POST /reauth` (behind `JwtLayer`): a step-up password check. Its own
/// failure outcome must win over the JWT layer's success.
async fn reauth(principal: Principal) -> Response {
    let outcome = AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
        .with_identifier(principal.subject());
    (StatusCode::UNAUTHORIZED, Extension(outcome)).into_response()
}

/// The outer layer: reports what the inner layers decided as headers.
fn report_outcome(mut response: Response) -> Response {
    let mut report: Vec<(&'static str, String)> = Vec::new();
    if let Some(outcome) = AuthOutcome::of(&response) {
        let result = if outcome.is_success() {
            "success"
        } else {
            "failure"
        };
        report.push(("x-outcome", result.to_owned()));
        report.push(("x-outcome-method", outcome.method().as_str().to_owned()));
        if let Some(reason) = outcome.reason() {
            report.push(("x-outcome-reason", reason.as_str().to_owned()));
        }
        if let Some(subject) = outcome.subject() {
            report.push(("x-outcome-subject", subject.to_owned()));
        }
        if let Some(identifier) = outcome.identifier() {
            report.push(("x-outcome-identifier", identifier.to_owned()));
        }
    }
    if let Some(rejection) = response.extensions().get::<Rejection>() {
        report.push(("x-rejection-reason", rejection.reason().as_str().to_owned()));
    }
    for (name, value) in report {
        let value = HeaderValue::from_str(&value).expect("header value");
        response.headers_mut().insert(name, value);
    }
    response
}

fn app() -> Router {
    let verifier = JwtVerifier::builder(hs256_keys())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .expect("verifier");
    let key = SigningKey::hmac(Algorithm::HS256, SECRET).expect("signing key");
    let issuer = TokenIssuer::builder(key, ISSUER)
        .audience(AUDIENCE)
        .build(MemoryRevocationStore::default())
        .expect("token issuer");

    let protected = Router::new()
        .route("/me", get(me))
        .route(
            "/orders",
            get(orders).layer(RequireLayer::scopes(["orders:read"])),
        )
        .route("/reauth", post(reauth))
        .layer(JwtLayer::new(verifier));
    Router::new()
        .route("/login", post(login))
        .with_state(Arc::new(issuer))
        .merge(protected)
        // Added last, so outermost: outside `JwtLayer`.
        .layer(MapResponseLayer::new(report_outcome))
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().expect("ASCII"))
}

#[tokio::test]
async fn missing_token_gets_bare_challenge() {
    let addr = spawn_axum(app()).await;
    let reply = send(&client(), http_get(addr, "/me", &[])).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // RFC 6750 §3: no credentials, no `error=`.
    assert_eq!(reply.challenge(), "Bearer");
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_eq!(
        reply.json(),
        json!({"error": "missing_token", "error_description": "authentication is required"})
    );
    // The outer layer saw the rejection and the failure outcome.
    assert_eq!(header(&reply, "x-outcome"), Some("failure"));
    assert_eq!(header(&reply, "x-outcome-method"), Some("jwt"));
    assert_eq!(header(&reply, "x-outcome-reason"), Some("missing_token"));
    assert_eq!(header(&reply, "x-rejection-reason"), Some("missing_token"));
    assert_eq!(header(&reply, "x-outcome-subject"), None);
}

#[tokio::test]
async fn valid_token_reaches_handler_with_principal() {
    let addr = spawn_axum(app()).await;
    let token = token("alice", "profile orders:read");
    let reply = get_with_token(&client(), addr, "/me", &token).await;

    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reply.headers.get("www-authenticate").is_none());
    assert_eq!(
        reply.json(),
        json!({"sub": "alice", "scopes": ["profile", "orders:read"]})
    );
    assert_eq!(header(&reply, "x-outcome"), Some("success"));
    assert_eq!(header(&reply, "x-outcome-method"), Some("jwt"));
    assert_eq!(header(&reply, "x-outcome-subject"), Some("alice"));
    assert_eq!(header(&reply, "x-outcome-reason"), None);
    assert_eq!(header(&reply, "x-rejection-reason"), None);
}

#[tokio::test]
async fn expired_token_is_token_expired() {
    let addr = spawn_axum(app()).await;
    let token = mint_hs256(SECRET, &expired_claims("alice"));
    let reply = get_with_token(&client(), addr, "/me", &token).await;

    assert_invalid_token(&reply, "token_expired");
    assert!(!String::from_utf8_lossy(&reply.body).contains(&token));
    assert_eq!(header(&reply, "x-outcome"), Some("failure"));
    assert_eq!(header(&reply, "x-outcome-reason"), Some("token_expired"));
    assert_eq!(header(&reply, "x-rejection-reason"), Some("token_expired"));
    // The signature verified, so the subject is known for audit.
    assert_eq!(header(&reply, "x-outcome-subject"), Some("alice"));
}

#[tokio::test]
async fn wrong_signature_is_invalid_signature() {
    let addr = spawn_axum(app()).await;
    let token = mint_hs256(OTHER_SECRET, &claims("alice", "orders:read"));
    let reply = get_with_token(&client(), addr, "/me", &token).await;

    assert_invalid_token(&reply, "invalid_signature");
    assert_eq!(
        header(&reply, "x-outcome-reason"),
        Some("invalid_signature")
    );
    assert_eq!(
        header(&reply, "x-rejection-reason"),
        Some("invalid_signature")
    );
    // An unverified token names nobody.
    assert_eq!(header(&reply, "x-outcome-subject"), None);
}

#[tokio::test]
async fn wrong_audience_and_issuer_are_invalid_token() {
    let addr = spawn_axum(app()).await;
    let http = client();

    let mut wrong_aud = claims("alice", "");
    wrong_aud["aud"] = json!("another-api");
    let reply = get_with_token(&http, addr, "/me", &mint_hs256(SECRET, &wrong_aud)).await;
    assert_invalid_token(&reply, "invalid_token");

    let mut wrong_iss = claims("alice", "");
    wrong_iss["iss"] = json!("https://evil.example");
    let reply = get_with_token(&http, addr, "/me", &mint_hs256(SECRET, &wrong_iss)).await;
    assert_invalid_token(&reply, "invalid_token");
}

#[tokio::test]
async fn two_authorization_headers_are_invalid_request() {
    let addr = spawn_axum(app()).await;
    let auth = format!("Bearer {}", token("alice", ""));
    let reply = send(
        &client(),
        http_get(
            addr,
            "/me",
            &[("authorization", &auth), ("authorization", &auth)],
        ),
    )
    .await;

    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert!(
        reply.challenge().contains(r#"error="invalid_request""#),
        "{}",
        reply.challenge()
    );
    assert_eq!(
        reply.json(),
        json!({"error": "invalid_request", "error_description": "the request is malformed"})
    );
    assert_eq!(
        header(&reply, "x-rejection-reason"),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn missing_scope_is_insufficient_scope() {
    let addr = spawn_axum(app()).await;
    let http = client();

    let reply = get_with_token(&http, addr, "/orders", &token("bob", "profile")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    let challenge = reply.challenge();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.contains(r#"scope="orders:read""#), "{challenge}");
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.json()["error"], "insufficient_permissions");
    // Authentication succeeded (JWT outcome), authorization refused
    // (`Rejection` from `RequireLayer`): the outer layer sees both.
    assert_eq!(header(&reply, "x-outcome"), Some("success"));
    assert_eq!(header(&reply, "x-outcome-subject"), Some("bob"));
    assert_eq!(
        header(&reply, "x-rejection-reason"),
        Some("insufficient_permissions")
    );

    let reply = get_with_token(&http, addr, "/orders", &token("bob", "profile orders:read")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json(), json!({"orders": [], "owner": "bob"}));
}

#[tokio::test]
async fn problem_json_on_request() {
    let addr = spawn_axum(app()).await;
    let http = client();
    let accept = ("accept", "application/problem+json");

    let reply = send(&http, http_get(addr, "/me", &[accept])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    assert_eq!(reply.challenge(), "Bearer");
    assert_eq!(
        reply.json(),
        json!({
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "authentication is required",
            "error": "missing_token",
        })
    );

    let auth = format!("Bearer {}", token("bob", "profile"));
    let reply = send(
        &http,
        http_get(addr, "/orders", &[accept, ("authorization", &auth)]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.header("content-type"), "application/problem+json");
    let body = reply.json();
    assert_eq!(body["status"], 403, "{body}");
    assert_eq!(body["title"], "Forbidden", "{body}");
    assert_eq!(body["error"], "insufficient_permissions", "{body}");
}

#[tokio::test]
async fn login_handler_outcome_reaches_outer_layer() {
    let addr = spawn_axum(app()).await;
    let http = client();

    let form = json!({"username": "alice", "password": "hunter2"}).to_string();
    let reply = send(
        &http,
        request(
            "POST",
            addr,
            "/login",
            &[("content-type", "application/json")],
            form,
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.json(), json!({"error": "invalid_credentials"}));
    assert_eq!(header(&reply, "x-outcome"), Some("failure"));
    assert_eq!(header(&reply, "x-outcome-method"), Some("password"));
    assert_eq!(
        header(&reply, "x-outcome-reason"),
        Some("invalid_credentials")
    );
    assert_eq!(header(&reply, "x-outcome-identifier"), Some("alice"));
    assert_eq!(header(&reply, "x-rejection-reason"), None);

    // A good password: success outcome, and a token pair from `TokenIssuer`
    // that `JwtLayer` (configured independently) accepts.
    let form = json!({"username": "alice", "password": "correct horse battery staple"});
    let reply = send(
        &http,
        request(
            "POST",
            addr,
            "/login",
            &[("content-type", "application/json")],
            form.to_string(),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(header(&reply, "x-outcome"), Some("success"));
    assert_eq!(header(&reply, "x-outcome-method"), Some("password"));
    assert_eq!(header(&reply, "x-outcome-subject"), Some("alice"));
    let pair = reply.json();
    assert_eq!(pair["expires_in"], 900);
    let access = pair["access_token"].as_str().expect("access token");
    let refresh = pair["refresh_token"].as_str().expect("refresh token");

    let reply = get_with_token(&http, addr, "/orders", access).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["owner"], "alice");

    // The refresh token is not an access token (`typ: refresh+jwt`).
    let reply = get_with_token(&http, addr, "/me", refresh).await;
    assert_invalid_token(&reply, "invalid_token");
}

#[tokio::test]
async fn handler_outcome_wins_over_jwt_success() {
    let addr = spawn_axum(app()).await;
    let auth = format!("Bearer {}", token("carol", ""));
    let reply = send(
        &client(),
        request("POST", addr, "/reauth", &[("authorization", &auth)], ""),
    )
    .await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    // `JwtLayer` adds its success only when the handler reported nothing.
    assert_eq!(header(&reply, "x-outcome"), Some("failure"));
    assert_eq!(header(&reply, "x-outcome-method"), Some("password"));
    assert_eq!(
        header(&reply, "x-outcome-reason"),
        Some("invalid_credentials")
    );
    assert_eq!(header(&reply, "x-outcome-identifier"), Some("carol"));
}
