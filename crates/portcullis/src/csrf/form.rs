//! Reading the token from an HTML form's field.
//!
//! A plain HTML form cannot set `X-CSRF-Token`, so the token travels as a
//! hidden field in the `application/x-www-form-urlencoded` body. Reading it
//! means buffering the body — at most `max_body` bytes — and handing the
//! inner service an equivalent body rebuilt from the buffered bytes, which
//! is why this needs a body type that can be rebuilt from bytes
//! ([`RejectionBody`]: axum's `Body`, `Full<Bytes>`, `BoxBody`, …).
//!
//! The body is read only when it has to be: a state-changing request that
//! passed the origin checks, carries a well-formed token cookie and no
//! token header, with a urlencoded content type. Multipart bodies are not
//! parsed: send the header from script for those.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Request};
use http_body_util::{BodyExt as _, Limited};

use crate::rejection::RejectionBody;

/// Default largest form body read for the token field: 64 KiB.
pub const DEFAULT_MAX_FORM_BODY: usize = 64 * 1024;

/// The request back, with the field's value, `None` when absent, or why it
/// could not be read.
pub type FormRead<B> =
    Pin<Box<dyn Future<Output = (Request<B>, Result<Option<String>, &'static str>)> + Send>>;

/// Where besides the header the layer may look for the token: nowhere
/// ([`HeaderOnly`], the default) or a form field ([`FormField`]).
pub trait TokenLocation<B>: Clone + Send + Sync + 'static {
    /// Whether a form body may be read at all.
    fn reads_forms(&self) -> bool;

    /// Reads the field from the body and rebuilds the request.
    fn read(&self, request: Request<B>) -> FormRead<B>;
}

/// The token is read from the header only.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct HeaderOnly;

impl<B: Send + 'static> TokenLocation<B> for HeaderOnly {
    fn reads_forms(&self) -> bool {
        false
    }

    fn read(&self, request: Request<B>) -> FormRead<B> {
        Box::pin(std::future::ready((request, Ok(None))))
    }
}

/// The token is read from the header, or else from a urlencoded form field.
#[derive(Clone)]
pub struct FormField {
    name: Box<str>,
    max_body: usize,
}

impl FormField {
    /// The field `name`, in bodies of at most `max_body` bytes; larger
    /// bodies are refused with `csrf_missing` without being read further.
    pub fn new(name: impl Into<String>, max_body: usize) -> Self {
        Self {
            name: name.into().into_boxed_str(),
            max_body,
        }
    }

    /// The field name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for FormField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormField")
            .field("name", &self.name)
            .field("max_body", &self.max_body)
            .finish()
    }
}

impl<B> TokenLocation<B> for FormField
where
    B: http_body::Body + RejectionBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn reads_forms(&self) -> bool {
        true
    }

    fn read(&self, request: Request<B>) -> FormRead<B> {
        let name = self.name.clone();
        let max = self.max_body;
        Box::pin(async move {
            if declared_length(request.headers()).is_some_and(|len| len > max as u64) {
                return (request, Err("form body over the size limit"));
            }
            let (parts, body) = request.into_parts();
            match Limited::new(body, max).collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    let field = field(&bytes, &name);
                    (Request::from_parts(parts, B::from_bytes(bytes)), field)
                }
                Err(_) => (
                    Request::from_parts(parts, B::from_bytes(Bytes::new())),
                    Err("form body unreadable or over the size limit"),
                ),
            }
        })
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Whether the body is `application/x-www-form-urlencoded`.
pub(crate) fn is_urlencoded(headers: &HeaderMap) -> bool {
    media_type(headers)
        .is_some_and(|m| m.eq_ignore_ascii_case(b"application/x-www-form-urlencoded"))
}

/// The media type of `Content-Type`, without parameters; `None` when absent
/// or repeated.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let v = value.as_bytes();
    let end = v.iter().position(|b| *b == b';').unwrap_or(v.len());
    Some(v[..end].trim_ascii())
}

/// The value of field `name`: exactly one occurrence, or `None`.
fn field(body: &[u8], name: &str) -> Result<Option<String>, &'static str> {
    let mut found = None;
    for pair in body.split(|b| *b == b'&') {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &[][..]),
        };
        if decode(key).as_deref() != Some(name.as_bytes()) {
            continue;
        }
        if found.is_some() {
            return Err("CSRF form field sent more than once");
        }
        // A token is 193 ASCII characters; anything much longer is not one.
        if value.len() > 1024 {
            return Err("CSRF form field too long");
        }
        found = Some(
            decode(value)
                .and_then(|v| String::from_utf8(v).ok())
                .unwrap_or_default(),
        );
    }
    Ok(found)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
/// byte; a broken escape makes the whole value unreadable.
fn decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (*input.get(i + 1)? as char).to_digit(16)?;
                let lo = (*input.get(i + 2)? as char).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_one_field() {
        assert_eq!(
            field(b"a=1&csrf_token=abc&b=2", "csrf_token"),
            Ok(Some("abc".into()))
        );
        assert_eq!(field(b"a=1", "csrf_token"), Ok(None));
        assert_eq!(field(b"", "csrf_token"), Ok(None));
        assert_eq!(
            field(b"csrf%5Ftoken=x%2Ey", "csrf_token"),
            Ok(Some("x.y".into()))
        );
        assert!(field(b"csrf_token=a&csrf_token=a", "csrf_token").is_err());
        assert_eq!(
            field(b"csrf_token=%zz", "csrf_token"),
            Ok(Some(String::new()))
        );
        let long = format!("csrf_token={}", "a".repeat(2000));
        assert!(field(long.as_bytes(), "csrf_token").is_err());
    }

    #[test]
    fn media_types() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            "Application/X-WWW-Form-Urlencoded; charset=UTF-8"
                .parse()
                .unwrap(),
        );
        assert!(is_urlencoded(&h));
        h.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_urlencoded(&h));
    }
}
