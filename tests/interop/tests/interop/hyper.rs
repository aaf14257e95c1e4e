//! `JwtLayer` around a `service_fn` served by a bare hyper 1.x HTTP/1
//! connection (`TowerToHyperService`), with the socket address inserted as
//! `PeerAddr` by an outer tower layer.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use portcullis::core::PeerAddr;
use portcullis::jwt::{JwtLayer, JwtVerifier};
use portcullis::{AuthOutcome, Principal};
use serde_json::json;
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;

use crate::common::{
    AUDIENCE, ISSUER, client, get_with_token, hs256_keys, http_get, listener, send, token,
};

async fn handler(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .expect("JwtLayer put a principal");
    let peer = request
        .extensions()
        .get::<PeerAddr>()
        .expect("outer layer put the peer address");
    let body = json!({
        "sub": principal.subject(),
        "peer_ip": peer.0.ip().to_string(),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    Ok(response)
}

/// Serves the layered `service_fn` on an ephemeral port, one hyper HTTP/1
/// connection task per accepted socket.
async fn spawn_hyper() -> SocketAddr {
    let verifier = JwtVerifier::builder(hs256_keys())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .expect("verifier");
    let jwt = JwtLayer::new(verifier);
    let (listener, addr) = listener().await;
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.expect("accept");
            let service = ServiceBuilder::new()
                .layer(MapRequestLayer::new(
                    move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(PeerAddr(peer));
                        request
                    },
                ))
                .layer(jwt.clone())
                .service_fn(handler);
            tokio::spawn(async move {
                // A client closing its connection early is not a test failure.
                let _closed = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn valid_token_is_accepted() {
    let addr = spawn_hyper().await;
    let reply = get_with_token(&client(), addr, "/anything", &token("dave", "")).await;

    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.json(), json!({"sub": "dave", "peer_ip": "127.0.0.1"}));
}

#[tokio::test]
async fn missing_token_is_401() {
    let addr = spawn_hyper().await;
    let reply = send(&client(), http_get(addr, "/", &[])).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.challenge(), "Bearer");
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.json()["error"], "missing_token");
}

#[tokio::test]
async fn other_scheme_is_missing_token() {
    let addr = spawn_hyper().await;
    let reply = send(
        &client(),
        http_get(
            addr,
            "/",
            &[("authorization", "Basic YWxpY2U6aHVudGVyMg==")],
        ),
    )
    .await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.challenge(), "Bearer");
    assert_eq!(reply.json()["error"], "missing_token");
}

#[tokio::test]
async fn empty_bearer_is_invalid_request() {
    let addr = spawn_hyper().await;
    let http = client();
    for value in ["Bearer", "Bearer ", "bearer    "] {
        let reply = send(&http, http_get(addr, "/", &[("authorization", value)])).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{value:?}: {reply:?}"
        );
        assert!(
            reply.challenge().contains(r#"error="invalid_request""#),
            "{}",
            reply.challenge()
        );
        assert_eq!(
            reply.json(),
            json!({"error": "invalid_request", "error_description": "the request is malformed"})
        );
    }
}

/// The outcome protocol without any framework: call the layered service in
/// process (no socket) and read the extensions hyper would drop on the wire.
#[tokio::test]
async fn outcome_extensions_on_plain_tower_service() {
    use tower::ServiceExt as _;

    let verifier = JwtVerifier::builder(hs256_keys())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .expect("verifier");
    let service = ServiceBuilder::new()
        .layer(JwtLayer::new(verifier))
        .service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });

    let response = service
        .clone()
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let outcome = AuthOutcome::of(&response).expect("failure outcome");
    assert_eq!(outcome.reason().map(|r| r.as_str()), Some("missing_token"));
    let rejection = response
        .extensions()
        .get::<portcullis::Rejection>()
        .expect("rejection");
    assert_eq!(rejection.reason().as_str(), "missing_token");

    let request = Request::builder()
        .header("authorization", format!("Bearer {}", token("erin", "")))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = service.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let outcome = AuthOutcome::of(&response).expect("success outcome");
    assert!(outcome.is_success());
    assert_eq!(outcome.subject(), Some("erin"));
}
