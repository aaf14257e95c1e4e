//! Service tests for `ApiKeyLayer`: one test per hostile case of
//! `shared/SECURITY.md` §3 H (rows 79–87, numbers in the test names), the
//! cache bound, debounced touches, fail-closed behaviour, the management
//! API, and composition with `JwtLayer` (`or`, `optional`, `all_of`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use portcullis_core::{
    ApiKeyFilter, ApiKeyInfo, ApiKeyRecord, ApiKeyStore, AuthMethod, AuthOutcome, Clock,
    FailureReason, FakeClock, MemoryApiKeyStore, Principal, PrincipalKind, Rejection, StoreError,
    StoreErrorKind,
};
use tower::{Layer, ServiceExt, service_fn};

use super::format::with_checksum;
use super::*;
use crate::test_support::Echo;

const NOW: u64 = 1_700_000_000;

/// The memory store, counting lookups and touches; can be taken down, and
/// its touches can hang.
struct CountingStore {
    inner: MemoryApiKeyStore,
    lookups: AtomicUsize,
    touches: AtomicUsize,
    down: AtomicBool,
    hang_touches: AtomicBool,
}

impl CountingStore {
    fn new(clock: &FakeClock) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryApiKeyStore::with_clock(10_000, Arc::new(clock.clone())),
            lookups: AtomicUsize::new(0),
            touches: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            hang_touches: AtomicBool::new(false),
        })
    }

    fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }

    fn touches(&self) -> usize {
        self.touches.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::new(
                StoreErrorKind::Unavailable,
                "test store down",
            ))
        } else {
            Ok(())
        }
    }
}

impl ApiKeyStore for CountingStore {
    async fn lookup(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.lookup(key_id).await
    }
    async fn create(&self, record: ApiKeyRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.create(record).await
    }
    async fn revoke(&self, key_id: &str, at: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        self.check()?;
        self.inner.revoke(key_id, at).await
    }
    async fn expire(&self, key_id: &str, at: SystemTime) -> Result<Option<ApiKeyInfo>, StoreError> {
        self.check()?;
        self.inner.expire(key_id, at).await
    }
    async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.check()?;
        self.inner.list(filter).await
    }
    async fn touch(&self, key_id: &str, at: SystemTime) -> Result<(), StoreError> {
        self.touches.fetch_add(1, Ordering::SeqCst);
        if self.hang_touches.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.check()?;
        self.inner.touch(key_id, at).await
    }
}

struct Fixture {
    clock: FakeClock,
    store: Arc<CountingStore>,
    layer: ApiKeyLayer<CountingStore>,
}

impl Fixture {
    fn new() -> Self {
        Self::with(|layer| layer)
    }

    fn with(
        configure: impl FnOnce(ApiKeyLayer<CountingStore>) -> ApiKeyLayer<CountingStore>,
    ) -> Self {
        let clock = FakeClock::at_unix(NOW);
        let store = CountingStore::new(&clock);
        let layer =
            configure(ApiKeyLayer::shared(Arc::clone(&store)).with_clock(Arc::new(clock.clone())));
        Self {
            clock,
            store,
            layer,
        }
    }

    async fn create(&self, new: NewApiKey) -> CreatedApiKey {
        self.layer.keys().create(new).await.unwrap()
    }

    async fn key(&self) -> CreatedApiKey {
        self.create(
            NewApiKey::new("svc-billing", "ci").with_scopes(["orders:read", "orders:write"]),
        )
        .await
    }

    async fn send(&self, echo: &Echo, request: Request<String>) -> Response<String> {
        self.layer
            .layer(echo.service())
            .oneshot(request)
            .await
            .unwrap()
    }

    async fn call(&self, request: Request<String>) -> Response<String> {
        self.send(&Echo::default(), request).await
    }
}

fn with_headers(headers: &[(&'static str, &str)], uri: &str) -> Request<String> {
    let mut builder = Request::builder().uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(String::new()).unwrap()
}

fn x_api_key(key: &str) -> Request<String> {
    with_headers(&[("x-api-key", key)], "/")
}

fn reason(res: &Response<String>) -> Option<FailureReason> {
    res.extensions().get::<Rejection>().map(Rejection::reason)
}

fn body_error(res: &Response<String>) -> String {
    let v: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    v["error"].as_str().unwrap().to_owned()
}

/// Asserts a rejection: status, reason in extensions and body, failure
/// outcome, an `ApiKey` challenge on 401s, inner service not called.
fn assert_rejected(res: &Response<String>, echo: &Echo, status: u16, expected: FailureReason) {
    assert_eq!(res.status(), status, "body: {}", res.body());
    assert_eq!(reason(res), Some(expected));
    assert_eq!(body_error(res), expected.as_str());
    let outcome = AuthOutcome::of(res).expect("failure outcome");
    assert_eq!(outcome.reason(), Some(expected));
    assert_eq!(outcome.method(), AuthMethod::ApiKey);
    if status == 401 {
        let www = res.headers()["www-authenticate"].to_str().unwrap();
        assert!(www.starts_with("ApiKey"), "{www}");
    }
    assert_eq!(echo.calls(), 0, "inner service must not be called");
}

async fn assert_invalid(fx: &Fixture, request: Request<String>, expected: FailureReason) {
    let echo = Echo::default();
    let res = fx.send(&echo, request).await;
    assert_rejected(&res, &echo, 401, expected);
    let www = res.headers()["www-authenticate"].to_str().unwrap();
    assert_eq!(
        www,
        r#"ApiKey error="invalid_token", error_description="the API key is not valid""#
    );
}

/// Lets spawned tasks (touches) run.
async fn settle() {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
}

/// `key` with the character at `i` replaced.
fn changed_at(key: &str, i: usize) -> String {
    let mut bytes = key.as_bytes().to_vec();
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn row79_valid_key_is_accepted_with_an_api_key_principal() {
    let fx = Fixture::new();
    let created = fx.key().await;
    let key_id = created.info().key_id.clone();
    let service = fx
        .layer
        .layer(service_fn(|req: Request<String>| async move {
            let p = req.extensions().get::<Principal>().cloned().unwrap();
            let mut res = Response::new(String::new());
            res.extensions_mut().insert(p);
            Ok::<_, Infallible>(res)
        }));

    for request in [
        x_api_key(created.key()),
        with_headers(
            &[("authorization", &format!("ApiKey {}", created.key()))],
            "/",
        ),
    ] {
        let res = service.clone().oneshot(request).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let principal = res.extensions().get::<Principal>().unwrap();
        assert_eq!(principal.kind(), PrincipalKind::ApiKey);
        assert_eq!(principal.subject(), "svc-billing");
        assert_eq!(principal.token_id(), Some(key_id.as_str()));
        assert_eq!(
            principal.scopes().collect::<Vec<_>>(),
            ["orders:read", "orders:write"]
        );
        assert_eq!(principal.issued_at(), Some(fx.clock.now()));
        let outcome = AuthOutcome::of(&res).unwrap();
        assert!(outcome.is_success());
        assert_eq!(outcome.method(), AuthMethod::ApiKey);
        assert_eq!(outcome.subject(), Some("svc-billing"));
    }
    assert_eq!(fx.store.lookups(), 1, "the second request hit the cache");
}

#[tokio::test]
async fn row80_one_changed_character_is_rejected_without_a_store_lookup() {
    let fx = Fixture::new();
    let created = fx.key().await;
    let key = created.key();
    // Warm the cache: a typo of a cached key must not reach the store either.
    assert_eq!(fx.call(x_api_key(key)).await.status(), 200);
    assert_eq!(fx.store.lookups(), 1);
    let prefix = fx.layer.format().prefix().len();
    for i in prefix..key.len() {
        if key.as_bytes()[i] == b'_' {
            continue;
        }
        assert_invalid(
            &fx,
            x_api_key(&changed_at(key, i)),
            FailureReason::InvalidApiKey,
        )
        .await;
    }
    // Random strings of the right shape, and truncations.
    assert_invalid(
        &fx,
        x_api_key(&key[..key.len() - 1]),
        FailureReason::InvalidApiKey,
    )
    .await;
    let random = format!("pc_live_{}", "Z".repeat(key.len() - 8));
    assert_invalid(&fx, x_api_key(&random), FailureReason::InvalidApiKey).await;
    assert_eq!(fx.store.lookups(), 1, "0 DB queries for a bad checksum");

    let res = fx.call(x_api_key(&changed_at(key, key.len() - 1))).await;
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().detail(),
        Some("API key checksum does not match")
    );
}

#[tokio::test]
async fn row81_unknown_key_and_wrong_secret_answer_identically() {
    let fx = Fixture::new();
    let created = fx.key().await;
    let id = &created.info().key_id;
    let unknown = with_checksum(&format!(
        "pc_live_{}_{}",
        "U".repeat(KEY_ID_LEN),
        "s".repeat(SECRET_LEN)
    ));
    let wrong_secret = with_checksum(&format!("pc_live_{id}_{}", "s".repeat(SECRET_LEN)));
    fx.layer.format().parse(&unknown).unwrap();
    fx.layer.format().parse(&wrong_secret).unwrap();

    let mut seen: Vec<(StatusCode, HeaderMap, String)> = Vec::new();
    // Cold, then with the real key cached: a wrong secret never takes a
    // shortcut through the cache.
    for warm in [false, true] {
        if warm {
            assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
        }
        for key in [&unknown, &wrong_secret] {
            let before = fx.store.lookups();
            let echo = Echo::default();
            let res = fx.send(&echo, x_api_key(key)).await;
            assert_rejected(&res, &echo, 401, FailureReason::InvalidApiKey);
            assert_eq!(fx.store.lookups() - before, 1, "exactly one lookup");
            seen.push((res.status(), res.headers().clone(), res.body().clone()));
        }
    }
    for other in &seen[1..] {
        assert_eq!(other, &seen[0], "status, headers and body are identical");
    }
    assert!(
        !seen[0].2.contains(id.as_str()),
        "the body never names the key"
    );
}

#[tokio::test]
async fn row82_store_holds_no_plaintext_after_creating_1000_keys() {
    for pepper in [None, Some([9u8; 32])] {
        let fx = Fixture::with(|layer| match pepper {
            Some(p) => layer.with_pepper(p).unwrap(),
            None => layer,
        });
        let keys = fx.layer.keys();
        let mut issued = Vec::with_capacity(1000);
        for i in 0..1000 {
            let created = keys
                .create(NewApiKey::new(format!("owner-{i}"), "bulk"))
                .await
                .unwrap();
            issued.push(created.into_key());
        }
        let records = fx.store.inner.records();
        assert_eq!(records.len(), 1000);
        let mut dump = String::new();
        for record in &records {
            dump.push_str(&format!("{record:?}"));
            dump.push_str(&format!("{:?}", record.digest.as_bytes()));
            dump.push_str(&record.info.key_id);
            dump.push_str(&record.info.owner);
            dump.push_str(&record.info.name);
        }
        let digests: std::collections::HashSet<[u8; 32]> =
            records.iter().map(|r| *r.digest.as_bytes()).collect();
        assert_eq!(digests.len(), 1000, "one digest per key");
        let runs: std::collections::HashSet<&[u8]> = records
            .iter()
            .flat_map(|r| r.digest.as_bytes().windows(8))
            .collect();
        for key in &issued {
            let secret = &key[key.len() - SECRET_LEN - CHECKSUM_LEN..key.len() - CHECKSUM_LEN];
            assert!(!dump.contains(key.as_str()));
            assert!(!dump.contains(secret), "no secret at rest");
            assert!(
                !key.as_bytes().windows(8).any(|w| runs.contains(w)),
                "digests share no 8-byte run with a key"
            );
        }
        // The digest is SHA-256 (or HMAC-SHA256 under the pepper) of the key.
        let sample = &issued[0];
        let id = keys.identify(sample).unwrap();
        let stored = records.iter().find(|r| r.info.key_id == id).unwrap();
        let expected: Vec<u8> = match pepper {
            None => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, sample.as_bytes())
                .as_ref()
                .to_vec(),
            Some(p) => aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &p),
                sample.as_bytes(),
            )
            .as_ref()
            .to_vec(),
        };
        assert_eq!(stored.digest.as_bytes().as_slice(), expected.as_slice());
        // And every issued key still works.
        assert_eq!(fx.call(x_api_key(sample)).await.status(), 200);
    }
}

#[tokio::test]
async fn row83_keys_in_the_query_string_are_never_read() {
    let fx = Fixture::new();
    let created = fx.key().await;

    // Alone: treated as absent (401 missing_token, no error code), noted.
    let echo = Echo::default();
    let res = fx
        .send(
            &echo,
            with_headers(&[], &format!("/?api_key={}", created.key())),
        )
        .await;
    assert_rejected(&res, &echo, 401, FailureReason::MissingToken);
    assert_eq!(res.headers()["www-authenticate"], "ApiKey");
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().detail(),
        Some("API key in the query string ignored")
    );

    // Alongside a header: more than one method.
    for uri in [
        format!("/?api_key={}", created.key()),
        format!("/?x=1&token={}", created.key()),
    ] {
        let echo = Echo::default();
        let res = fx
            .send(&echo, with_headers(&[("x-api-key", created.key())], &uri))
            .await;
        assert_rejected(&res, &echo, 400, FailureReason::InvalidRequest);
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_request""#)
        );
    }
    assert_eq!(fx.store.lookups(), 0);
}

#[tokio::test]
async fn row84_revoked_key_is_refused_within_the_cache_bound() {
    let fx = Fixture::new();
    let created = fx.key().await;
    let id = created.info().key_id.clone();
    assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);

    // Revoked by another instance: this one has it cached.
    fx.store.inner.revoke(&id, fx.clock.now()).await.unwrap();
    fx.clock
        .advance(DEFAULT_CACHE_TTL - Duration::from_millis(1));
    assert_eq!(
        fx.call(x_api_key(created.key())).await.status(),
        200,
        "still cached just inside the bound"
    );
    fx.clock.advance(Duration::from_millis(1));
    let echo = Echo::default();
    let res = fx.send(&echo, x_api_key(created.key())).await;
    assert_rejected(&res, &echo, 401, FailureReason::ApiKeyRevoked);
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().subject(),
        Some("svc-billing")
    );
    assert_eq!(
        AuthOutcome::of(&res).unwrap().subject(),
        Some("svc-billing")
    );

    // Revoked through this layer's `ApiKeys`: refused at once.
    let other = fx.key().await;
    assert_eq!(fx.call(x_api_key(other.key())).await.status(), 200);
    let info = fx.layer.keys().revoke(&other.info().key_id).await.unwrap();
    assert_eq!(info.revoked_at, Some(fx.clock.now()));
    assert_eq!(
        reason(&fx.call(x_api_key(other.key())).await),
        Some(FailureReason::ApiKeyRevoked)
    );
}

#[tokio::test]
async fn row84_zero_ttl_asks_the_store_every_time() {
    let fx = Fixture::with(|layer| layer.with_cache(100, Duration::ZERO));
    let created = fx.key().await;
    for _ in 0..3 {
        assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
    }
    assert_eq!(fx.store.lookups(), 3);
    fx.store
        .inner
        .revoke(&created.info().key_id, fx.clock.now())
        .await
        .unwrap();
    assert_eq!(
        reason(&fx.call(x_api_key(created.key())).await),
        Some(FailureReason::ApiKeyRevoked)
    );
}

#[tokio::test]
async fn row84_expired_key_is_refused_even_when_cached() {
    let fx = Fixture::with(|layer| layer.with_cache(100, Duration::from_secs(3600)));
    let created = fx
        .create(NewApiKey::new("svc", "short").expires_in(Duration::from_secs(60)))
        .await;
    assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
    fx.clock.advance(Duration::from_secs(59));
    assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
    assert_eq!(fx.store.lookups(), 1);
    fx.clock.advance(Duration::from_secs(1));
    let echo = Echo::default();
    let res = fx.send(&echo, x_api_key(created.key())).await;
    assert_rejected(&res, &echo, 401, FailureReason::ApiKeyExpired);
}

#[tokio::test]
async fn row85_a_test_key_on_a_live_deployment_is_refused_offline() {
    let fx = Fixture::new();
    let test_keys = ApiKeys::new(MemoryApiKeyStore::default()).with_format(KeyFormat::test());
    let test_key = test_keys.create(NewApiKey::new("svc", "t")).await.unwrap();
    assert!(test_key.key().starts_with("pc_test_"));
    assert_invalid(&fx, x_api_key(test_key.key()), FailureReason::InvalidApiKey).await;
    // Another issuer's well-formed key, and a GitHub token.
    let acme = ApiKeys::new(MemoryApiKeyStore::default())
        .with_format(KeyFormat::new("acme", "live").unwrap());
    let acme_key = acme.create(NewApiKey::new("svc", "a")).await.unwrap();
    assert_invalid(&fx, x_api_key(acme_key.key()), FailureReason::InvalidApiKey).await;
    assert_invalid(
        &fx,
        x_api_key("ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
        FailureReason::InvalidApiKey,
    )
    .await;
    assert_eq!(fx.store.lookups(), 0);
}

#[tokio::test]
async fn row86_oversized_and_foreign_keys_are_refused_without_panic() {
    let fx = Fixture::new();
    let created = fx.key().await;
    let long300 = format!("{}{}", created.key(), "a".repeat(300 - created.key().len()));
    let long10k = "a".repeat(10_000);
    let tab = format!("pc_live_\t{}", &created.key()[8..]);
    for value in [
        long300.as_bytes(),
        long10k.as_bytes(),
        "pc_live_caf\u{e9}".as_bytes(),
        tab.as_bytes(),
        b"pc_live_\x80\xff",
    ] {
        for header in ["x-api-key", "authorization"] {
            let mut value = value.to_vec();
            if header == "authorization" {
                value.splice(0..0, b"ApiKey ".iter().copied());
            }
            let mut request = Request::new(String::new());
            request
                .headers_mut()
                .insert(header, HeaderValue::from_bytes(&value).unwrap());
            assert_invalid(&fx, request, FailureReason::InvalidApiKey).await;
        }
    }
    // NUL cannot travel in an HTTP header; the parser refuses it too.
    let nul = format!("{}\0", &created.key()[..created.key().len() - 1]);
    assert_eq!(
        fx.layer.format().parse(&nul).unwrap_err(),
        KeyFormatError::Charset
    );
    assert_eq!(fx.store.lookups(), 0);
}

#[tokio::test]
async fn row87_two_credentials_are_400_invalid_request() {
    let fx = Fixture::new();
    let created = fx.key().await;
    let key = created.key();
    let apikey = format!("ApiKey {key}");
    let bearer = format!("Bearer {key}");
    for headers in [
        vec![("x-api-key", key), ("authorization", bearer.as_str())],
        vec![("x-api-key", key), ("authorization", apikey.as_str())],
        vec![("x-api-key", key), ("x-api-key", key)],
        vec![
            ("authorization", apikey.as_str()),
            ("authorization", bearer.as_str()),
        ],
        vec![("x-api-key", "")],
        vec![("authorization", "ApiKey ")],
    ] {
        let echo = Echo::default();
        let res = fx.send(&echo, with_headers(&headers, "/")).await;
        assert_rejected(&res, &echo, 400, FailureReason::InvalidRequest);
        assert_eq!(
            res.headers()["www-authenticate"],
            r#"ApiKey error="invalid_request", error_description="the request is malformed""#,
            "{headers:?}"
        );
    }
    assert_eq!(fx.store.lookups(), 0);
}

#[tokio::test]
async fn missing_key_is_401_with_a_bare_api_key_challenge() {
    let fx = Fixture::with(|layer| layer.with_realm("billing"));
    for request in [
        with_headers(&[], "/"),
        with_headers(&[("authorization", "Bearer a.b.c")], "/"),
        with_headers(&[("authorization", "Basic dTpw")], "/"),
    ] {
        let echo = Echo::default();
        let res = fx.send(&echo, request).await;
        assert_rejected(&res, &echo, 401, FailureReason::MissingToken);
        assert_eq!(
            res.headers()["www-authenticate"],
            r#"ApiKey realm="billing""#
        );
    }
}

#[tokio::test]
async fn store_errors_fail_closed_with_503() {
    let fx = Fixture::new();
    let created = fx.key().await;
    fx.store.down.store(true, Ordering::SeqCst);
    let echo = Echo::default();
    let res = fx.send(&echo, x_api_key(created.key())).await;
    assert_rejected(&res, &echo, 503, FailureReason::UpstreamUnavailable);
    let rejection = res.extensions().get::<Rejection>().unwrap();
    let source = std::error::Error::source(rejection).expect("the store error is kept");
    assert!(source.to_string().contains("unavailable"), "{source}");
    assert!(
        !res.body().contains("test store down"),
        "internals never reach the body"
    );

    // gRPC callers get UNAVAILABLE.
    let res = fx
        .call(with_headers(
            &[
                ("x-api-key", created.key()),
                ("content-type", "application/grpc"),
            ],
            "/",
        ))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["grpc-status"], "14");
}

#[tokio::test]
async fn grpc_requests_get_unauthenticated() {
    let fx = Fixture::new();
    let res = fx
        .call(with_headers(
            &[
                ("x-api-key", "pc_live_nope"),
                ("content-type", "application/grpc"),
            ],
            "/",
        ))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["grpc-status"], "16");
    assert!(res.body().is_empty());
}

#[tokio::test]
async fn cache_hits_skip_the_store_until_the_ttl() {
    let fx = Fixture::new();
    let created = fx.key().await;
    for _ in 0..20 {
        assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
    }
    assert_eq!(fx.store.lookups(), 1);
    fx.clock.advance(DEFAULT_CACHE_TTL);
    assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
    assert_eq!(fx.store.lookups(), 2, "refreshed after the TTL");
}

#[tokio::test]
async fn last_used_is_touched_at_most_once_per_interval() {
    let fx = Fixture::new();
    let created = fx.key().await;
    let id = created.info().key_id.clone();
    let used = || async {
        fx.store
            .inner
            .lookup(&id)
            .await
            .unwrap()
            .unwrap()
            .info
            .last_used_at
    };
    assert_eq!(used().await, None);

    let t0 = fx.clock.now();
    assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
    settle().await;
    assert_eq!(fx.store.touches(), 1);
    assert_eq!(used().await, Some(t0));

    // Busy for 59 s (cache refreshed many times): no more writes.
    for _ in 0..59 {
        fx.clock.advance(Duration::from_secs(1));
        assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
        settle().await;
    }
    assert_eq!(fx.store.touches(), 1);
    fx.clock.advance(Duration::from_secs(1));
    assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
    settle().await;
    assert_eq!(fx.store.touches(), 2);
    assert_eq!(used().await, Some(t0 + Duration::from_secs(60)));

    // Configurable, and can be turned off.
    let fx = Fixture::with(ApiKeyLayer::without_touch);
    let created = fx.key().await;
    fx.call(x_api_key(created.key())).await;
    settle().await;
    assert_eq!(fx.store.touches(), 0);
}

#[tokio::test]
async fn touches_never_block_requests_and_are_bounded() {
    let fx = Fixture::new();
    fx.store.hang_touches.store(true, Ordering::SeqCst);
    let mut keys = Vec::new();
    for i in 0..100 {
        keys.push(fx.create(NewApiKey::new(format!("svc-{i}"), "k")).await);
    }
    for created in &keys {
        let res = tokio::time::timeout(Duration::from_secs(5), fx.call(x_api_key(created.key())))
            .await
            .expect("the request does not wait for the touch");
        assert_eq!(res.status(), 200);
        settle().await;
    }
    assert_eq!(
        fx.store.touches(),
        cache::MAX_TOUCHES_IN_FLIGHT,
        "hanging writes are capped"
    );
}

#[tokio::test]
async fn shadow_mode_reports_but_lets_through() {
    let fx = Fixture::with(ApiKeyLayer::shadow_mode);
    let echo = Echo::default();
    let res = fx.send(&echo, x_api_key("pc_live_bad")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(echo.calls(), 1);
    let outcome = AuthOutcome::of(&res).unwrap();
    assert!(outcome.is_shadow());
    assert_eq!(outcome.reason(), Some(FailureReason::InvalidApiKey));
    assert_eq!(res.body(), "<none>");
}

#[tokio::test]
async fn custom_header_and_no_authorization_scheme() {
    let fx = Fixture::with(|layer| {
        layer
            .with_header(http::HeaderName::from_static("x-acme-key"))
            .without_authorization_scheme()
    });
    let created = fx.key().await;
    assert_eq!(
        fx.call(with_headers(&[("x-acme-key", created.key())], "/"))
            .await
            .status(),
        200
    );
    assert_eq!(
        reason(&fx.call(x_api_key(created.key())).await),
        Some(FailureReason::MissingToken)
    );
    assert_eq!(
        reason(
            &fx.call(with_headers(
                &[("authorization", &format!("ApiKey {}", created.key()))],
                "/"
            ))
            .await
        ),
        Some(FailureReason::MissingToken)
    );
}

#[tokio::test]
async fn a_pepper_keeps_other_digests_out() {
    let fx = Fixture::with(|layer| layer.with_pepper([1u8; 32]).unwrap());
    let created = fx.key().await;
    assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
    // A key stored by a manager without the pepper does not verify.
    let plain = ApiKeys::new(Arc::clone(&fx.store));
    let unpeppered = plain.create(NewApiKey::new("svc", "x")).await.unwrap();
    assert_eq!(
        reason(&fx.call(x_api_key(unpeppered.key())).await),
        Some(FailureReason::InvalidApiKey)
    );
    assert!(fx.layer.clone().with_pepper([1u8; 31]).is_err());
    let shown = format!("{:?}", fx.layer);
    assert!(shown.contains("pepper redacted"), "{shown}");
}

#[tokio::test]
async fn management_create_list_revoke_rotate() {
    let fx = Fixture::new();
    let keys = fx.layer.keys();
    let created = keys
        .create(NewApiKey::new("user123", "recovery-key").with_scopes(["workflows:run"]))
        .await
        .unwrap();
    assert!(
        !format!("{created:?}").contains(created.key()),
        "Debug hides the key"
    );
    assert_eq!(created.info().owner, "user123");
    assert_eq!(
        keys.identify(created.key()),
        Ok(created.info().key_id.as_str())
    );

    let listed = keys
        .list(&ApiKeyFilter::active().owner("user123"))
        .await
        .unwrap();
    assert_eq!(listed, [created.info().clone()]);
    assert_eq!(
        keys.get(&created.info().key_id).await.unwrap().as_ref(),
        Some(created.info())
    );

    // Rotate with a one-hour grace: both keys work, then only the new one.
    let rotated = keys
        .rotate(&created.info().key_id, Duration::from_secs(3600))
        .await
        .unwrap();
    let new = &rotated.created;
    assert_ne!(new.key(), created.key());
    assert_eq!(new.info().scopes, ["workflows:run"]);
    assert_eq!(new.info().owner, "user123");
    assert_eq!(
        rotated.previous.expires_at,
        Some(fx.clock.now() + Duration::from_secs(3600))
    );
    assert_eq!(fx.call(x_api_key(created.key())).await.status(), 200);
    assert_eq!(fx.call(x_api_key(new.key())).await.status(), 200);
    fx.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        reason(&fx.call(x_api_key(created.key())).await),
        Some(FailureReason::ApiKeyExpired)
    );
    assert_eq!(fx.call(x_api_key(new.key())).await.status(), 200);
    assert_eq!(keys.list(&ApiKeyFilter::active()).await.unwrap().len(), 1);
    assert_eq!(
        keys.list(&ApiKeyFilter::active().include_inactive())
            .await
            .unwrap()
            .len(),
        2
    );

    // Errors.
    assert!(matches!(
        keys.revoke("nope").await,
        Err(ApiKeyError::NotFound)
    ));
    assert!(matches!(
        keys.rotate(&created.info().key_id, Duration::ZERO).await,
        Err(ApiKeyError::Inactive)
    ));
    assert!(matches!(
        keys.create(NewApiKey::new("", "x")).await,
        Err(ApiKeyError::Invalid { field: "owner", .. })
    ));
    assert!(matches!(
        keys.create(NewApiKey::new("u", "x").with_scopes(["a b"]))
            .await,
        Err(ApiKeyError::Invalid {
            field: "scopes",
            ..
        })
    ));
    fx.store.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        keys.create(NewApiKey::new("u", "x")).await,
        Err(ApiKeyError::Store(_))
    ));
}

/// Composition with `JwtLayer` (`authenticate` + `jwt` features).
#[cfg(all(feature = "authenticate", feature = "jwt"))]
mod compose {
    use super::*;
    use crate::authenticate::{AuthenticateExt, AuthenticateLayer, all_of};
    use crate::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, VerifyingKey};

    const SECRET: &str = "compose-secret-0123456789-abcdefghijkl";

    fn jwt() -> JwtLayer {
        let keys = KeySet::new()
            .with_key(VerifyingKey::hmac(Algorithm::HS256, SECRET).unwrap())
            .unwrap();
        JwtLayer::new(JwtVerifier::builder(keys).build().unwrap()).with_realm("api")
    }

    fn token(sub: &str) -> String {
        let claims =
            serde_json::json!({"sub": sub, "exp": jsonwebtoken::get_current_timestamp() + 600});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    async fn run<A: crate::authenticate::Authenticate>(
        auth: A,
        echo: &Echo,
        request: Request<String>,
    ) -> Response<String> {
        AuthenticateLayer::new(auth)
            .layer(echo.service())
            .oneshot(request)
            .await
            .unwrap()
    }

    const BOTH: &str = r#"Bearer realm="api", ApiKey"#;

    #[tokio::test]
    async fn or_accepts_either_and_reports_the_method() {
        let fx = Fixture::new();
        let created = fx.key().await;
        let auth = jwt().authenticator().or(fx.layer.authenticator());

        let res = run(auth.clone(), &Echo::default(), x_api_key(created.key())).await;
        assert_eq!(res.body(), "svc-billing");
        assert_eq!(AuthOutcome::of(&res).unwrap().method(), AuthMethod::ApiKey);

        let bearer = with_headers(
            &[("authorization", &format!("Bearer {}", token("alice")))],
            "/",
        );
        let res = run(auth, &Echo::default(), bearer).await;
        assert_eq!(res.body(), "alice");
        assert_eq!(AuthOutcome::of(&res).unwrap().method(), AuthMethod::Jwt);
    }

    #[tokio::test]
    async fn or_invalid_jwt_with_a_valid_api_key_is_rejected_not_skipped() {
        let fx = Fixture::new();
        let created = fx.key().await;
        let echo = Echo::default();
        let request = with_headers(
            &[
                ("authorization", "Bearer forged.token.here"),
                ("x-api-key", created.key()),
            ],
            "/",
        );
        let res = run(
            jwt().authenticator().or(fx.layer.authenticator()),
            &echo,
            request,
        )
        .await;
        assert_eq!(res.status(), 401);
        assert_eq!(reason(&res), Some(FailureReason::InvalidToken));
        assert_eq!(echo.calls(), 0);
        assert_eq!(fx.store.lookups(), 0, "the API key was never consulted");

        // And the other way round: an invalid key is not skipped for a JWT.
        let request = with_headers(
            &[
                ("x-api-key", "pc_live_bad"),
                ("authorization", &format!("Bearer {}", token("a"))),
            ],
            "/",
        );
        let res = run(
            fx.layer.authenticator().or(jwt().authenticator()),
            &echo,
            request,
        )
        .await;
        assert_eq!(reason(&res), Some(FailureReason::InvalidApiKey));
        assert_eq!(echo.calls(), 0);
    }

    #[tokio::test]
    async fn or_with_nothing_answers_every_challenge() {
        let fx = Fixture::new();
        let echo = Echo::default();
        let auth = jwt().authenticator().or(fx.layer.authenticator());
        let res = run(auth, &echo, with_headers(&[], "/")).await;
        assert_eq!(res.status(), 401);
        assert_eq!(reason(&res), Some(FailureReason::MissingToken));
        assert_eq!(res.headers()["www-authenticate"], BOTH);
        assert_eq!(
            res.extensions()
                .get::<Rejection>()
                .unwrap()
                .challenges()
                .len(),
            2
        );
        assert_eq!(echo.calls(), 0);
    }

    #[tokio::test]
    async fn or_store_down_fails_closed() {
        let fx = Fixture::new();
        let created = fx.key().await;
        fx.store.down.store(true, Ordering::SeqCst);
        let res = run(
            jwt().authenticator().or(fx.layer.authenticator()),
            &Echo::default(),
            x_api_key(created.key()),
        )
        .await;
        assert_eq!(res.status(), 503);
    }

    #[tokio::test]
    async fn optional_api_key_lets_anonymous_through_but_not_bad_keys() {
        let fx = Fixture::new();
        let auth = jwt()
            .authenticator()
            .or(fx.layer.authenticator())
            .optional();
        let res = run(auth.clone(), &Echo::default(), with_headers(&[], "/")).await;
        assert_eq!(
            (res.status().as_u16(), res.body().as_str()),
            (200, "<none>")
        );
        let echo = Echo::default();
        let res = run(auth, &echo, x_api_key("pc_live_bad")).await;
        assert_eq!(reason(&res), Some(FailureReason::InvalidApiKey));
        assert_eq!(echo.calls(), 0);
    }

    #[tokio::test]
    async fn all_of_needs_both_and_keeps_the_first_principal() {
        let fx = Fixture::new();
        let created = fx.key().await;
        let auth = all_of(jwt().authenticator(), fx.layer.authenticator());
        let bearer = format!("Bearer {}", token("alice"));

        let res = run(
            auth.clone(),
            &Echo::default(),
            with_headers(
                &[("authorization", &bearer), ("x-api-key", created.key())],
                "/",
            ),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.body(), "alice", "the first authenticator's principal");
        assert_eq!(AuthOutcome::of(&res).unwrap().method(), AuthMethod::Jwt);

        // Only one of the two: 401 without error code, both challenges.
        for headers in [
            vec![("authorization", bearer.as_str())],
            vec![("x-api-key", created.key())],
            vec![],
        ] {
            let echo = Echo::default();
            let res = run(auth.clone(), &echo, with_headers(&headers, "/")).await;
            assert_eq!(
                reason(&res),
                Some(FailureReason::MissingToken),
                "{headers:?}"
            );
            assert_eq!(res.headers()["www-authenticate"], BOTH);
            assert_eq!(echo.calls(), 0);
        }

        // A bad second credential is refused even with a good first one.
        let echo = Echo::default();
        let res = run(
            auth.clone(),
            &echo,
            with_headers(
                &[("authorization", &bearer), ("x-api-key", "pc_live_bad")],
                "/",
            ),
        )
        .await;
        assert_eq!(reason(&res), Some(FailureReason::InvalidApiKey));
        // A bad first one with no second.
        let res = run(
            auth.clone(),
            &echo,
            with_headers(&[("authorization", "Bearer a.b.c")], "/"),
        )
        .await;
        assert_eq!(reason(&res), Some(FailureReason::InvalidToken));
        // Revoked key (slow path) with a good token.
        fx.store
            .inner
            .revoke(&created.info().key_id, fx.clock.now())
            .await
            .unwrap();
        fx.clock.advance(DEFAULT_CACHE_TTL);
        let res = run(
            auth.clone(),
            &echo,
            with_headers(
                &[("authorization", &bearer), ("x-api-key", created.key())],
                "/",
            ),
        )
        .await;
        assert_eq!(reason(&res), Some(FailureReason::ApiKeyRevoked));
        assert_eq!(echo.calls(), 0);

        // `and` is the method form; the API key first makes its owner the principal.
        let other = fx.key().await;
        let res = run(
            fx.layer.authenticator().and(jwt().authenticator()),
            &Echo::default(),
            with_headers(
                &[("authorization", &bearer), ("x-api-key", other.key())],
                "/",
            ),
        )
        .await;
        assert_eq!(res.body(), "svc-billing");
    }
}

#[test]
fn new_key_debug_masks_email_owners() {
    let shown = format!("{:?}", NewApiKey::new("ops@example.com", "deploy bot"));
    assert!(!shown.contains("ops@example.com"), "{shown}");
    assert!(shown.contains("deploy bot"));
}

#[cfg(feature = "audit")]
#[tokio::test]
async fn audit_records_of_failed_keys_name_the_key_id_never_the_secret() {
    use crate::audit::{AuditLayer, Auditor};
    use portcullis_core::{EventKind, MemoryAuditSink};

    let fx = Fixture::new();
    let created = fx.key().await;
    let id = created.info().key_id.clone();
    fx.layer.keys().revoke(&id).await.unwrap();
    let sink = MemoryAuditSink::new(100);
    let auditor = Auditor::builder()
        .sink(sink.clone())
        .pseudonym_key(b"0123456789abcdef".to_vec())
        .build()
        .unwrap();
    let unknown = with_checksum(&format!(
        "pc_live_{}_{}",
        "U".repeat(KEY_ID_LEN),
        "s".repeat(SECRET_LEN)
    ));
    let wrong_secret = with_checksum(&format!("pc_live_{id}_{}", "q".repeat(SECRET_LEN)));
    let cases = [
        // (request, token_prefix the record must carry)
        (x_api_key(created.key()), Some(format!("pc_live_{id}"))),
        (x_api_key(&wrong_secret), Some(format!("pc_live_{id}"))),
        (
            x_api_key(&unknown),
            Some(format!("pc_live_{}", "U".repeat(KEY_ID_LEN))),
        ),
        (
            with_headers(&[("authorization", &format!("ApiKey {unknown}"))], "/"),
            Some(format!("pc_live_{}", "U".repeat(KEY_ID_LEN))),
        ),
        (x_api_key("pc_live_tooshort"), Some("pc_live_".to_owned())),
        (x_api_key("hunter2-not-a-key"), None),
    ];
    for (request, expected) in cases {
        sink.clear();
        let echo = Echo::default();
        let svc = AuditLayer::new(auditor.clone()).layer(fx.layer.layer(echo.service()));
        let res = svc.oneshot(request).await.unwrap();
        assert_ne!(res.status(), StatusCode::OK);
        auditor.flush().await;
        let records = sink.records();
        let record = records
            .iter()
            .find(|r| r.event == EventKind::AuthFailure)
            .unwrap_or_else(|| panic!("no auth failure in {records:?}"));
        assert_eq!(record.token_prefix.as_deref(), expected.as_deref());
        let json = record.to_json_line();
        assert!(
            !json.contains(&"s".repeat(8)) && !json.contains(&"q".repeat(8)),
            "{json}"
        );
        assert!(!json.contains("hunter"), "{json}");
    }
}
