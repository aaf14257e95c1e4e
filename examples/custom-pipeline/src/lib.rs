//! A pipeline assembled by hand, with two pieces of your own:
//!
//! - [`ServiceToken`], a custom [`Authenticate`] implementation for
//!   service-to-service calls (`X-Service-Token: <service>.<secret>`,
//!   compared in constant time), composed with `JwtLayer`'s authenticator
//!   as `jwt.or(service_token)`: either credential works, a *failed* JWT is
//!   never retried as a service token;
//! - [`SharedRevocations`], a custom [`RevocationStore`] (here a map
//!   behind an async lock, standing in for your own database), which the
//!   `portcullis-test` conformance kit checks in `tests/`.
//!
//! Layers, outermost first: client IP (no trusted proxy) → authenticate
//! (`jwt.or(service_token)`) → per-route scope checks → handlers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis::authenticate::{
    AuthDecision, Authenticate, AuthenticateExt as _, AuthenticateLayer, Check, RequestHead,
};
use portcullis::authorize::RequireLayer;
use portcullis::client_ip::ClientIpLayer;
use portcullis::core::{
    AuthMethod, Challenge, FailureReason, Rejection, RevocationStore, SharedClock, StoreError,
    SystemClock, TokenRef, TrustedProxies,
};
use portcullis::jwt::{JwtLayer, JwtVerifier};
use portcullis::{Principal, PrincipalKind};
use serde_json::{Value, json};
use subtle::ConstantTimeEq as _;
use tokio::sync::RwLock;

/// The header service tokens travel in.
pub const SERVICE_TOKEN_HEADER: &str = "x-service-token";

/// Longest service token looked at; longer ones are refused unread.
const MAX_SERVICE_TOKEN: usize = 256;

/// A service's credential: its name, secret and scopes.
#[derive(Clone)]
struct ServiceCredential {
    secret: Vec<u8>,
    scopes: Vec<String>,
}

/// Service-to-service authentication by a shared secret per service.
///
/// A request carrying `X-Service-Token: billing.<secret>` is accepted as
/// principal `billing` (kind `Service`) with that service's scopes when the
/// secret matches in constant time; a token naming an unknown service or
/// carrying a wrong secret is *rejected* (not "not present"), so an
/// `or` composition never falls through to another scheme after it.
#[derive(Clone, Default)]
pub struct ServiceToken {
    services: HashMap<String, ServiceCredential>,
}

impl std::fmt::Debug for ServiceToken {
    // Secrets are never printed; names are enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceToken")
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ServiceToken {
    /// No services yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `service` with `secret`, granting `scopes`.
    #[must_use]
    pub fn with_service(
        mut self,
        service: &str,
        secret: &str,
        scopes: impl IntoIterator<Item = &'static str>,
    ) -> Self {
        self.services.insert(
            service.to_owned(),
            ServiceCredential {
                secret: secret.as_bytes().to_vec(),
                scopes: scopes.into_iter().map(str::to_owned).collect(),
            },
        );
        self
    }

    fn decide(&self, value: &[u8]) -> AuthDecision {
        let method = AuthMethod::Other("service_token");
        let refuse = |detail| {
            AuthDecision::Rejected(
                Rejection::new(FailureReason::InvalidToken)
                    .with_detail(detail)
                    .with_challenge(Challenge::new("ServiceToken")),
                method,
            )
        };
        if value.len() > MAX_SERVICE_TOKEN {
            return refuse("service token too long");
        }
        let Some((name, secret)) = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.split_once('.'))
        else {
            return refuse("malformed service token");
        };
        // Unknown services and wrong secrets get the same answer.
        let known = self.services.get(name);
        let expected = known.map_or(&[][..], |c| c.secret.as_slice());
        let matches = bool::from(expected.ct_eq(secret.as_bytes()));
        match known {
            Some(credential) if matches && !expected.is_empty() => {
                let principal = Principal::builder(name, PrincipalKind::Service)
                    .scopes(credential.scopes.iter().map(String::as_str))
                    .build();
                AuthDecision::Accepted(principal, method)
            }
            _ => refuse("unknown service or wrong secret"),
        }
    }
}

impl Authenticate for ServiceToken {
    fn check(&self, head: &RequestHead<'_>) -> Check {
        let mut values = head.headers.get_all(SERVICE_TOKEN_HEADER).iter();
        let decision = match (values.next(), values.next()) {
            (None, _) => AuthDecision::NotPresent,
            (Some(value), None) => self.decide(value.as_bytes()),
            (Some(_), Some(_)) => AuthDecision::Rejected(
                Rejection::new(FailureReason::InvalidRequest).with_detail("two service tokens"),
                AuthMethod::Other("service_token"),
            ),
        };
        Check::Ready(decision)
    }

    fn challenge(&self) -> Challenge {
        Challenge::new("ServiceToken")
    }
}

/// What one revocation entry remembers.
#[derive(Clone, Copy, Debug)]
struct Entry {
    until: SystemTime,
}

#[derive(Default)]
struct Revoked {
    tokens: HashMap<String, Entry>,
    families: HashMap<String, Entry>,
    /// Subject → (watermark, retained until).
    subjects: HashMap<String, (SystemTime, SystemTime)>,
}

/// A [`RevocationStore`] of your own: here a map behind an async lock, in
/// place of the table or service your deployment already has. Entries are
/// dropped once expired (checked against the store's clock), which the
/// trait allows.
#[derive(Clone)]
pub struct SharedRevocations {
    state: Arc<RwLock<Revoked>>,
    clock: SharedClock,
}

impl std::fmt::Debug for SharedRevocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRevocations").finish_non_exhaustive()
    }
}

impl Default for SharedRevocations {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

impl SharedRevocations {
    /// An empty store judging expiry by `clock`.
    #[must_use]
    pub fn with_clock(clock: SharedClock) -> Self {
        Self {
            state: Arc::default(),
            clock,
        }
    }
}

impl RevocationStore for SharedRevocations {
    async fn revoke_token(
        &self,
        token_id: &str,
        expires_at: SystemTime,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut state = self.state.write().await;
        // One write lock around test-and-set: exactly one caller wins.
        let live = state.tokens.get(token_id).is_some_and(|e| e.until > now);
        let until = state
            .tokens
            .get(token_id)
            .map_or(expires_at, |e| e.until.max(expires_at));
        state.tokens.insert(token_id.to_owned(), Entry { until });
        Ok(!live)
    }

    async fn revoke_family(&self, family: &str, expires_at: SystemTime) -> Result<(), StoreError> {
        let mut state = self.state.write().await;
        let until = state
            .families
            .get(family)
            .map_or(expires_at, |e| e.until.max(expires_at));
        state.families.insert(family.to_owned(), Entry { until });
        Ok(())
    }

    async fn revoke_subject(
        &self,
        subject: &str,
        issued_before: SystemTime,
        retain_until: SystemTime,
    ) -> Result<(), StoreError> {
        let mut state = self.state.write().await;
        let (mark, retain) = state
            .subjects
            .get(subject)
            .map_or((issued_before, retain_until), |&(m, r)| {
                (m.max(issued_before), r.max(retain_until))
            });
        state.subjects.insert(subject.to_owned(), (mark, retain));
        Ok(())
    }

    async fn is_revoked(&self, token: &TokenRef<'_>) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let state = self.state.read().await;
        let by_id = token
            .token_id
            .and_then(|id| state.tokens.get(id))
            .is_some_and(|e| e.until > now);
        let by_family = token
            .family
            .and_then(|f| state.families.get(f))
            .is_some_and(|e| e.until > now);
        let by_subject = state
            .subjects
            .get(token.subject)
            .filter(|(_, retain)| *retain > now)
            .is_some_and(|(mark, _)| token.issued_at.is_none_or(|iat| iat <= *mark));
        Ok(by_id || by_family || by_subject)
    }
}

/// The application: `/whoami` for any caller, `/reports` with scope
/// `reports:read`, `POST /logout` revoking the caller's JWT.
pub fn app(
    verifier: JwtVerifier,
    services: ServiceToken,
    revocations: SharedRevocations,
) -> Router {
    let jwt = JwtLayer::new(verifier)
        .with_revocation(revocations.clone())
        // The store is in this process: no need for the layer's cache of
        // "not revoked" answers (the propagation bound for remote stores).
        .with_revocation_cache_ttl(std::time::Duration::ZERO)
        .authenticator();
    let auth = AuthenticateLayer::new(jwt.or(services));
    Router::new()
        .route("/whoami", get(whoami))
        .route(
            "/reports",
            get(reports).layer(RequireLayer::scopes(["reports:read"])),
        )
        .route(
            "/logout",
            post(move |principal: Principal| logout(principal, revocations.clone())),
        )
        .layer(auth)
        .layer(ClientIpLayer::new(TrustedProxies::none()))
}

async fn whoami(principal: Principal) -> Json<Value> {
    Json(json!({
        "sub": principal.subject(),
        "kind": principal.kind().as_str(),
        "scopes": principal.scopes().collect::<Vec<_>>(),
    }))
}

async fn reports(principal: Principal) -> Json<Value> {
    Json(json!({ "reports": [], "for": principal.subject() }))
}

async fn logout(principal: Principal, revocations: SharedRevocations) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    let (Some(jti), Some(exp)) = (principal.token_id(), principal.expires_at()) else {
        return StatusCode::BAD_REQUEST;
    };
    match revocations.revoke_token(jti, exp).await {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
