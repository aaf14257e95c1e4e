//! `RemoteJwks` against a local JWKS server whose key set changes at run
//! time and which counts the requests it gets. ES256 key pairs come from
//! aws-lc-rs; tokens are signed with `jsonwebtoken`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{StatusCode, Uri};
use portcullis::Principal;
use portcullis::jwt::jwks::{JwksError, RemoteJwks};
use portcullis::jwt::{JwtLayer, JwtVerifier};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::common::{
    AUDIENCE, HttpClient, ISSUER, Reply, assert_invalid_token, claims, client, get_with_token,
    spawn_axum,
};

/// An ES256 key pair: `jsonwebtoken` signs, the JWK publishes the public half.
pub(crate) struct EcKey {
    kid: String,
    encoding: jsonwebtoken::EncodingKey,
    x: String,
    y: String,
}

impl EcKey {
    pub(crate) fn generate(kid: &str) -> Self {
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pair = EcdsaKeyPair::generate(alg).expect("generate P-256 key");
        let pkcs8 = pair.to_pkcs8v1().expect("PKCS#8 export");
        // Uncompressed SEC1 point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        assert_eq!(point.len(), 65);
        assert_eq!(point[0], 0x04);
        Self {
            kid: kid.to_owned(),
            encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..]),
        }
    }

    /// The public JWK, `use: sig`.
    pub(crate) fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "alg": "ES256",
            "use": "sig",
            "kid": self.kid,
        })
    }

    pub(crate) fn header(&self) -> jsonwebtoken::Header {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header
    }

    pub(crate) fn sign_with(&self, header: &jsonwebtoken::Header, sub: &str) -> String {
        jsonwebtoken::encode(header, &claims(sub, ""), &self.encoding).expect("sign ES256")
    }

    /// A valid token for `sub` naming this key's `kid`.
    pub(crate) fn token(&self, sub: &str) -> String {
        self.sign_with(&self.header(), sub)
    }
}

fn jwks_doc(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

/// A JWKS endpoint serving whatever `body` holds, counting requests, and
/// answering 500 while `fail` is set.
#[derive(Clone)]
pub(crate) struct JwksServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
}

async fn serve_jwks(State(server): State<JwksServer>) -> Response {
    server.hits.fetch_add(1, Ordering::SeqCst);
    if server.fail.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response();
    }
    let body = server.body.lock().expect("lock").clone();
    ([("content-type", "application/json")], body).into_response()
}

impl JwksServer {
    pub(crate) async fn spawn(keys: &[Value]) -> Self {
        // Bind first so the state knows its address.
        let (listener, addr) = crate::common::listener().await;
        let server = Self {
            addr,
            body: Arc::new(Mutex::new(jwks_doc(keys))),
            hits: Arc::new(AtomicUsize::new(0)),
            fail: Arc::new(AtomicBool::new(false)),
        };
        let router = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(server.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.expect("JWKS server");
        });
        server
    }

    pub(crate) fn uri(&self) -> Uri {
        format!("http://{}/.well-known/jwks.json", self.addr)
            .parse()
            .expect("JWKS URI")
    }

    pub(crate) fn set_keys(&self, keys: &[Value]) {
        *self.body.lock().expect("lock") = jwks_doc(keys);
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub(crate) fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }
}

async fn me(principal: Principal) -> String {
    principal.subject().to_owned()
}

/// An axum app behind `JwtLayer` with keys from `jwks`.
pub(crate) async fn spawn_app(jwks: RemoteJwks) -> SocketAddr {
    let verifier = JwtVerifier::builder_remote(jwks)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .expect("verifier");
    spawn_axum(
        Router::new()
            .route("/me", get(me))
            .layer(JwtLayer::new(verifier)),
    )
    .await
}

/// Fetches the JWKS with `cooldown` and starts the app; returns when the
/// first fetch happened.
async fn setup(server: &JwksServer, cooldown: Duration) -> (RemoteJwks, SocketAddr, Instant) {
    let jwks = RemoteJwks::builder(server.uri())
        .cooldown(cooldown)
        .fetch()
        .await
        .expect("first JWKS fetch");
    let fetched_at = Instant::now();
    let addr = spawn_app(jwks.clone()).await;
    (jwks, addr, fetched_at)
}

/// Sleeps until `cooldown` (plus a margin) has passed since `since`.
async fn wait_out(cooldown: Duration, since: Instant) {
    let until = since + cooldown + Duration::from_millis(30);
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
}

pub(crate) fn assert_ok(reply: &Reply, sub: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, sub.as_bytes());
}

/// Random key ids nobody publishes.
pub(crate) fn random_kid() -> String {
    let mut bytes = [0u8; 12];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Sends every token concurrently to `/me`; returns the replies.
async fn send_all(http: &HttpClient, addr: SocketAddr, tokens: Vec<String>) -> Vec<Reply> {
    let mut set = JoinSet::new();
    for token in tokens {
        let http = http.clone();
        set.spawn(async move { get_with_token(&http, addr, "/me", &token).await });
    }
    set.join_all().await
}

#[tokio::test]
async fn known_kid_is_accepted() {
    let k1 = EcKey::generate("k1");
    let server = JwksServer::spawn(&[k1.jwk()]).await;
    let (jwks, addr, _) = setup(&server, Duration::from_secs(30)).await;
    assert_eq!(server.hits(), 1);
    assert_eq!(jwks.fetch_count(), 1);
    assert!(jwks.current().contains_kid("k1"));

    let http = client();
    assert_ok(
        &get_with_token(&http, addr, "/me", &k1.token("alice")).await,
        "alice",
    );
    assert_ok(
        &get_with_token(&http, addr, "/me", &k1.token("bob")).await,
        "bob",
    );
    // Known keys never cause a fetch.
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn rotation_is_picked_up_with_exactly_one_refetch() {
    let cooldown = Duration::from_millis(200);
    let k1 = EcKey::generate("k1");
    let k2 = EcKey::generate("k2");
    let server = JwksServer::spawn(&[k1.jwk()]).await;
    let (jwks, addr, fetched_at) = setup(&server, cooldown).await;
    let http = client();
    assert_ok(
        &get_with_token(&http, addr, "/me", &k1.token("alice")).await,
        "alice",
    );

    // The issuer rotates: k2 is published next to k1.
    server.set_keys(&[k1.jwk(), k2.jwk()]);
    wait_out(cooldown, fetched_at).await;
    let before = server.hits();
    assert_ok(
        &get_with_token(&http, addr, "/me", &k2.token("bob")).await,
        "bob",
    );
    assert_eq!(server.hits(), before + 1, "one refetch for the new kid");
    assert_eq!(jwks.fetch_count(), 2);

    // Now known: no more fetches, and k1 still works.
    assert_ok(
        &get_with_token(&http, addr, "/me", &k2.token("carol")).await,
        "carol",
    );
    assert_ok(
        &get_with_token(&http, addr, "/me", &k1.token("dave")).await,
        "dave",
    );
    assert_eq!(server.hits(), before + 1);
}

#[tokio::test]
async fn unknown_kids_cost_at_most_one_fetch_per_cooldown() {
    let cooldown = Duration::from_secs(1);
    let k1 = EcKey::generate("k1");
    let attacker = EcKey::generate("attacker");
    let server = JwksServer::spawn(&[k1.jwk()]).await;
    let (jwks, addr, fetched_at) = setup(&server, cooldown).await;
    let http = client();
    let forge = || {
        (0..100)
            .map(|_| {
                let mut header = attacker.header();
                header.kid = Some(random_kid());
                attacker.sign_with(&header, "mallory")
            })
            .collect::<Vec<_>>()
    };

    // Within the cooldown of the first fetch.
    let replies = send_all(&http, addr, forge()).await;
    assert_eq!(replies.len(), 100);
    for reply in &replies {
        assert_invalid_token(reply, "invalid_token");
    }
    let after_first_burst = server.hits();
    assert!(
        after_first_burst <= 2,
        "{after_first_burst} fetches: at most one extra within the cooldown"
    );

    // Once the cooldown has passed: one burst, exactly one fetch.
    let last_fetch = if after_first_burst > 1 {
        Instant::now()
    } else {
        fetched_at
    };
    wait_out(cooldown, last_fetch).await;
    let before = server.hits();
    let replies = send_all(&http, addr, forge()).await;
    for reply in &replies {
        assert_invalid_token(reply, "invalid_token");
    }
    assert_eq!(server.hits(), before + 1, "single flight + cooldown");
    assert_eq!(
        usize::try_from(jwks.fetch_count()).expect("fits"),
        server.hits()
    );

    // The legitimate key was never disturbed.
    assert_ok(
        &get_with_token(&http, addr, "/me", &k1.token("alice")).await,
        "alice",
    );
}

#[tokio::test]
async fn removed_key_stops_verifying_after_refresh() {
    let k1 = EcKey::generate("k1");
    let k2 = EcKey::generate("k2");
    let server = JwksServer::spawn(&[k1.jwk(), k2.jwk()]).await;
    let (jwks, addr, _) = setup(&server, Duration::from_secs(30)).await;
    let http = client();
    let old = k1.token("alice");
    assert_ok(&get_with_token(&http, addr, "/me", &old).await, "alice");

    // k1 is retired upstream.
    server.set_keys(&[k2.jwk()]);
    jwks.refresh().await.expect("refresh");
    assert_eq!(server.hits(), 2);
    assert!(!jwks.current().contains_kid("k1"));

    let reply = get_with_token(&http, addr, "/me", &old).await;
    assert_invalid_token(&reply, "invalid_token");
    assert_ok(
        &get_with_token(&http, addr, "/me", &k2.token("bob")).await,
        "bob",
    );
    // The unknown kid did not trigger a fetch inside the cooldown.
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn jku_and_x5u_headers_are_never_fetched() {
    let k1 = EcKey::generate("k1");
    let attacker = EcKey::generate("attacker");
    let server = JwksServer::spawn(&[k1.jwk()]).await;
    // The attacker's own JWKS, on a second loopback listener.
    let evil = JwksServer::spawn(&[attacker.jwk()]).await;
    let (_jwks, addr, _) = setup(&server, Duration::from_secs(30)).await;
    let http = client();
    let evil_url = evil.uri().to_string();

    // An unknown kid whose key sits behind `jku` / `x5u`.
    let mut header = attacker.header();
    header.jku = Some(evil_url.clone());
    header.x5u = Some(evil_url.clone());
    let reply = get_with_token(&http, addr, "/me", &attacker.sign_with(&header, "mallory")).await;
    assert_invalid_token(&reply, "invalid_token");

    // A known kid, signed by the attacker, pointing at the attacker's keys.
    let mut header = attacker.header();
    header.kid = Some("k1".to_owned());
    header.jku = Some(evil_url);
    let reply = get_with_token(&http, addr, "/me", &attacker.sign_with(&header, "mallory")).await;
    assert_invalid_token(&reply, "invalid_signature");

    assert_eq!(evil.hits(), 0, "the jku/x5u URL was fetched");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn stale_keys_survive_upstream_errors() {
    let cooldown = Duration::from_millis(200);
    let k1 = EcKey::generate("k1");
    let k2 = EcKey::generate("k2");
    let server = JwksServer::spawn(&[k1.jwk()]).await;
    let (jwks, addr, _) = setup(&server, cooldown).await;
    let http = client();

    server.set_failing(true);
    let err = jwks.refresh().await.expect_err("refresh fails");
    assert!(
        matches!(err, JwksError::Status(StatusCode::INTERNAL_SERVER_ERROR)),
        "{err:?}"
    );
    let failed_at = Instant::now();
    assert_eq!(jwks.failure_count(), 1);
    assert!(jwks.current().contains_kid("k1"));
    // Stale-on-error: the keys fetched before keep working.
    assert_ok(
        &get_with_token(&http, addr, "/me", &k1.token("alice")).await,
        "alice",
    );

    // A new kid while upstream is down: a fetch is tried (and fails), and
    // the request fails closed with 503 `upstream_unavailable` (the token
    // may be valid: it must not be called invalid, nor let through).
    wait_out(cooldown, failed_at).await;
    let before = server.hits();
    let reply = get_with_token(&http, addr, "/me", &k2.token("bob")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(server.hits(), before + 1);
    // Within the cooldown the same answer comes without another fetch,
    // with `Retry-After` the rest of the cooldown (rounded up to 1 s).
    let reply = get_with_token(&http, addr, "/me", &k2.token("bob")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.header("retry-after"), "1");
    assert_eq!(server.hits(), before + 1);
    assert_eq!(jwks.failure_count(), 2);
    assert_ok(
        &get_with_token(&http, addr, "/me", &k1.token("alice")).await,
        "alice",
    );

    // Upstream recovers with k2 published.
    server.set_failing(false);
    server.set_keys(&[k1.jwk(), k2.jwk()]);
    wait_out(cooldown, Instant::now()).await;
    assert_ok(
        &get_with_token(&http, addr, "/me", &k2.token("bob")).await,
        "bob",
    );
    assert_eq!(jwks.failure_count(), 2);
}

#[tokio::test]
async fn encryption_keys_are_not_used_for_signatures() {
    let k1 = EcKey::generate("k1");
    let enc = EcKey::generate("enc");
    let ops = EcKey::generate("ops");
    let mut enc_jwk = enc.jwk();
    enc_jwk["use"] = json!("enc");
    let mut ops_jwk = ops.jwk();
    ops_jwk.as_object_mut().expect("object").remove("use");
    ops_jwk["key_ops"] = json!(["encrypt"]);
    let server = JwksServer::spawn(&[k1.jwk(), enc_jwk, ops_jwk]).await;
    let (jwks, addr, _) = setup(&server, Duration::from_secs(30)).await;
    let http = client();

    let keys = jwks.current();
    assert_eq!(keys.len(), 1, "only the signing key is kept");
    assert!(!keys.contains_kid("enc"));
    assert!(!keys.contains_kid("ops"));

    let reply = get_with_token(&http, addr, "/me", &enc.token("mallory")).await;
    assert_invalid_token(&reply, "invalid_token");
    let reply = get_with_token(&http, addr, "/me", &ops.token("mallory")).await;
    assert_invalid_token(&reply, "invalid_token");
    assert_ok(
        &get_with_token(&http, addr, "/me", &k1.token("alice")).await,
        "alice",
    );
}
