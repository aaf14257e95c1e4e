//! The gRPC examples over a real tonic channel on loopback.
#![allow(clippy::unwrap_used)] // test setup: a failure is a failed test

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use example_tonic_auth::{HelloReply, HelloRequest, serve, serve_with_interceptor};
use http::uri::PathAndQuery;
use portcullis::api_key::{ApiKeyLayer, NewApiKey};
use portcullis::core::MemoryApiKeyStore;
use portcullis::jwt::{Algorithm, JwtVerifier, KeySet, VerifyingKey};
use tonic::Code;
use tonic::transport::Endpoint;
use tonic_prost::ProstCodec;

const SECRET: &str = "tonic-example-Secret-2a7d9c43-e1b8-4f06-b5a2-9d3c8e7f1a64";

fn verifier() -> JwtVerifier {
    let keys = KeySet::new()
        .with_key(VerifyingKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .unwrap();
    JwtVerifier::builder(keys).build().unwrap()
}

fn token(scope: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "erin", "iat": now, "exp": now + 600, "scope": scope}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Starts the layered server; returns its address and an API key without
/// scopes and one with `greeter:admin`.
async fn layered() -> (SocketAddr, String, String) {
    let api_keys = ApiKeyLayer::new(MemoryApiKeyStore::default());
    let plain = api_keys
        .keys()
        .create(NewApiKey::new("svc-a", "plain"))
        .await
        .unwrap();
    let admin = api_keys
        .keys()
        .create(NewApiKey::new("svc-b", "admin").with_scopes(["greeter:admin"]))
        .await
        .unwrap();
    let (listener, addr) = listener().await;
    tokio::spawn(async move { serve(listener, verifier(), &api_keys).await });
    (addr, plain.into_key(), admin.into_key())
}

async fn say_hello(
    addr: SocketAddr,
    path: &'static str,
    metadata: Option<(&'static str, String)>,
) -> Result<HelloReply, tonic::Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(HelloRequest {
        name: "world".into(),
    });
    if let Some((name, value)) = metadata {
        request.metadata_mut().insert(name, value.parse().unwrap());
    }
    grpc.unary(
        request,
        PathAndQuery::from_static(path),
        ProstCodec::<HelloRequest, HelloReply>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

const HELLO: &str = "/greeter.Greeter/SayHello";
const ADMIN: &str = "/greeter.Admin/SayHello";

#[tokio::test]
async fn a_jwt_or_an_api_key_reaches_the_service() {
    let (addr, plain, _) = layered().await;
    let reply = say_hello(
        addr,
        HELLO,
        Some(("authorization", format!("Bearer {}", token("")))),
    )
    .await
    .unwrap();
    assert_eq!(reply.message, "hello, world");
    assert_eq!(reply.caller, "erin");
    let reply = say_hello(addr, HELLO, Some(("x-api-key", plain)))
        .await
        .unwrap();
    assert_eq!(reply.caller, "svc-a");
}

#[tokio::test]
async fn no_or_bad_credentials_are_unauthenticated() {
    let (addr, _, _) = layered().await;
    let status = say_hello(addr, HELLO, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = say_hello(addr, HELLO, Some(("authorization", "Bearer a.b.c".into())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = say_hello(addr, HELLO, Some(("x-api-key", "pc_live_nope".into())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn the_admin_service_needs_its_scope() {
    let (addr, plain, admin) = layered().await;
    let status = say_hello(addr, ADMIN, Some(("x-api-key", plain)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let reply = say_hello(addr, ADMIN, Some(("x-api-key", admin)))
        .await
        .unwrap();
    assert_eq!(reply.caller, "svc-b");
    let bearer = format!("Bearer {}", token("greeter:admin"));
    assert!(
        say_hello(addr, ADMIN, Some(("authorization", bearer)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_interceptor_variant_verifies_bearer_tokens() {
    let (listener, addr) = listener().await;
    tokio::spawn(async move { serve_with_interceptor(listener, verifier()).await });
    let reply = say_hello(
        addr,
        HELLO,
        Some(("authorization", format!("Bearer {}", token("")))),
    )
    .await
    .unwrap();
    assert_eq!(reply.caller, "erin");
    let status = say_hello(addr, HELLO, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = say_hello(addr, HELLO, Some(("authorization", "Bearer x.y.z".into())))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        !status.message().contains("x.y.z"),
        "the token is not echoed"
    );
}
