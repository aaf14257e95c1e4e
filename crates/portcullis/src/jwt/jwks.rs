//! Keys from a remote JWKS endpoint: fetched at start, refreshed on a
//! schedule and on unknown `kid` (with a cooldown), kept when a refresh fails.
//!
//! Only the configured URL is ever fetched: a token's `jku`, `x5u` or
//! embedded `jwk` never causes a request. Keys with `use` other than `sig`,
//! `key_ops` without `verify`, symmetric keys, weak keys and keys whose `kid`
//! appears twice are skipped (see [`Jwk`](super::Jwk)).
//!
//! The HTTP client is a tower service, so it can be any client you already
//! use — one with TLS, a proxy, or wrapped in a circuit breaker. The built-in
//! [`RemoteJwks::http`] client speaks plain HTTP, for identity providers on
//! a private network or loopback; pass a TLS-capable client with
//! [`RemoteJwksBuilder::client`] for `https` URLs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt as _, Empty, Limited};
use tokio::time::Instant;
use tower::ServiceExt as _;
use tower_service::Service;

use super::KeySet;
use crate::ConfigError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type FetchFuture = Pin<Box<dyn Future<Output = Result<Bytes, JwksError>> + Send>>;
type Fetch = Arc<dyn Fn(Uri, usize) -> FetchFuture + Send + Sync>;

/// A JWKS fetch failed. Keys from the last good fetch stay in use.
#[derive(Debug)]
#[non_exhaustive]
pub enum JwksError {
    /// The endpoint answered with a non-200 status.
    Status(StatusCode),
    /// The request failed (connection refused, DNS, TLS…).
    Transport(BoxError),
    /// No answer within the timeout.
    Timeout,
    /// The body exceeded the size cap.
    TooLarge,
    /// The body is not a JWKS.
    Invalid(ConfigError),
    /// The JWKS held no usable signing key.
    NoUsableKeys,
    /// The last fetch failed and the cooldown forbids another one yet.
    StillFailing {
        /// When the cooldown ends and a fetch may be tried again.
        retry_after: Duration,
    },
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "JWKS endpoint answered {status}"),
            Self::Transport(_) => f.write_str("JWKS request failed"),
            Self::Timeout => f.write_str("JWKS request timed out"),
            Self::TooLarge => f.write_str("JWKS response too large"),
            Self::Invalid(err) => write!(f, "JWKS unreadable: {err}"),
            Self::NoUsableKeys => f.write_str("JWKS has no usable signing keys"),
            Self::StillFailing { .. } => f.write_str("JWKS unavailable: the last fetch failed"),
        }
    }
}

impl std::error::Error for JwksError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transport(err) => Some(&**err),
            Self::Invalid(err) => Some(err),
            _ => None,
        }
    }
}

/// A key set kept in sync with a remote JWKS. Clones share the keys.
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

struct Inner {
    uri: Uri,
    fetch: Fetch,
    keys: RwLock<Arc<KeySet>>,
    last_attempt: Mutex<Option<Instant>>,
    single_flight: tokio::sync::Mutex<()>,
    cooldown: Duration,
    interval: Duration,
    timeout: Duration,
    max_body: usize,
    fetches: AtomicU64,
    failures: AtomicU64,
    last_failed: AtomicBool,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("uri", &self.inner.uri)
            .field("keys", &self.current().len())
            .field("fetches", &self.fetch_count())
            .finish_non_exhaustive()
    }
}

/// Configures a [`RemoteJwks`].
#[must_use]
pub struct RemoteJwksBuilder {
    uri: Uri,
    fetch: Option<Fetch>,
    cooldown: Duration,
    interval: Duration,
    timeout: Duration,
    max_body: usize,
}

impl fmt::Debug for RemoteJwksBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwksBuilder")
            .field("uri", &self.uri)
            .field("cooldown", &self.cooldown)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl RemoteJwksBuilder {
    /// Uses `client` for requests (a TLS client, a client behind a circuit
    /// breaker…). It receives `GET` requests with an empty body.
    pub fn client<S, B>(mut self, client: S) -> Self
    where
        S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.fetch = Some(fetch_with(client));
        self
    }

    /// Minimum time between fetches triggered by unknown `kid`s
    /// (default 30 s). However many unknown-`kid` tokens arrive, the
    /// endpoint sees at most one request per cooldown.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Scheduled refresh interval for [`RemoteJwks::spawn_refresh`]
    /// (default 5 minutes).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Per-request timeout (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Caps the response body (default 256 KiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Fetches the keys once and returns the source.
    ///
    /// # Errors
    ///
    /// When the first fetch fails: a service should not start without keys.
    pub async fn fetch(self) -> Result<RemoteJwks, JwksError> {
        let fetch = match self.fetch {
            Some(fetch) => fetch,
            None => fetch_with(
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Empty<Bytes>>(),
            ),
        };
        let jwks = RemoteJwks {
            inner: Arc::new(Inner {
                uri: self.uri,
                fetch,
                keys: RwLock::new(Arc::new(KeySet::new())),
                last_attempt: Mutex::new(None),
                single_flight: tokio::sync::Mutex::new(()),
                cooldown: self.cooldown,
                interval: self.interval,
                timeout: self.timeout,
                max_body: self.max_body,
                fetches: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                last_failed: AtomicBool::new(false),
            }),
        };
        jwks.refresh().await?;
        Ok(jwks)
    }
}

impl RemoteJwks {
    /// Starts configuring a JWKS source at `uri`.
    pub fn builder(uri: Uri) -> RemoteJwksBuilder {
        RemoteJwksBuilder {
            uri,
            fetch: None,
            cooldown: Duration::from_secs(30),
            interval: Duration::from_secs(300),
            timeout: Duration::from_secs(5),
            max_body: 256 * 1024,
        }
    }

    /// Fetches `uri` over plain HTTP with default settings.
    ///
    /// # Errors
    ///
    /// When the first fetch fails.
    pub async fn http(uri: Uri) -> Result<Self, JwksError> {
        Self::builder(uri).fetch().await
    }

    /// The keys in use now.
    #[must_use]
    pub fn current(&self) -> Arc<KeySet> {
        let guard = self
            .inner
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// Requests made to the endpoint so far.
    #[must_use]
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Fetches that failed so far.
    #[must_use]
    pub fn failure_count(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Fetches now, replacing the keys on success and keeping them on error.
    ///
    /// # Errors
    ///
    /// The fetch error; the previous keys stay in use.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let _flight = self.inner.single_flight.lock().await;
        self.fetch_now().await
    }

    async fn fetch_now(&self) -> Result<(), JwksError> {
        let inner = &self.inner;
        *inner
            .last_attempt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        inner.fetches.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let body = tokio::time::timeout(
                inner.timeout,
                (inner.fetch)(inner.uri.clone(), inner.max_body),
            )
            .await
            .map_err(|_| JwksError::Timeout)??;
            let (keys, _skipped) = KeySet::from_remote_jwks(&body).map_err(JwksError::Invalid)?;
            if keys.is_empty() {
                return Err(JwksError::NoUsableKeys);
            }
            Ok(keys)
        }
        .await;
        match result {
            Ok(keys) => {
                *inner
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
                inner.last_failed.store(false, Ordering::Relaxed);
                Ok(())
            }
            Err(err) => {
                inner.failures.fetch_add(1, Ordering::Relaxed);
                inner.last_failed.store(true, Ordering::Relaxed);
                #[cfg(feature = "tracing")]
                tracing::warn!(target: "portcullis::jwks", error = %err, "JWKS refresh failed; keeping previous keys");
                Err(err)
            }
        }
    }

    fn within_cooldown(&self) -> bool {
        self.cooldown_left().is_some()
    }

    /// What is left of the cooldown after the last fetch attempt, if any.
    fn cooldown_left(&self) -> Option<Duration> {
        let last = *self
            .inner
            .last_attempt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.and_then(|at| self.inner.cooldown.checked_sub(at.elapsed()))
            .filter(|left| !left.is_zero())
    }

    /// Called when a token names a `kid` we do not have. Returns whether the
    /// keys may have changed (so verification is worth retrying), or an
    /// error when the endpoint cannot be reached: the caller then fails
    /// closed instead of calling the token invalid.
    pub(crate) async fn refresh_on_unknown_kid(&self) -> Result<bool, JwksError> {
        let still_failing = || {
            if self.inner.last_failed.load(Ordering::Relaxed) {
                Err(JwksError::StillFailing {
                    retry_after: self.cooldown_left().unwrap_or_default(),
                })
            } else {
                Ok(false)
            }
        };
        if self.within_cooldown() {
            return still_failing();
        }
        let before = self.current();
        let _flight = self.inner.single_flight.lock().await;
        // Another request may have refreshed while we waited.
        if !Arc::ptr_eq(&self.current(), &before) {
            return Ok(true);
        }
        if self.within_cooldown() {
            return still_failing();
        }
        self.fetch_now().await.map(|()| true)
    }

    /// Spawns a task that refreshes the keys every refresh interval. It
    /// stops when every clone of this `RemoteJwks` is dropped.
    #[must_use = "the task runs until aborted or until the key source is dropped"]
    pub fn spawn_refresh(&self) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else {
                    break;
                };
                let _ = Self { inner }.refresh().await;
            }
        })
    }
}

/// Turns a tower HTTP client into the fetch function.
fn fetch_with<S, B>(client: S) -> Fetch
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Arc::new(move |uri: Uri, max_body: usize| {
        let client = client.clone();
        Box::pin(async move {
            let request = Request::get(uri)
                .header(http::header::ACCEPT, "application/json")
                .body(Empty::new())
                .map_err(|e| JwksError::Transport(Box::new(e)))?;
            let response = client
                .oneshot(request)
                .await
                .map_err(|e| JwksError::Transport(e.into()))?;
            if response.status() != StatusCode::OK {
                return Err(JwksError::Status(response.status()));
            }
            let body = Limited::new(response.into_body(), max_body);
            match body.collect().await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                    Err(JwksError::TooLarge)
                }
                Err(err) => Err(JwksError::Transport(err)),
            }
        }) as FetchFuture
    })
}
