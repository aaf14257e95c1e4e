//! Helpers shared by every module: servers on ephemeral loopback ports, an
//! HTTP client, token minting with the independent `jsonwebtoken` crate.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::jwt::{Algorithm, KeySet, VerifyingKey};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// HS256 secret the servers trust (long and varied enough for `VerifyingKey::hmac`).
pub(crate) const SECRET: &str = "interop-Secret-7f3a9c21-e84b-4d6a-b5c0-19e2d7f4a86b";
/// A different secret: tokens signed with it fail signature verification.
pub(crate) const OTHER_SECRET: &str = "attacker-Key-2b8e41d7-93c5-4fa0-8e16-c7d05a3b92ef";
/// `iss` the servers require.
pub(crate) const ISSUER: &str = "https://auth.interop.test";
/// `aud` the servers require.
pub(crate) const AUDIENCE: &str = "interop-api";

/// The current time in seconds since the epoch.
pub(crate) fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).expect("timestamp fits i64")
}

/// Claims valid for ten minutes: `sub`, `iss`, `aud`, `iat`, `exp`, and the
/// space-separated `scope` when not empty.
pub(crate) fn claims(sub: &str, scope: &str) -> Value {
    let now = now();
    let mut claims = json!({
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    });
    if !scope.is_empty() {
        claims["scope"] = Value::from(scope);
    }
    claims
}

/// Claims that expired an hour ago (well past the 30 s default leeway).
pub(crate) fn expired_claims(sub: &str) -> Value {
    let now = now();
    json!({
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now - 7200,
        "exp": now - 3600,
    })
}

/// Signs `claims` with HS256 and `secret` using `jsonwebtoken`.
pub(crate) fn mint_hs256(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign HS256 token")
}

/// A valid HS256 token for `sub` with `scope`, signed with [`SECRET`].
pub(crate) fn token(sub: &str, scope: &str) -> String {
    mint_hs256(SECRET, &claims(sub, scope))
}

/// The key set servers verify with: [`SECRET`] as an HS256 key.
pub(crate) fn hs256_keys() -> KeySet {
    KeySet::new()
        .with_key(VerifyingKey::hmac(Algorithm::HS256, SECRET).expect("HS256 key"))
        .expect("key set")
}

/// Binds `127.0.0.1:0`.
pub(crate) async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// Serves an axum router (with `ConnectInfo`) on an ephemeral port.
pub(crate) async fn spawn_axum(router: axum::Router) -> SocketAddr {
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("axum server");
    });
    addr
}

/// The HTTP/1 client every test uses (built per test: its pool lives on the
/// test's runtime).
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A new plain-HTTP client.
pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A response read to the end.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "body is not JSON ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as a string; panics when absent.
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` header in {:?}", self.headers))
            .to_str()
            .expect("header is ASCII")
    }

    /// The `WWW-Authenticate` challenge.
    pub(crate) fn challenge(&self) -> &str {
        self.header("www-authenticate")
    }
}

/// Sends `request` and reads the whole response.
pub(crate) async fn send(client: &HttpClient, request: Request<Full<Bytes>>) -> Reply {
    let response = client.request(request).await.expect("HTTP request");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("read body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET http://{addr}{path}` with `headers` (a name may repeat).
pub(crate) fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    request("GET", addr, path, headers, Bytes::new())
}

/// A request with any method and body.
pub(crate) fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).expect("valid request")
}

/// `GET` with `Authorization: Bearer {token}`.
pub(crate) async fn get_with_token(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    token: &str,
) -> Reply {
    let auth = format!("Bearer {token}");
    send(client, http_get(addr, path, &[("authorization", &auth)])).await
}

/// Asserts a 401 JSON rejection with `reason` and the RFC 6750
/// `error="invalid_token"` challenge.
pub(crate) fn assert_invalid_token(reply: &Reply, reason: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    let challenge = reply.challenge();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.header("cache-control"), "no-store");
    let body = reply.json();
    assert_eq!(body["error"], reason, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
}
