//! Counter keys: canonical account identifiers and masked client addresses.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization as _;

/// Longest canonical identifier kept, in characters. Longer identifiers are
/// cut: two long identifiers sharing their first 256 characters share a
/// counter, which only makes counting stricter.
pub const MAX_IDENTIFIER_CHARS: usize = 256;

/// The form of an identifier that counters are keyed on: surrounding
/// whitespace trimmed, Unicode NFKC-normalised, lowercased, normalised
/// again (lowercasing can produce non-NFKC sequences), control characters
/// dropped, cut to [`MAX_IDENTIFIER_CHARS`].
///
/// `Alice`, `  alice `, `ＡＬＩＣＥ` (full-width) and `ALİCE`-style
/// compatibility forms all land on one counter, so an attacker cannot get
/// fresh attempts by changing case, width or whitespace. Returns `None` for
/// an identifier that is empty once trimmed.
///
/// ```
/// use portcullis::lockout::canonical_identifier;
///
/// assert_eq!(canonical_identifier(" Alice@Example.COM ").as_deref(), Some("alice@example.com"));
/// assert_eq!(canonical_identifier("ＡＬＩＣＥ").as_deref(), Some("alice"));
/// assert_eq!(canonical_identifier("\u{212B}ngstr\u{f6}m").as_deref(), Some("\u{e5}ngstr\u{f6}m"));
/// assert_eq!(canonical_identifier("   "), None);
/// ```
#[must_use]
pub fn canonical_identifier(raw: &str) -> Option<Arc<str>> {
    let trimmed = raw.trim();
    if trimmed.is_ascii() {
        // ASCII is its own NFKC form: lowercase and drop controls.
        let canonical: String = trimmed
            .bytes()
            .filter(|b| !b.is_ascii_control())
            .take(MAX_IDENTIFIER_CHARS)
            .map(|b| char::from(b.to_ascii_lowercase()))
            .collect();
        let canonical = canonical.trim();
        return (!canonical.is_empty()).then(|| Arc::from(canonical));
    }
    // Bound the work before normalising: NFKC can expand a character up to
    // 18 times, so cap the input first.
    let raw: String = raw.trim().chars().take(MAX_IDENTIFIER_CHARS * 2).collect();
    let lowered: String = raw.nfkc().flat_map(char::to_lowercase).collect();
    let canonical: String = lowered
        .nfkc()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .chars()
        .take(MAX_IDENTIFIER_CHARS)
        .collect();
    (!canonical.is_empty()).then(|| Arc::from(canonical))
}

/// How client addresses are grouped into one counter.
///
/// IPv6 clients usually control a whole /64: counting each address
/// separately would give them 2^64 fresh counters. By default IPv4
/// addresses count alone and IPv6 addresses by their /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpGrouping {
    v4_prefix: u8,
    v6_prefix: u8,
}

impl Default for IpGrouping {
    fn default() -> Self {
        Self {
            v4_prefix: 32,
            v6_prefix: 64,
        }
    }
}

impl IpGrouping {
    /// Groups IPv4 addresses by `v4_prefix` bits (1–32) and IPv6 by
    /// `v6_prefix` bits (1–128).
    #[must_use]
    pub fn new(v4_prefix: u8, v6_prefix: u8) -> Self {
        Self {
            v4_prefix: v4_prefix.clamp(1, 32),
            v6_prefix: v6_prefix.clamp(1, 128),
        }
    }

    /// The address that stands for `ip`'s group (IPv4-mapped IPv6
    /// addresses count as IPv4).
    #[must_use]
    pub fn key(self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.v4_prefix))
                    .unwrap_or(0);
                IpAddr::from((u32::from(v4) & mask).to_be_bytes())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.v6_prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_share_one_key() {
        let forms = [
            "alice",
            "ALICE",
            " Alice\t",
            "ＡＬＩＣＥ",
            "\u{1d5ba}lice", // mathematical sans-serif small a
        ];
        for form in forms {
            assert_eq!(
                canonical_identifier(form).as_deref(),
                Some("alice"),
                "{form:?}"
            );
        }
        assert_ne!(
            canonical_identifier("alice1"),
            canonical_identifier("alice")
        );
        assert_eq!(canonical_identifier("a\u{0}b").as_deref(), Some("ab"));
        assert_eq!(canonical_identifier(""), None);
        let long = "x".repeat(10_000);
        assert_eq!(
            canonical_identifier(&long).unwrap().chars().count(),
            MAX_IDENTIFIER_CHARS
        );
        // Expansion is bounded: U+FDFA expands to 18 characters under NFKC.
        let wide = "\u{fdfa}".repeat(10_000);
        assert!(canonical_identifier(&wide).unwrap().chars().count() <= MAX_IDENTIFIER_CHARS);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64() {
        let g = IpGrouping::default();
        let a = g.key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = g.key("2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "2001:db8:1:2::");
        assert_ne!(a, g.key("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(
            g.key("::ffff:192.0.2.7".parse().unwrap()).to_string(),
            "192.0.2.7"
        );
        assert_eq!(
            IpGrouping::new(24, 48)
                .key("192.0.2.7".parse().unwrap())
                .to_string(),
            "192.0.2.0"
        );
    }
}
