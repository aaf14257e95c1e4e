//! Turning the breaker's errors into HTTP responses.

use http::Response;
use portcullis_core::{FailureReason, Rejection};

use super::BoxError;
use super::error::{CallTimeout, Open};
use crate::rejection::{RejectionBody, http_response};

/// The fail-closed response for an error of [`CircuitBreaker`]:
/// `503 upstream_unavailable` in the crate's JSON format, with
/// `Retry-After` when the breaker is open for a known time. The
/// [`Rejection`] is in the response extensions (for audit layers), with the
/// [`Open`] error as its source.
///
/// Every error maps to 503: the breaker wraps a dependency, and a
/// dependency that fails or hangs cannot answer. The body never includes
/// the error's text.
///
/// [`CircuitBreaker`]: super::CircuitBreaker
pub fn error_response<B: RejectionBody>(error: &BoxError) -> Response<B> {
    let mut rejection = Rejection::new(FailureReason::UpstreamUnavailable);
    if let Some(open) = error.downcast_ref::<Open>() {
        rejection = rejection.with_detail("circuit open");
        if let Some(after) = open.retry_after() {
            rejection = rejection.with_retry_after(after);
        }
        rejection = rejection.with_source(open.clone());
    } else if let Some(timeout) = error.downcast_ref::<CallTimeout>() {
        rejection = rejection
            .with_detail("upstream call timed out")
            .with_source(timeout.clone());
    } else {
        rejection = rejection.with_detail("upstream call failed");
    }
    let mut response = http_response(&rejection, false);
    response.extensions_mut().insert(rejection);
    response
}

/// [`error_response`] for axum's `HandleErrorLayer`:
/// `HandleErrorLayer::new(circuit_breaker::handle_error)`.
///
/// See the [module docs](crate::circuit_breaker#use-with-axum) for an
/// example.
#[cfg(feature = "axum")]
pub async fn handle_error(error: BoxError) -> Response<axum_core::body::Body> {
    error_response(&error)
}
