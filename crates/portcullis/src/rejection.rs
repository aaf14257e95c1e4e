//! Turning a [`Rejection`] into a response: JSON, RFC 9457 problem details,
//! or a gRPC trailers-only response.
//!
//! Every layer answers through a [`RespondToRejection`] strategy. The default,
//! [`DefaultRejection`], picks the format from the request:
//!
//! - `content-type: application/grpc…` → HTTP 200 with `grpc-status` and
//!   `grpc-message` headers and an empty body (a trailers-only response, as
//!   gRPC clients expect; tonic sees `UNAUTHENTICATED`, `PERMISSION_DENIED`…);
//! - `Accept` naming `application/problem+json` → RFC 9457 problem details;
//! - otherwise JSON: `{"error": "invalid_token", "error_description": "…"}`.
//!
//! Every 401 carries `WWW-Authenticate` (RFC 6750: no `error=` when no
//! credentials were sent); 429 and 503 carry `Retry-After` when the
//! rejection knows it. Bodies say the reason and a fixed sentence, never
//! token content or internals.
//!
//! Whatever responder built the response, the layer inserts the `Rejection`
//! and an [`AuthOutcome`](portcullis_core::AuthOutcome) into its extensions
//! afterwards, so outer layers always find them.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use portcullis_core::Rejection;

/// Response bodies a rejection can be written into.
///
/// Implemented for the bodies axum, hyper and tonic applications use:
/// [`http_body_util::Full<Bytes>`], [`http_body_util::combinators::BoxBody`]
/// and `UnsyncBoxBody` (any error type), `String`, `Vec<u8>`, `Bytes`,
/// `axum::body::Body` (feature `axum`) and `tonic::body::Body` (feature
/// `tonic`). Implement it for your own body type to use the default
/// responder with it.
pub trait RejectionBody: Sized {
    /// A body holding `bytes` (empty for gRPC trailers-only responses).
    fn from_bytes(bytes: Bytes) -> Self;
}

impl RejectionBody for http_body_util::Full<Bytes> {
    fn from_bytes(bytes: Bytes) -> Self {
        Self::new(bytes)
    }
}

impl<E: 'static> RejectionBody for http_body_util::combinators::BoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        use http_body_util::BodyExt as _;
        Self::new(http_body_util::Full::new(bytes).map_err(|never| match never {}))
    }
}

impl<E: 'static> RejectionBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn from_bytes(bytes: Bytes) -> Self {
        use http_body_util::BodyExt as _;
        Self::new(http_body_util::Full::new(bytes).map_err(|never| match never {}))
    }
}

impl RejectionBody for Bytes {
    fn from_bytes(bytes: Bytes) -> Self {
        bytes
    }
}

impl RejectionBody for Vec<u8> {
    fn from_bytes(bytes: Bytes) -> Self {
        bytes.to_vec()
    }
}

impl RejectionBody for String {
    fn from_bytes(bytes: Bytes) -> Self {
        Self::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(feature = "axum")]
impl RejectionBody for axum_core::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        Self::from(bytes)
    }
}

#[cfg(feature = "tonic")]
impl RejectionBody for tonic::body::Body {
    fn from_bytes(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Self::empty()
        } else {
            Self::new(http_body_util::Full::new(bytes))
        }
    }
}

/// Builds the response for a rejected request.
///
/// Implemented by [`DefaultRejection`] and by closures
/// `Fn(&HeaderMap, &Rejection) -> Response<B>` (the request headers are
/// passed so a responder can pick a format).
pub trait RespondToRejection<B>: Clone + Send + Sync + 'static {
    /// The response for `rejection` of a request with `request_headers`.
    fn respond(&self, request_headers: &HeaderMap, rejection: &Rejection) -> Response<B>;
}

impl<B, F> RespondToRejection<B> for F
where
    F: Fn(&HeaderMap, &Rejection) -> Response<B> + Clone + Send + Sync + 'static,
{
    fn respond(&self, request_headers: &HeaderMap, rejection: &Rejection) -> Response<B> {
        self(request_headers, rejection)
    }
}

/// Which body format the default responder writes for HTTP clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BodyFormat {
    /// JSON, or problem details when the client asks for them in `Accept`.
    #[default]
    Negotiated,
    /// Always RFC 9457 `application/problem+json`.
    Problem,
    /// Always plain JSON.
    Json,
}

/// The default responder: JSON, problem details, or gRPC trailers-only.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct DefaultRejection {
    format: BodyFormat,
}

impl DefaultRejection {
    /// Negotiated JSON / problem details.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            format: BodyFormat::Negotiated,
        }
    }

    /// Always answers with `format` (gRPC requests still get gRPC).
    #[must_use]
    pub const fn with_format(format: BodyFormat) -> Self {
        Self { format }
    }
}

impl<B: RejectionBody> RespondToRejection<B> for DefaultRejection {
    fn respond(&self, request_headers: &HeaderMap, rejection: &Rejection) -> Response<B> {
        if is_grpc(request_headers) {
            return grpc_response(rejection);
        }
        let problem = match self.format {
            BodyFormat::Problem => true,
            BodyFormat::Json => false,
            BodyFormat::Negotiated => accepts_problem(request_headers),
        };
        http_response(rejection, problem)
    }
}

/// Whether the request is gRPC (`content-type: application/grpc…`).
#[must_use]
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn accepts_problem(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .take(8)
        .any(|v| v.as_bytes().len() <= 1024 && contains(v.as_bytes(), b"application/problem+json"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// An HTTP (non-gRPC) response for `rejection`, with the standard headers.
pub fn http_response<B: RejectionBody>(rejection: &Rejection, problem: bool) -> Response<B> {
    let reason = rejection.reason();
    let status = rejection.status();
    // Serialised straight from borrowed fields (no `Value` tree): the keys
    // in the order a `serde_json::Map` writes them.
    #[derive(serde::Serialize)]
    struct Problem<'a> {
        detail: &'a str,
        error: &'a str,
        status: u16,
        title: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Json<'a> {
        error: &'a str,
        error_description: &'a str,
    }
    let mut body = Vec::with_capacity(128);
    let written = if problem {
        serde_json::to_writer(
            &mut body,
            &Problem {
                detail: reason.description(),
                error: reason.as_str(),
                status: status.as_u16(),
                title: status.canonical_reason().unwrap_or("Error"),
                kind: "about:blank",
            },
        )
    } else {
        serde_json::to_writer(
            &mut body,
            &Json {
                error: reason.as_str(),
                error_description: reason.description(),
            },
        )
    };
    // Writing borrowed strings into a Vec cannot fail.
    debug_assert!(written.is_ok());
    let mut response = Response::new(B::from_bytes(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if problem {
            "application/problem+json"
        } else {
            "application/json"
        }),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    add_standard_headers(headers, rejection);
    response
}

/// `WWW-Authenticate` and `Retry-After`, for custom responders to reuse.
pub fn add_standard_headers(headers: &mut HeaderMap, rejection: &Rejection) {
    if let Some(challenge) = rejection.www_authenticate()
        && let Ok(value) = HeaderValue::try_from(challenge)
    {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
    if let Some(after) = rejection.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
}

/// A gRPC trailers-only response: HTTP 200, `grpc-status`, `grpc-message`.
pub fn grpc_response<B: RejectionBody>(rejection: &Rejection) -> Response<B> {
    let mut response = Response::new(B::from_bytes(Bytes::new()));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        HeaderValue::from(rejection.grpc_code().as_i32()),
    );
    if let Ok(message) = HeaderValue::try_from(percent_encode(rejection.reason().description())) {
        headers.insert("grpc-message", message);
    }
    if let Some(after) = rejection.retry_after() {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    response
}

/// gRPC's percent-encoding for `grpc-message`: printable ASCII except `%`
/// passes, everything else is `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{Challenge, FailureReason};
    use std::time::Duration;

    fn body(res: Response<String>) -> serde_json::Value {
        serde_json::from_str(res.body()).unwrap()
    }

    #[test]
    fn json_by_default() {
        let rejection =
            Rejection::new(FailureReason::TokenExpired).with_challenge(Challenge::bearer());
        let res: Response<String> = DefaultRejection::new().respond(&HeaderMap::new(), &rejection);
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        assert!(
            res.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        assert_eq!(
            body(res),
            serde_json::json!({"error": "token_expired", "error_description": "the access token is not valid"})
        );
    }

    #[test]
    fn problem_details_on_request() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/problem+json, */*"),
        );
        let rejection = Rejection::new(FailureReason::AccountLocked)
            .with_retry_after(Duration::from_millis(1500));
        let res: Response<String> = DefaultRejection::new().respond(&headers, &rejection);
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let v = body(res);
        assert_eq!(v["status"], 429);
        assert_eq!(v["error"], "account_locked");
        assert_eq!(v["title"], "Too Many Requests");
    }

    #[test]
    fn grpc_trailers_only() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        let res: Response<String> = DefaultRejection::new().respond(
            &headers,
            &Rejection::new(FailureReason::InsufficientPermissions),
        );
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["grpc-status"], "7");
        assert!(res.body().is_empty());
        assert_eq!(percent_encode("a%b\u{e9}"), "a%25b%C3%A9");
    }

    #[test]
    fn every_reason_renders() {
        for reason in FailureReason::ALL {
            let res: Response<Bytes> =
                DefaultRejection::new().respond(&HeaderMap::new(), &Rejection::new(reason));
            assert_eq!(res.status(), reason.http_status());
            if res.status() == 401 {
                assert!(
                    res.headers().contains_key(header::WWW_AUTHENTICATE),
                    "{reason}"
                );
            }
        }
    }
}
