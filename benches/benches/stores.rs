//! The hot operation of each store, on every backend configured, in one
//! run: the in-memory store is the baseline each shared backend is compared
//! with (issue 8). All stores are called through their `Box*Store` type, as
//! the layers call them, on one tokio runtime.
//!
//! - `revocation/is_revoked`: a JWT's revocation check (half the ids
//!   revoked), plus Redis behind `CachedRevocationStore` (a cache hit);
//! - `attempts/begin_release`: the login path's reservation and its release
//!   (`begin(reserve)` then `release`);
//! - `api_key/lookup`, `csrf/validate`, `block_list/find`: one call each;
//! - `rate_limit/check`: one shared GCRA step (memory and Redis);
//! - `lockout_check`: a `LockoutLayer` API request (no identifier: block
//!   list and the address counter's lock) over each backend;
//! - `lockout_login`: a whole `LockoutLayer` login request (account and
//!   account+address reservations, then their release) over each backend.
//!
//! Every call goes over the network for the shared backends (loopback
//! here), so their rows are round-trip bound; the memory rows are the cost
//! of the work itself.
//!
//! Backends: memory always; SQLite (a file in the temp dir) always; Redis
//! with `PORTCULLIS_TEST_REDIS_URL`; PostgreSQL with
//! `PORTCULLIS_TEST_POSTGRES_URL`. Results: `docs/benchmarks.md`.
#![allow(clippy::unwrap_used)] // benchmark setup: a failure is a broken benchmark

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use http::{HeaderName, HeaderValue, Request, Response};
use portcullis::core::{
    API_KEY_DIGEST_LEN, ApiKeyDigest, ApiKeyInfo, ApiKeyRecord, ApiKeyStore as _, AttemptKey,
    AttemptPolicy, AttemptStore as _, BlockEntry, BlockListStore as _, BoxApiKeyStore,
    BoxAttemptStore, BoxBlockListStore, BoxCsrfTokenStore, BoxRateLimitStore, BoxRevocationStore,
    CSRF_TOKEN_DIGEST_LEN, CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore as _,
    MemoryApiKeyStore, MemoryAttemptStore, MemoryBlockList, MemoryCsrfTokenStore,
    MemoryRateLimitStore, MemoryRevocationStore, PeerAddr, RateLimitStore as _, RateQuota,
    RevocationStore as _, TokenRef,
};
use portcullis::lockout::{IdentifierSource, LockoutLayer};
use tokio::runtime::Runtime;
use tower::{Layer, ServiceExt as _, service_fn};

/// Revoked ids, looked up among twice as many.
const REVOKED: u64 = 1_000;
const USER: HeaderName = HeaderName::from_static("x-login-user");

/// One backend's stores.
struct Backend {
    name: &'static str,
    /// Only the revocation store differs from another backend's (a cache
    /// in front): benchmarked in the revocation group only.
    revocation_only: bool,
    revocations: BoxRevocationStore,
    attempts: BoxAttemptStore,
    api_keys: BoxApiKeyStore,
    csrf: BoxCsrfTokenStore,
    blocks: BoxBlockListStore,
    rate: Option<BoxRateLimitStore>,
}

fn memory() -> Backend {
    Backend {
        name: "memory",
        revocation_only: false,
        revocations: BoxRevocationStore::new(MemoryRevocationStore::new(100_000)),
        attempts: BoxAttemptStore::new(MemoryAttemptStore::new(100_000)),
        api_keys: BoxApiKeyStore::new(MemoryApiKeyStore::new(100_000)),
        csrf: BoxCsrfTokenStore::new(MemoryCsrfTokenStore::new(100_000)),
        blocks: BoxBlockListStore::new(MemoryBlockList::new(100_000)),
        rate: Some(BoxRateLimitStore::new(MemoryRateLimitStore::new(100_000))),
    }
}

async fn redis(url: &str) -> Vec<Backend> {
    let prefix = format!("pcbench{}", std::process::id());
    let backend = portcullis_redis::RedisBackend::connect(url, prefix)
        .await
        .unwrap();
    let cached = portcullis_redis::CachedRevocationStore::new(backend.revocations())
        .with_max_staleness(Duration::from_secs(1));
    let stores = |name, revocations, revocation_only| Backend {
        name,
        revocation_only,
        revocations,
        attempts: BoxAttemptStore::new(backend.attempts()),
        api_keys: BoxApiKeyStore::new(backend.api_keys()),
        csrf: BoxCsrfTokenStore::new(backend.csrf_tokens()),
        blocks: BoxBlockListStore::new(backend.block_list()),
        rate: Some(BoxRateLimitStore::new(backend.rate_limit())),
    };
    vec![
        stores(
            "redis",
            BoxRevocationStore::new(backend.revocations()),
            false,
        ),
        stores("redis_cached", BoxRevocationStore::new(cached), true),
    ]
}

fn digest<const N: usize>(i: u64) -> [u8; N] {
    let mut bytes = [0u8; N];
    bytes[..8].copy_from_slice(&i.to_le_bytes());
    bytes
}

fn ip(i: u64) -> IpAddr {
    IpAddr::from((0x0a00_0000u32 + u32::try_from(i % 1_000_000).unwrap()).to_be_bytes())
}

/// Fills a backend's stores with what the lookups find.
async fn populate(b: &Backend) {
    let now = SystemTime::now();
    let exp = now + Duration::from_secs(3600);
    for i in 0..REVOKED {
        b.revocations
            .revoke_token(&format!("jti-{i}"), exp)
            .await
            .unwrap();
    }
    let info = ApiKeyInfo::new("bench-key", "svc", "bench", now);
    let record = ApiKeyRecord::new(
        info,
        ApiKeyDigest::from_bytes(digest::<API_KEY_DIGEST_LEN>(1)),
    );
    // A second run against the same Redis finds the key already there.
    let _ = b.api_keys.create(record).await;
    let token = CsrfTokenDigest::from_bytes(digest::<CSRF_TOKEN_DIGEST_LEN>(7));
    let _ = b
        .csrf
        .issue(CsrfTokenRecord::new("bench-session", token, exp))
        .await;
    let net: ipnet::IpNet = "10.200.0.0/16".parse().unwrap();
    b.blocks
        .block(BlockEntry::new(net, None, "bench", now))
        .await
        .unwrap();
}

fn per_backend(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    backends: &[Backend],
    revocations: bool,
    op: impl Fn(&Backend, u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>,
) {
    for backend in backends
        .iter()
        .filter(|b| revocations || !b.revocation_only)
    {
        let mut i = 0u64;
        group.bench_function(backend.name, |b| {
            b.to_async(rt).iter(|| {
                i = i.wrapping_add(1);
                op(backend, i)
            })
        });
    }
}

fn lockout_request(i: u64, user: Option<&HeaderValue>) -> Request<String> {
    let mut request = Request::new(String::new());
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip(i % 10_000), 40_000)));
    if let Some(user) = user {
        request.headers_mut().insert(USER, user.clone());
    }
    request
}

#[allow(clippy::print_stderr)] // which backends ran is part of the output
fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut backends = vec![memory()];
    backends.extend(rt.block_on(sqlx_backends()));
    match std::env::var("PORTCULLIS_TEST_REDIS_URL") {
        Ok(url) => backends.extend(rt.block_on(redis(&url))),
        Err(_) => eprintln!("Redis skipped: set PORTCULLIS_TEST_REDIS_URL"),
    }
    for backend in &backends {
        rt.block_on(populate(backend));
    }

    let mut group = c.benchmark_group("revocation/is_revoked");
    configure(&mut group);
    per_backend(&mut group, &rt, &backends, true, |b, i| {
        Box::pin(async move {
            let id = format!("jti-{}", i % (2 * REVOKED));
            let token = TokenRef {
                token_id: Some(&id),
                family: None,
                subject: "user-1",
                issued_at: Some(SystemTime::now()),
            };
            b.revocations.is_revoked(&token).await.unwrap();
        })
    });
    group.finish();

    static POLICY: std::sync::LazyLock<AttemptPolicy> =
        std::sync::LazyLock::new(AttemptPolicy::default);
    let mut group = c.benchmark_group("attempts/begin_release");
    configure(&mut group);
    per_backend(&mut group, &rt, &backends, false, |b, i| {
        let policy = &*POLICY;
        Box::pin(async move {
            let key = AttemptKey::Ip(ip(i % 10_000));
            let now = SystemTime::now();
            b.attempts.begin(&key, policy, true, now).await.unwrap();
            b.attempts.release(&key, now).await.unwrap();
        })
    });
    group.finish();

    let mut group = c.benchmark_group("api_key/lookup");
    configure(&mut group);
    per_backend(&mut group, &rt, &backends, false, |b, _| {
        Box::pin(async move {
            assert!(b.api_keys.lookup("bench-key").await.unwrap().is_some());
        })
    });
    group.finish();

    let token = CsrfTokenDigest::from_bytes(digest::<CSRF_TOKEN_DIGEST_LEN>(7));
    let mut group = c.benchmark_group("csrf/validate");
    configure(&mut group);
    per_backend(&mut group, &rt, &backends, false, |b, _| {
        Box::pin(async move {
            assert!(b.csrf.validate("bench-session", &token).await.unwrap());
        })
    });
    group.finish();

    let mut group = c.benchmark_group("block_list/find");
    configure(&mut group);
    per_backend(&mut group, &rt, &backends, false, |b, i| {
        Box::pin(async move {
            b.blocks.find(ip(i), SystemTime::now()).await.unwrap();
        })
    });
    group.finish();

    let quota = RateQuota::new(Duration::from_micros(1), 1_000_000);
    let with_rate: Vec<&Backend> = backends
        .iter()
        .filter(|b| b.rate.is_some() && !b.revocation_only)
        .collect();
    let mut group = c.benchmark_group("rate_limit/check");
    configure(&mut group);
    for backend in with_rate {
        let rate = backend.rate.clone().unwrap();
        let mut i = 0u64;
        group.bench_function(backend.name, |b| {
            b.to_async(&rt).iter(|| {
                i = i.wrapping_add(1);
                let key = format!("ip:{}", ip(i % 10_000));
                let rate = rate.clone();
                async move {
                    rate.check(&key, &quota, SystemTime::now()).await.unwrap();
                }
            })
        });
    }
    group.finish();

    // LockoutLayer over each backend: an API request (no identifier: the
    // block list and the address counter's lock) and a whole login check.
    lockout_group(c, &rt, &backends, "lockout_check", None);
    let user = HeaderValue::from_static("alice@example.org");
    lockout_group(c, &rt, &backends, "lockout_login", Some(&user));
}

/// One `LockoutLayer` request per iteration over each backend's attempt
/// store, from one of 10 000 addresses; `user`: a login naming that account.
fn lockout_group(
    c: &mut Criterion,
    rt: &Runtime,
    backends: &[Backend],
    name: &str,
    user: Option<&HeaderValue>,
) {
    let mut group = c.benchmark_group(name);
    configure(&mut group);
    for backend in backends.iter().filter(|b| !b.revocation_only) {
        let noop = service_fn(|_req: Request<String>| {
            std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
        });
        let layer = LockoutLayer::new(backend.attempts.clone());
        let svc = match user {
            Some(_) => layer.with_identifier(IdentifierSource::header(USER)),
            None => layer,
        }
        .layer(noop);
        let mut i = 0u64;
        group.bench_function(backend.name, |b| {
            b.to_async(rt).iter(|| {
                i = i.wrapping_add(1);
                let svc = svc.clone();
                let request = lockout_request(i, user);
                async move {
                    let res = svc.oneshot(request).await.unwrap();
                    assert_eq!(res.status(), 200);
                }
            })
        });
    }
    group.finish();
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

fn sql_stores<B>(name: &'static str, backend: &B) -> Backend
where
    B: SqlStores,
{
    Backend {
        name,
        revocation_only: false,
        revocations: backend.revocations(),
        attempts: backend.attempts(),
        api_keys: backend.api_keys(),
        csrf: backend.csrf(),
        blocks: backend.blocks(),
        rate: None,
    }
}

/// The two SQL backends' accessors, boxed.
trait SqlStores {
    fn revocations(&self) -> BoxRevocationStore;
    fn attempts(&self) -> BoxAttemptStore;
    fn api_keys(&self) -> BoxApiKeyStore;
    fn csrf(&self) -> BoxCsrfTokenStore;
    fn blocks(&self) -> BoxBlockListStore;
}

macro_rules! sql_stores {
    ($backend:ty) => {
        impl SqlStores for $backend {
            fn revocations(&self) -> BoxRevocationStore {
                BoxRevocationStore::new(<$backend>::revocations(self))
            }
            fn attempts(&self) -> BoxAttemptStore {
                BoxAttemptStore::new(<$backend>::attempts(self))
            }
            fn api_keys(&self) -> BoxApiKeyStore {
                BoxApiKeyStore::new(<$backend>::api_keys(self))
            }
            fn csrf(&self) -> BoxCsrfTokenStore {
                BoxCsrfTokenStore::new(<$backend>::csrf_tokens(self))
            }
            fn blocks(&self) -> BoxBlockListStore {
                BoxBlockListStore::new(<$backend>::block_list(self))
            }
        }
    };
}
sql_stores!(portcullis_sqlx::SqliteBackend);
sql_stores!(portcullis_sqlx::PgBackend);

/// SQLite (a fresh file) always, PostgreSQL (a fresh schema) when
/// configured.
#[allow(clippy::print_stderr)]
async fn sqlx_backends() -> Vec<Backend> {
    use portcullis_sqlx::sqlx::{self, Connection as _};
    let dir = std::env::temp_dir().join(format!("portcullis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = portcullis_sqlx::SqliteBackend::open(dir.join("bench.db"))
        .await
        .unwrap();
    let mut out = vec![sql_stores("sqlite", &sqlite)];
    let Ok(url) = std::env::var("PORTCULLIS_TEST_POSTGRES_URL") else {
        eprintln!("PostgreSQL skipped: set PORTCULLIS_TEST_POSTGRES_URL");
        return out;
    };
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let schema = format!("pcbench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    // The schema name is digits and letters only.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let pg = portcullis_sqlx::PgBackend::from_options(
        options.options([("search_path", schema.as_str())]),
    )
    .await
    .unwrap();
    out.push(sql_stores("postgres", &pg));
    out
}

criterion_group!(benches, stores);
criterion_main!(benches);
