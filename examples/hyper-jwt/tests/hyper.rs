//! The bare-hyper example over real loopback HTTP.
#![allow(clippy::unwrap_used)] // test setup: a failure is a failed test

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::jwt::{Algorithm, JwtVerifier, KeySet, VerifyingKey};
use serde_json::{Value, json};

const SECRET: &str = "hyper-example-Secret-8c2f4e61-a9d3-4b7e-95c0-3e1d7a6b2f48";

fn token(scope: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "dana", "iat": now, "exp": now + 600, "scope": scope}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn start() -> std::net::SocketAddr {
    let keys = KeySet::new()
        .with_key(VerifyingKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .unwrap();
    let verifier = JwtVerifier::builder(keys).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example_hyper_jwt::serve(listener, verifier));
    addr
}

async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::get(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_valid_token_reaches_the_handler() {
    let addr = start().await;
    let (status, body) = get(addr, "/me", Some(&token("read"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"sub": "dana", "scopes": ["read"], "path": "/me"})
    );
}

#[tokio::test]
async fn no_token_is_401_and_a_bad_one_too() {
    let addr = start().await;
    let (status, body) = get(addr, "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "missing_token");
    let (status, body) = get(addr, "/me", Some("a.b.c")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn admin_needs_the_admin_scope() {
    let addr = start().await;
    let (status, body) = get(addr, "/admin", Some(&token("read"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_permissions");
    let (status, body) = get(addr, "/admin", Some(&token("read admin"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["path"], "/admin");
}
