//! `CsrfToken`: the handle handlers use to read the current token and to
//! rotate it at login.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::HeaderName;
use portcullis_core::{CsrfTokenRecord, CsrfTokenStore as _, StoreError};

use super::config::Config;
use super::token::{RandomError, digest_of};

/// Marks a request as exempt from CSRF checks.
///
/// Insert it from an **outer** layer that authenticated the request by a
/// means a browser cannot attach by itself (mutual TLS, a signed webhook).
/// Clients cannot set request extensions, so the marker is trusted as is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CsrfExempt;

/// A token could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum CsrfError {
    /// The random number generator failed.
    Random(RandomError),
    /// The token store failed; the source is kept.
    Store(StoreError),
}

impl fmt::Display for CsrfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Random(_) => f.write_str("could not generate a CSRF token"),
            Self::Store(_) => f.write_str("the CSRF token store failed"),
        }
    }
}

impl std::error::Error for CsrfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Random(err) => Some(err),
            Self::Store(err) => Some(err),
        }
    }
}

/// The request's CSRF token, in the request extensions of every request the
/// layer lets through (and an axum extractor with the `axum` feature).
///
/// - [`token`](Self::token): the token to render into a form field or a
///   `<meta>` tag for scripts. On a safe request the layer has already
///   checked the cookie (or issued a new one), except for the API clients
///   [`exempt_requests_without_ambient_credentials`](super::CsrfLayerBuilder::exempt_requests_without_ambient_credentials)
///   exempts; otherwise one is made on first use and set as a cookie on
///   the response.
/// - [`rotate`](Self::rotate): after login (or logout), a new token bound
///   to the new session id; the response carries it as a new cookie. The
///   pre-session token the login form used is then worthless.
///
/// `Debug` never prints the token.
#[derive(Clone)]
pub struct CsrfToken(Arc<Shared>);

struct Shared {
    config: Arc<Config>,
    state: Mutex<State>,
}

pub(crate) struct State {
    pub(crate) session: Option<Box<str>>,
    pub(crate) token: Option<String>,
    /// The response must set the cookie to `token`.
    pub(crate) issue: bool,
}

impl CsrfToken {
    pub(crate) fn new(config: Arc<Config>, state: State) -> Self {
        Self(Arc::new(Shared {
            config,
            state: Mutex::new(state),
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain data written whole: poisoning cannot leave it
        // half-updated.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.0.config
    }

    /// The current token; made (and set as a cookie on the response) if the
    /// request had none.
    ///
    /// # Errors
    ///
    /// A new token was needed and the random generator or the token store
    /// failed.
    pub async fn token(&self) -> Result<String, CsrfError> {
        let session = {
            let state = self.lock();
            if let Some(token) = &state.token {
                return Ok(token.clone());
            }
            state.session.clone()
        };
        let token = self.mint(session.as_deref()).await?;
        let mut state = self.lock();
        if let Some(existing) = &state.token {
            // Another clone got there first: keep one token per response.
            return Ok(existing.clone());
        }
        state.token = Some(token.clone());
        state.issue = true;
        Ok(token)
    }

    /// Binds a new token to `new_session_id` (`""` after logout: a
    /// pre-session token) and sets it as the cookie on the response.
    /// Returns the new token. With a store, the old session's tokens are
    /// revoked.
    ///
    /// # Errors
    ///
    /// The random generator or the token store failed.
    pub async fn rotate(&self, new_session_id: &str) -> Result<String, CsrfError> {
        let new_session = (!new_session_id.is_empty()).then_some(new_session_id);
        let old = self.lock().session.clone();
        if let (Some(store), Some(old)) = (&self.config().store, old.as_deref())
            && Some(old) != new_session
        {
            store
                .store
                .revoke_session(old)
                .await
                .map_err(CsrfError::Store)?;
        }
        let token = self.mint(new_session).await?;
        let mut state = self.lock();
        state.session = new_session.map(Into::into);
        state.token = Some(token.clone());
        state.issue = true;
        Ok(token)
    }

    /// The header scripts echo the token in (`x-csrf-token` by default).
    #[must_use]
    pub fn header_name(&self) -> &HeaderName {
        &self.config().header
    }

    /// The token cookie's name (`__Host-csrf` by default).
    #[must_use]
    pub fn cookie_name(&self) -> &str {
        &self.config().cookie.name
    }

    async fn mint(&self, session: Option<&str>) -> Result<String, CsrfError> {
        mint(self.config(), session).await
    }
}

/// A new token for `session`, recorded in the store when there is one and
/// a session.
pub(crate) async fn mint(config: &Config, session: Option<&str>) -> Result<String, CsrfError> {
    let token = config
        .secret
        .mint(session.unwrap_or_default())
        .map_err(CsrfError::Random)?;
    if let (Some(store), Some(session)) = (&config.store, session) {
        let record =
            CsrfTokenRecord::new(session, digest_of(&token), config.clock.now() + store.ttl);
        store.store.issue(record).await.map_err(CsrfError::Store)?;
    }
    Ok(token)
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("CsrfToken")
            .field("token", &state.token.as_ref().map(|_| "<redacted>"))
            .field("session", &state.session.as_ref().map(|_| "<redacted>"))
            .field("issue", &state.issue)
            .finish()
    }
}

#[cfg(feature = "axum")]
mod extractor {
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    use super::CsrfToken;

    /// The handler asked for a [`CsrfToken`] but no `CsrfLayer` is in front
    /// of it: a wiring mistake, answered with 500.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct MissingCsrfLayer;

    impl IntoResponse for MissingCsrfLayer {
        fn into_response(self) -> Response {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "CsrfToken extractor used on a route without CsrfLayer",
            )
                .into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
        type Rejection = MissingCsrfLayer;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<Self>()
                .cloned()
                .ok_or(MissingCsrfLayer)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for CsrfToken {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<Self>().cloned())
        }
    }
}

#[cfg(feature = "axum")]
pub use extractor::MissingCsrfLayer;
