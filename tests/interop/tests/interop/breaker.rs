//! `CircuitBreakerLayer` around the HTTP client of a `RemoteJwks`
//! (SECURITY.md rows 124 and 130): once the JWKS endpoint has failed enough
//! times the breaker opens; tokens whose key is cached still verify, tokens
//! that would need a fetch fail closed with 503, and not one request reaches
//! the endpoint until the breaker lets a trial fetch through.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::circuit_breaker::error::Open;
use portcullis::circuit_breaker::{CircuitBreakerLayer, State};
use portcullis::jwt::jwks::{JwksError, RemoteJwks};
use tower::Layer as _;

use crate::common::{client, get_with_token};
use crate::jwks::{EcKey, JwksServer, assert_ok, random_kid, spawn_app};

#[tokio::test]
async fn open_breaker_serves_cached_keys_and_fails_fast_without_fetching() {
    let k1 = EcKey::generate("k1");
    let k2 = EcKey::generate("k2");
    let server = JwksServer::spawn(&[k1.jwk()]).await;

    let open_for = Duration::from_millis(300);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let layer = CircuitBreakerLayer::consecutive_failures(3, open_for)
        .expect("breaker")
        .with_name("jwks")
        // Shorter than the JWKS timeout (5 s), so a hang counts as a failure.
        .with_call_timeout(Duration::from_secs(2))
        .on_transition(move |t| log.lock().expect("lock").push((t.from(), t.to())));
    let breaker = layer.handle();
    let http_client =
        layer.layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    // No cooldown: only the breaker stands between unknown kids and the
    // endpoint.
    let jwks = RemoteJwks::builder(server.uri())
        .client(http_client)
        .cooldown(Duration::ZERO)
        .fetch()
        .await
        .expect("first JWKS fetch");
    let addr = spawn_app(jwks.clone()).await;
    assert_eq!(server.hits(), 1);

    // The endpoint fails: three failed refreshes in a row open the breaker.
    server.set_failing(true);
    for _ in 0..3 {
        let err = jwks.refresh().await.expect_err("endpoint fails");
        assert!(
            matches!(err, JwksError::Status(StatusCode::INTERNAL_SERVER_ERROR)),
            "{err:?}"
        );
    }
    assert_eq!(server.hits(), 4);
    assert_eq!(breaker.state(), State::Open);

    // While open a refresh fails at once with the breaker's error.
    match jwks.refresh().await {
        Err(JwksError::Transport(source)) => {
            let open = source.downcast_ref::<Open>().expect("an Open error");
            assert_eq!(open.name(), "jwks");
        }
        other => panic!("expected a transport error, got {other:?}"),
    }

    let http = client();
    // A token whose key is cached: verified.
    assert_ok(
        &get_with_token(&http, addr, "/me", &k1.token("alice")).await,
        "alice",
    );
    // Tokens that need a fetch (an unpublished key, random kids): 503
    // `upstream_unavailable`, fast, without a request to the endpoint.
    let started = Instant::now();
    let mut tokens = vec![k2.token("bob")];
    for _ in 0..10 {
        let mut header = k2.header();
        header.kid = Some(random_kid());
        tokens.push(k2.sign_with(&header, "mallory"));
    }
    for token in &tokens {
        let reply = get_with_token(&http, addr, "/me", token).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert_eq!(reply.json()["error"], "upstream_unavailable");
        // The breaker's remaining open time, rounded up to whole seconds.
        let retry: u64 = reply.header("retry-after").parse().expect("seconds");
        assert!((1..=open_for.as_secs().max(1)).contains(&retry), "{retry}");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "failed fast");
    assert_eq!(server.hits(), 4, "no request reached the JWKS server");
    assert!(breaker.metrics().not_permitted_calls() >= 12);
    // Cached keys keep working throughout.
    assert_ok(
        &get_with_token(&http, addr, "/me", &k1.token("carol")).await,
        "carol",
    );

    // The endpoint recovers with k2 published. After the wait, the first
    // fetch is the trial call; it succeeds and closes the breaker.
    server.set_failing(false);
    server.set_keys(&[k1.jwk(), k2.jwk()]);
    tokio::time::sleep(open_for + Duration::from_millis(50)).await;
    assert_ok(
        &get_with_token(&http, addr, "/me", &k2.token("bob")).await,
        "bob",
    );
    assert_eq!(server.hits(), 5);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        *seen.lock().expect("lock"),
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
        ]
    );
}
