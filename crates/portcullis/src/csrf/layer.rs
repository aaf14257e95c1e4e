//! `CsrfLayer` and `impl Layer`.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::config::{Config, CsrfLayerBuilder};
use super::form::{FormField, HeaderOnly};
use super::service::Csrf;
use super::token::{CsrfSecret, RandomError};
use crate::rejection::DefaultRejection;

/// Layer that applies the [`Csrf`] middleware.
///
/// Build it with [`CsrfLayer::builder`]; see the [module
/// docs](crate::csrf).
#[must_use]
pub struct CsrfLayer<R = DefaultRejection, F = HeaderOnly> {
    config: Arc<Config>,
    respond: R,
    location: F,
}

impl<R: Clone, F: Clone> Clone for CsrfLayer<R, F> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            respond: self.respond.clone(),
            location: self.location.clone(),
        }
    }
}

impl<R: fmt::Debug, F: fmt::Debug> fmt::Debug for CsrfLayer<R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfLayer")
            .field("config", &self.config)
            .field("respond", &self.respond)
            .field("location", &self.location)
            .finish()
    }
}

impl CsrfLayer {
    /// Starts a builder signing tokens with `secret`.
    pub fn builder(secret: CsrfSecret) -> CsrfLayerBuilder {
        CsrfLayerBuilder::new(secret)
    }

    pub(crate) fn from_config(config: Arc<Config>) -> Self {
        Self {
            config,
            respond: DefaultRejection::new(),
            location: HeaderOnly,
        }
    }
}

impl<R, F> CsrfLayer<R, F> {
    /// Also reads the token from the urlencoded form field `name` when the
    /// header is absent, buffering at most `max_body` bytes of the body
    /// (see [`DEFAULT_MAX_FORM_BODY`](super::DEFAULT_MAX_FORM_BODY)). The
    /// request body type must be rebuildable from bytes
    /// ([`RejectionBody`](crate::rejection::RejectionBody)).
    pub fn with_form_field(
        self,
        name: impl Into<String>,
        max_body: usize,
    ) -> CsrfLayer<R, FormField> {
        CsrfLayer {
            config: self.config,
            respond: self.respond,
            location: FormField::new(name, max_body),
        }
    }

    /// Replaces the response sent when a request is refused.
    pub fn with_rejection_response<R2>(self, respond: R2) -> CsrfLayer<R2, F> {
        CsrfLayer {
            config: self.config,
            respond,
            location: self.location,
        }
    }

    /// A new token for `session_id` outside a request (`""`: pre-session),
    /// signed with this layer's secret. It is **not** recorded in the token
    /// store; inside a request use [`CsrfToken`](super::CsrfToken).
    ///
    /// # Errors
    ///
    /// The random generator failed.
    pub fn mint_token(&self, session_id: &str) -> Result<String, RandomError> {
        self.config.secret.mint(session_id)
    }

    /// The name of the token cookie.
    #[must_use]
    pub fn cookie_name(&self) -> &str {
        &self.config.cookie.name
    }
}

impl<S, R: Clone, F: Clone> Layer<S> for CsrfLayer<R, F> {
    type Service = Csrf<S, R, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Csrf {
            inner,
            config: Arc::clone(&self.config),
            respond: self.respond.clone(),
            location: self.location.clone(),
        }
    }
}
