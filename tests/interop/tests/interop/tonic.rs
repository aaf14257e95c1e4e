//! `JwtLayer` on a tonic 0.14 server, with a hand-written unary gRPC
//! service (no protoc): prost messages derived by hand, a tower `Service`
//! over `tonic::server::Grpc` as tonic-build would generate it, and a
//! `tonic::client::Grpc` client over a real `Channel`.
//!
//! Layout: `Server::builder().layer(JwtLayer)` wraps every service;
//! `test.Echo` needs only a valid token, `test.Admin` is the same service
//! behind `RequireLayer::scopes(["echo:admin"])` (whose `NamedService`
//! forwarding lets tonic route to it).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use portcullis::Principal;
use portcullis::authorize::RequireLayer;
use portcullis::jwt::{JwtLayer, JwtVerifier};
use tonic::codegen::{BoxFuture, Service, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::Layer as _;

use crate::common::{
    AUDIENCE, ISSUER, OTHER_SECRET, SECRET, claims, expired_claims, hs256_keys, listener,
    mint_hs256, token,
};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoRequest {
    #[prost(string, tag = "1")]
    pub(crate) message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EchoReply {
    #[prost(string, tag = "1")]
    pub(crate) message: String,
    #[prost(string, tag = "2")]
    pub(crate) subject: String,
}

/// The `Echo` method: echoes the message and the authenticated subject.
struct EchoMethod;

impl UnaryService<EchoRequest> for EchoMethod {
    type Response = EchoReply;
    type Future = Ready<Result<tonic::Response<EchoReply>, Status>>;

    fn call(&mut self, request: tonic::Request<EchoRequest>) -> Self::Future {
        let Some(subject) = request
            .extensions()
            .get::<Principal>()
            .map(|p| p.subject().to_owned())
        else {
            return ready(Err(Status::internal("no principal in extensions")));
        };
        let message = request.into_inner().message;
        ready(Ok(tonic::Response::new(EchoReply { message, subject })))
    }
}

/// The gRPC service, as tonic-build would generate it: `/test.Echo/Echo`
/// (or `/test.Admin/Echo` when `ADMIN`), anything else `UNIMPLEMENTED`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EchoServer<const ADMIN: bool>;

impl NamedService for EchoServer<false> {
    const NAME: &'static str = "test.Echo";
}

impl NamedService for EchoServer<true> {
    const NAME: &'static str = "test.Admin";
}

impl<const ADMIN: bool, B> Service<http::Request<B>> for EchoServer<ADMIN>
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
        let path = if ADMIN {
            "/test.Admin/Echo"
        } else {
            "/test.Echo/Echo"
        };
        if request.uri().path() == path {
            Box::pin(async move {
                let codec = ProstCodec::<EchoReply, EchoRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(EchoMethod, request).await)
            })
        } else {
            Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(Status::GRPC_STATUS, (Code::Unimplemented as i32).into());
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            })
        }
    }
}

/// Serves both services behind `JwtLayer` on an ephemeral port.
async fn spawn_tonic() -> SocketAddr {
    let verifier = JwtVerifier::builder(hs256_keys())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .expect("verifier");
    let (listener, addr) = listener().await;
    let router = Server::builder()
        .layer(JwtLayer::new(verifier))
        .add_service(EchoServer::<false>)
        .add_service(RequireLayer::scopes(["echo:admin"]).layer(EchoServer::<true>));
    tokio::spawn(async move {
        router
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .expect("tonic server");
    });
    addr
}

/// Calls `path` over a fresh channel, with `authorization: Bearer {token}`
/// metadata when a token is given.
async fn echo(
    addr: SocketAddr,
    path: &'static str,
    token: Option<&str>,
) -> Result<tonic::Response<EchoReply>, Status> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(EchoRequest {
        message: "hello".to_owned(),
    });
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().expect("metadata value");
        request.metadata_mut().insert("authorization", value);
    }
    grpc.unary(
        request,
        PathAndQuery::from_static(path),
        ProstCodec::<EchoRequest, EchoReply>::default(),
    )
    .await
}

pub(crate) fn expect_status(
    result: Result<tonic::Response<EchoReply>, Status>,
    code: Code,
) -> Status {
    match result {
        Ok(reply) => panic!("expected {code:?}, got {:?}", reply.into_inner()),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            status
        }
    }
}

#[tokio::test]
async fn valid_token_reaches_handler() {
    let addr = spawn_tonic().await;
    let reply = echo(addr, "/test.Echo/Echo", Some(&token("frank", "")))
        .await
        .expect("call succeeds")
        .into_inner();
    assert_eq!(
        reply,
        EchoReply {
            message: "hello".to_owned(),
            subject: "frank".to_owned(),
        }
    );
}

#[tokio::test]
async fn missing_token_is_unauthenticated() {
    let addr = spawn_tonic().await;
    let status = expect_status(
        echo(addr, "/test.Echo/Echo", None).await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "authentication is required");
}

#[tokio::test]
async fn expired_token_is_unauthenticated() {
    let addr = spawn_tonic().await;
    let token = mint_hs256(SECRET, &expired_claims("frank"));
    let status = expect_status(
        echo(addr, "/test.Echo/Echo", Some(&token)).await,
        Code::Unauthenticated,
    );
    assert_eq!(status.message(), "the access token is not valid");
}

#[tokio::test]
async fn wrong_signature_is_unauthenticated() {
    let addr = spawn_tonic().await;
    let token = mint_hs256(OTHER_SECRET, &claims("frank", "echo:admin"));
    expect_status(
        echo(addr, "/test.Echo/Echo", Some(&token)).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn missing_scope_is_permission_denied() {
    let addr = spawn_tonic().await;

    let status = expect_status(
        echo(addr, "/test.Admin/Echo", Some(&token("frank", "profile"))).await,
        Code::PermissionDenied,
    );
    assert_eq!(
        status.message(),
        "the credentials do not grant access to this resource"
    );

    let reply = echo(
        addr,
        "/test.Admin/Echo",
        Some(&token("grace", "echo:admin")),
    )
    .await
    .expect("admin call succeeds")
    .into_inner();
    assert_eq!(reply.subject, "grace");

    // Authentication still comes first on the admin service.
    expect_status(
        echo(addr, "/test.Admin/Echo", None).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn unknown_method_is_unimplemented_after_auth() {
    let addr = spawn_tonic().await;
    expect_status(
        echo(addr, "/test.Echo/Nope", Some(&token("frank", ""))).await,
        Code::Unimplemented,
    );
}
