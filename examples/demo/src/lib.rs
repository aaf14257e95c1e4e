//! The Portcullis reference server, as a library so tests can build it.
//!
//! An axum application behind the whole Portcullis pipeline, outermost
//! first: audit → client IP → block list / rate limit → lockout (login
//! route) → CAPTCHA (login route, when a provider is configured) → CSRF
//! (cookie-authenticated unsafe requests) → JWT (bearer or session cookie)
//! or API key → scope checks. Handlers stay thin: they read the
//! [`Principal`] the layers put on the request and report an
//! [`AuthOutcome`] where they check a password themselves.
//!
//! State lives where [`Backends::from_env`] says (SQLite file by default,
//! PostgreSQL, Redis for counters and revocations), so the operator CLI
//! acts on what this server sees. The application's own `users` table is
//! created in the same database ([`users`]).
//!
//! | route | auth | what |
//! | --- | --- | --- |
//! | `POST /api/auth/signup` | none | `{email, name, password}` → 201 `{id, email, name}` |
//! | `POST /api/auth/login` | none (lockout, CAPTCHA) | `{email, password}` → token pair, session and CSRF cookies |
//! | `POST /api/auth/refresh` | none | `{refresh_token}` → a new pair (rotation, reuse detection) |
//! | `POST /api/auth/logout` | bearer or cookie | revokes the access token and its refresh family |
//! | `GET /api/me` | bearer, cookie or API key | `{id, kind, scopes}` |
//! | `POST/GET /api/api-keys`, `DELETE /api/api-keys/{id}` | user (bearer or cookie) | the caller's API keys |
//! | `GET /api/workflows` | scope `workflows:read` | sample data |
//! | `POST /api/workflows` | scope `workflows:execute` | sample run |
//! | `GET /metrics` | none (no rate limit, no block list) | Prometheus text (bind to loopback or protect it) |
//! | `GET /health`, `GET /health/detailed` | none (no rate limit, no block list) | liveness; database, Redis, circuit breakers (503 naming what is down) |
//!
//! Every authenticated request (but the identity provider's, below) is
//! checked against the account in `users`
//! (disabled → 401 `user_disabled`; a user's session gets the account's
//! current scopes, an API key its own narrowed to its owner's). The
//! operator changes accounts with `portcullis-demo users …` ([`admin`]) on
//! the same database while the server runs.
//!
//! Configuration ([`Config::from_env`]; an invalid value stops the server
//! with a message naming the variable): `PORTCULLIS_DEMO_ADDR`
//! (`127.0.0.1:8000`), `PORTCULLIS_JWT_SECRET` (≥ 32 bytes; unset: an
//! ephemeral secret and a warning), `PORTCULLIS_JWT_SECRET_OLD`
//! (comma-separated, verification only), `PORTCULLIS_TOKEN_LIFETIME_SECONDS`
//! (900), `PORTCULLIS_REFRESH_TOKEN_LIFETIME_SECONDS` (604800),
//! `PORTCULLIS_TOKEN_LEEWAY_SECONDS` (30, ≤ 300: clock skew),
//! `PORTCULLIS_TOKEN_EXPIRY_GRACE_SECONDS` (0, ≤ 3600: access tokens
//! accepted past `exp`),
//! `PORTCULLIS_LOCKOUT_MAX_ATTEMPTS` (5), `PORTCULLIS_LOCKOUT_WINDOW_SECONDS`
//! (300), `PORTCULLIS_LOCKOUT_DURATION_SECONDS` (1800),
//! `PORTCULLIS_CAPTCHA_AFTER_FAILURES` (3, per account or address),
//! `PORTCULLIS_CAPTCHA_PROVIDER` (`none` | `turnstile` | `hcaptcha` |
//! `recaptcha`), `PORTCULLIS_CAPTCHA_SECRET`, `PORTCULLIS_CAPTCHA_SITEKEY`
//! (hCaptcha), `PORTCULLIS_CAPTCHA_VERIFY_URL` (the provider's https
//! endpoint by default; plain http only on loopback),
//! `PORTCULLIS_CAPTCHA_CA_FILE` (PEM authorities trusted for it instead of
//! the system's), `PORTCULLIS_TRUSTED_PROXIES`,
//! `PORTCULLIS_FRONTEND_ORIGIN` (CORS and CSRF), `PORTCULLIS_RATE_LIMIT_RPS`
//! (50 per address), `PORTCULLIS_RATE_LIMIT_BURST` (100),
//! `PORTCULLIS_API_KEY_PEPPER`; and the state's `PORTCULLIS_DATABASE_URL`,
//! `PORTCULLIS_REDIS_URL`, `PORTCULLIS_REDIS_PREFIX`.
//!
//! An external identity provider (opt-in): `PORTCULLIS_JWKS_URL` (its JWKS;
//! https, or http on loopback), `PORTCULLIS_JWKS_ISSUER` and
//! `PORTCULLIS_JWKS_AUDIENCE` (both required with it; the issuer may not be
//! `portcullis-demo`), `PORTCULLIS_JWKS_REFRESH_SECONDS` (300),
//! `PORTCULLIS_JWKS_COOLDOWN_SECONDS` (30: at most one fetch per cooldown
//! for unknown `kid`s), `PORTCULLIS_JWKS_BREAKER_OPEN_SECONDS` (30). The
//! server then also accepts the provider's bearer access tokens (any
//! asymmetric algorithm, its issuer and audience) as principals of the
//! provider's subject with the token's scopes. They have no account here:
//! the per-request account check skips them, they cannot manage API keys
//! (403) or log out (400: that is the provider's), and the operator revokes
//! them by subject or token id like the server's own. The JWKS client sits
//! behind the `jwks` circuit breaker (health, metrics, events); a failed
//! refresh keeps the cached keys and only tokens needing a fetch get 503.

pub mod admin;
pub mod config;
pub mod users;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portcullis::api_key::{ApiKeyError, ApiKeyLayer, ApiKeys, NewApiKey};
use portcullis::audit::prometheus::PrometheusHandle;
use portcullis::audit::{AuditLayer, Auditor, JsonLinesSink};
use portcullis::authenticate::{
    Authenticate, AuthenticateExt as _, AuthenticateLayer, Check, RequestHead,
};
use portcullis::authorize::RequireLayer;
use portcullis::captcha::{CaptchaLayer, HttpsClient, SiteVerify, TlsRoots};
use portcullis::circuit_breaker::{BreakerHandle, CircuitBreakerLayer, State as BreakerState};
use portcullis::client_ip::ClientIpLayer;
use portcullis::core::{
    ApiKeyFilter, AttemptPolicy, BoxApiKeyStore, BoxAuditSink, FanOutSink, MemoryAttemptStore,
    RevocationStore as _,
};
use portcullis::csrf::{CsrfLayer, CsrfSecret, SessionCookie};
use portcullis::jwt::jwks::RemoteJwks;
use portcullis::jwt::{
    Algorithm, JwtAuthenticator, JwtLayer, JwtVerifier, RefreshError, SigningKey, TokenIssuer,
    VerifyingKey,
};
use portcullis::lockout::{IdentifierSource, LockoutLayer, RateLimit};
use portcullis::rejection::{DefaultRejection, RespondToRejection};
use portcullis::{
    AuthMethod, AuthOutcome, Challenge, FailureReason, Principal, PrincipalKind, Rejection,
};
use portcullis_cli::backends::Backends;
// Key ids are fingerprints of their secret (a token names the secret that
// signed it across rotations; `portcullis secret kid` prints the same id),
// and CSRF keys are derived from the JWT secret: the CLI's functions.
use portcullis_cli::secret::{derive_key, key_id};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::Layer as _;

pub use config::Config;

/// The issuer name the server signs tokens as.
pub const ISSUER: &str = "portcullis-demo";
/// The audience of the server's access tokens.
pub const AUDIENCE: &str = "portcullis-demo-api";
/// The session cookie holding the access token for browser clients.
pub const SESSION_COOKIE: &str = "portcullis_session";
/// The header carrying a CAPTCHA token.
pub const CAPTCHA_HEADER: &str = "x-captcha-token";
/// The `token_type` of login and refresh answers, as the HTTP contract
/// (issue 9, RFC 6749 §7.1: case-insensitive) spells it.
pub const TOKEN_TYPE: &str = "bearer";
/// The scopes a new user gets (an operator changes them with
/// `portcullis-demo users grant|revoke`).
pub const USER_SCOPES: [&str; 2] = users::DEFAULT_SCOPES;

/// How long a session (refresh family) lives at most from its login.
pub const FAMILY_LIFETIME: Duration = portcullis::jwt::issue::DEFAULT_FAMILY_LIFETIME;

/// Anything that stops the server from starting.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// The process-wide Prometheus recorder, installed on first use.
///
/// # Errors
///
/// When another global `metrics` recorder was installed first.
pub fn metrics_handle() -> Result<PrometheusHandle, portcullis::ConfigError> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = &*slot {
        return Ok(handle.clone());
    }
    let handle = portcullis::audit::prometheus::install()?;
    *slot = Some(handle.clone());
    Ok(handle)
}

/// A fresh random 256-bit secret, base64url-encoded.
///
/// # Errors
///
/// If the system random number generator fails.
pub fn generate_secret() -> Result<String, StartError> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the system random generator failed")?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn random_hex(bytes: usize) -> Result<String, StartError> {
    use std::fmt::Write as _;
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| "the system random generator failed")?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Password hashing: argon2id (the crate's defaults: 19 MiB, 2 passes),
/// always on the blocking pool.
mod password {
    use argon2::Argon2;
    use argon2::password_hash::{
        PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString,
    };

    /// The PHC string for `password`.
    pub(crate) fn hash(password: &str) -> Option<String> {
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).ok()?;
        let salt = SaltString::encode_b64(&salt).ok()?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .ok()
            .map(|h| h.to_string())
    }

    /// Whether `password` matches `phc`.
    pub(crate) fn verify(password: &str, phc: &str) -> bool {
        PasswordHash::new(phc).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// What the built application exposes besides its router.
#[derive(Debug)]
pub struct App {
    /// The router, to serve with `ConnectInfo<SocketAddr>`.
    pub router: Router,
    /// Whether the JWT secret is ephemeral (generated at start).
    pub ephemeral_secret: bool,
}

struct Inner {
    config: Config,
    backends: Backends,
    issuer: TokenIssuer,
    keys: ApiKeys<BoxApiKeyStore>,
    csrf: CsrfLayer,
    dummy_hash: String,
    breakers: Vec<BreakerHandle>,
}

impl Inner {
    /// Whether `principal` came from the external identity provider (its
    /// verified `iss` is the provider's; the server's own tokens must name
    /// [`ISSUER`], which the provider's issuer may not be).
    fn is_provider(&self, principal: &Principal) -> bool {
        #[derive(Deserialize)]
        struct Iss {
            iss: Option<String>,
        }
        let Some(jwks) = &self.config.jwks else {
            return false;
        };
        principal.kind() != PrincipalKind::ApiKey
            && principal
                .claims::<Iss>()
                .is_ok_and(|c| c.iss.as_deref() == Some(jwks.issuer.as_str()))
    }
}

#[derive(Clone)]
struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// Builds the application over `backends`, writing audit events as JSON
/// lines to stdout and into the database.
///
/// Must be called inside a Tokio runtime (the auditor spawns its writer).
///
/// # Errors
///
/// An invalid setting, or the `users` table cannot be created.
pub async fn build(config: Config, backends: Backends) -> Result<App, StartError> {
    let stdout = BoxAuditSink::new(JsonLinesSink::new(std::io::stdout()));
    build_with_audit(config, backends, stdout).await
}

/// Like [`build`], with `extra` receiving the audit records instead of
/// stdout (the database always gets them too).
///
/// # Errors
///
/// As [`build`].
pub async fn build_with_audit(
    config: Config,
    backends: Backends,
    extra: BoxAuditSink,
) -> Result<App, StartError> {
    users::migrate(&backends.database.any_pool())
        .await
        .map_err(|_| "cannot create the users table")?;
    let metrics = metrics_handle()?;
    let auditor = Auditor::builder()
        .sink(FanOutSink::new(vec![extra, backends.audit.clone()]))
        .build()?;

    // Tokens.
    let ephemeral_secret = config.jwt_secret.is_none();
    let secret = match &config.jwt_secret {
        Some(secret) => secret.clone(),
        None => generate_secret()?.into_bytes(),
    };
    let mut issuer = TokenIssuer::builder(
        SigningKey::hmac(Algorithm::HS256, &secret)?.with_kid(key_id(&secret)),
        ISSUER,
    )
    .audience(AUDIENCE)
    .access_ttl(config.token_lifetime)
    .refresh_ttl(config.refresh_lifetime)
    .family_lifetime(FAMILY_LIFETIME);
    // Old secrets verify what they signed for as long as a token can live.
    let old_until = SystemTime::now() + config.refresh_lifetime;
    for old in &config.jwt_secret_old {
        issuer = issuer.fallback_key(
            VerifyingKey::hmac(Algorithm::HS256, old)?.with_kid(key_id(old)),
            old_until,
        );
    }
    let issuer = issuer.build(backends.revocations.clone())?;
    let jwt = JwtLayer::new(
        issuer
            .access_verifier()
            .leeway(config.token_leeway)
            .expiry_grace(config.token_expiry_grace)
            .build()?,
    )
    .with_realm("portcullis-demo")
    .with_cookie(SESSION_COOKIE)
    .with_revocation(backends.revocations.clone());

    // API keys (the CLI reads the same pepper).
    let mut api_key = ApiKeyLayer::new(backends.api_keys.clone()).with_realm("portcullis-demo");
    if let Some(pepper) = &config.api_key_pepper {
        api_key = api_key.with_pepper(pepper)?;
    }
    let keys = api_key.keys();

    // CSRF: cookie-authenticated unsafe requests need X-CSRF-Token; bearer
    // and API-key requests without the session cookie are exempt. The token
    // cookie is readable by scripts (double submit: the page echoes it).
    let mut csrf = CsrfLayer::builder(CsrfSecret::new(derive_key(&secret, b"csrf"))?)
        .trusted_origin(config.frontend_origin.clone())
        .session(SessionCookie::new(SESSION_COOKIE))
        .exempt_requests_without_ambient_credentials([SESSION_COOKIE])
        .cookie_readable_by_scripts();
    if !config.secure_cookies() {
        csrf = csrf.insecure_cookie_for_http_development("portcullis_csrf");
    }
    let csrf = csrf.build()?;

    // Rate limit (every route) and lockout (login route).
    let rate = RateLimit::per_second(config.rate_limit_rps)?.with_burst(config.rate_limit_burst)?;
    let mut guard = LockoutLayer::new(MemoryAttemptStore::new(10_000))
        .with_block_list(backends.block_list.clone())
        .with_rate_limit(rate)
        // This layer only guards: failures are counted on the login route.
        .with_account_policy(
            AttemptPolicy::new(u32::MAX, Duration::from_secs(1), Duration::from_secs(1))
                .with_max_consecutive(None),
        )?
        .with_account_ip_policy(None)?
        .with_ip_policy(None)?;
    let policy = AttemptPolicy::new(
        config.lockout_max_attempts,
        config.lockout_window,
        config.lockout_duration,
    );
    let mut lockout = LockoutLayer::new(backends.attempts.clone())
        .with_identifier(IdentifierSource::field("email"))
        .with_block_list(backends.block_list.clone())
        .with_rate_limit(rate)
        .with_account_policy(policy)?;
    if let Some(shared) = &backends.rate_limit {
        guard = guard.with_shared_rate_limit(rate, shared.clone());
        lockout = lockout.with_shared_rate_limit(rate, shared.clone());
    }

    // An external identity provider (opt-in): its JWKS client behind a
    // circuit breaker named `jwks`.
    let mut breakers = Vec::new();
    let provider = match &config.jwks {
        Some(jwks) => Some(provider_jwt(jwks, &config, &auditor, &mut breakers, &backends).await?),
        None => None,
    };

    // CAPTCHA, its siteverify client behind a circuit breaker.
    let captcha = match &config.captcha {
        Some(captcha) => {
            let breaker = CircuitBreakerLayer::consecutive_failures(5, Duration::from_secs(30))?
                .with_name("captcha_siteverify")
                .with_call_timeout(Duration::from_secs(5))
                // portcullis_circuit_state / _transitions_total and a
                // security.circuit_state_changed event per transition.
                .on_transition(auditor.breaker_listener("captcha_siteverify"));
            breakers.push(breaker.handle());
            // https with the system's roots, or the PEM authorities of
            // PORTCULLIS_CAPTCHA_CA_FILE.
            let roots = match &captcha.ca_file {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        format!(
                            "PORTCULLIS_CAPTCHA_CA_FILE: cannot read {}: {e}",
                            path.display()
                        )
                    })?;
                    TlsRoots::empty()
                        .with_pem(&pem)
                        .map_err(|e| format!("PORTCULLIS_CAPTCHA_CA_FILE: {e}"))?
                }
                None => TlsRoots::native()?,
            };
            let http = breaker.layer(HttpsClient::new(&roots)?);
            let mut verify = match captcha.provider {
                config::CaptchaProvider::Turnstile => SiteVerify::turnstile(&captcha.secret),
                config::CaptchaProvider::HCaptcha => SiteVerify::hcaptcha(
                    &captcha.secret,
                    captcha.sitekey.as_deref().unwrap_or_default(),
                ),
                config::CaptchaProvider::Recaptcha => SiteVerify::recaptcha_v2(&captcha.secret),
            }
            .any_hostname()
            .client(http);
            if let Some(url) = &captcha.verify_url {
                verify = verify.verify_url(url)?;
            }
            Some(
                CaptchaLayer::new(verify.build()?)
                    .with_thresholds(config.captcha_after_failures, config.captcha_after_failures)
                    .with_header(Some(HeaderName::from_static(CAPTCHA_HEADER))),
            )
        }
        None => None,
    };

    let dummy_hash = blocking(|| password::hash("not a real password, for timing"))
        .await
        .flatten()
        .ok_or("cannot hash a password")?;
    let trusted = config.trusted_proxies.clone();
    let state = AppState(Arc::new(Inner {
        config,
        backends,
        issuer,
        keys,
        csrf: csrf.clone(),
        dummy_hash,
        breakers,
    }));

    let workflows = get(list_workflows)
        .layer(RequireLayer::scopes(["workflows:read"]))
        .merge(post(run_workflow).layer(RequireLayer::scopes(["workflows:execute"])));
    let protected = Router::new()
        .route("/api/me", get(me))
        .route("/api/auth/logout", post(logout))
        .route("/api/api-keys", post(create_key).get(list_keys))
        .route("/api/api-keys/{id}", delete(delete_key))
        .route("/api/workflows", workflows)
        // Inside authentication: the account behind the principal must be
        // enabled, and its scopes narrow to what the account has now.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            current_account,
        ))
        .layer(AuthenticateLayer::new(
            ByIssuer {
                local: jwt.authenticator(),
                provider,
            }
            .or(api_key.authenticator()),
        ))
        // Outside it: a revoked token of a disabled account says so.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            disabled_not_revoked,
        ))
        .layer(csrf);
    let public = Router::new()
        .route("/api/auth/signup", post(signup))
        .route("/api/auth/refresh", post(refresh));
    // Health and metrics stay outside the block-list / rate-limit guard: it
    // needs Redis when Redis is configured, and these must keep answering
    // (which dependency is down, the scrape) exactly when Redis is not.
    let operations = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/health/detailed", get(health_detailed))
        .route(
            "/metrics",
            portcullis::audit::prometheus::metrics_route(metrics),
        );
    let mut login = Router::new().route("/api/auth/login", post(login));
    if let Some(captcha) = captcha {
        login = login.layer(captcha);
    }
    let login = login.layer(lockout);

    let origin = HeaderValue::from_str(&state.0.config.frontend_origin)
        .map_err(|_| "PORTCULLIS_FRONTEND_ORIGIN is not a valid header value")?;
    let router = public
        .merge(protected)
        .layer(guard)
        .merge(login)
        .merge(operations)
        .with_state(state)
        // CORS for the frontend origin, outside authentication so that
        // preflights are answered.
        .layer(axum::middleware::from_fn(move |req, next| {
            cors(origin.clone(), req, next)
        }))
        .layer(ClientIpLayer::new(trusted.clone()))
        .layer(AuditLayer::new(auditor).with_trusted_proxies(trusted));
    Ok(App {
        router,
        ephemeral_secret,
    })
}

/// The external identity provider's access tokens: a [`RemoteJwks`] whose
/// HTTP client sits behind the `jwks` circuit breaker (3 failed fetches in
/// a row open it; `portcullis_circuit_state{breaker="jwks"}` and a
/// `security.circuit_state_changed` event per transition), fetched once now
/// — the server does not start without the provider's keys — then
/// refreshed on schedule and on tokens naming an unknown `kid` (at most
/// once per cooldown). A failed refresh keeps the cached keys.
async fn provider_jwt(
    jwks: &config::JwksConfig,
    config: &Config,
    auditor: &Auditor,
    breakers: &mut Vec<BreakerHandle>,
    backends: &Backends,
) -> Result<(String, JwtAuthenticator), StartError> {
    let breaker = CircuitBreakerLayer::consecutive_failures(3, jwks.breaker_open)?
        .with_name("jwks")
        // Shorter than the JWKS fetch timeout (5 s): a hang counts as a
        // failure.
        .with_call_timeout(Duration::from_secs(4))
        .on_transition(auditor.breaker_listener("jwks"));
    breakers.push(breaker.handle());
    let uri: axum::http::Uri = jwks
        .url
        .parse()
        .map_err(|_| "PORTCULLIS_JWKS_URL: not a valid URL")?;
    let builder = RemoteJwks::builder(uri)
        .refresh_interval(jwks.refresh_interval)
        .cooldown(jwks.cooldown);
    let builder = if jwks.url.starts_with("https://") {
        // The system's roots; the CAPTCHA's client, fed empty GET bodies.
        let https = tower::ServiceBuilder::new()
            .map_request(|req: Request<Empty<Bytes>>| req.map(|_| Full::new(Bytes::new())))
            .service(HttpsClient::new(&TlsRoots::native()?)?);
        builder.client(breaker.layer(https))
    } else {
        // Plain http: only to loopback (checked by the configuration).
        builder.client(
            breaker.layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>()),
        )
    };
    let remote = builder.fetch().await.map_err(|e| {
        format!(
            "PORTCULLIS_JWKS_URL: the first fetch failed ({e}); the server does not start without the provider's keys"
        )
    })?;
    // The task ends when the verifier (and so the key source) is dropped.
    drop(remote.spawn_refresh());
    let verifier = JwtVerifier::builder_remote(remote)
        .issuer(&jwks.issuer)
        .audience(&jwks.audience)
        .leeway(config.token_leeway)
        .build()?;
    let layer = JwtLayer::new(verifier)
        .with_realm("portcullis-demo")
        .with_revocation(backends.revocations.clone());
    Ok((jwks.issuer.clone(), layer.authenticator()))
}

/// The server's own access tokens (bearer or session cookie) or, for a
/// bearer token whose `iss` is the identity provider's, the provider's
/// verifier. The unverified `iss` only picks the verifier: each checks the
/// signature and then `iss` itself, so a token cannot choose its way past
/// either. The two issuers differ ([`config`] refuses the server's own).
struct ByIssuer {
    local: JwtAuthenticator,
    provider: Option<(String, JwtAuthenticator)>,
}

impl Authenticate for ByIssuer {
    fn check(&self, head: &RequestHead<'_>) -> Check {
        if let Some((issuer, provider)) = &self.provider
            && bearer_issuer(head.headers).as_deref() == Some(issuer.as_str())
        {
            return provider.check(head);
        }
        self.local.check(head)
    }

    fn challenge(&self) -> Challenge {
        self.local.challenge()
    }
}

/// The `iss` of the bearer token in `Authorization`, read without
/// verifying it (only to pick a verifier). Anything odd is `None`.
fn bearer_issuer(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.len() > 16 * 1024 {
        return None;
    }
    let payload = token.trim().split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Iss>(&json).ok().map(|c| c.iss)
}

/// CORS for `PORTCULLIS_FRONTEND_ORIGIN` only, with credentials (the
/// session cookie): preflights are answered here; other requests from that
/// origin get `Access-Control-Allow-Origin` on their response.
async fn cors(
    origin: HeaderValue,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let from_frontend = req.headers().get(header::ORIGIN) == Some(&origin);
    let preflight = req.method() == axum::http::Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut res = if preflight {
        if !from_frontend {
            return StatusCode::FORBIDDEN.into_response();
        }
        let mut res = StatusCode::NO_CONTENT.into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "authorization, content-type, x-api-key, x-csrf-token, x-captcha-token",
            ),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        res
    } else {
        next.run(req).await
    };
    let headers = res.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if from_frontend {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    res
}

/// Serves `app` on `listener` until Ctrl-C.
///
/// # Errors
///
/// The server failed.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

// ---------------------------------------------------------------------------
// Responses

/// `{"error", "error_description"}` for a Portcullis rejection, carrying
/// the `Rejection` for the audit layer.
fn reject(rejection: &Rejection) -> Response {
    let mut response: Response = DefaultRejection::new().respond(&HeaderMap::new(), rejection);
    response.extensions_mut().insert(rejection.clone());
    response
}

/// `{"error", "error_description"}` for an application error.
fn app_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn invalid_request(description: &str) -> Response {
    app_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn unavailable() -> Response {
    reject(&Rejection::new(FailureReason::UpstreamUnavailable))
}

/// The body as `T`, only when sent as JSON: a cross-site form or no-CORS
/// `fetch` cannot send `application/json` without a preflight, so the
/// routes outside the CSRF layer (signup, login, refresh) are not reachable
/// from another site's page.
fn parse<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Option<T> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("application/json") || v.to_ascii_lowercase().ends_with("+json")
        });
    if !json {
        return None;
    }
    serde_json::from_slice(body).ok()
}

fn bad_body() -> Response {
    invalid_request("the body must be the documented JSON object, sent as application/json")
}

fn canonical_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

// ---------------------------------------------------------------------------
// Handlers

#[derive(Deserialize)]
struct SignupBody {
    email: String,
    name: String,
    password: String,
}

async fn signup(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(body) = parse::<SignupBody>(&headers, &body) else {
        return bad_body();
    };
    let email = canonical_email(&body.email);
    if !valid_email(&email) {
        return invalid_request("email is not a valid address");
    }
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return invalid_request("name must be 1 to 100 characters");
    }
    let length = body.password.chars().count();
    if length < 8 {
        return invalid_request("password must be at least 8 characters");
    }
    if body.password.len() > 1024 {
        return invalid_request("password must be at most 1024 bytes");
    }
    let password = body.password;
    let Some(Some(password_hash)) = blocking(move || password::hash(&password)).await else {
        return unavailable();
    };
    let Ok(id) = random_hex(16).map(|h| format!("usr_{h}")) else {
        return unavailable();
    };
    let user = users::User {
        id,
        email,
        name,
        password_hash,
        disabled_at: None,
        scopes: USER_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
    };
    match users::insert(&state.0.backends.database.any_pool(), &user).await {
        Ok(()) => (
            StatusCode::CREATED,
            Json(json!({"id": user.id, "email": user.email, "name": user.name})),
        )
            .into_response(),
        Err(users::UserError::EmailTaken) => app_error(
            StatusCode::CONFLICT,
            "email_taken",
            "an account with this email exists",
        ),
        Err(users::UserError::Database) => unavailable(),
    }
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

async fn login(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(body) = parse::<LoginBody>(&headers, &body) else {
        return bad_body();
    };
    let email = canonical_email(&body.email);
    let Ok(user) = users::by_email(&state.0.backends.database.any_pool(), &email).await else {
        return unavailable();
    };
    // Unknown emails verify against a dummy hash: the same work, the same
    // answer.
    let phc = user
        .as_ref()
        .map_or_else(|| state.0.dummy_hash.clone(), |u| u.password_hash.clone());
    let password = body.password;
    let matches = blocking(move || password::verify(&password, &phc))
        .await
        .unwrap_or(false);
    let user = match user {
        Some(user) if matches => user,
        _ => {
            let mut res = reject(&Rejection::new(FailureReason::InvalidCredentials));
            AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
                .with_identifier(email)
                .attach(&mut res);
            return res;
        }
    };
    // Only the right password learns that the account is disabled.
    if user.is_disabled() {
        let mut res = app_error(
            StatusCode::UNAUTHORIZED,
            "user_disabled",
            "this account is disabled: ask an administrator",
        );
        res.extensions_mut()
            .insert(Rejection::new(FailureReason::UserDisabled).with_subject(&*user.id));
        AuthOutcome::failure(AuthMethod::Password, FailureReason::UserDisabled)
            .with_identifier(email)
            .with_subject(user.id)
            .attach(&mut res);
        return res;
    }
    let principal = Principal::new(&user.id, PrincipalKind::User).with_scopes(&user.scopes);
    let pair = match state.0.issuer.issue(&principal) {
        Ok(pair) => pair,
        Err(err) => return reject(&err.to_rejection()),
    };
    let Ok(csrf_token) = state.0.csrf.mint_token(&pair.access_token) else {
        return unavailable();
    };
    let secure = if state.0.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let session = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        pair.access_token, pair.expires_in
    );
    let csrf = format!(
        "{}={csrf_token}; Path=/; SameSite=Lax; Max-Age={}{secure}",
        state.0.csrf.cookie_name(),
        pair.expires_in
    );
    let mut res = Json(json!({
        "access_token": pair.access_token,
        "refresh_token": pair.refresh_token,
        "token_type": TOKEN_TYPE,
        "expires_in": pair.expires_in,
    }))
    .into_response();
    for cookie in [session, csrf] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    AuthOutcome::success(AuthMethod::Password, user.id)
        .with_identifier(email)
        .attach(&mut res);
    res
}

#[derive(Deserialize)]
struct RefreshBody {
    refresh_token: String,
}

async fn refresh(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(body) = parse::<RefreshBody>(&headers, &body) else {
        return bad_body();
    };
    let result = state.0.issuer.refresh(&body.refresh_token).await;
    // Past the signature check (a pair, or a revoked or reused token), the
    // token's subject is genuine: a disabled account is told so.
    if matches!(
        result,
        Ok(_) | Err(RefreshError::Revoked | RefreshError::Reused)
    ) && let Some(subject) = unverified_subject(&body.refresh_token)
    {
        match users::is_disabled(&state.0.backends.database.any_pool(), &subject).await {
            Ok(false) => {}
            Ok(true) => return user_disabled(AuthMethod::Jwt, subject),
            Err(_) => return unavailable(),
        }
    }
    match result {
        Ok(pair) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "token_type": TOKEN_TYPE,
                "expires_in": pair.expires_in,
            })),
        )
            .into_response(),
        Err(err) => {
            let mut res = reject(&err.to_rejection());
            AuthOutcome::failure(AuthMethod::Jwt, err.reason()).attach(&mut res);
            res
        }
    }
}

#[derive(Deserialize)]
struct FamilyClaim {
    fam: Option<String>,
}

async fn logout(State(state): State<AppState>, principal: Principal) -> Response {
    if state.0.is_provider(&principal) {
        return invalid_request(
            "a token of the identity provider ends at the provider: this server logs out its own sessions",
        );
    }
    if principal.kind() != PrincipalKind::User || principal.token_id().is_none() {
        return invalid_request("log out with the access token of a session");
    }
    if state
        .0
        .issuer
        .revoke_access_token(&principal)
        .await
        .is_err()
    {
        return unavailable();
    }
    if let Ok(FamilyClaim { fam: Some(family) }) = principal.claims::<FamilyClaim>() {
        let until =
            SystemTime::now() + state.0.config.refresh_lifetime + state.0.config.token_lifetime;
        if state
            .0
            .backends
            .revocations
            .revoke_family(&family, until)
            .await
            .is_err()
        {
            return unavailable();
        }
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    for cookie in [
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
        format!(
            "{}=; Path=/; SameSite=Lax; Max-Age=0",
            state.0.csrf.cookie_name()
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    res
}

async fn me(principal: Principal) -> Json<Value> {
    Json(json!({
        "id": principal.subject(),
        "kind": principal.kind().as_str(),
        "scopes": principal.scopes().collect::<Vec<_>>(),
    }))
}

/// API keys are managed by their (human) owner, never by another key, nor
/// by a principal of the identity provider: it has no account here, and
/// its subject is the provider's, not one of this server's user ids.
fn is_user(state: &AppState, principal: &Principal) -> bool {
    principal.kind() == PrincipalKind::User && !state.0.is_provider(principal)
}

fn forbidden() -> Response {
    reject(&Rejection::new(FailureReason::InsufficientPermissions))
}

fn unix(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(Value::Null, |d| json!(d.as_secs()))
}

/// Ten years: the longest lifetime an API key may ask for.
const MAX_KEY_LIFETIME_SECS: u64 = 315_360_001;

#[derive(Deserialize)]
struct NewKeyBody {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    expires_in_seconds: Option<u64>,
}

async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_user(&state, &principal) {
        return forbidden();
    }
    let Some(body) = parse::<NewKeyBody>(&headers, &body) else {
        return bad_body();
    };
    // A key never grants more than its owner has.
    if !body.scopes.iter().all(|s| principal.has_scope(s)) {
        return forbidden();
    }
    let mut new = NewApiKey::new(principal.subject(), body.name).with_scopes(body.scopes);
    match body.expires_in_seconds {
        Some(0 | MAX_KEY_LIFETIME_SECS..) => {
            return invalid_request("expires_in_seconds must be 1 to 315360000 (ten years)");
        }
        Some(secs) => new = new.expires_in(Duration::from_secs(secs)),
        None => {}
    }
    match state.0.keys.create(new).await {
        Ok(created) => {
            let info = created.info();
            let body = json!({
                "id": info.key_id,
                "key": created.key(),
                "name": info.name,
                "scopes": info.scopes,
                "expires_at": unix(info.expires_at),
            });
            (
                StatusCode::CREATED,
                [(header::CACHE_CONTROL, "no-store")],
                Json(body),
            )
                .into_response()
        }
        Err(ApiKeyError::Invalid { field, reason }) => {
            invalid_request(&format!("{field} {reason}"))
        }
        Err(_) => unavailable(),
    }
}

async fn list_keys(State(state): State<AppState>, principal: Principal) -> Response {
    if !is_user(&state, &principal) {
        return forbidden();
    }
    let filter = ApiKeyFilter::active()
        .owner(principal.subject())
        .limit(1000);
    match state.0.keys.list(&filter).await {
        Ok(keys) => Json(json!({
            "keys": keys.iter().map(|k| json!({
                "id": k.key_id,
                "name": k.name,
                "scopes": k.scopes,
                "created_at": unix(Some(k.created_at)),
                "expires_at": unix(k.expires_at),
                "last_used_at": unix(k.last_used_at),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(_) => unavailable(),
    }
}

async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Response {
    if !is_user(&state, &principal) {
        return forbidden();
    }
    let not_found = || app_error(StatusCode::NOT_FOUND, "not_found", "no such API key");
    match state.0.keys.get(&id).await {
        Ok(Some(info)) if info.owner == principal.subject() => {}
        Ok(_) | Err(ApiKeyError::NotFound | ApiKeyError::Invalid { .. }) => return not_found(),
        Err(_) => return unavailable(),
    }
    match state.0.keys.revoke(&id).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(ApiKeyError::NotFound) => not_found(),
        Err(_) => unavailable(),
    }
}

async fn list_workflows(principal: Principal) -> Json<Value> {
    Json(json!({
        "owner": principal.subject(),
        "workflows": [
            {"id": "wf_nightly_report", "name": "Nightly report"},
            {"id": "wf_rotate_keys", "name": "Rotate keys"},
        ],
    }))
}

async fn run_workflow(principal: Principal) -> Response {
    let Ok(run) = random_hex(8) else {
        return unavailable();
    };
    (
        StatusCode::ACCEPTED,
        Json(json!({"run_id": format!("run_{run}"), "owner": principal.subject(), "status": "queued"})),
    )
        .into_response()
}

async fn health_detailed(State(state): State<AppState>) -> Response {
    let backends = &state.0.backends;
    let database = backends.database.ping().await;
    let mut healthy = database;
    let mut body = json!({
        "database": {"engine": backends.database.engine(), "status": if database { "ok" } else { "down" }},
    });
    if let Some(redis) = &backends.redis {
        let up = redis.ping().await.is_ok();
        healthy &= up;
        body["redis"] = json!({"status": if up { "ok" } else { "down" }});
    }
    body["circuit_breakers"] = state
        .0
        .breakers
        .iter()
        .map(|b| json!({"name": b.name(), "state": b.state().as_str()}))
        .collect();
    // An open breaker guards a third party (the CAPTCHA provider, the
    // identity provider's JWKS endpoint): the
    // instance is degraded but still serves, so it stays in rotation (200)
    // while a database or Redis outage takes it out (503).
    let breakers_closed = state
        .0
        .breakers
        .iter()
        .all(|b| matches!(b.state(), BreakerState::Closed | BreakerState::Disabled));
    body["status"] = json!(if healthy && breakers_closed {
        "ok"
    } else {
        "degraded"
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The `sub` of a JWT, read without verifying it: only for a token the
/// issuer has just verified.
fn unverified_subject(token: &str) -> Option<String> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct Sub {
        sub: String,
    }
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Sub>(&json).ok().map(|s| s.sub)
}

/// 401 `user_disabled` for `subject`, with its audit outcome.
fn user_disabled(method: AuthMethod, subject: String) -> Response {
    let mut res = reject(&Rejection::new(FailureReason::UserDisabled).with_subject(&*subject));
    AuthOutcome::failure(method, FailureReason::UserDisabled)
        .with_subject(subject)
        .attach(&mut res);
    res
}

fn method_of(principal: &Principal) -> AuthMethod {
    match principal.kind() {
        PrincipalKind::ApiKey => AuthMethod::ApiKey,
        _ => AuthMethod::Jwt,
    }
}

/// Checks the account behind an authenticated request: disabled → 401
/// `user_disabled`, gone → 401 `user_not_found`. Otherwise a user's
/// session gets the account's current scopes (an operator's grant or revoke
/// applies from the next request), and an API key keeps its own scopes
/// narrowed to what its owner has now (a revoke applies to it at once; a
/// key never gains a scope).
async fn current_account(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return next.run(req).await;
    };
    // A principal of the identity provider has no account here: the
    // provider vouches for it (signature, issuer, audience, expiry) and its
    // token's scopes are what it may do. Looking its subject up in `users`
    // would refuse every such principal, or worse, apply a local account's
    // state to a stranger who happens to share its id. Disabling it is the
    // provider's job; here the operator revokes its subject or token id
    // (the provider's verifier reads the same revocation store).
    if state.0.is_provider(&principal) {
        return next.run(req).await;
    }
    let pool = state.0.backends.database.any_pool();
    let user = match users::by_id(&pool, principal.subject()).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let subject = principal.subject().to_owned();
            let mut res =
                reject(&Rejection::new(FailureReason::UserNotFound).with_subject(&*subject));
            AuthOutcome::failure(method_of(&principal), FailureReason::UserNotFound)
                .with_subject(subject)
                .attach(&mut res);
            return res;
        }
        Err(_) => return unavailable(),
    };
    if user.is_disabled() {
        return user_disabled(method_of(&principal), user.id);
    }
    let scopes: Vec<String> = if principal.kind() == PrincipalKind::User {
        // A user's session: the account's scopes now. The token's `scope`
        // claim is what the account had at login; the database decides.
        user.scopes.clone()
    } else {
        // An API key: its own scopes, never more than its owner has now.
        principal
            .scopes()
            .filter(|s| user.scopes.iter().any(|u| u == s))
            .map(str::to_owned)
            .collect()
    };
    if !principal.scopes().eq(scopes.iter().map(String::as_str)) {
        req.extensions_mut().insert(principal.with_scopes(scopes));
    }
    next.run(req).await
}

/// A token refused as revoked whose (verified) subject is a disabled
/// account is answered `user_disabled`: disabling revokes every token, and
/// the reason the holder and the audit trail see is the account's state.
async fn disabled_not_revoked(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let res = next.run(req).await;
    let Some(subject) = res
        .extensions()
        .get::<Rejection>()
        .filter(|r| r.reason() == FailureReason::TokenRevoked)
        .and_then(|r| r.subject().map(str::to_owned))
    else {
        return res;
    };
    match users::is_disabled(&state.0.backends.database.any_pool(), &subject).await {
        Ok(true) => user_disabled(AuthMethod::Jwt, subject),
        Ok(false) => res,
        Err(_) => unavailable(),
    }
}

/// Revokes every token `subject` holds, through the revocation store the
/// server reads: access and refresh tokens issued up to now stop working
/// (after the JWT layer's revocation cache, 2 s by default).
///
/// # Errors
///
/// When the store cannot answer.
pub async fn revoke_all_tokens(
    backends: &Backends,
    config: &Config,
    subject: &str,
) -> Result<(), portcullis::StoreError> {
    let now = SystemTime::now();
    // As TokenIssuer::revoke_all_for_subject: as long as any token issued
    // until now can live.
    let until = now + FAMILY_LIFETIME.max(config.refresh_lifetime) + config.token_lifetime;
    backends
        .revocations
        .revoke_subject(subject, now, until)
        .await
}
