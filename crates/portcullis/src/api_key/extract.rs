//! Finding the key in a request: `X-API-Key` or `Authorization: ApiKey`,
//! never the query string.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, Uri};

use super::format::MAX_KEY_LEN;

/// Query parameter names that carry API keys in the wild.
const QUERY_NAMES: [&str; 4] = ["api_key", "apikey", "api-key", "x-api-key"];

#[derive(PartialEq, Eq)]
pub(crate) enum Extracted<'a> {
    /// No key of ours. `query_key`: one was sent in the query string, where
    /// it is never read (ASVS 14.2.1); noted for audit.
    Missing { query_key: bool },
    /// A malformed request (two keys, an empty value): `400`.
    InvalidRequest(&'static str),
    /// A key of ours that cannot be a key (too long, not visible ASCII):
    /// `401 invalid_api_key`.
    Unreadable(&'static str),
    /// A candidate key, not yet checked.
    Key(&'a str),
}

// Hand-written: a candidate key must never reach a log through `Debug`.
impl std::fmt::Debug for Extracted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { query_key } => f
                .debug_struct("Missing")
                .field("query_key", query_key)
                .finish(),
            Self::InvalidRequest(why) => f.debug_tuple("InvalidRequest").field(why).finish(),
            Self::Unreadable(why) => f.debug_tuple("Unreadable").field(why).finish(),
            Self::Key(_) => f.write_str("Key(<redacted>)"),
        }
    }
}

/// Where `ApiKeyLayer` looks for the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeySource {
    /// The dedicated header, `x-api-key` by default.
    pub(crate) header: Option<HeaderName>,
    /// Whether `Authorization: ApiKey <key>` is read.
    pub(crate) authorization: bool,
}

impl Default for KeySource {
    fn default() -> Self {
        Self {
            header: Some(HeaderName::from_static("x-api-key")),
            authorization: true,
        }
    }
}

impl KeySource {
    /// Finds the key. `issuer_prefix` (`pc_`) recognises one of our keys
    /// sent as a bearer token next to the header: the same key sent two
    /// ways is an ambiguous request (SECURITY.md row 87).
    pub(crate) fn extract<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &Uri,
        issuer_prefix: &str,
    ) -> Extracted<'a> {
        let from_header = match &self.header {
            Some(name) => {
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => None,
                    (Some(_), Some(_)) => {
                        return Extracted::InvalidRequest("several API key headers");
                    }
                    (Some(value), None) => Some(value.as_bytes()),
                }
            }
            None => None,
        };

        let mut from_authorization = None;
        let mut bearer_key = false;
        let mut authorization_values = 0usize;
        for value in headers.get_all(AUTHORIZATION) {
            authorization_values += 1;
            let bytes = value.as_bytes();
            let (scheme, rest) = match bytes.iter().position(|b| *b == b' ') {
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (bytes, &b""[..]),
            };
            if self.authorization && scheme.eq_ignore_ascii_case(b"apikey") {
                from_authorization = Some(rest);
            } else if scheme.eq_ignore_ascii_case(b"bearer")
                && rest
                    .trim_ascii_start()
                    .starts_with(issuer_prefix.as_bytes())
            {
                bearer_key = true;
            }
        }
        if from_authorization.is_some() && authorization_values > 1 {
            return Extracted::InvalidRequest("several Authorization headers");
        }

        let raw = match (from_header, from_authorization) {
            (None, None) => {
                return Extracted::Missing {
                    query_key: has_query_key(uri, issuer_prefix, self.header.as_ref()),
                };
            }
            (Some(_), Some(_)) => {
                return Extracted::InvalidRequest("API key in two headers");
            }
            (Some(raw), None) | (None, Some(raw)) => raw,
        };
        // The size cap comes before any other look at the value.
        if raw.len() > MAX_KEY_LEN {
            return Extracted::Unreadable("API key too long");
        }
        if bearer_key {
            return Extracted::InvalidRequest("API key sent as a bearer token too");
        }
        // RFC 6750 §3.1 by analogy: a key also in the query string is "more
        // than one method".
        if has_query_key(uri, issuer_prefix, self.header.as_ref()) {
            return Extracted::InvalidRequest("API key in the query string too");
        }
        let key = raw.trim_ascii();
        if key.is_empty() {
            return Extracted::InvalidRequest("empty API key");
        }
        // Without short-circuiting, so the check vectorises.
        if !key
            .iter()
            .fold(true, |graphic, b| graphic & b.is_ascii_graphic())
        {
            return Extracted::Unreadable("API key is not visible ASCII");
        }
        match std::str::from_utf8(key) {
            Ok(key) => Extracted::Key(key),
            Err(_) => Extracted::Unreadable("API key is not visible ASCII"),
        }
    }
}

fn has_query_key(uri: &Uri, issuer_prefix: &str, header: Option<&HeaderName>) -> bool {
    let Some(query) = uri.query() else {
        return false;
    };
    query.split('&').any(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        QUERY_NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
            || header.is_some_and(|h| name.eq_ignore_ascii_case(h.as_str()))
            || value.starts_with(issuer_prefix)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn debug_never_shows_the_key() {
        assert_eq!(
            format!("{:?}", Extracted::Key("pc_live_secretsecret")),
            "Key(<redacted>)"
        );
    }

    fn run<'a>(headers: &'a HeaderMap, uri: &str) -> Extracted<'a> {
        KeySource::default().extract(headers, &uri.parse().unwrap(), "pc_")
    }

    fn with(pairs: &[(&'static str, &'static [u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn is_invalid_request(e: &Extracted<'_>) -> bool {
        matches!(e, Extracted::InvalidRequest(_))
    }

    #[test]
    fn header_and_authorization_scheme() {
        assert_eq!(
            run(&HeaderMap::new(), "/"),
            Extracted::Missing { query_key: false }
        );
        assert_eq!(
            run(&with(&[("x-api-key", b"pc_live_abc")]), "/"),
            Extracted::Key("pc_live_abc")
        );
        assert_eq!(
            run(&with(&[("x-api-key", b"  pc_live_abc ")]), "/"),
            Extracted::Key("pc_live_abc")
        );
        assert_eq!(
            run(&with(&[("authorization", b"ApiKey pc_live_abc")]), "/"),
            Extracted::Key("pc_live_abc")
        );
        assert_eq!(
            run(&with(&[("authorization", b"apikey pc_live_abc")]), "/"),
            Extracted::Key("pc_live_abc")
        );
        // Other schemes are not ours.
        assert_eq!(
            run(&with(&[("authorization", b"Bearer a.b.c")]), "/"),
            Extracted::Missing { query_key: false }
        );
        assert_eq!(
            run(&with(&[("authorization", b"Basic dTpw")]), "/"),
            Extracted::Missing { query_key: false }
        );
        // A bearer JWT next to an API key is not a duplicate key.
        assert_eq!(
            run(
                &with(&[
                    ("x-api-key", b"pc_live_abc"),
                    ("authorization", b"Bearer a.b.c")
                ]),
                "/"
            ),
            Extracted::Key("pc_live_abc")
        );
    }

    #[test]
    fn two_credentials_or_empty_values_are_invalid_requests() {
        for headers in [
            with(&[("x-api-key", b"pc_a"), ("x-api-key", b"pc_b")]),
            with(&[("x-api-key", b"pc_a"), ("authorization", b"ApiKey pc_b")]),
            with(&[("x-api-key", b"pc_a"), ("authorization", b"Bearer pc_a")]),
            with(&[
                ("authorization", b"ApiKey pc_a"),
                ("authorization", b"Bearer x"),
            ]),
            with(&[("x-api-key", b"")]),
            with(&[("x-api-key", b"   ")]),
            with(&[("authorization", b"ApiKey")]),
            with(&[("authorization", b"ApiKey   ")]),
        ] {
            assert!(is_invalid_request(&run(&headers, "/")), "{headers:?}");
        }
    }

    #[test]
    fn query_keys_are_never_read() {
        for uri in [
            "/?api_key=pc_live_x",
            "/?x=1&APIKEY=y",
            "/?x-api-key=1",
            "/?token=pc_live_x",
        ] {
            assert_eq!(
                run(&HeaderMap::new(), uri),
                Extracted::Missing { query_key: true },
                "{uri}"
            );
            assert!(
                is_invalid_request(&run(&with(&[("x-api-key", b"pc_live_abc")]), uri)),
                "{uri}"
            );
        }
        assert_eq!(
            run(&HeaderMap::new(), "/?page=2&keyboard=1"),
            Extracted::Missing { query_key: false }
        );
    }

    #[test]
    fn oversized_and_foreign_bytes_are_unreadable() {
        let long: &'static [u8] = Box::leak(vec![b'a'; 10_000].into_boxed_slice());
        assert!(matches!(
            run(&with(&[("x-api-key", long)]), "/"),
            Extracted::Unreadable(_)
        ));
        assert!(matches!(
            run(&with(&[("x-api-key", "pc_caf\u{e9}".as_bytes())]), "/"),
            Extracted::Unreadable(_)
        ));
        assert!(matches!(
            run(&with(&[("x-api-key", b"pc_a b")]), "/"),
            Extracted::Unreadable(_)
        ));
    }
}
