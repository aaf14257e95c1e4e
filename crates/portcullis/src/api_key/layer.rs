//! `ApiKeyLayer`: configuration and `impl Layer`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use portcullis_core::{ApiKeyStore, Challenge, SharedClock, SystemClock};
use tower_layer::Layer;

use super::cache::{KeyCache, Toucher};
use super::extract::KeySource;
use super::format::{KeyFormat, KeyHasher};
use super::manage::ApiKeys;
use super::service::ApiKey;
use crate::ConfigError;
use crate::rejection::DefaultRejection;

/// Default time an accepted key is reused from the cache without asking the
/// store: the revocation propagation bound.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);

/// Default number of keys the positive-lookup cache holds.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Default debounce interval of `last_used_at` writes, per key and process.
pub const DEFAULT_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// Everything the layer, its authenticator and the management API share.
pub(crate) struct Config<St> {
    pub(crate) store: Arc<St>,
    pub(crate) format: KeyFormat,
    pub(crate) hasher: KeyHasher,
    pub(crate) source: KeySource,
    pub(crate) challenge: Challenge,
    pub(crate) cache: Arc<KeyCache>,
    pub(crate) clock: SharedClock,
    pub(crate) touch: Arc<Toucher>,
    pub(crate) shadow: bool,
}

impl<St> Config<St> {
    pub(crate) fn new(store: Arc<St>) -> Self {
        Self {
            store,
            format: KeyFormat::default(),
            hasher: KeyHasher::Sha256,
            source: KeySource::default(),
            challenge: Challenge::new("ApiKey"),
            cache: Arc::new(KeyCache::new(DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL)),
            clock: Arc::new(SystemClock),
            touch: Arc::new(Toucher::new(Some(DEFAULT_TOUCH_INTERVAL))),
            shadow: false,
        }
    }
}

// Hand-written so that `St` need not be `Clone`: the store is behind an `Arc`.
impl<St> Clone for Config<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            format: self.format.clone(),
            hasher: self.hasher.clone(),
            source: self.source.clone(),
            challenge: self.challenge.clone(),
            cache: Arc::clone(&self.cache),
            clock: Arc::clone(&self.clock),
            touch: Arc::clone(&self.touch),
            shadow: self.shadow,
        }
    }
}

impl<St> fmt::Debug for Config<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("format", &self.format)
            .field("hasher", &self.hasher)
            .field("source", &self.source)
            .field("challenge", &self.challenge)
            .field("cache_ttl", &self.cache.ttl())
            .field("cache_len", &self.cache.len())
            .field("touch_interval_ms", &self.touch.interval_ms)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

/// Layer that applies the [`ApiKey`] middleware: API-key authentication.
///
/// Configure it, then take the management API with [`keys`](Self::keys) so
/// keys are created with the same format and pepper the layer checks.
///
/// See the [module docs](crate::api_key) for examples.
#[must_use]
pub struct ApiKeyLayer<St, R = DefaultRejection> {
    config: Config<St>,
    respond: R,
}

impl<St, R: Clone> Clone for ApiKeyLayer<St, R> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            respond: self.respond.clone(),
        }
    }
}

impl<St, R: fmt::Debug> fmt::Debug for ApiKeyLayer<St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("config", &self.config)
            .field("respond", &self.respond)
            .finish()
    }
}

impl<St: ApiKeyStore> ApiKeyLayer<St> {
    /// A layer checking `pc_live_` keys against `store`, read from
    /// `X-API-Key` or `Authorization: ApiKey`, digested with plain SHA-256,
    /// with a 5 s positive-lookup cache and `last_used_at` written at most
    /// once a minute per key.
    pub fn new(store: St) -> Self {
        Self::shared(Arc::new(store))
    }

    /// Like [`new`](Self::new) with a store shared with other code (an
    /// admin handler, a test that counts lookups).
    pub fn shared(store: Arc<St>) -> Self {
        Self {
            config: Config::new(store),
            respond: DefaultRejection::new(),
        }
    }
}

impl<St, R> ApiKeyLayer<St, R> {
    /// Issues and accepts keys of `format` (issuer and environment) instead
    /// of `pc_live_`.
    pub fn with_format(mut self, format: KeyFormat) -> Self {
        self.config.format = format;
        self
    }

    /// Digests keys with HMAC-SHA256 under `pepper`, a server-side secret
    /// kept out of the store (a stolen key table is then useless on its
    /// own). Without it keys are digested with plain SHA-256, which their
    /// 178 random bits make safe (ASVS 6.5.2). Changing the pepper
    /// invalidates every key issued under the old one.
    ///
    /// # Errors
    ///
    /// The pepper must be at least 32 bytes.
    pub fn with_pepper(mut self, pepper: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        self.config.hasher = KeyHasher::pepper(pepper.as_ref())?;
        Ok(self)
    }

    /// Reads the key from `header` instead of `X-API-Key`.
    pub fn with_header(mut self, header: HeaderName) -> Self {
        self.config.source.header = Some(header);
        self
    }

    /// Reads only the dedicated header, never `Authorization: ApiKey`.
    pub fn without_authorization_scheme(mut self) -> Self {
        self.config.source.authorization = false;
        self
    }

    /// Sets the `realm` of the `WWW-Authenticate: ApiKey` challenge.
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.config.challenge = Challenge::new("ApiKey").with_realm(realm.into());
        self
    }

    /// Caches up to `capacity` accepted keys for less than `ttl` each
    /// (default 10 000 keys, 5 s). `ttl` is the revocation bound: a key
    /// revoked in the store is refused by every instance at most `ttl`
    /// later. A zero `ttl` asks the store on every request.
    pub fn with_cache(mut self, capacity: usize, ttl: Duration) -> Self {
        self.config.cache = Arc::new(KeyCache::new(capacity, ttl));
        self
    }

    /// Writes `last_used_at` at most once per `interval` per key and
    /// process (default one minute), from a spawned task off the request's
    /// path. Outside a tokio runtime nothing is written.
    pub fn with_touch_interval(mut self, interval: Duration) -> Self {
        self.config.touch = Arc::new(Toucher::new(Some(interval)));
        self
    }

    /// Never writes `last_used_at`.
    pub fn without_touch(mut self) -> Self {
        self.config.touch = Arc::new(Toucher::new(None));
        self
    }

    /// Reads time (expiry, cache age, touches) from `clock`.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Shadow mode: decide and report (an [`AuthOutcome`] marked shadow in
    /// the response extensions) but let every request through.
    ///
    /// [`AuthOutcome`]: portcullis_core::AuthOutcome
    pub fn shadow_mode(mut self) -> Self {
        self.config.shadow = true;
        self
    }

    /// Replaces the response sent when a request is rejected.
    pub fn with_rejection_response<R2>(self, respond: R2) -> ApiKeyLayer<St, R2> {
        ApiKeyLayer {
            config: self.config,
            respond,
        }
    }

    /// The key format.
    #[must_use]
    pub fn format(&self) -> &KeyFormat {
        &self.config.format
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &St {
        &self.config.store
    }

    /// The management API over the same store, format, pepper, clock and
    /// cache (a revocation through it also drops the key from this layer's
    /// cache at once). Call it after configuring the layer.
    #[must_use]
    pub fn keys(&self) -> ApiKeys<St> {
        ApiKeys::from_config(self.config.clone())
    }
}

impl<S, St, R: Clone> Layer<S> for ApiKeyLayer<St, R> {
    type Service = ApiKey<S, St, R>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKey {
            inner,
            config: Arc::new(self.config.clone()),
            respond: self.respond.clone(),
        }
    }
}

/// `ApiKeyLayer`'s decision as an
/// [`Authenticate`](crate::authenticate::Authenticate) value, for composing
/// (`jwt.or(api_key)`, `api_key.optional()`, `all_of(jwt, api_key)`).
///
/// A request without an API key (no `X-API-Key`, no `Authorization: ApiKey`)
/// is *not present*; a key that fails is *rejected*. Shadow mode does not
/// apply to it.
#[cfg(feature = "authenticate")]
pub struct ApiKeyAuthenticator<St> {
    config: Arc<Config<St>>,
}

#[cfg(feature = "authenticate")]
impl<St> Clone for ApiKeyAuthenticator<St> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
        }
    }
}

#[cfg(feature = "authenticate")]
impl<St> fmt::Debug for ApiKeyAuthenticator<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("config", &self.config)
            .finish()
    }
}

#[cfg(feature = "authenticate")]
impl<St, R> ApiKeyLayer<St, R> {
    /// This layer's configuration as a composable authenticator (sharing
    /// its cache).
    #[must_use]
    pub fn authenticator(&self) -> ApiKeyAuthenticator<St> {
        ApiKeyAuthenticator {
            config: Arc::new(self.config.clone()),
        }
    }
}

#[cfg(feature = "authenticate")]
impl<St: ApiKeyStore> crate::authenticate::Authenticate for ApiKeyAuthenticator<St> {
    fn check(&self, head: &crate::authenticate::RequestHead<'_>) -> crate::authenticate::Check {
        use super::service::Decision;
        use crate::authenticate::{AuthDecision, Check};
        use portcullis_core::{AuthMethod, FailureReason};

        match self.config.decide(head.headers, head.uri) {
            Decision::Accept(principal) => {
                Check::Ready(AuthDecision::Accepted(principal, AuthMethod::ApiKey))
            }
            Decision::Reject(rejection) if rejection.reason() == FailureReason::MissingToken => {
                Check::Ready(AuthDecision::NotPresent)
            }
            Decision::Reject(rejection) => {
                Check::Ready(AuthDecision::Rejected(rejection, AuthMethod::ApiKey))
            }
            Decision::Pending(lookup) => Check::Pending(Box::pin(async move {
                match lookup.await {
                    Ok(principal) => AuthDecision::Accepted(principal, AuthMethod::ApiKey),
                    Err(rejection) => AuthDecision::Rejected(rejection, AuthMethod::ApiKey),
                }
            })),
        }
    }

    fn challenge(&self) -> Challenge {
        self.config.challenge.clone()
    }
}
