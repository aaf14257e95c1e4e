//! Making attacker-controlled and personal strings safe to write down.
//!
//! Everything that reaches an audit record from a request (path, user agent,
//! identifiers) passes through here first: control characters are replaced,
//! length is capped on a character boundary, and identifiers that look like
//! email addresses become keyed pseudonyms so logs stay PII-free while
//! `jq … | sort | uniq -c` still groups one person's failures together.

use std::fmt::Write as _;
use std::sync::Arc;

use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};

/// Longest endpoint kept, in characters.
pub(crate) const MAX_ENDPOINT: usize = 256;
/// Longest user agent kept, in characters.
pub(crate) const MAX_USER_AGENT: usize = 256;
/// Longest identifier kept, in characters.
pub(crate) const MAX_IDENTIFIER: usize = 128;
/// Characters of a credential kept (DESIGN.md: at most six).
pub(crate) const TOKEN_PREFIX_LEN: usize = 6;

/// Replaces control characters with `?` and truncates to `max` characters,
/// marking a cut with `…`.
pub(crate) fn sanitize(input: &str, max: usize) -> Box<str> {
    // The common case — printable ASCII within the bound — is copied whole;
    // the check has no early exit so that it vectorises.
    if input.len() <= max
        && input
            .bytes()
            .fold(true, |plain, b| plain & (0x20..0x7f).contains(&b))
    {
        return input.into();
    }
    let mut out = String::with_capacity(input.len().min(max * 4));
    for (count, ch) in input.chars().enumerate() {
        if count == max {
            out.push('…');
            break;
        }
        out.push(if ch.is_control() { '?' } else { ch });
    }
    out.into_boxed_str()
}

/// The first characters of a credential, only when they are plainly
/// token-shaped (base64url, dots, underscores); anything else is dropped
/// rather than logged.
pub(crate) fn token_prefix(credential: &str) -> Option<&str> {
    let end = credential
        .char_indices()
        .nth(TOKEN_PREFIX_LEN)
        .map_or(credential.len(), |(end, _)| end);
    let prefix = &credential[..end];
    let shaped = !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    shaped.then_some(prefix)
}

/// Turns identifiers into what an audit record may hold.
#[derive(Clone)]
pub(crate) struct Pseudonymizer {
    key: Arc<hmac::Key>,
}

impl Pseudonymizer {
    /// A pseudonymizer keyed with `secret`; replicas sharing the secret give
    /// one person the same pseudonym.
    pub(crate) fn new(secret: &[u8]) -> Self {
        Self {
            key: Arc::new(hmac::Key::new(hmac::HMAC_SHA256, secret)),
        }
    }

    /// A pseudonymizer with a random key: stable for this process only.
    pub(crate) fn random() -> Self {
        let mut secret = [0_u8; 32];
        // Failing to read the system RNG leaves an all-zero key: pseudonyms
        // are then guessable, but never the plain address.
        let _ = SystemRandom::new().fill(&mut secret);
        Self::new(&secret)
    }

    /// The identifier as it may be recorded: email-like values become
    /// `email:` plus 12 hex digits of a keyed hash of the lowercased
    /// address; others are sanitized and truncated.
    pub(crate) fn identifier(&self, identifier: &str) -> Arc<str> {
        if identifier.contains('@') {
            let tag = hmac::sign(&self.key, identifier.trim().to_lowercase().as_bytes());
            let mut out = String::with_capacity(18);
            out.push_str("email:");
            for byte in &tag.as_ref()[..6] {
                let _ = write!(out, "{byte:02x}");
            }
            Arc::from(out)
        } else {
            Arc::from(sanitize(identifier, MAX_IDENTIFIER))
        }
    }
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_replaced_and_length_capped() {
        assert_eq!(&*sanitize("a\nb\u{1b}[31m", 10), "a?b?[31m");
        assert_eq!(&*sanitize("ééééé", 3), "ééé…");
        assert_eq!(&*sanitize("", 3), "");
        // The printable-ASCII shortcut: within the bound, at it, past it.
        assert_eq!(&*sanitize("ab", 3), "ab");
        assert_eq!(&*sanitize("abc", 3), "abc");
        assert_eq!(&*sanitize("abcd", 3), "abc…");
        assert_eq!(&*sanitize("a\u{7f}b", 3), "a?b");
    }

    #[test]
    fn sanitize_shortcut_agrees_with_the_character_walk() {
        let walk = |input: &str, max: usize| {
            let mut out = String::new();
            for (count, ch) in input.chars().enumerate() {
                if count == max {
                    out.push('…');
                    break;
                }
                out.push(if ch.is_control() { '?' } else { ch });
            }
            out
        };
        for b in 0u8..0x80 {
            let input = format!("x{}y", char::from(b));
            for max in 0..5 {
                assert_eq!(
                    &*sanitize(&input, max),
                    walk(&input, max),
                    "{input:?} {max}"
                );
            }
        }
    }

    #[test]
    fn token_prefix_is_six_token_characters_at_most() {
        assert_eq!(token_prefix("eyJhbGciOiJIUzI1NiJ9.x.y"), Some("eyJhbG"));
        assert_eq!(token_prefix("abc"), Some("abc"));
        assert_eq!(token_prefix("ab\"<x>"), None);
        assert_eq!(token_prefix(""), None);
    }

    #[test]
    fn emails_become_stable_keyed_pseudonyms() {
        let p = Pseudonymizer::new(b"k");
        let a = p.identifier("Alice@Example.com");
        assert!(a.starts_with("email:") && a.len() == 18, "{a}");
        assert!(!a.contains("alice") && !a.contains("example"));
        assert_eq!(a, p.identifier(" alice@example.com "));
        assert_ne!(
            a,
            Pseudonymizer::new(b"other").identifier("alice@example.com")
        );
        assert_eq!(&*p.identifier("bob"), "bob");
    }
}
