//! `ApiKeyLayer` over real loopback HTTP:
//!
//! - an axum 0.8 app whose routes accept a bearer JWT **or** an API key
//!   (`AuthenticateLayer` over `jwt.or(api_key)`), with scope checks that
//!   treat users and machines alike, and seed 002's admin endpoints (create
//!   a key for a user, list keys with `last_used_at`, revoke) built on the
//!   `ApiKeys` management API. An outer layer copies the outcome protocol
//!   into `x-outcome-*` headers;
//! - a tonic 0.14 server behind `ApiKeyLayer`, called with `x-api-key`
//!   metadata.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use http::uri::PathAndQuery;
use http::{HeaderValue, StatusCode};
use portcullis::api_key::{ApiKeyError, ApiKeyLayer, ApiKeys, NewApiKey};
use portcullis::authenticate::{AuthenticateExt as _, AuthenticateLayer};
use portcullis::authorize::RequireLayer;
use portcullis::core::{
    ApiKeyFilter, ApiKeyInfo, ApiKeyRecord, ApiKeyStore, MemoryApiKeyStore, StoreError,
    StoreErrorKind,
};
use portcullis::jwt::{JwtLayer, JwtVerifier};
use portcullis::{AuthOutcome, Principal, Rejection};
use serde_json::{Value, json};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::util::MapResponseLayer;

use crate::common::{
    AUDIENCE, ISSUER, Reply, client, hs256_keys, http_get, listener, request, send, spawn_axum,
    token,
};
use crate::with_tonic::{EchoReply, EchoRequest, EchoServer, expect_status};

/// The server-side pepper (in production: from a secret manager).
const PEPPER: &[u8; 32] = b"interop-pepper-0123456789abcdefg";

type Keys = ApiKeys<MemoryApiKeyStore>;

/// `GET /me`: who called, and with what kind of credential.
async fn me(principal: Principal) -> Json<Value> {
    Json(json!({
        "sub": principal.subject(),
        "kind": principal.kind().as_str(),
        "scopes": principal.scopes().collect::<Vec<_>>(),
        "token_id": principal.token_id(),
    }))
}

/// `GET /orders`: behind `RequireLayer::scopes(["orders:read"])`.
async fn orders(principal: Principal) -> Json<Value> {
    Json(json!({ "orders": [], "owner": principal.subject() }))
}

/// `POST /api-keys` (seed 002, step 3: "Recreate API key for user"). The
/// full key is in this response and nowhere else, ever.
async fn create_key(State(keys): State<Keys>, Json(form): Json<Value>) -> Response {
    let owner = form["user_id"].as_str().unwrap_or_default();
    let name = form["name"].as_str().unwrap_or_default();
    let scopes: Vec<&str> = form["scopes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match keys
        .create(NewApiKey::new(owner, name).with_scopes(scopes))
        .await
    {
        Ok(created) => (
            StatusCode::CREATED,
            Json(json!({ "key": created.key(), "key_id": created.info().key_id })),
        )
            .into_response(),
        Err(ApiKeyError::Invalid { field, .. }) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": field }))).into_response()
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

fn unix(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_secs()))
}

fn info_json(info: &ApiKeyInfo) -> Value {
    json!({
        "key_id": info.key_id,
        "user_id": info.owner,
        "name": info.name,
        "scopes": info.scopes,
        "created_at": unix(Some(info.created_at)),
        "last_used_at": unix(info.last_used_at),
        "revoked_at": unix(info.revoked_at),
    })
}

/// `GET /api-keys`: active keys, no secrets (seed 002's
/// `SELECT id, user_id, name, created_at, last_used_at … WHERE revoked_at IS NULL`).
async fn list_keys(State(keys): State<Keys>) -> Response {
    match keys.list(&ApiKeyFilter::active().limit(100)).await {
        Ok(list) => Json(list.iter().map(info_json).collect::<Vec<_>>()).into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// `DELETE /api-keys/{id}`: revoke.
async fn revoke_key(State(keys): State<Keys>, Path(id): Path<String>) -> Response {
    match keys.revoke(&id).await {
        Ok(info) => Json(info_json(&info)).into_response(),
        Err(ApiKeyError::NotFound) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The outer layer: reports what the inner layers decided as headers.
fn report(mut response: Response) -> Response {
    let mut report: Vec<(&'static str, String)> = Vec::new();
    if let Some(outcome) = AuthOutcome::of(&response) {
        report.push(("x-outcome-method", outcome.method().as_str().to_owned()));
        if let Some(reason) = outcome.reason() {
            report.push(("x-outcome-reason", reason.as_str().to_owned()));
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

/// The app and its key manager (tests create keys directly too).
fn app() -> (Router, Keys) {
    let verifier = JwtVerifier::builder(hs256_keys())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .expect("verifier");
    let jwt = JwtLayer::new(verifier).with_realm("interop");
    let api_key = ApiKeyLayer::new(MemoryApiKeyStore::default())
        .with_realm("interop")
        .with_pepper(PEPPER)
        .expect("pepper");
    let keys = api_key.keys();

    let admin = Router::new()
        .route("/api-keys", post(create_key).get(list_keys))
        .route("/api-keys/{id}", delete(revoke_key))
        .route_layer(RequireLayer::scopes(["keys:admin"]))
        .with_state(keys.clone());
    let router = Router::new()
        .route("/me", get(me))
        .route(
            "/orders",
            get(orders).layer(RequireLayer::scopes(["orders:read"])),
        )
        .merge(admin)
        .layer(AuthenticateLayer::new(
            jwt.authenticator().or(api_key.authenticator()),
        ))
        .layer(MapResponseLayer::new(report));
    (router, keys)
}

async fn new_key(keys: &Keys, owner: &str, scopes: &[&str]) -> String {
    keys.create(NewApiKey::new(owner, "interop").with_scopes(scopes.iter().copied()))
        .await
        .expect("create key")
        .into_key()
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().expect("ASCII"))
}

async fn get_with_key(addr: SocketAddr, path: &str, key: &str) -> Reply {
    send(&client(), http_get(addr, path, &[("x-api-key", key)])).await
}

#[tokio::test]
async fn api_key_reaches_the_handler_as_a_machine_principal() {
    let (router, keys) = app();
    let addr = spawn_axum(router).await;
    let key = new_key(&keys, "svc-billing", &["orders:read"]).await;
    let key_id = keys.identify(&key).expect("well-formed").to_owned();

    for headers in [
        vec![("x-api-key", key.clone())],
        vec![("authorization", format!("ApiKey {key}"))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = send(&client(), http_get(addr, "/me", &headers)).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(
            reply.json(),
            json!({"sub": "svc-billing", "kind": "api_key", "scopes": ["orders:read"], "token_id": key_id})
        );
        assert_eq!(header(&reply, "x-outcome-method"), Some("api_key"));
    }
    // The same scope check admits the machine.
    let reply = get_with_key(addr, "/orders", &key).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
}

#[tokio::test]
async fn a_jwt_works_on_the_same_route() {
    let (router, _) = app();
    let addr = spawn_axum(router).await;
    let auth = format!("Bearer {}", token("alice", "orders:read"));
    let reply = send(
        &client(),
        http_get(addr, "/me", &[("authorization", &auth)]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["kind"], "user");
    assert_eq!(header(&reply, "x-outcome-method"), Some("jwt"));
}

#[tokio::test]
async fn no_credentials_get_every_challenge() {
    let (router, _) = app();
    let addr = spawn_axum(router).await;
    let reply = send(&client(), http_get(addr, "/me", &[])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.challenge(),
        r#"Bearer realm="interop", ApiKey realm="interop""#
    );
    assert_eq!(
        reply.json(),
        json!({"error": "missing_token", "error_description": "authentication is required"})
    );
    assert_eq!(header(&reply, "x-rejection-reason"), Some("missing_token"));
}

#[tokio::test]
async fn an_invalid_jwt_is_not_skipped_for_a_valid_key() {
    let (router, keys) = app();
    let addr = spawn_axum(router).await;
    let key = new_key(&keys, "svc", &[]).await;
    let reply = send(
        &client(),
        http_get(
            addr,
            "/me",
            &[
                ("authorization", "Bearer forged.token.here"),
                ("x-api-key", &key),
            ],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.json()["error"], "invalid_token");
    assert_eq!(header(&reply, "x-outcome-method"), Some("jwt"));
}

/// CRC-32 (IEEE) in six base62 digits: the key format's checksum, written
/// out independently so the test can forge well-formed keys.
fn with_checksum(body: &str) -> String {
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut crc = 0xFFFF_FFFFu32;
    for byte in body.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    let mut value = !crc;
    let mut digits = [b'0'; 6];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    format!("{body}{}", std::str::from_utf8(&digits).expect("ASCII"))
}

#[tokio::test]
async fn bad_keys_get_one_identical_401() {
    let (router, keys) = app();
    let addr = spawn_axum(router).await;
    let key = new_key(&keys, "svc", &[]).await;
    let http = client();

    // A typo: checksum.
    let mut typo = key.clone().into_bytes();
    typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).expect("ASCII");
    // Unknown id and wrong secret, both well-formed: made by another
    // deployment's manager with the same format and pepper.
    let elsewhere = ApiKeys::new(MemoryApiKeyStore::default())
        .with_pepper(PEPPER)
        .expect("pepper");
    let unknown = elsewhere
        .create(NewApiKey::new("svc", "x"))
        .await
        .expect("create")
        .into_key();
    // The real key id with another secret, and a valid checksum.
    let key_id = keys.identify(&key).expect("id");
    let wrong_secret = with_checksum(&format!("pc_live_{key_id}_{}", "s".repeat(30)));
    assert!(keys.identify(&wrong_secret).is_ok(), "well-formed");

    let mut replies = Vec::new();
    for bad in [&typo, &unknown, &wrong_secret] {
        let reply = send(&http, http_get(addr, "/me", &[("x-api-key", bad)])).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert_eq!(
            reply.challenge(),
            r#"ApiKey realm="interop", error="invalid_token", error_description="the API key is not valid""#
        );
        assert_eq!(reply.json()["error"], "invalid_api_key");
        assert!(!String::from_utf8_lossy(&reply.body).contains(bad.as_str()));
        let mut headers = reply.headers.clone();
        headers.remove("date");
        replies.push((reply.status, headers, reply.body.clone()));
    }
    assert_eq!(replies[0], replies[1], "identical answers");
    assert_eq!(replies[1], replies[2], "identical answers");
}

#[tokio::test]
async fn two_keys_are_400_and_query_keys_are_ignored() {
    let (router, keys) = app();
    let addr = spawn_axum(router).await;
    let key = new_key(&keys, "svc", &[]).await;
    let http = client();
    let apikey = format!("ApiKey {key}");

    let reply = send(
        &http,
        http_get(
            addr,
            "/me",
            &[("x-api-key", &key), ("authorization", &apikey)],
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert_eq!(reply.json()["error"], "invalid_request");

    let reply = send(&http, http_get(addr, &format!("/me?api_key={key}"), &[])).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.json()["error"], "missing_token");

    let reply = send(
        &http,
        http_get(addr, &format!("/me?api_key={key}"), &[("x-api-key", &key)]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
}

#[tokio::test]
async fn scopes_gate_machines_like_users() {
    let (router, keys) = app();
    let addr = spawn_axum(router).await;
    let key = new_key(&keys, "svc", &["profile"]).await;
    let reply = get_with_key(addr, "/orders", &key).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.json()["error"], "insufficient_permissions");
}

/// Seed 002, step 3, over HTTP: an admin creates a key for a user (shown
/// once), lists keys with `last_used_at`, revokes it; the revoked key is
/// refused at once on this instance.
#[tokio::test]
async fn admin_creates_lists_and_revokes_keys() {
    let (router, keys) = app();
    let addr = spawn_axum(router).await;
    let http = client();
    let admin = format!("Bearer {}", token("ops", "keys:admin"));

    let body = json!({"user_id": "user123", "name": "recovery-key", "scopes": ["orders:read"]});
    let reply = send(
        &http,
        request(
            "POST",
            addr,
            "/api-keys",
            &[
                ("authorization", &admin),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let created = reply.json();
    let key = created["key"].as_str().expect("key").to_owned();
    let key_id = created["key_id"].as_str().expect("key id").to_owned();
    assert!(key.starts_with("pc_live_"));

    // Non-admins cannot create keys.
    let user = format!("Bearer {}", token("bob", "orders:read"));
    let reply = send(
        &http,
        request(
            "POST",
            addr,
            "/api-keys",
            &[
                ("authorization", &user),
                ("content-type", "application/json"),
            ],
            body.to_string(),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    // Use it, then see `last_used_at` (written off the request path).
    assert_eq!(
        get_with_key(addr, "/orders", &key).await.status,
        StatusCode::OK
    );
    let mut listed = Value::Null;
    for _ in 0..50 {
        let reply = send(
            &http,
            http_get(addr, "/api-keys", &[("authorization", &admin)]),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        listed = reply.json();
        if !listed[0]["last_used_at"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed[0]["key_id"], key_id.as_str());
    assert_eq!(listed[0]["user_id"], "user123");
    assert!(listed[0]["last_used_at"].is_u64(), "{listed}");
    let text = listed.to_string();
    assert!(!text.contains(&key[8 + 13..]), "no secret in the listing");
    assert!(listed[0].get("key").is_none());

    // Revoke: refused at once, with its own reason.
    let reply = send(
        &http,
        request(
            "DELETE",
            addr,
            &format!("/api-keys/{key_id}"),
            &[("authorization", &admin)],
            "",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reply.json()["revoked_at"].is_u64());
    let reply = get_with_key(addr, "/orders", &key).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"], "api_key_revoked");
    assert!(
        keys.list(&ApiKeyFilter::active())
            .await
            .expect("list")
            .is_empty()
    );
    let reply = send(
        &http,
        request(
            "DELETE",
            addr,
            "/api-keys/nope",
            &[("authorization", &admin)],
            "",
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

/// A store that is down.
struct DownStore;

fn down() -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, "down")
}

impl ApiKeyStore for DownStore {
    async fn lookup(&self, _: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Err(down())
    }
    async fn create(&self, _: ApiKeyRecord) -> Result<(), StoreError> {
        Err(down())
    }
    async fn revoke(&self, _: &str, _: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        Err(down())
    }
    async fn expire(&self, _: &str, _: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        Err(down())
    }
    async fn list(&self, _: &ApiKeyFilter) -> Result<Vec<ApiKeyInfo>, StoreError> {
        Err(down())
    }
    async fn touch(&self, _: &str, _: SystemTime) -> Result<(), StoreError> {
        Err(down())
    }
}

/// Serves `test.Echo` behind `layer` on an ephemeral port.
async fn spawn_tonic<St: ApiKeyStore>(layer: ApiKeyLayer<St>) -> SocketAddr {
    let (listener, addr) = listener().await;
    let router = Server::builder()
        .layer(layer)
        .add_service(EchoServer::<false>);
    tokio::spawn(async move {
        router
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .expect("tonic server");
    });
    addr
}

/// Calls `test.Echo/Echo` with `x-api-key` metadata when a key is given.
async fn echo(addr: SocketAddr, key: Option<&str>) -> Result<tonic::Response<EchoReply>, Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(EchoRequest {
        message: "hello".to_owned(),
    });
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("x-api-key", key.parse().expect("metadata value"));
    }
    grpc.unary(
        request,
        PathAndQuery::from_static("/test.Echo/Echo"),
        ProstCodec::<EchoRequest, EchoReply>::default(),
    )
    .await
}

#[tokio::test]
async fn grpc_service_behind_the_api_key_layer() {
    let layer = ApiKeyLayer::new(MemoryApiKeyStore::default());
    let keys = layer.keys();
    let addr = spawn_tonic(layer).await;
    let key = new_key(&keys, "svc-grpc", &[]).await;

    let reply = echo(addr, Some(&key))
        .await
        .expect("call succeeds")
        .into_inner();
    assert_eq!(reply.subject, "svc-grpc");
    assert_eq!(reply.message, "hello");

    let status = expect_status(echo(addr, None).await, Code::Unauthenticated);
    assert_eq!(status.message(), "authentication is required");

    let mut typo = key.clone().into_bytes();
    typo[25] = if typo[25] == b'a' { b'b' } else { b'a' };
    let status = expect_status(
        echo(addr, Some(std::str::from_utf8(&typo).expect("ASCII"))).await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "the API key is not valid");

    keys.revoke(keys.identify(&key).expect("id"))
        .await
        .expect("revoke");
    expect_status(echo(addr, Some(&key)).await, Code::Unauthenticated);
}

#[tokio::test]
async fn grpc_store_down_is_unavailable() {
    let layer = ApiKeyLayer::new(DownStore);
    let key = ApiKeys::new(MemoryApiKeyStore::default())
        .create(NewApiKey::new("svc", "k"))
        .await
        .expect("create")
        .into_key();
    let addr = spawn_tonic(layer).await;
    expect_status(echo(addr, Some(&key)).await, Code::Unavailable);
}
