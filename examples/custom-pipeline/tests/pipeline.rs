//! The hand-assembled pipeline, called in-process: each credential alone,
//! the `or` rule (a failed JWT is not retried as a service token), scopes,
//! logout through the custom revocation store — and the conformance kit
//! run against that store.
#![allow(clippy::unwrap_used)] // test setup: a failure is a failed test

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use example_custom_pipeline::{ServiceToken, SharedRevocations, app};
use jsonwebtoken::{EncodingKey, Header, encode};
use portcullis::core::PeerAddr;
use portcullis::jwt::{Algorithm, JwtVerifier, KeySet, VerifyingKey};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const SECRET: &str = "custom-pipeline-Secret-5d1e9a7c-3b24-4f6e-a8d0-7c19e2b4f630";
const SERVICE_SECRET: &str = "svc-9f3b2a71d4e8";

fn router() -> axum::Router {
    let keys = KeySet::new()
        .with_key(VerifyingKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .unwrap();
    let verifier = JwtVerifier::builder(keys).build().unwrap();
    let services = ServiceToken::new().with_service("billing", SERVICE_SECRET, ["reports:read"]);
    app(verifier, services, SharedRevocations::default())
}

fn jwt(sub: &str, scope: &str, jti: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": sub, "iat": now, "exp": now + 600, "scope": scope, "jti": jti});
    encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr("192.0.2.10:50000".parse().unwrap()));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), 64 * 1024).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_service_token_is_a_service_principal_with_its_scopes() {
    let router = router();
    let token = format!("billing.{SERVICE_SECRET}");
    let (status, body) = call(&router, "GET", "/whoami", &[("x-service-token", &token)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"sub": "billing", "kind": "service", "scopes": ["reports:read"]})
    );
    let (status, _) = call(&router, "GET", "/reports", &[("x-service-token", &token)]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_or_unknown_service_secrets_are_refused_alike() {
    let router = router();
    let wrong = call(
        &router,
        "GET",
        "/whoami",
        &[("x-service-token", "billing.nope")],
    )
    .await;
    let unknown = call(
        &router,
        "GET",
        "/whoami",
        &[("x-service-token", "payroll.nope")],
    )
    .await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.1["error"], "invalid_token");
    let long = format!("billing.{}", "x".repeat(1000));
    let (status, _) = call(&router, "GET", "/whoami", &[("x-service-token", &long)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_jwt_works_and_a_failed_jwt_is_not_retried_as_a_service_token() {
    let router = router();
    let bearer = format!("Bearer {}", jwt("alice", "profile", "j1"));
    let (status, body) = call(&router, "GET", "/whoami", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sub"], "alice");
    // No reports:read scope.
    let (status, body) = call(&router, "GET", "/reports", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_permissions");
    // A bad JWT next to a valid service token: refused, no fall-through.
    let service = format!("billing.{SERVICE_SECRET}");
    let (status, _) = call(
        &router,
        "GET",
        "/reports",
        &[
            ("authorization", "Bearer x.y.z"),
            ("x-service-token", &service),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn no_credential_gets_both_challenges() {
    let router = router();
    let request = Request::get("/whoami").body(Body::empty()).unwrap();
    let mut request = request;
    request
        .extensions_mut()
        .insert(PeerAddr("192.0.2.10:50000".parse().unwrap()));
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(challenge.contains("ServiceToken"), "{challenge}");
}

#[tokio::test]
async fn logout_revokes_through_the_custom_store() {
    let router = router();
    let bearer = format!("Bearer {}", jwt("alice", "", "j-logout"));
    let (status, _) = call(&router, "POST", "/logout", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&router, "GET", "/whoami", &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "token_revoked");
}

// The custom store keeps the trait's contract: the kit says so.
portcullis_test::revocation_store_tests!(
    |clock| async move { SharedRevocations::with_clock(clock) }
);
