//! A gRPC `Greeter` on tonic 0.14, authenticated two ways.
//!
//! - **Layers** ([`serve`]): `AuthenticateLayer::new(jwt.or(api_key))` on
//!   the server builder accepts a bearer JWT (`authorization: Bearer …`) or
//!   an API key (`x-api-key: pc_live_…`); `RequireLayer` guards the
//!   `greeter.Admin` service. Rejections reach clients as
//!   `UNAUTHENTICATED` / `PERMISSION_DENIED` / `UNAVAILABLE`. This is the
//!   way to choose: layers can await stores (revocation, API keys, JWKS).
//! - **Interceptor** ([`serve_with_interceptor`]): tonic's interceptors are
//!   synchronous, so only [`JwtVerifier::verify`] fits — static keys, no
//!   revocation store. It shows the minimum for code that already uses
//!   interceptors.
//!
//! The service is written by hand (no protoc): prost messages and the
//! `Service` impl tonic-build would generate.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use portcullis::Principal;
use portcullis::api_key::ApiKeyLayer;
use portcullis::authenticate::{AuthenticateExt as _, AuthenticateLayer};
use portcullis::authorize::RequireLayer;
use portcullis::core::{ApiKeyStore, Rejection};
use portcullis::jwt::{JwtLayer, JwtVerifier};
use tokio::net::TcpListener;
use tonic::codegen::{BoxFuture, Service, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Status};
use tonic_prost::ProstCodec;
use tower::Layer as _;

/// `greeter.HelloRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `greeter.HelloReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
    /// The authenticated caller.
    #[prost(string, tag = "2")]
    pub caller: String,
}

struct SayHello;

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = Ready<Result<tonic::Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        // Behind the layers or the interceptor a principal is always there;
        // fail closed if it is not.
        let Some(caller) = request
            .extensions()
            .get::<Principal>()
            .map(|p| p.subject().to_owned())
        else {
            return ready(Err(Status::unauthenticated("no principal")));
        };
        let name = request.into_inner().name;
        ready(Ok(tonic::Response::new(HelloReply {
            message: format!("hello, {name}"),
            caller,
        })))
    }
}

/// The greeter service (`greeter.Greeter`, or `greeter.Admin` when `ADMIN`): method
/// `SayHello`; other paths are `UNIMPLEMENTED`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Greeter<const ADMIN: bool>;

/// `greeter.Greeter`: any authenticated caller.
pub type PublicGreeter = Greeter<false>;
/// `greeter.Admin`: callers with scope `greeter:admin`.
pub type AdminGreeter = Greeter<true>;

impl NamedService for Greeter<false> {
    const NAME: &'static str = "greeter.Greeter";
}

impl NamedService for Greeter<true> {
    const NAME: &'static str = "greeter.Admin";
}

impl<const ADMIN: bool> Greeter<ADMIN> {
    const PATH: &'static str = if ADMIN {
        "/greeter.Admin/SayHello"
    } else {
        "/greeter.Greeter/SayHello"
    };
}

impl<const ADMIN: bool, B> Service<http::Request<B>> for Greeter<ADMIN>
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != Self::PATH {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
            Ok(grpc.unary(SayHello, request).await)
        })
    }
}

/// Serves on `listener` with Portcullis layers: JWT or API key for every
/// service, scope `greeter:admin` for `greeter.Admin`.
///
/// # Errors
///
/// The server failed.
pub async fn serve<St: ApiKeyStore>(
    listener: TcpListener,
    verifier: JwtVerifier,
    api_keys: &ApiKeyLayer<St>,
) -> Result<(), tonic::transport::Error> {
    let jwt = JwtLayer::new(verifier).authenticator();
    tonic::transport::Server::builder()
        .layer(AuthenticateLayer::new(jwt.or(api_keys.authenticator())))
        .add_service(PublicGreeter::default())
        .add_service(RequireLayer::scopes(["greeter:admin"]).layer(AdminGreeter::default()))
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
}

/// Serves `greeter.Greeter` behind [`verify_bearer`] as a tonic
/// interceptor instead of layers.
///
/// # Errors
///
/// The server failed.
pub async fn serve_with_interceptor(
    listener: TcpListener,
    verifier: JwtVerifier,
) -> Result<(), tonic::transport::Error> {
    let service = InterceptedService::new(PublicGreeter::default(), move |request| {
        verify_bearer(&verifier, request)
    });
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
}

/// A tonic interceptor verifying `authorization: Bearer …` with `verifier`
/// (synchronous: static keys only, no revocation or JWKS refresh).
///
/// # Errors
///
/// `UNAUTHENTICATED` for a missing or invalid token.
pub fn verify_bearer(
    verifier: &JwtVerifier,
    mut request: Request<()>,
) -> Result<Request<()>, Status> {
    let token = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("missing_token"))?;
    // The status carries the reason only, never the token.
    let verified = verifier
        .verify(token)
        .map_err(|e| Status::from(Rejection::new(e.reason())))?;
    request.extensions_mut().insert(verified.into_principal());
    Ok(request)
}
