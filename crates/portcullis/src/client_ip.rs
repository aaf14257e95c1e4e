//! Resolve the client address once, for every layer behind.
//!
//! [`ClientIpLayer`] puts a [`ClientIp`] into the request extensions: the TCP
//! peer address, or — only when the peer is a configured trusted proxy — the
//! address the proxy reported (see [`TrustedProxies`]). Rate limiting,
//! lockout and audit read it, so a spoofed `X-Forwarded-For` from an
//! untrusted peer never changes whose counter is hit.
//!
//! The peer address comes from a [`PeerAddr`] extension (insert it in a bare
//! hyper server) or, with the `axum` feature, from axum's
//! `ConnectInfo<SocketAddr>` (serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`). Without either,
//! no `ClientIp` is inserted and layers that need one treat the address as
//! unknown.
//!
//! ```
//! use http::Request;
//! use portcullis::client_ip::ClientIpLayer;
//! use portcullis_core::{ClientIp, PeerAddr, TrustedProxies};
//! use std::convert::Infallible;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let layer = ClientIpLayer::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
//! let svc = layer.layer(service_fn(|req: Request<()>| async move {
//!     Ok::<_, Infallible>(req.extensions().get::<ClientIp>().copied())
//! }));
//! let mut req = Request::builder().header("x-forwarded-for", "6.6.6.6, 198.51.100.7").body(()).unwrap();
//! req.extensions_mut().insert(PeerAddr("10.0.0.2:4000".parse().unwrap()));
//! let ip = svc.oneshot(req).await.unwrap().unwrap();
//! assert_eq!(ip.0.to_string(), "198.51.100.7");
//! # });
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use portcullis_core::{ClientIp, PeerAddr, TrustedProxies};
use tower_layer::Layer;
use tower_service::Service;

/// Layer that applies the [`ResolveClientIp`] middleware.
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientIpLayer {
    trusted: Arc<TrustedProxies>,
}

impl ClientIpLayer {
    /// Resolves addresses believing forwarding headers only from `trusted`.
    pub fn new(trusted: TrustedProxies) -> Self {
        Self {
            trusted: Arc::new(trusted),
        }
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ResolveClientIp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResolveClientIp {
            inner,
            trusted: Arc::clone(&self.trusted),
        }
    }
}

/// Middleware that inserts the [`ClientIp`] extension.
#[derive(Clone, Debug)]
pub struct ResolveClientIp<S> {
    inner: S,
    trusted: Arc<TrustedProxies>,
}

crate::macros::define_inner_service_accessors!(ResolveClientIp<S>);

impl<S, B> Service<Request<B>> for ResolveClientIp<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(peer) = peer_addr(&request) {
            let ip = self.trusted.resolve(peer, request.headers());
            request.extensions_mut().insert(ClientIp(ip));
        }
        self.inner.call(request)
    }
}

pub(crate) fn peer_addr<B>(request: &Request<B>) -> Option<std::net::IpAddr> {
    if let Some(PeerAddr(addr)) = request.extensions().get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    None
}
