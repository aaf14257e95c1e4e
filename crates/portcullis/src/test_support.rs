//! Helpers shared by the unit tests of several layers.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response};
use portcullis_core::Principal;
use tower::{Service, service_fn};

/// An inner service for the layer tests: string bodies, never failing, a
/// `Send` future, cloneable — what the layers' `Service` impls ask of it.
pub(crate) trait StringService:
    Service<Request<String>, Response = Response<String>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<T> StringService for T where
    T: Service<Request<String>, Response = Response<String>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// A counting echo service that returns the principal's subject, so tests
/// can assert both what reached the handler and whether anything did.
#[derive(Clone, Default)]
pub(crate) struct Echo {
    calls: Arc<AtomicUsize>,
}

impl Echo {
    /// How many requests reached the service.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The service; clones share the counter.
    pub(crate) fn service(&self) -> impl StringService {
        let calls = Arc::clone(&self.calls);
        service_fn(move |req: Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let who = req
                .extensions()
                .get::<Principal>()
                .map_or_else(|| "<none>".to_owned(), |p| p.subject().to_owned());
            async move { Ok::<_, Infallible>(Response::new(who)) }
        })
    }
}
