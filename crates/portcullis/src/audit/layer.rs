//! [`AuditLayer`]: one audit record per decision, metrics per request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::TrustedProxies;
use tower_layer::Layer;
use tower_service::Service;

use super::auditor::{Auditor, Pending};
use super::entry::{RequestEntry, RequestFacts};

/// Applies [`Audit`] to a service: the outermost layer of a pipeline.
///
/// For every request it reads what the inner layers and the handler
/// attached to the response ([`AuthOutcome`](crate::AuthOutcome), [`Rejection`](crate::Rejection),
/// [`SecurityEvent`](crate::SecurityEvent)s) and queues one audit record
/// per decision, plus one per event a layer reported; requests no layer
/// decided on (a public page) produce none. It also counts every request and
/// times it, and counts successes and failures by method and reason.
///
/// Nothing is logged in the request path: records go to the
/// [`Auditor`]'s queue and are written in batches.
#[derive(Clone)]
pub struct AuditLayer {
    auditor: Auditor,
    trusted: TrustedProxies,
}

impl AuditLayer {
    /// A layer reporting to `auditor`. The client address is the socket
    /// peer ([`PeerAddr`](crate::core::PeerAddr) or axum's `ConnectInfo`)
    /// unless a `ClientIp` extension is already present.
    #[must_use]
    pub fn new(auditor: Auditor) -> Self {
        Self {
            auditor,
            trusted: TrustedProxies::none(),
        }
    }

    /// Resolves the client address through `trusted` proxies, as
    /// [`ClientIpLayer`](crate::client_ip::ClientIpLayer) does; the audit
    /// layer sits outside it, so it needs the same configuration.
    #[must_use]
    pub fn with_trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted = trusted;
        self
    }
}

impl fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayer")
            .field("auditor", &self.auditor)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            auditor: self.auditor.clone(),
            trusted: self.trusted.clone(),
        }
    }
}

/// Middleware that audits every decision taken below it.
#[derive(Clone)]
pub struct Audit<S> {
    inner: S,
    auditor: Auditor,
    trusted: TrustedProxies,
}

crate::macros::define_inner_service_accessors!(Audit<S>);

impl<S: fmt::Debug> fmt::Debug for Audit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("inner", &self.inner)
            .field("auditor", &self.auditor)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Audit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let facts = RequestFacts::new(&request, &self.trusted);
        ResponseFuture {
            future: self.inner.call(request),
            facts: Some(facts),
            auditor: self.auditor.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`Audit`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        facts: Option<RequestFacts>,
        auditor: Auditor,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        if let Some(facts) = this.facts.take() {
            let shared = &this.auditor.shared;
            shared.metrics.request(facts.start.elapsed().as_secs_f64());
            if let Ok(response) = &result
                && let Some(entry) = RequestEntry::capture(shared, &facts, response)
            {
                shared.push(Pending::Request(entry));
            }
            // The facts' clones are released here, on the request's thread.
            drop(facts);
        }
        Poll::Ready(result)
    }
}
