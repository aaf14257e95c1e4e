//! Authorize authenticated requests by scope or role.
//!
//! [`RequireLayer`] goes inside an authenticator (`JwtLayer`, …) and checks
//! the [`Principal`] it left in the request extensions:
//!
//! 1. no principal (the route is not behind an authenticator, or the
//!    authenticator is in shadow mode): `401 missing_token` — fail closed;
//! 2. a principal without the required scopes or roles:
//!    `403 insufficient_permissions` with
//!    `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`
//!    (RFC 6750 §3.1), or `PERMISSION_DENIED` for gRPC;
//! 3. otherwise the request goes through untouched.
//!
//! Scope and role names match exactly and case-sensitively.
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use portcullis::authorize::RequireLayer;
//! use portcullis_core::{Principal, PrincipalKind};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let service = ServiceBuilder::new()
//!     .layer(RequireLayer::scopes(["orders:write"]))
//!     .service(service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
//!
//! let mut req = Request::new(String::new());
//! req.extensions_mut().insert(Principal::new("u1", PrincipalKind::User).with_scopes(["orders:read"]));
//! let res = service.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert!(res.headers()["www-authenticate"].to_str().unwrap().contains(r#"scope="orders:write""#));
//!
//! let mut req = Request::new(String::new());
//! req.extensions_mut().insert(Principal::new("u1", PrincipalKind::User).with_scopes(["orders:write"]));
//! assert_eq!(service.oneshot(req).await.unwrap().status(), StatusCode::OK);
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::{Challenge, FailureReason, Principal, Rejection};
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::{DefaultRejection, RespondToRejection};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Requirement {
    all_scopes: Vec<String>,
    any_scopes: Vec<String>,
    all_roles: Vec<String>,
    any_roles: Vec<String>,
}

impl Requirement {
    fn allows(&self, p: &Principal) -> bool {
        self.all_scopes.iter().all(|s| p.has_scope(s))
            && (self.any_scopes.is_empty() || self.any_scopes.iter().any(|s| p.has_scope(s)))
            && self.all_roles.iter().all(|r| p.has_role(r))
            && (self.any_roles.is_empty() || self.any_roles.iter().any(|r| p.has_role(r)))
    }

    fn scope_hint(&self) -> Option<String> {
        let scopes: Vec<&str> = self
            .all_scopes
            .iter()
            .chain(&self.any_scopes)
            .map(String::as_str)
            .collect();
        (!scopes.is_empty()).then(|| scopes.join(" "))
    }
}

impl Requirement {
    /// What `p` lacks of this requirement.
    fn missing(&self, p: &Principal) -> MissingPermissions {
        let lacking = |names: &[String], has: &dyn Fn(&str) -> bool| -> Vec<String> {
            names.iter().filter(|n| !has(n)).cloned().collect()
        };
        let none_held = |names: &[String], has: &dyn Fn(&str) -> bool| -> Vec<String> {
            if names.iter().any(|n| has(n)) {
                Vec::new()
            } else {
                names.to_vec()
            }
        };
        let scope = |s: &str| p.has_scope(s);
        let role = |r: &str| p.has_role(r);
        MissingPermissions {
            scopes: lacking(&self.all_scopes, &scope),
            any_scopes: none_held(&self.any_scopes, &scope),
            roles: lacking(&self.all_roles, &role),
            any_roles: none_held(&self.any_roles, &role),
        }
    }
}

/// What a principal lacked, in the response extensions of every `403
/// insufficient_permissions` from [`Require`], so the audit record can say
/// which scope or role was missing (as its `detail`). The names are the
/// route's configuration, not client input. Responders never render it:
/// the client sees the required scopes only in `WWW-Authenticate`'s
/// `scope=` (RFC 6750), and never the roles.
///
/// ```
/// use http::Request;
/// use portcullis::authorize::{MissingPermissions, RequireLayer};
/// use portcullis_core::{Principal, PrincipalKind};
/// use std::convert::Infallible;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let svc = RequireLayer::scopes(["orders:read", "orders:write"]).and_roles(["admin"])
///     .layer(service_fn(|_: Request<()>| async { Ok::<_, Infallible>(http::Response::new(String::new())) }));
/// let mut req = Request::new(());
/// req.extensions_mut().insert(Principal::new("u1", PrincipalKind::User).with_scopes(["orders:read"]));
/// let res = svc.oneshot(req).await.unwrap();
/// let missing = res.extensions().get::<MissingPermissions>().unwrap();
/// assert_eq!(missing.scopes(), ["orders:write"]);
/// assert_eq!(missing.to_string(), "missing scope orders:write; missing role admin");
/// # });
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MissingPermissions {
    scopes: Vec<String>,
    any_scopes: Vec<String>,
    roles: Vec<String>,
    any_roles: Vec<String>,
}

impl MissingPermissions {
    /// Required scopes the principal lacks.
    #[must_use]
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Scopes of which one was required and none held (empty otherwise).
    #[must_use]
    pub fn any_scopes(&self) -> &[String] {
        &self.any_scopes
    }

    /// Required roles the principal lacks.
    #[must_use]
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Roles of which one was required and none held (empty otherwise).
    #[must_use]
    pub fn any_roles(&self) -> &[String] {
        &self.any_roles
    }
}

impl fmt::Display for MissingPermissions {
    /// `missing scope a; missing one of scopes x y; missing role admin`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            ("scope", "scopes", false, &self.scopes),
            ("scope", "scopes", true, &self.any_scopes),
            ("role", "roles", false, &self.roles),
            ("role", "roles", true, &self.any_roles),
        ];
        let mut first = true;
        for (one, many, any, names) in parts {
            if names.is_empty() {
                continue;
            }
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            match (any, names.len()) {
                (false, 1) => write!(f, "missing {one} ")?,
                (false, _) => write!(f, "missing {many} ")?,
                (true, _) => write!(f, "missing one of {many} ")?,
            }
            f.write_str(&names.join(" "))?;
        }
        Ok(())
    }
}

fn owned<I, T>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = T>,
    T: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

/// Layer that applies the [`Require`] middleware.
///
/// Requirements added with several methods must all hold. See the
/// [module docs](crate::authorize) for an example.
#[derive(Clone, Debug)]
#[must_use]
pub struct RequireLayer<R = DefaultRejection> {
    requirement: Arc<Requirement>,
    respond: R,
}

impl RequireLayer {
    /// Requires every scope in `scopes`.
    pub fn scopes<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self::from_requirement(Requirement {
            all_scopes: owned(scopes),
            ..Requirement::default()
        })
    }

    /// Requires at least one scope of `scopes`.
    pub fn any_scope<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self::from_requirement(Requirement {
            any_scopes: owned(scopes),
            ..Requirement::default()
        })
    }

    /// Requires every role in `roles`.
    pub fn roles<I, T>(roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self::from_requirement(Requirement {
            all_roles: owned(roles),
            ..Requirement::default()
        })
    }

    /// Requires at least one role of `roles`.
    pub fn any_role<I, T>(roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self::from_requirement(Requirement {
            any_roles: owned(roles),
            ..Requirement::default()
        })
    }

    /// Only requires an authenticated principal.
    pub fn authenticated() -> Self {
        Self::from_requirement(Requirement::default())
    }

    fn from_requirement(requirement: Requirement) -> Self {
        Self {
            requirement: Arc::new(requirement),
            respond: DefaultRejection::new(),
        }
    }
}

impl<R> RequireLayer<R> {
    /// Also requires every role in `roles`.
    pub fn and_roles<I, T>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Arc::make_mut(&mut self.requirement)
            .all_roles
            .extend(owned(roles));
        self
    }

    /// Also requires every scope in `scopes`.
    pub fn and_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Arc::make_mut(&mut self.requirement)
            .all_scopes
            .extend(owned(scopes));
        self
    }

    /// Replaces the response sent when a request is rejected.
    pub fn with_rejection_response<R2>(self, respond: R2) -> RequireLayer<R2> {
        RequireLayer {
            requirement: self.requirement,
            respond,
        }
    }
}

impl<S, R: Clone> Layer<S> for RequireLayer<R> {
    type Service = Require<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Require {
            inner,
            requirement: Arc::clone(&self.requirement),
            respond: self.respond.clone(),
        }
    }
}

/// Middleware that checks the [`Principal`]'s scopes and roles.
///
/// See the [module docs](crate::authorize) for an example.
#[derive(Clone)]
pub struct Require<S, R> {
    inner: S,
    requirement: Arc<Requirement>,
    respond: R,
}

impl<S: fmt::Debug, R> fmt::Debug for Require<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Require")
            .field("inner", &self.inner)
            .field("requirement", &self.requirement)
            .finish_non_exhaustive()
    }
}

crate::macros::define_inner_service_accessors!(Require<S, R>);

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for Require<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: RespondToRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let mut missing = None;
        let rejection = match request.extensions().get::<Principal>() {
            Some(principal) if self.requirement.allows(principal) => {
                return ResponseFuture::inner(self.inner.call(request));
            }
            Some(principal) => {
                missing = Some(self.requirement.missing(principal));
                let mut rejection = Rejection::new(FailureReason::InsufficientPermissions)
                    .with_challenge(Challenge::bearer());
                if let Some(scope) = self.requirement.scope_hint() {
                    rejection = rejection.with_required_scope(scope);
                }
                rejection
            }
            None => Rejection::new(FailureReason::MissingToken).with_challenge(Challenge::bearer()),
        };
        let mut response = self.respond.respond(request.headers(), &rejection);
        response.extensions_mut().insert(rejection);
        if let Some(missing) = missing {
            response.extensions_mut().insert(missing);
        }
        ResponseFuture::rejected(response)
    }
}

pin_project! {
    /// Response future for synchronous checks: the inner future, or an
    /// immediate rejection (no allocation per request).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Rejected { response: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn rejected(response: Response<B>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::PrincipalKind;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    async fn status(
        layer: RequireLayer,
        principal: Option<Principal>,
    ) -> (u16, Option<String>, bool) {
        let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&called);
        let svc = layer.layer(service_fn(move |_: Request<String>| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }));
        let mut req = Request::new(String::new());
        if let Some(p) = principal {
            req.extensions_mut().insert(p);
        }
        let res = svc.oneshot(req).await.unwrap();
        let www = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        if res.status() != 200 {
            assert!(res.extensions().get::<Rejection>().is_some());
        }
        (
            res.status().as_u16(),
            www,
            called.load(std::sync::atomic::Ordering::SeqCst),
        )
    }

    fn user() -> Principal {
        Principal::new("u", PrincipalKind::User)
            .with_scopes(["a", "b"])
            .with_roles(["admin"])
    }

    async fn missing(layer: RequireLayer, principal: Principal) -> (String, String) {
        let svc = layer.layer(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
        let mut req = Request::new(String::new());
        req.extensions_mut().insert(principal);
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 403);
        let text = res
            .extensions()
            .get::<MissingPermissions>()
            .unwrap()
            .to_string();
        let body = res.into_body();
        (text, body)
    }

    #[tokio::test]
    async fn a_refusal_names_what_was_missing_outside_the_body() {
        let cases = [
            (RequireLayer::scopes(["a", "c", "d"]), "missing scopes c d"),
            (
                RequireLayer::any_scope(["x", "y"]),
                "missing one of scopes x y",
            ),
            (
                RequireLayer::roles(["admin", "ops"]).and_scopes(["c"]),
                "missing scope c; missing role ops",
            ),
            (
                RequireLayer::any_role(["ops", "sre"]),
                "missing one of roles ops sre",
            ),
        ];
        for (layer, expected) in cases {
            let (text, body) = missing(layer, user()).await;
            assert_eq!(text, expected);
            assert!(!body.contains("ops") && !body.contains("admin"), "{body}");
        }
    }

    #[cfg(feature = "audit")]
    #[tokio::test]
    async fn the_audit_record_names_the_missing_scope_and_role() {
        use crate::audit::{AuditLayer, Auditor};
        use portcullis_core::{AuthMethod, AuthOutcome, FailureReason, MemoryAuditSink};

        let sink = MemoryAuditSink::new(10);
        let auditor = Auditor::builder().sink(sink.clone()).build().unwrap();
        // An authenticator's part: the principal in, its success outcome out.
        let inner = RequireLayer::scopes(["orders:write"])
            .and_roles(["admin"])
            .layer(service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            }));
        let authenticated = tower::service_fn(move |mut req: Request<String>| {
            let inner = inner.clone();
            async move {
                let principal =
                    Principal::new("usr_1", PrincipalKind::User).with_scopes(["orders:read"]);
                req.extensions_mut().insert(principal.clone());
                let mut res = inner.oneshot(req).await?;
                AuthOutcome::authenticated(AuthMethod::Jwt, &principal).attach(&mut res);
                Ok::<_, Infallible>(res)
            }
        });
        let svc = AuditLayer::new(auditor.clone()).layer(authenticated);
        let res = svc.oneshot(Request::new(String::new())).await.unwrap();
        assert_eq!(res.status(), 403);
        auditor.flush().await;
        let records = sink.records();
        assert_eq!(records.len(), 1, "{records:?}");
        let record = &records[0];
        assert_eq!(
            record.failure_reason,
            Some(FailureReason::InsufficientPermissions)
        );
        assert_eq!(record.user_id.as_deref(), Some("usr_1"));
        assert_eq!(record.layer, Some("authorize"));
        assert_eq!(
            record.detail.as_deref(),
            Some("missing scope orders:write; missing role admin")
        );
        let json = record.to_json();
        assert_eq!(
            json["context"]["detail"], "missing scope orders:write; missing role admin",
            "{json}"
        );
    }

    #[tokio::test]
    async fn missing_principal_fails_closed() {
        let (code, www, called) = status(RequireLayer::authenticated(), None).await;
        assert_eq!((code, called), (401, false));
        assert_eq!(www.as_deref(), Some("Bearer"));
    }

    #[tokio::test]
    async fn scope_and_role_rules() {
        assert_eq!(
            status(RequireLayer::scopes(["a", "b"]), Some(user()))
                .await
                .0,
            200
        );
        let (code, www, called) = status(RequireLayer::scopes(["a", "c"]), Some(user())).await;
        assert_eq!((code, called), (403, false));
        let www = www.unwrap();
        assert!(
            www.contains(r#"error="insufficient_scope""#) && www.contains(r#"scope="a c""#),
            "{www}"
        );
        assert_eq!(
            status(RequireLayer::any_scope(["x", "b"]), Some(user()))
                .await
                .0,
            200
        );
        assert_eq!(
            status(RequireLayer::any_scope(["x", "y"]), Some(user()))
                .await
                .0,
            403
        );
        assert_eq!(
            status(RequireLayer::roles(["admin"]), Some(user())).await.0,
            200
        );
        assert_eq!(
            status(RequireLayer::roles(["Admin"]), Some(user())).await.0,
            403
        );
        assert_eq!(
            status(RequireLayer::scopes(["a"]).and_roles(["ops"]), Some(user()))
                .await
                .0,
            403
        );
        assert_eq!(
            status(RequireLayer::any_role(["ops", "admin"]), Some(user()))
                .await
                .0,
            200
        );
    }
}
