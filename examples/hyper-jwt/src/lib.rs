//! Portcullis without a framework: `JwtLayer` and `RequireLayer` around a
//! hyper `service_fn`, one HTTP/1 connection task per socket, the peer
//! address handed to the layers as [`PeerAddr`].
//!
//! - `GET /me`: any valid token; answers the subject and scopes;
//! - `GET /admin`: needs scope `admin`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use portcullis::Principal;
use portcullis::authorize::RequireLayer;
use portcullis::core::PeerAddr;
use portcullis::jwt::{JwtLayer, JwtVerifier};
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The handler behind the layers: the principal is in the extensions.
async fn handler(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(principal) = request.extensions().get::<Principal>() else {
        // Unreachable behind JwtLayer; fail closed anyway.
        return Ok(reply(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "missing_token"}),
        ));
    };
    let body = json!({
        "sub": principal.subject(),
        "scopes": principal.scopes().collect::<Vec<_>>(),
        "path": request.uri().path(),
    });
    Ok(reply(StatusCode::OK, &body))
}

/// Serves until the listener fails: `/admin` behind `RequireLayer`,
/// everything behind `JwtLayer`.
pub async fn serve(listener: TcpListener, verifier: JwtVerifier) {
    let jwt = JwtLayer::new(verifier);
    let admin_only = RequireLayer::scopes(["admin"]);
    while let Ok((stream, peer)) = listener.accept().await {
        let (jwt, admin_only) = (jwt.clone(), admin_only.clone());
        tokio::spawn(async move {
            let service = ServiceBuilder::new()
                .layer(MapRequestLayer::new(
                    move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(PeerAddr(peer));
                        request
                    },
                ))
                .layer(jwt)
                .service(tower::steer::Steer::new(
                    vec![
                        tower::util::BoxCloneSyncService::new(
                            ServiceBuilder::new().layer(admin_only).service_fn(handler),
                        ),
                        tower::util::BoxCloneSyncService::new(tower::service_fn(handler)),
                    ],
                    |request: &Request<Incoming>, _: &[_]| {
                        usize::from(request.uri().path() != "/admin")
                    },
                ));
            // A client closing its connection early is not an error here.
            let _closed = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
    }
}

/// Binds `addr` and serves.
///
/// # Errors
///
/// The address cannot be bound.
pub async fn run(addr: SocketAddr, verifier: JwtVerifier) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    serve(listener, verifier).await;
    Ok(())
}
