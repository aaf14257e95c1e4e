//! `JwtLayer`: configuration and `impl Layer`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{BoxRevocationStore, Challenge, RevocationStore};
use tower_layer::Layer;

use super::cache::{RevocationCache, TokenCache};
use super::extract::TokenSource;
use super::service::Jwt;
use super::verifier::JwtVerifier;
use crate::rejection::DefaultRejection;

/// Default time a "not revoked" answer is reused: the revocation
/// propagation bound.
pub const DEFAULT_REVOCATION_CACHE_TTL: Duration = Duration::from_secs(2);

/// Layer that applies the [`Jwt`] middleware: bearer-JWT authentication.
///
/// See the [module docs](crate::jwt) for examples.
#[must_use]
pub struct JwtLayer<R = DefaultRejection> {
    config: Shared,
    respond: R,
}

#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) verifier: JwtVerifier,
    pub(crate) source: TokenSource,
    pub(crate) challenge: Challenge,
    pub(crate) revocation: Option<BoxRevocationStore>,
    pub(crate) revocation_cache: Arc<RevocationCache>,
    pub(crate) token_cache: Option<Arc<TokenCache>>,
    pub(crate) shadow: bool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("verifier", &self.verifier)
            .field("source", &self.source)
            .field("challenge", &self.challenge)
            .field("revocation", &self.revocation.is_some())
            .field("token_cache", &self.token_cache.as_ref().map(|c| c.len()))
            .field("shadow", &self.shadow)
            .finish()
    }
}

impl<R: fmt::Debug> fmt::Debug for JwtLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtLayer")
            .field("config", &self.config)
            .field("respond", &self.respond)
            .finish()
    }
}

impl<R: Clone> Clone for JwtLayer<R> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            respond: self.respond.clone(),
        }
    }
}

impl JwtLayer {
    /// A layer reading `Authorization: Bearer` and verifying with `verifier`.
    pub fn new(verifier: JwtVerifier) -> Self {
        Self {
            config: Shared {
                verifier,
                source: TokenSource {
                    header: true,
                    cookie: None,
                },
                challenge: Challenge::bearer(),
                revocation: None,
                revocation_cache: Arc::new(RevocationCache::new(
                    10_000,
                    DEFAULT_REVOCATION_CACHE_TTL,
                )),
                token_cache: None,
                shadow: false,
            },
            respond: DefaultRejection::new(),
        }
    }
}

impl<R> JwtLayer<R> {
    /// Also reads the token from cookie `name` (browser apps). A request
    /// carrying both a bearer header and the cookie is refused with
    /// `invalid_request`, as is a request carrying the cookie twice.
    pub fn with_cookie(mut self, name: impl Into<String>) -> Self {
        self.config.source.cookie = Some(name.into());
        self
    }

    /// Reads the token from the cookie only, never from `Authorization`.
    pub fn cookie_only(mut self, name: impl Into<String>) -> Self {
        let source = &mut self.config.source;
        source.cookie = Some(name.into());
        source.header = false;
        self
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenge.
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.config.challenge = Challenge::bearer().with_realm(realm.into());
        self
    }

    /// Checks every accepted token against `store` (by `jti`, refresh
    /// family and per-subject watermark). A store that cannot answer makes
    /// the request fail with `503 upstream_unavailable`: never allowed.
    pub fn with_revocation(mut self, store: impl RevocationStore) -> Self {
        self.config.revocation = Some(BoxRevocationStore::new(store));
        self
    }

    /// How long a "not revoked" answer is reused (default 2 s; zero asks the
    /// store on every request). This is the revocation propagation bound.
    pub fn with_revocation_cache_ttl(mut self, ttl: Duration) -> Self {
        self.config.revocation_cache = Arc::new(RevocationCache::new(10_000, ttl));
        self
    }

    /// Caches up to `capacity` verified tokens for at most `ttl`, so repeated
    /// requests with one token skip parsing and signature checks. Expiry is
    /// still checked on every hit, and revocation as configured.
    pub fn with_token_cache(mut self, capacity: usize, ttl: Duration) -> Self {
        self.config.token_cache = Some(Arc::new(TokenCache::new(capacity, ttl)));
        self
    }

    /// Shadow mode: decide and report (an [`AuthOutcome`] marked shadow in
    /// the response extensions) but let every request through. For rolling
    /// the layer out while watching what it would refuse.
    ///
    /// [`AuthOutcome`]: portcullis_core::AuthOutcome
    pub fn shadow_mode(mut self) -> Self {
        self.config.shadow = true;
        self
    }

    /// Replaces the response sent when a request is rejected.
    pub fn with_rejection_response<R2>(self, respond: R2) -> JwtLayer<R2> {
        JwtLayer {
            config: self.config,
            respond,
        }
    }

    /// The verifier.
    #[must_use]
    pub fn verifier(&self) -> &JwtVerifier {
        &self.config.verifier
    }
}

impl<S, R: Clone> Layer<S> for JwtLayer<R> {
    type Service = Jwt<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Jwt {
            inner,
            shared: Arc::new(self.config.clone()),
            respond: self.respond.clone(),
        }
    }
}

/// `JwtLayer`'s decision as an [`Authenticate`](crate::authenticate::Authenticate)
/// value, for composing with other authenticators (`jwt.or(api_key)`,
/// `jwt.optional()`, `remote.with_fallback(local, timeout)`).
///
/// A request without a bearer token (or with another scheme) is *not
/// present*; a bearer token that fails is *rejected*.
#[cfg(feature = "authenticate")]
#[derive(Clone, Debug)]
pub struct JwtAuthenticator {
    shared: Arc<Shared>,
}

#[cfg(feature = "authenticate")]
impl<R> JwtLayer<R> {
    /// This layer's configuration as a composable authenticator.
    #[must_use]
    pub fn authenticator(&self) -> JwtAuthenticator {
        JwtAuthenticator {
            shared: Arc::new(self.config.clone()),
        }
    }
}

#[cfg(feature = "authenticate")]
impl crate::authenticate::Authenticate for JwtAuthenticator {
    fn check(&self, head: &crate::authenticate::RequestHead<'_>) -> crate::authenticate::Check {
        use super::service::{Decision, rejection};
        use crate::authenticate::{AuthDecision, Check};
        use portcullis_core::{AuthMethod, FailureReason};

        let shared = &self.shared;
        match shared.decide(head.headers, head.uri) {
            Decision::Accept(verified) => Check::Ready(AuthDecision::Accepted(
                verified.into_principal(),
                AuthMethod::Jwt,
            )),
            Decision::Reject(_, FailureReason::MissingToken) => {
                Check::Ready(AuthDecision::NotPresent)
            }
            Decision::Reject(err, reason) => Check::Ready(AuthDecision::Rejected(
                rejection(shared, &err, reason),
                AuthMethod::Jwt,
            )),
            Decision::Pending(check) => {
                let shared = Arc::clone(shared);
                Check::Pending(Box::pin(async move {
                    match check.await {
                        Ok(verified) => {
                            AuthDecision::Accepted(verified.into_principal(), AuthMethod::Jwt)
                        }
                        Err(err) => {
                            let reason = err.reason();
                            AuthDecision::Rejected(
                                rejection(&shared, &err, reason),
                                AuthMethod::Jwt,
                            )
                        }
                    }
                }))
            }
        }
    }

    fn challenge(&self) -> Challenge {
        self.shared.challenge.clone()
    }
}
