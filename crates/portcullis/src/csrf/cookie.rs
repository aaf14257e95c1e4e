//! Reading cookies from `Cookie` headers and writing the token's
//! `Set-Cookie`.

use std::time::Duration;

use http::HeaderMap;
use http::header::COOKIE;

use crate::ConfigError;

/// Most `name=value` pairs read across all `Cookie` headers; the rest are
/// ignored (bounded work per request whatever the client sends).
const MAX_PAIRS: usize = 256;

/// What a lookup of one cookie name found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found<'a> {
    None,
    One(&'a str),
    /// Sent more than once: ambiguous, never trusted.
    Many,
}

fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .take(MAX_PAIRS)
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim(), value.trim()))
        })
}

/// Every occurrence of cookie `name`.
pub(crate) fn find<'a>(headers: &'a HeaderMap, name: &str) -> Found<'a> {
    let mut found = Found::None;
    for (n, v) in pairs(headers) {
        if n == name {
            found = match found {
                Found::None => Found::One(v),
                _ => return Found::Many,
            };
        }
    }
    found
}

/// The first non-empty value of cookie `name`.
pub(crate) fn first<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    pairs(headers)
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Whether any of `names` is present.
pub(crate) fn any_of(headers: &HeaderMap, names: &[Box<str>]) -> bool {
    pairs(headers).any(|(n, _)| names.iter().any(|name| &**name == n))
}

/// The `SameSite` attribute of the token cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent on same-site requests and top-level cross-site navigations
    /// (default): a user arriving from a link keeps the token the open tabs
    /// use, and a cross-site POST still arrives without it.
    #[default]
    Lax,
    /// Sent on same-site requests only. A user arriving from a link to the
    /// site has no token cookie on that first request and gets a new one,
    /// which invalidates forms open in other tabs.
    Strict,
}

/// The cookie's name and attributes.
#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) name: Box<str>,
    pub(crate) same_site: SameSite,
    pub(crate) http_only: bool,
    pub(crate) max_age: Option<Duration>,
    /// `Secure` and the `__Host-` prefix dropped for plain-HTTP
    /// development; set only by the loudly named builder switch.
    pub(crate) insecure_dev: bool,
}

/// The default cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "__Host-csrf";

impl Default for CookieSettings {
    fn default() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.into(),
            same_site: SameSite::Lax,
            http_only: true,
            max_age: None,
            insecure_dev: false,
        }
    }
}

impl CookieSettings {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(ConfigError::invalid(
                "csrf cookie name",
                "use letters, digits, '-', '_' and '.' only",
            ));
        }
        if !self.insecure_dev && !self.name.starts_with("__Host-") {
            return Err(ConfigError::invalid(
                "csrf cookie name",
                "must start with __Host- (a sibling subdomain or a plain-HTTP response cannot set such a cookie); \
                 use insecure_cookie_for_http_development() only for local plain-HTTP development",
            ));
        }
        Ok(())
    }

    /// Everything after `name=value`, computed once.
    pub(crate) fn attributes(&self) -> String {
        let mut attrs = String::from("; Path=/");
        if !self.insecure_dev {
            attrs.push_str("; Secure");
        }
        if self.http_only {
            attrs.push_str("; HttpOnly");
        }
        attrs.push_str(match self.same_site {
            SameSite::Lax => "; SameSite=Lax",
            SameSite::Strict => "; SameSite=Strict",
        });
        if let Some(age) = self.max_age {
            attrs.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(COOKIE, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn finds_cookies_across_lines_and_flags_duplicates() {
        let h = headers(&["a=1; __Host-csrf=tok", "b=2"]);
        assert_eq!(find(&h, "__Host-csrf"), Found::One("tok"));
        assert_eq!(find(&h, "csrf"), Found::None, "names match exactly");
        let h = headers(&["__Host-csrf=x", "__Host-csrf=y"]);
        assert_eq!(find(&h, "__Host-csrf"), Found::Many);
        assert_eq!(first(&h, "__Host-csrf"), Some("x"));
        assert!(any_of(&h, &["nope".into(), "__Host-csrf".into()]));
    }

    #[test]
    fn parsing_is_bounded() {
        let many: String = (0..5000).map(|i| format!("c{i}=v; ")).collect();
        let h = headers(&[&format!("{many}__Host-csrf=late")]);
        assert_eq!(
            find(&h, "__Host-csrf"),
            Found::None,
            "pairs past the bound are not read"
        );
    }

    #[test]
    fn attributes() {
        let s = CookieSettings::default();
        assert_eq!(s.attributes(), "; Path=/; Secure; HttpOnly; SameSite=Lax");
        s.validate().unwrap();
        let bad = CookieSettings {
            name: "csrf".into(),
            ..CookieSettings::default()
        };
        assert!(bad.validate().is_err());
        let dev = CookieSettings {
            name: "csrf".into(),
            insecure_dev: true,
            http_only: false,
            same_site: SameSite::Strict,
            max_age: Some(Duration::from_secs(60)),
        };
        dev.validate().unwrap();
        assert_eq!(dev.attributes(), "; Path=/; SameSite=Strict; Max-Age=60");
    }
}
