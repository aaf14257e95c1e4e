//! The first line of defence: Fetch Metadata (`Sec-Fetch-Site`) and an
//! exact match of the request's origin against the trusted origins.
//!
//! Browsers set `Origin` and `Sec-Fetch-*` themselves; page scripts cannot
//! forge them. A missing header is **not** evidence of a same-origin
//! request (old browsers, privacy proxies, non-browser clients), so absence
//! never passes on its own: the token check behind still decides, or — with
//! [`MissingOriginPolicy::Refuse`] — the request is refused.

use std::net::IpAddr;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue};
use portcullis_core::{PeerAddr, TrustedProxies};

use crate::ConfigError;

/// A serialized origin, normalised: lowercase scheme and host, default port
/// made explicit. Two origins are the same only if all three parts are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    https: bool,
    host: Box<str>,
    port: u16,
}

impl Origin {
    /// Parses a configured origin (`https://example.org`,
    /// `http://127.0.0.1:8080`): scheme, host and optional port, nothing
    /// else.
    pub(crate) fn parse_config(origin: &str) -> Result<Self, ConfigError> {
        Self::parse(origin.as_bytes()).ok_or(ConfigError::invalid(
            "trusted origin",
            "expected scheme://host[:port] with scheme http or https and no path",
        ))
    }

    /// A strict serialized origin (the `Origin` header's form).
    fn parse(value: &[u8]) -> Option<Self> {
        let (https, rest) = split_scheme(value)?;
        Self::from_authority(https, rest)
    }

    /// The origin of an absolute URL (the `Referer` header's form).
    fn of_url(value: &[u8]) -> Option<Self> {
        let (https, rest) = split_scheme(value)?;
        let end = rest
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        Self::from_authority(https, &rest[..end])
    }

    /// `host[:port]` under a scheme.
    fn from_authority(https: bool, authority: &[u8]) -> Option<Self> {
        if authority.is_empty() || authority.len() > 300 {
            return None;
        }
        let (host, port) = if authority[0] == b'[' {
            let close = authority.iter().position(|b| *b == b']')?;
            let host = &authority[..=close];
            let inner = std::str::from_utf8(&host[1..close]).ok()?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            (host, &authority[close + 1..])
        } else {
            let colon = authority
                .iter()
                .position(|b| *b == b':')
                .unwrap_or(authority.len());
            let host = &authority[..colon];
            if host.is_empty()
                || !host
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return None;
            }
            (host, &authority[colon..])
        };
        let default = if https { 443 } else { 80 };
        let port = match port {
            [] => default,
            [b':', digits @ ..] if !digits.is_empty() && digits.len() <= 5 => {
                if !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                std::str::from_utf8(digits).ok()?.parse::<u16>().ok()?
            }
            _ => return None,
        };
        let host = std::str::from_utf8(host).ok()?.to_ascii_lowercase();
        Some(Self {
            https,
            host: host.into(),
            port,
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            write!(f, "{scheme}://{}", self.host)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

fn split_scheme(value: &[u8]) -> Option<(bool, &[u8])> {
    let sep = value.windows(3).position(|w| w == b"://")?;
    let https = match &value[..sep] {
        s if s.eq_ignore_ascii_case(b"https") => true,
        s if s.eq_ignore_ascii_case(b"http") => false,
        _ => return None,
    };
    Some((https, &value[sep + 3..]))
}

/// What to do with `Sec-Fetch-Site: same-site` on a state-changing request
/// (a sibling subdomain: `evil.example.org` → `app.example.org`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SameSitePolicy {
    /// Refuse unless the request's origin is a trusted origin (default):
    /// sibling subdomains are often less trusted than the app itself (user
    /// content, marketing sites, dangling DNS).
    #[default]
    RefuseUnlessTrustedOrigin,
    /// Let it through to the token check.
    Allow,
}

/// What to do when a state-changing request carries neither `Origin`,
/// nor a usable `Referer`, nor `Sec-Fetch-Site`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissingOriginPolicy {
    /// The token check alone decides (default). Modern browsers always send
    /// `Origin` or `Sec-Fetch-Site` on a cross-origin POST, so a request
    /// without them is an old browser or a non-browser client; the token
    /// still has to match.
    #[default]
    TokenOnly,
    /// Refuse with `cross_origin`: the strict choice for sensitive
    /// endpoints whose clients are all modern browsers.
    Refuse,
}

/// Where the target origin may also be read from, besides the configured
/// list: the `Host` header, or `X-Forwarded-Host`/`X-Forwarded-Proto` when
/// the TCP peer is a trusted proxy.
#[derive(Clone, Debug)]
pub(crate) struct HostOrigin {
    pub(crate) https: bool,
    pub(crate) proxies: TrustedProxies,
}

/// The first-line rules, fixed at build time.
#[derive(Clone, Debug)]
pub(crate) struct OriginPolicy {
    pub(crate) trusted: Vec<Origin>,
    pub(crate) host: Option<HostOrigin>,
    pub(crate) allow_trusted_cross_site: bool,
    pub(crate) same_site: SameSitePolicy,
    pub(crate) missing: MissingOriginPolicy,
    pub(crate) referer_fallback: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FetchSite {
    SameOrigin,
    SameSite,
    CrossSite,
    None,
}

/// `Sec-Fetch-Site`: `None` when absent; a repeated or unknown value reads
/// as cross-site (fail safe).
fn fetch_site(headers: &HeaderMap) -> Option<FetchSite> {
    static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
    let mut values = headers.get_all(&SEC_FETCH_SITE).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(FetchSite::CrossSite);
    }
    Some(match first.as_bytes() {
        b"same-origin" => FetchSite::SameOrigin,
        b"same-site" => FetchSite::SameSite,
        b"none" => FetchSite::None,
        _ => FetchSite::CrossSite,
    })
}

/// What the request says about where it comes from.
enum Claimed {
    /// No `Origin`, no usable `Referer`.
    Nothing,
    /// `Origin: null`, an unparsable value, or a repeated header.
    Opaque,
    Origin(Origin),
}

fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
        (Some(_), Some(_)) => Err(()),
    }
}

impl OriginPolicy {
    fn claimed(&self, headers: &HeaderMap) -> Claimed {
        match single(headers, "origin") {
            Err(()) => return Claimed::Opaque,
            Ok(Some(origin)) => {
                // `null` (sandboxed frames, file:, some redirects) and
                // anything unparsable are opaque: never trusted, and no
                // fallback to `Referer`.
                return Origin::parse(origin.as_bytes()).map_or(Claimed::Opaque, Claimed::Origin);
            }
            Ok(None) => {}
        }
        if self.referer_fallback
            && let Ok(Some(referer)) = single(headers, "referer")
            && let Some(origin) = Origin::of_url(referer.as_bytes())
        {
            return Claimed::Origin(origin);
        }
        Claimed::Nothing
    }

    fn is_trusted(&self, origin: &Origin, headers: &HeaderMap, extensions: &Extensions) -> bool {
        if self.trusted.iter().any(|t| t == origin) {
            return true;
        }
        self.host
            .as_ref()
            .and_then(|host| host.target(headers, extensions))
            .is_some_and(|target| &target == origin)
    }

    /// The first-line decision for a state-changing request: `Err(detail)`
    /// means refuse with `cross_origin`.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Result<(), &'static str> {
        let site = fetch_site(headers);
        let trusted = match self.claimed(headers) {
            Claimed::Opaque => return Err("opaque or malformed Origin"),
            Claimed::Origin(origin) => {
                if !self.is_trusted(&origin, headers, extensions) {
                    return Err("origin is not trusted");
                }
                true
            }
            Claimed::Nothing => false,
        };
        match site {
            Some(FetchSite::CrossSite) if !(trusted && self.allow_trusted_cross_site) => {
                Err("Sec-Fetch-Site: cross-site")
            }
            Some(FetchSite::SameSite)
                if !trusted && self.same_site == SameSitePolicy::RefuseUnlessTrustedOrigin =>
            {
                Err("Sec-Fetch-Site: same-site from an untrusted origin")
            }
            None if !trusted && self.missing == MissingOriginPolicy::Refuse => {
                Err("no Origin, Referer or Sec-Fetch-Site")
            }
            _ => Ok(()),
        }
    }
}

impl HostOrigin {
    /// The origin the request was addressed to.
    fn target(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<Origin> {
        if let Some(peer) = peer_ip(extensions)
            && self.proxies.is_trusted(peer)
            && let Some(host) = last_forwarded(headers, "x-forwarded-host")
        {
            let https = match last_forwarded(headers, "x-forwarded-proto") {
                Some(proto) if proto.eq_ignore_ascii_case("https") => true,
                Some(proto) if proto.eq_ignore_ascii_case("http") => false,
                Some(_) => return None,
                None => self.https,
            };
            return Origin::from_authority(https, host.as_bytes());
        }
        let host = single(headers, "host").ok()??;
        Origin::from_authority(self.https, host.as_bytes())
    }
}

/// The entry the nearest proxy appended: the last one of the last line.
fn last_forwarded(headers: &HeaderMap, name: &str) -> Option<String> {
    let line = headers.get_all(name).iter().next_back()?;
    let value = line.to_str().ok()?;
    let last = value.rsplit(',').next()?.trim();
    (!last.is_empty()).then(|| last.to_owned())
}

fn peer_ip(extensions: &Extensions) -> Option<IpAddr> {
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

    fn origin(s: &str) -> Option<Origin> {
        Origin::parse(s.as_bytes())
    }

    #[test]
    fn origins_parse_strictly_and_normalise() {
        assert_eq!(
            origin("https://Example.ORG"),
            origin("https://example.org:443")
        );
        assert_ne!(origin("https://example.org"), origin("http://example.org"));
        assert_ne!(
            origin("https://example.org"),
            origin("https://example.org:8443")
        );
        assert_ne!(
            origin("https://example.org"),
            origin("https://example.org.attacker.com")
        );
        for bad in [
            "null",
            "",
            "example.org",
            "https://",
            "https://example.org/",
            "https://example.org/path",
            "https://user@example.org",
            "https://example.org:",
            "https://example.org:99999",
            "https://example.org:+80",
            "ftp://example.org",
            "https://exa mple.org",
            "https://[::1",
            "https://[zz]",
        ] {
            assert!(origin(bad).is_none(), "{bad:?}");
        }
        assert!(origin("http://[::1]:8080").is_some());
        assert_eq!(
            Origin::of_url(b"https://example.org/a/b?c#d"),
            origin("https://example.org")
        );
        assert_eq!(
            origin("http://127.0.0.1:3000").unwrap().to_string(),
            "http://127.0.0.1:3000"
        );
    }
}
