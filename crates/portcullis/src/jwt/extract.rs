//! Finding the token in a request: `Authorization: Bearer` or a cookie.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, Uri};

/// Most `Cookie` bytes scanned for the token cookie.
const MAX_COOKIE_BYTES: usize = 16 * 1024;

#[derive(PartialEq, Eq)]
pub(crate) enum Extracted<'a> {
    /// No credential of ours: `401` without `error=`.
    Missing,
    /// A malformed request (two credentials, an empty bearer): `400`.
    InvalidRequest(&'static str),
    /// A credential of ours that cannot be a token (not UTF-8): `401`.
    Unreadable,
    /// A candidate token, not yet checked.
    Token(&'a str),
}

// Hand-written: a candidate token must never reach a log through `Debug`.
impl std::fmt::Debug for Extracted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("Missing"),
            Self::InvalidRequest(why) => f.debug_tuple("InvalidRequest").field(why).finish(),
            Self::Unreadable => f.write_str("Unreadable"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// Where `JwtLayer` looks for the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenSource {
    pub(crate) header: bool,
    pub(crate) cookie: Option<String>,
}

impl TokenSource {
    pub(crate) fn extract<'a>(&self, headers: &'a HeaderMap, uri: &Uri) -> Extracted<'a> {
        let from_header = if self.header {
            bearer(headers)
        } else {
            Extracted::Missing
        };
        if matches!(from_header, Extracted::InvalidRequest(_)) {
            return from_header;
        }
        let from_cookie = match &self.cookie {
            Some(name) => cookie(headers, name),
            None => Extracted::Missing,
        };
        if matches!(from_cookie, Extracted::InvalidRequest(_)) {
            return from_cookie;
        }
        let found = match (from_header, from_cookie) {
            (Extracted::Missing, Extracted::Missing) => return Extracted::Missing,
            (found, Extracted::Missing) | (Extracted::Missing, found) => found,
            _ => return Extracted::InvalidRequest("token in both header and cookie"),
        };
        // RFC 6750 §2.3 query tokens are never accepted; one sent alongside
        // another method is "more than one method" (§3.1).
        if has_query_token(uri) {
            return Extracted::InvalidRequest("token in the query string too");
        }
        found
    }
}

fn bearer(headers: &HeaderMap) -> Extracted<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Extracted::Missing;
    };
    if values.next().is_some() {
        return Extracted::InvalidRequest("several Authorization headers");
    }
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|b| *b == b' ') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Another scheme (Basic, ApiKey…) is not our credential.
        return Extracted::Missing;
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Extracted::InvalidRequest("empty bearer token");
    }
    match std::str::from_utf8(token) {
        Ok(token) => Extracted::Token(token),
        Err(_) => Extracted::Unreadable,
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Extracted<'a> {
    let mut found = None;
    let mut scanned = 0usize;
    for value in headers.get_all(COOKIE) {
        scanned += value.len();
        if scanned > MAX_COOKIE_BYTES {
            return Extracted::InvalidRequest("Cookie header too large");
        }
        let Ok(value) = value.to_str() else {
            continue;
        };
        for pair in value.split(';') {
            let Some((key, val)) = pair.trim().split_once('=') else {
                continue;
            };
            if key.trim() != name {
                continue;
            }
            if found.is_some() {
                // Two cookies of one name: a sibling domain may have planted one.
                return Extracted::InvalidRequest("token cookie sent twice");
            }
            found = Some(val.trim().trim_matches('"'));
        }
    }
    match found {
        None => Extracted::Missing,
        Some("") => Extracted::InvalidRequest("empty token cookie"),
        Some(token) => Extracted::Token(token),
    }
}

fn has_query_token(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next().is_some_and(|k| k == "access_token"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn source(cookie: Option<&str>) -> TokenSource {
        TokenSource {
            header: true,
            cookie: cookie.map(str::to_owned),
        }
    }

    fn run<'a>(s: &TokenSource, headers: &'a HeaderMap, uri: &str) -> Extracted<'a> {
        s.extract(headers, &uri.parse().unwrap())
    }

    fn with(pairs: &[(&'static str, &'static [u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn debug_never_shows_the_token() {
        let shown = format!("{:?}", Extracted::Token("eyJsecret.token.value"));
        assert_eq!(shown, "Token(<redacted>)");
    }

    #[test]
    fn bearer_rules() {
        let s = source(None);
        assert_eq!(run(&s, &HeaderMap::new(), "/"), Extracted::Missing);
        assert_eq!(
            run(&s, &with(&[("authorization", b"Bearer abc")]), "/"),
            Extracted::Token("abc")
        );
        assert_eq!(
            run(&s, &with(&[("authorization", b"bearer abc")]), "/"),
            Extracted::Token("abc")
        );
        assert_eq!(
            run(&s, &with(&[("authorization", b"Basic dXNlcjpwYXNz")]), "/"),
            Extracted::Missing
        );
        assert!(matches!(
            run(&s, &with(&[("authorization", b"Bearer")]), "/"),
            Extracted::InvalidRequest(_)
        ));
        assert!(matches!(
            run(&s, &with(&[("authorization", b"Bearer  ")]), "/"),
            Extracted::InvalidRequest(_)
        ));
        assert!(matches!(
            run(
                &s,
                &with(&[
                    ("authorization", b"Bearer a"),
                    ("authorization", b"Bearer b")
                ]),
                "/"
            ),
            Extracted::InvalidRequest(_)
        ));
        assert_eq!(
            run(&s, &with(&[("authorization", b"Bearer \xff\xfe")]), "/"),
            Extracted::Unreadable
        );
    }

    #[test]
    fn query_tokens_are_never_used() {
        let s = source(None);
        assert_eq!(
            run(&s, &HeaderMap::new(), "/?access_token=abc"),
            Extracted::Missing
        );
        assert!(matches!(
            run(
                &s,
                &with(&[("authorization", b"Bearer abc")]),
                "/?x=1&access_token=abc"
            ),
            Extracted::InvalidRequest(_)
        ));
    }

    #[test]
    fn cookie_rules() {
        let s = source(Some("at"));
        assert_eq!(
            run(&s, &with(&[("cookie", b"a=1; at=tok")]), "/"),
            Extracted::Token("tok")
        );
        assert!(matches!(
            run(&s, &with(&[("cookie", b"at=1; at=2")]), "/"),
            Extracted::InvalidRequest(_)
        ));
        assert!(matches!(
            run(&s, &with(&[("cookie", b"at=")]), "/"),
            Extracted::InvalidRequest(_)
        ));
        assert!(matches!(
            run(
                &s,
                &with(&[("cookie", b"at=x"), ("authorization", b"Bearer y")]),
                "/"
            ),
            Extracted::InvalidRequest(_)
        ));
        let big = format!("{}; at=tok", "c=1; ".repeat(4000));
        let h = with(&[("cookie", Box::leak(big.into_bytes().into_boxed_slice()))]);
        assert!(matches!(run(&s, &h, "/"), Extracted::InvalidRequest(_)));
    }
}
