//! The signed double-submit token (OWASP CSRF cheat sheet, "signed double
//! submit cookie"):
//!
//! ```text
//! token   = hex(HMAC-SHA256(secret, message)) "." rand
//! message = len(sid) "!" sid "!" len(rand) "!" rand
//! rand    = lowercase hex of 64 random bytes (128 characters)
//! ```
//!
//! `len(x)` is the byte length in decimal. The length prefixes make the
//! message unambiguous whatever characters a session id holds. Parsing is
//! strict: exactly two lowercase-hex parts of 64 and 128 characters joined
//! by one `.`; anything else is malformed and never reaches the HMAC.

use std::fmt;

use aws_lc_rs::{digest, hmac, rand};
use portcullis_core::{CSRF_TOKEN_DIGEST_LEN, CsrfTokenDigest};
use subtle::{Choice, ConstantTimeEq as _};

use crate::ConfigError;

/// Random bytes in a token.
pub const RANDOM_LEN: usize = 64;
/// Hex characters of the HMAC part.
pub const MAC_HEX_LEN: usize = 64;
/// Hex characters of the random part.
pub const RANDOM_HEX_LEN: usize = RANDOM_LEN * 2;
/// Length of a whole token: 64 + 1 + 128 characters.
pub const TOKEN_LEN: usize = MAC_HEX_LEN + 1 + RANDOM_HEX_LEN;
/// Shortest secret accepted, in bytes (HMAC-SHA256's block of entropy).
pub const MIN_SECRET_LEN: usize = 32;

/// The server-side secret tokens are signed with.
///
/// Keep it in a secret manager, share it between instances, and rotate it
/// with [`with_previous`](Self::with_previous): tokens signed with a
/// previous secret stay valid until it is dropped, new tokens are signed
/// with the current one. `Debug` never prints key material.
///
/// ```
/// use portcullis::csrf::CsrfSecret;
///
/// let secret = CsrfSecret::new(b"from-your-secret-manager-32-bytes+").unwrap();
/// let token = secret.mint("session-1").unwrap();
/// assert_eq!(token.len(), 193);
/// assert!(secret.verify("session-1", &token));
/// assert!(!secret.verify("session-2", &token));
/// assert!(!format!("{secret:?}").contains("secret-manager"));
/// ```
#[derive(Clone)]
pub struct CsrfSecret {
    current: hmac::Key,
    previous: Vec<hmac::Key>,
}

impl CsrfSecret {
    /// A secret from `bytes`.
    ///
    /// # Errors
    ///
    /// Fewer than [`MIN_SECRET_LEN`] bytes, or one byte value repeated (a
    /// placeholder, not a secret).
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Ok(Self {
            current: key(bytes.as_ref())?,
            previous: Vec::new(),
        })
    }

    /// A fresh random 32-byte secret, for a single process (tokens do not
    /// survive a restart and are not shared with other instances).
    ///
    /// # Errors
    ///
    /// The system random number generator failed.
    pub fn generate() -> Result<Self, ConfigError> {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes)
            .map_err(|_| ConfigError::invalid("csrf secret", "random generator failed"))?;
        Self::new(bytes)
    }

    /// Also accepts tokens signed with `previous` (secret rotation).
    ///
    /// # Errors
    ///
    /// Same rules as [`new`](Self::new).
    pub fn with_previous(mut self, previous: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        self.previous.push(key(previous.as_ref())?);
        Ok(self)
    }

    /// A new token bound to `session` (`""`: no session yet, a pre-session
    /// token).
    ///
    /// # Errors
    ///
    /// The system random number generator failed.
    pub fn mint(&self, session: &str) -> Result<String, RandomError> {
        let mut random = [0u8; RANDOM_LEN];
        rand::fill(&mut random).map_err(|_| RandomError)?;
        let mut rand_hex = [0u8; RANDOM_HEX_LEN];
        hex_encode(&random, &mut rand_hex);
        let tag = sign(&self.current, session.as_bytes(), &rand_hex);
        let mut token = String::with_capacity(TOKEN_LEN);
        let mut mac_hex = [0u8; MAC_HEX_LEN];
        hex_encode(tag.as_ref(), &mut mac_hex);
        // Both halves are ASCII hex.
        token.push_str(std::str::from_utf8(&mac_hex).unwrap_or_default());
        token.push('.');
        token.push_str(std::str::from_utf8(&rand_hex).unwrap_or_default());
        Ok(token)
    }

    /// Whether `token` is well formed and signed for `session` by the
    /// current or a previous secret. Compared in constant time.
    #[must_use]
    pub fn verify(&self, session: &str, token: &str) -> bool {
        ParsedToken::parse(token.as_bytes())
            .is_some_and(|parsed| self.verify_parsed(session, &parsed))
    }

    pub(crate) fn verify_parsed(&self, session: &str, token: &ParsedToken<'_>) -> bool {
        let mut ok = Choice::from(0);
        for key in std::iter::once(&self.current).chain(&self.previous) {
            let tag = sign(key, session.as_bytes(), token.rand_hex);
            ok |= tag.as_ref().ct_eq(&token.mac);
        }
        ok.into()
    }
}

impl fmt::Debug for CsrfSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfSecret")
            .field("current", &"<redacted>")
            .field("previous", &self.previous.len())
            .finish()
    }
}

fn key(bytes: &[u8]) -> Result<hmac::Key, ConfigError> {
    if bytes.len() < MIN_SECRET_LEN {
        return Err(ConfigError::weak_key(
            "a CSRF secret must be at least 32 bytes",
        ));
    }
    if bytes.iter().all(|b| *b == bytes[0]) {
        return Err(ConfigError::weak_key(
            "a CSRF secret must not be one repeated byte",
        ));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, bytes))
}

/// The random number generator failed; no token was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomError;

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the system random number generator failed")
    }
}

impl std::error::Error for RandomError {}

fn sign(key: &hmac::Key, session: &[u8], rand_hex: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    let mut digits = [0u8; 20];
    ctx.update(decimal(session.len(), &mut digits));
    ctx.update(b"!");
    ctx.update(session);
    ctx.update(b"!");
    ctx.update(decimal(rand_hex.len(), &mut digits));
    ctx.update(b"!");
    ctx.update(rand_hex);
    ctx.sign()
}

fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` is below 10.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// A token that passed the strict format check.
pub(crate) struct ParsedToken<'a> {
    mac: [u8; 32],
    rand_hex: &'a [u8],
}

impl<'a> ParsedToken<'a> {
    /// Strict: exactly `64 lowercase hex` `.` `128 lowercase hex`.
    pub(crate) fn parse(token: &'a [u8]) -> Option<Self> {
        if token.len() != TOKEN_LEN || token[MAC_HEX_LEN] != b'.' {
            return None;
        }
        let (mac_hex, rest) = token.split_at(MAC_HEX_LEN);
        let rand_hex = &rest[1..];
        if !rand_hex.iter().all(|b| is_lower_hex(*b)) {
            return None;
        }
        let mut mac = [0u8; 32];
        hex_decode(mac_hex, &mut mac)?;
        Some(Self { mac, rand_hex })
    }
}

/// SHA-256 of the whole token: what a [`CsrfTokenStore`] keeps.
///
/// [`CsrfTokenStore`]: portcullis_core::CsrfTokenStore
pub(crate) fn digest_of(token: &str) -> CsrfTokenDigest {
    let d = digest::digest(&digest::SHA256, token.as_bytes());
    let mut bytes = [0u8; CSRF_TOKEN_DIGEST_LEN];
    bytes.copy_from_slice(d.as_ref());
    CsrfTokenDigest::from_bytes(bytes)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_encode(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
}

const fn is_lower_hex(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

const fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn hex_decode(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> CsrfSecret {
        CsrfSecret::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn format_is_the_cheat_sheets() {
        let token = secret().mint("sid-1").unwrap();
        let (mac, rand) = token.split_once('.').unwrap();
        assert_eq!(mac.len(), 64);
        assert_eq!(rand.len(), 128);
        assert!(token.bytes().all(|b| is_lower_hex(b) || b == b'.'));
        // Recompute independently: HMAC over "5!sid-1!128!<rand>".
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
        let message = format!("5!sid-1!128!{rand}");
        let tag = hmac::sign(&key, message.as_bytes());
        let expected: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(mac, expected);
    }

    #[test]
    fn tokens_are_random_and_session_bound() {
        let s = secret();
        let a = s.mint("s").unwrap();
        let b = s.mint("s").unwrap();
        assert_ne!(a, b);
        assert!(s.verify("s", &a) && s.verify("s", &b));
        assert!(!s.verify("t", &a));
        assert!(
            !s.verify("", &a),
            "a session token is not a pre-session token"
        );
        let pre = s.mint("").unwrap();
        assert!(s.verify("", &pre));
        assert!(!s.verify("s", &pre));
    }

    #[test]
    fn length_prefixes_prevent_boundary_shifts() {
        // Without length prefixes "a!b" + rand and "a" + "b!"-prefixed rand
        // could collide; with them the messages differ.
        let s = secret();
        let t = s.mint("a!128!").unwrap();
        assert!(!s.verify("a", &t));
        assert!(!s.verify("a!128", &t));
    }

    #[test]
    fn strict_parse_rejects_every_deviation() {
        let s = secret();
        let good = s.mint("s").unwrap();
        let (mac, rand) = good.split_once('.').unwrap();
        let bad = [
            String::new(),
            mac.to_owned(),
            format!("{mac}{rand}"),
            format!("{mac}.{rand}.{rand}"),
            format!("{mac}.{rand}.x"),
            format!("{}.{rand}", mac.to_uppercase()),
            format!("{mac}.{}", rand.to_uppercase()),
            format!("{}.{rand}", &mac[..62]),
            format!("{mac}.{}", &rand[..126]),
            format!("{mac}0.{rand}"),
            format!("{mac}.{rand}00"),
            format!("{mac}:{rand}"),
            format!(" {mac}.{rand}"),
            format!("{}g.{rand}", &mac[..63]),
            format!("{mac}.{}\u{e9}", &rand[..126]),
        ];
        for token in &bad {
            assert!(ParsedToken::parse(token.as_bytes()).is_none(), "{token:?}");
            assert!(!s.verify("s", token), "{token:?}");
        }
        assert!(s.verify("s", &good));
    }

    #[test]
    fn a_flipped_bit_anywhere_fails() {
        let s = secret();
        let good = s.mint("s").unwrap();
        for i in [0, 31, 63, 65, 100, 192] {
            let mut bytes = good.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let t = String::from_utf8(bytes).unwrap();
            assert!(!s.verify("s", &t), "position {i}");
        }
    }

    #[test]
    fn rotation_keeps_previous_tokens_valid() {
        let old = CsrfSecret::new(b"old-secret-old-secret-old-secret!").unwrap();
        let t = old.mint("s").unwrap();
        let rotated = CsrfSecret::new(b"new-secret-new-secret-new-secret!")
            .unwrap()
            .with_previous(b"old-secret-old-secret-old-secret!")
            .unwrap();
        assert!(rotated.verify("s", &t));
        let fresh = rotated.mint("s").unwrap();
        assert!(!old.verify("s", &fresh), "new tokens use the new secret");
    }

    #[test]
    fn weak_secrets_are_refused() {
        assert!(CsrfSecret::new([1u8; 31]).is_err());
        assert!(CsrfSecret::new([1u8; 64]).is_err());
        assert!(CsrfSecret::generate().is_ok());
    }

    #[test]
    fn decimal_digits() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(128, &mut buf), b"128");
        assert_eq!(
            decimal(usize::MAX, &mut buf),
            usize::MAX.to_string().as_bytes()
        );
    }
}
