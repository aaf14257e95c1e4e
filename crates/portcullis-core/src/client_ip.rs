//! Which address a request comes from, without trusting what clients say.
//!
//! The address is the TCP peer unless that peer is a configured trusted
//! proxy; only then are forwarding headers read, from the right (the hop the
//! trusted proxy appended) leftwards, skipping further trusted proxies. A
//! client that writes its own `X-Forwarded-For` only adds entries to the left
//! of the ones the proxy appends, so it never changes the answer.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

/// The TCP peer address of a connection.
///
/// Servers built on bare hyper insert it into request extensions (axum users
/// get `ConnectInfo<SocketAddr>`, which the `ClientIpLayer` also reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// The resolved client address, inserted into request extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// Which forwarding header trusted proxies set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
    /// `X-Real-IP: client`, a single value set by the proxy.
    XRealIp,
}

/// The proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ForwardedHeader,
    max_hops: usize,
}

/// A trusted-proxy network could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidNetwork(String);

impl std::fmt::Display for InvalidNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid network {:?}: expected an address or CIDR such as 10.0.0.0/8",
            self.0
        )
    }
}

impl std::error::Error for InvalidNetwork {}

impl TrustedProxies {
    /// No trusted proxies: the socket address is always the answer.
    #[must_use]
    pub fn none() -> Self {
        Self {
            networks: Vec::new(),
            header: ForwardedHeader::XForwardedFor,
            max_hops: 16,
        }
    }

    /// Trusts proxies in `networks` (`"10.0.0.0/8"`, `"127.0.0.1"`, `"::1"`).
    ///
    /// # Errors
    ///
    /// Fails on the first entry that is neither an address nor a CIDR.
    pub fn new<I, S>(networks: I) -> Result<Self, InvalidNetwork>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut trusted = Self::none();
        for net in networks {
            let net = net.as_ref().trim();
            let parsed = IpNet::from_str(net)
                .or_else(|_| IpAddr::from_str(net).map(IpNet::from))
                .map_err(|_| InvalidNetwork(net.chars().take(64).collect()))?;
            trusted.networks.push(parsed);
        }
        Ok(trusted)
    }

    /// Reads `header` instead of `X-Forwarded-For`.
    #[must_use]
    pub fn with_header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Walks at most `hops` forwarding entries (default 16).
    #[must_use]
    pub fn with_max_hops(mut self, hops: usize) -> Self {
        self.max_hops = hops.max(1);
        self
    }

    /// Whether `ip` belongs to a trusted proxy.
    #[must_use]
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a request from `peer` carrying `headers`.
    #[must_use]
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        match self.header {
            ForwardedHeader::XRealIp => {
                let mut values = headers.get_all("x-real-ip").iter();
                match (values.next(), values.next()) {
                    (Some(v), None) => v.to_str().ok().and_then(parse_node).unwrap_or(peer),
                    _ => peer,
                }
            }
            ForwardedHeader::XForwardedFor => {
                self.walk(peer, headers, "x-forwarded-for", parse_node)
            }
            ForwardedHeader::Forwarded => {
                self.walk(peer, headers, "forwarded", parse_forwarded_element)
            }
        }
    }

    // Walks comma-separated entries right to left across all header lines
    // (later lines were appended later), returning the first untrusted hop.
    fn walk(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        name: &str,
        parse: fn(&str) -> Option<IpAddr>,
    ) -> IpAddr {
        let lines: Vec<&http::HeaderValue> = headers.get_all(name).iter().collect();
        let mut last_trusted = peer;
        let mut hops = 0;
        for line in lines.iter().rev() {
            let Ok(line) = line.to_str() else {
                return last_trusted;
            };
            for entry in line.rsplit(',') {
                hops += 1;
                if hops > self.max_hops {
                    return last_trusted;
                }
                let Some(ip) = parse(entry) else {
                    // Our own proxies write well-formed entries; garbage means
                    // we are past them, so the last trusted hop is the answer.
                    return last_trusted;
                };
                if !self.is_trusted(ip) {
                    return ip;
                }
                last_trusted = ip;
            }
        }
        last_trusted
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if s.len() > 64 {
        return None;
    }
    if let Ok(ip) = IpAddr::from_str(s) {
        return Some(canonical(ip));
    }
    if let Ok(sock) = SocketAddr::from_str(s) {
        return Some(canonical(sock.ip()));
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    IpAddr::from_str(inner).ok().map(canonical)
}

/// Parses the `for=` parameter of one RFC 7239 element.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_node(value.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(trusted.resolve(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::none().resolve(ip("203.0.113.9"), &h),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn spoofed_entries_left_of_the_proxy_entry_are_ignored() {
        let trusted = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        // Client sent "6.6.6.6"; the proxy appended the real peer 198.51.100.7.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(trusted.resolve(ip("10.1.2.3"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn chains_of_trusted_proxies_and_multiple_lines() {
        let trusted = TrustedProxies::new(["10.0.0.0/8", "192.168.0.1"]).unwrap();
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7, 192.168.0.1"),
        ]);
        assert_eq!(trusted.resolve(ip("10.1.2.3"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn garbage_and_missing_headers_fall_back_to_the_last_trusted_hop() {
        let trusted = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        assert_eq!(
            trusted.resolve(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        let h = headers(&[("x-forwarded-for", "not-an-ip")]);
        assert_eq!(trusted.resolve(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_and_x_real_ip() {
        let trusted = TrustedProxies::new(["127.0.0.1"])
            .unwrap()
            .with_header(ForwardedHeader::Forwarded);
        let h = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https"#,
        )]);
        assert_eq!(trusted.resolve(ip("127.0.0.1"), &h), ip("2001:db8::1"));

        let trusted = TrustedProxies::new(["127.0.0.1"])
            .unwrap()
            .with_header(ForwardedHeader::XRealIp);
        let h = headers(&[("x-real-ip", "198.51.100.7")]);
        assert_eq!(trusted.resolve(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        let h = headers(&[("x-real-ip", "198.51.100.7"), ("x-real-ip", "6.6.6.6")]);
        assert_eq!(
            trusted.resolve(ip("127.0.0.1"), &h),
            ip("127.0.0.1"),
            "ambiguous: keep the peer"
        );
    }

    #[test]
    fn hop_limit_bounds_work() {
        let trusted = TrustedProxies::new(["10.0.0.0/8"])
            .unwrap()
            .with_max_hops(2);
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 10.0.0.3, 10.0.0.2")]);
        assert_eq!(trusted.resolve(ip("10.0.0.1"), &h), ip("10.0.0.3"));
    }

    #[test]
    fn mapped_ipv4_is_canonicalised() {
        let trusted = TrustedProxies::new(["127.0.0.1"]).unwrap();
        assert!(trusted.is_trusted(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn invalid_network_is_an_error() {
        assert!(TrustedProxies::new(["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::new(["example.com"]).is_err());
    }
}
