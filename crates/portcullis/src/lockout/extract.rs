//! Reading what a login request says before the handler sees it: the
//! submitted identifier (and, for the CAPTCHA layer, the token) from a
//! header or a form / JSON body field, and the client address.
//!
//! Body fields are read from a buffered copy of the body (bounded), which is
//! then handed on unchanged. Parser differentials are refused rather than
//! guessed at: a field given twice (`username=a&username=b`, or a JSON
//! object with the key twice) is an `invalid_request`, because the handler's
//! parser might pick the other one.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Method, Request};
use http_body::Body;
use http_body_util::{BodyExt as _, Limited};
use portcullis_core::{ClientIp, PeerAddr};
use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};

use crate::rejection::RejectionBody;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Default cap on a body read for a field: 16 KiB, plenty for a login form.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024;

/// Longest header or field value read, in bytes.
pub(crate) const MAX_FIELD_BYTES: usize = 4096;

/// Where the submitted account identifier is read from, before the
/// credential is checked.
///
/// ```
/// use portcullis::lockout::IdentifierSource;
///
/// // `username` from an `application/x-www-form-urlencoded` or JSON body.
/// let source = IdentifierSource::field("username");
/// // Or a header set by a front end.
/// let source = IdentifierSource::header(http::HeaderName::from_static("x-login-user"));
/// ```
#[derive(Clone)]
pub struct IdentifierSource {
    pub(crate) header: Option<HeaderName>,
    pub(crate) field: Option<Arc<str>>,
    pub(crate) max_body: usize,
}

impl IdentifierSource {
    /// Reads the identifier from `header`.
    #[must_use]
    pub fn header(header: HeaderName) -> Self {
        Self {
            header: Some(header),
            field: None,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// Reads the identifier from the body field `name`: a form field for
    /// `application/x-www-form-urlencoded` bodies, a top-level string member
    /// for JSON bodies. Other content types carry no identifier.
    #[must_use]
    pub fn field(name: &str) -> Self {
        Self {
            header: None,
            field: Some(name.into()),
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// Also reads `header` when the body has no such field.
    #[must_use]
    pub fn or_header(mut self, header: HeaderName) -> Self {
        self.header = Some(header);
        self
    }

    /// Caps the body read for the field (default [`DEFAULT_MAX_BODY`]); a
    /// larger body is refused with `400 invalid_request`, so padding a
    /// request cannot hide the identifier from the lockout check.
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl fmt::Debug for IdentifierSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentifierSource")
            .field("header", &self.header)
            .field("field", &self.field)
            .field("max_body", &self.max_body)
            .finish()
    }
}

/// Why a request could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// Body over the cap, a field given twice, a value that is not UTF-8:
    /// `400 invalid_request`.
    Invalid(&'static str),
    /// The body stream failed.
    Body,
}

/// Which body format a request declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Form,
    Json,
}

pub(crate) fn body_kind(method: &Method, headers: &HeaderMap) -> Option<BodyKind> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let ct = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next()?.trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(BodyKind::Form)
    } else if essence.eq_ignore_ascii_case("application/json")
        || essence.to_ascii_lowercase().ends_with("+json")
    {
        Some(BodyKind::Json)
    } else {
        None
    }
}

/// One header value, if present exactly once, UTF-8, non-empty and short.
pub(crate) fn header_value<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h str>, ReadError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ReadError::Invalid("header given twice"));
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(ReadError::Invalid("header value too long"));
    }
    let value = value
        .to_str()
        .map_err(|_| ReadError::Invalid("header value not ASCII"))?;
    Ok((!value.trim().is_empty()).then_some(value))
}

/// Buffers the body (at most `max` bytes) and hands back the parts and the
/// bytes; the caller rebuilds the request with [`rebuild`].
pub(crate) async fn buffer<B>(request: Request<B>, max: usize) -> Result<(Parts, Bytes), ReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ReadError::Invalid("body too large"));
    }
    let (parts, body) = request.into_parts();
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(ReadError::Invalid("body too large"))
        }
        Err(_) => Err(ReadError::Body),
    }
}

/// The request again, with the buffered body.
pub(crate) fn rebuild<B: RejectionBody>(parts: Parts, bytes: Bytes) -> Request<B> {
    Request::from_parts(parts, B::from_bytes(bytes))
}

/// The field `name` of a body of `kind`.
pub(crate) fn body_field(
    kind: BodyKind,
    body: &[u8],
    name: &str,
) -> Result<Option<String>, ReadError> {
    match kind {
        BodyKind::Form => form_field(body, name),
        BodyKind::Json => json_field(body, name),
    }
}

fn form_field(body: &[u8], name: &str) -> Result<Option<String>, ReadError> {
    let mut found = None;
    for pair in body.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        if percent_decode(key)? != name.as_bytes() {
            continue;
        }
        if found.is_some() {
            return Err(ReadError::Invalid("field given twice"));
        }
        if value.len() > MAX_FIELD_BYTES * 3 {
            return Err(ReadError::Invalid("field value too long"));
        }
        let value = String::from_utf8(percent_decode(value)?.into_owned())
            .map_err(|_| ReadError::Invalid("field value not UTF-8"))?;
        found = Some(value);
    }
    Ok(found.filter(|v| !v.trim().is_empty()))
}

fn percent_decode(input: &[u8]) -> Result<Cow<'_, [u8]>, ReadError> {
    if !input.iter().any(|&b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(input));
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = input
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(ReadError::Invalid("malformed percent-encoding"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(Cow::Owned(out))
}

fn json_field(body: &[u8], name: &str) -> Result<Option<String>, ReadError> {
    struct Field<'n> {
        name: &'n str,
    }

    impl<'de> Visitor<'de> for Field<'_> {
        type Value = Result<Option<String>, ReadError>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found: Option<Option<String>> = None;
            let mut twice = false;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key != self.name || found.is_some() {
                    twice |= key == self.name;
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                // A non-string value (number, object) is no identifier.
                let value = map.next_value::<serde_json::Value>()?;
                found = Some(value.as_str().map(str::to_owned));
            }
            if twice {
                return Ok(Err(ReadError::Invalid("field given twice")));
            }
            Ok(Ok(found.flatten()))
        }
    }

    let mut de = serde_json::Deserializer::from_slice(body);
    match de.deserialize_map(Field { name }) {
        Ok(result) => {
            if de.end().is_err() {
                return Err(ReadError::Invalid("trailing data after JSON"));
            }
            result.map(|v| v.filter(|v| !v.trim().is_empty() && v.len() <= MAX_FIELD_BYTES))
        }
        // Not an object, or not JSON: the handler will refuse it too; there
        // is no identifier to count.
        Err(_) => Ok(None),
    }
}

/// The client address: the `ClientIp` set by `ClientIpLayer`, else the TCP
/// peer (`PeerAddr`, or axum's `ConnectInfo`). Forwarding headers are never
/// read here: only `ClientIpLayer`, configured with trusted proxies, may.
pub(crate) fn client_ip<B>(request: &Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    if let Some(ClientIp(ip)) = extensions.get::<ClientIp>() {
        return Some(*ip);
    }
    if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        return Some(info.0.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields() {
        assert_eq!(
            form_field(b"username=Alice%40example.com&password=x+y", "username").unwrap(),
            Some("Alice@example.com".to_owned())
        );
        assert_eq!(form_field(b"password=x", "username").unwrap(), None);
        assert_eq!(form_field(b"username=", "username").unwrap(), None);
        assert_eq!(
            form_field(b"username=a&username=b", "username"),
            Err(ReadError::Invalid("field given twice"))
        );
        // The key is decoded too: `user%6Eame` is `username`.
        assert!(form_field(b"username=a&user%6Eame=b", "username").is_err());
        assert!(form_field(b"username=%zz", "username").is_err());
        assert!(
            form_field(b"username=%ff", "username").is_err(),
            "not UTF-8"
        );
    }

    #[test]
    fn json_fields() {
        assert_eq!(
            json_field(br#"{"password":"x","username":"bob"}"#, "username").unwrap(),
            Some("bob".to_owned())
        );
        assert_eq!(json_field(br#"{"username":7}"#, "username").unwrap(), None);
        assert_eq!(json_field(b"[1,2]", "username").unwrap(), None);
        assert_eq!(json_field(b"not json", "username").unwrap(), None);
        assert_eq!(
            json_field(br#"{"username":"a","username":"b"}"#, "username"),
            Err(ReadError::Invalid("field given twice"))
        );
        // An escaped key is the same key.
        assert!(json_field(br#"{"username":"a","user\u006eame":"b"}"#, "username").is_err());
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert_eq!(body_kind(&Method::POST, &h), Some(BodyKind::Form));
        h.insert(CONTENT_TYPE, "application/vnd.api+json".parse().unwrap());
        assert_eq!(body_kind(&Method::POST, &h), Some(BodyKind::Json));
        assert_eq!(body_kind(&Method::GET, &h), None);
        h.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(body_kind(&Method::POST, &h), None);
    }
}
