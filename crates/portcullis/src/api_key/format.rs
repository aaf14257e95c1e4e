//! The key format: `<issuer>_<environment>_<key id>_<secret><checksum>`.
//!
//! In the spirit of GitHub's token format: a readable prefix names who issued
//! the key and for which environment; the characters are `[A-Za-z0-9_]` so a
//! double click selects the whole key; the last six characters are the
//! CRC32 of everything before them in base62, so a mistyped, truncated or
//! random string is refused without touching the store, and secret scanners
//! can recognise real keys offline.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::{digest, hmac};
use portcullis_core::ApiKeyDigest;

use crate::ConfigError;

/// The longest key accepted, checked before anything else is looked at
/// (GitHub plans for tokens of up to 255 characters).
pub const MAX_KEY_LEN: usize = 255;

/// Characters of the public key id.
pub const KEY_ID_LEN: usize = 12;

/// Characters of the secret: base62, so 30 × log2(62) ≈ 178 bits of
/// randomness (the issue asks for at least 128).
pub const SECRET_LEN: usize = 30;

/// Characters of the checksum: CRC32 in base62 (62⁶ > 2³²).
pub const CHECKSUM_LEN: usize = 6;

/// Longest issuer or environment label.
const MAX_LABEL_LEN: usize = 16;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Which keys this deployment issues and accepts: an issuer prefix and an
/// environment, `pc_live_` by default.
///
/// A key of another issuer or environment (a `pc_test_` key on a `live`
/// deployment) is refused before any store lookup.
///
/// ```
/// use portcullis::api_key::KeyFormat;
///
/// let live = KeyFormat::default();
/// assert_eq!(live.prefix(), "pc_live_");
/// let staging = KeyFormat::new("acme", "staging")?;
/// assert_eq!(staging.prefix(), "acme_staging_");
/// assert!(KeyFormat::new("Acme", "live").is_err(), "labels are [a-z0-9]");
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct KeyFormat {
    /// `issuer_environment_`.
    prefix: Arc<str>,
    issuer_len: usize,
}

impl Default for KeyFormat {
    /// `pc_live_`.
    fn default() -> Self {
        Self::live()
    }
}

impl fmt::Debug for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyFormat").field(&self.prefix).finish()
    }
}

impl KeyFormat {
    /// `pc_live_` keys.
    #[must_use]
    pub fn live() -> Self {
        Self::known("pc", "live")
    }

    /// `pc_test_` keys.
    #[must_use]
    pub fn test() -> Self {
        Self::known("pc", "test")
    }

    fn known(issuer: &str, environment: &str) -> Self {
        Self {
            prefix: format!("{issuer}_{environment}_").into(),
            issuer_len: issuer.len(),
        }
    }

    /// Keys prefixed `<issuer>_<environment>_`.
    ///
    /// # Errors
    ///
    /// Both labels must be 1 to 16 characters of `[a-z0-9]`: no `_` (it
    /// separates the parts) and nothing a scanner would have to escape.
    pub fn new(issuer: &str, environment: &str) -> Result<Self, ConfigError> {
        let label = |s: &str| {
            (1..=MAX_LABEL_LEN).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !label(issuer) {
            return Err(ConfigError::invalid(
                "API key issuer",
                "must be 1 to 16 characters of [a-z0-9]",
            ));
        }
        if !label(environment) {
            return Err(ConfigError::invalid(
                "API key environment",
                "must be 1 to 16 characters of [a-z0-9]",
            ));
        }
        Ok(Self::known(issuer, environment))
    }

    /// The prefix every key starts with, `pc_live_` by default.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `pc_`: the start shared by every environment's keys.
    pub(crate) fn issuer_prefix(&self) -> &str {
        &self.prefix[..=self.issuer_len]
    }

    /// The issuer label (`pc`).
    #[must_use]
    pub fn issuer(&self) -> &str {
        &self.prefix[..self.issuer_len]
    }

    /// The environment label (`live`).
    #[must_use]
    pub fn environment(&self) -> &str {
        &self.prefix[self.issuer_len + 1..self.prefix.len() - 1]
    }

    /// The length of every key of this format.
    #[must_use]
    pub fn key_len(&self) -> usize {
        self.prefix.len() + KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
    }

    /// Checks `key` offline: length first, then characters, prefix, shape
    /// and checksum. No store is consulted and nothing is allocated.
    ///
    /// # Errors
    ///
    /// Says which rule failed (for logs and tests; responses never say).
    pub fn parse<'a>(&self, key: &'a str) -> Result<ParsedKey<'a>, KeyFormatError> {
        let parsed = self.parse_shape(key)?;
        if !checksum_matches(key) {
            return Err(KeyFormatError::Checksum);
        }
        Ok(parsed)
    }

    /// [`parse`](Self::parse) without the checksum: the layer checks the
    /// checksum only before a store lookup. On a cache hit the constant-time
    /// digest comparison already proves the key is exactly a stored (so
    /// well-formed) one.
    pub(crate) fn parse_shape<'a>(&self, key: &'a str) -> Result<ParsedKey<'a>, KeyFormatError> {
        let bytes = key.as_bytes();
        if bytes.len() > MAX_KEY_LEN {
            return Err(KeyFormatError::TooLong);
        }
        // One pass for a well-formed key: exact length and prefix, then
        // alphanumerics around the one `_` (non-short-circuiting, so the
        // compiler can vectorise it).
        let prefix = self.prefix.len();
        if bytes.len() == self.key_len() && bytes.starts_with(self.prefix.as_bytes()) {
            let (id, rest) = bytes[prefix..].split_at(KEY_ID_LEN);
            if rest[0] == b'_' && all_alphanumeric(id) & all_alphanumeric(&rest[1..]) {
                return Ok(ParsedKey {
                    key,
                    id: &key[prefix..prefix + KEY_ID_LEN],
                });
            }
        }
        // Otherwise say which rule failed, in order.
        Err(
            if !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                KeyFormatError::Charset
            } else if key.starts_with(&*self.prefix) {
                KeyFormatError::Shape
            } else if key.starts_with(self.issuer_prefix()) {
                KeyFormatError::WrongEnvironment
            } else {
                KeyFormatError::WrongIssuer
            },
        )
    }

    /// A new random key: `(key, key id)`.
    pub(crate) fn generate(&self) -> Result<(String, String), ConfigError> {
        let mut key = String::with_capacity(self.key_len());
        key.push_str(&self.prefix);
        push_random_base62(&mut key, KEY_ID_LEN)?;
        let id = key[self.prefix.len()..].to_owned();
        key.push('_');
        push_random_base62(&mut key, SECRET_LEN)?;
        let checksum = base62_checksum(crc32(key.as_bytes()));
        key.extend(checksum.iter().map(|b| char::from(*b)));
        Ok((key, id))
    }
}

/// What an audit record may show of a credential that looks like an API
/// key of any issuer (`<issuer>_<environment>_…`, lowercase labels): the
/// labels and, when it sits where a key id goes (12 alphanumerics then
/// `_`), the public key id — `pc_live_3kq9x0c1v2b7`, never a byte of the
/// secret. A credential shaped differently gives `None` (the caller then
/// shows nothing of an `x-api-key`, and a JWT's first characters).
///
/// Unknown keys (well formed, not in the store) and mistyped ones show
/// their id, which identifies the key without revealing it; a key with
/// no recognisable id position shows its labels only (`pc_live_`).
#[cfg_attr(not(feature = "audit"), allow(dead_code))]
pub(crate) fn public_prefix(credential: &str) -> Option<&str> {
    let bytes = credential.as_bytes();
    let label = |from: usize| -> Option<usize> {
        let len = bytes
            .get(from..)?
            .iter()
            .take(MAX_LABEL_LEN + 1)
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            .count();
        ((1..=MAX_LABEL_LEN).contains(&len) && bytes.get(from + len) == Some(&b'_'))
            .then_some(from + len + 1)
    };
    let labels_end = label(0).and_then(label)?;
    let id_end = labels_end + KEY_ID_LEN;
    let has_id = bytes.get(labels_end..id_end).is_some_and(all_alphanumeric)
        && bytes.get(id_end) == Some(&b'_');
    Some(if has_id {
        &credential[..id_end]
    } else {
        &credential[..labels_end]
    })
}

/// A key that passed [`KeyFormat::parse`]: right prefix, shape and
/// checksum. Whether it exists is the store's question.
#[derive(Clone, Copy)]
pub struct ParsedKey<'a> {
    key: &'a str,
    id: &'a str,
}

impl<'a> ParsedKey<'a> {
    /// The public key id (safe to log and show).
    #[must_use]
    pub fn id(&self) -> &'a str {
        self.id
    }

    pub(crate) fn key(&self) -> &'a str {
        self.key
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Why a string is not a key of this deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyFormatError {
    /// Longer than [`MAX_KEY_LEN`].
    TooLong,
    /// A character outside `[A-Za-z0-9_]`.
    Charset,
    /// Another issuer's key, or not a key at all.
    WrongIssuer,
    /// This issuer's key for another environment (`test` on `live`).
    WrongEnvironment,
    /// Wrong length or layout.
    Shape,
    /// The checksum does not match: a typo, a truncation or a random string.
    Checksum,
}

impl KeyFormatError {
    /// A fixed note for the rejection's `detail`.
    #[must_use]
    pub const fn detail(self) -> &'static str {
        match self {
            Self::TooLong => "API key too long",
            Self::Charset => "API key has characters outside [A-Za-z0-9_]",
            Self::WrongIssuer => "not an API key of this issuer",
            Self::WrongEnvironment => "API key of another environment",
            Self::Shape => "API key has the wrong shape",
            Self::Checksum => "API key checksum does not match",
        }
    }
}

impl fmt::Display for KeyFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for KeyFormatError {}

/// How keys are digested at rest.
#[derive(Clone)]
pub(crate) enum KeyHasher {
    /// Plain SHA-256: enough for keys of ≥ 112 bits of randomness (ASVS
    /// 6.5.2), since no dictionary covers them.
    Sha256,
    /// HMAC-SHA256 with a server-side pepper: a stolen table is useless
    /// without the pepper. (Shared: an aws-lc HMAC key is over 1 KiB.)
    Hmac(Arc<hmac::Key>),
}

/// Shortest pepper accepted.
pub(crate) const MIN_PEPPER_LEN: usize = 32;

impl KeyHasher {
    pub(crate) fn pepper(pepper: &[u8]) -> Result<Self, ConfigError> {
        if pepper.len() < MIN_PEPPER_LEN {
            return Err(ConfigError::invalid(
                "API key pepper",
                "must be at least 32 bytes",
            ));
        }
        Ok(Self::Hmac(Arc::new(hmac::Key::new(
            hmac::HMAC_SHA256,
            pepper,
        ))))
    }

    /// The digest of the whole key (prefix, id, secret and checksum).
    pub(crate) fn digest(&self, key: &str) -> ApiKeyDigest {
        let mut out = [0u8; portcullis_core::API_KEY_DIGEST_LEN];
        match self {
            Self::Sha256 => {
                out.copy_from_slice(digest::digest(&digest::SHA256, key.as_bytes()).as_ref());
            }
            Self::Hmac(pepper) => {
                out.copy_from_slice(hmac::sign(pepper, key.as_bytes()).as_ref());
            }
        }
        ApiKeyDigest::from_bytes(out)
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sha256 => "Sha256",
            Self::Hmac(_) => "HmacSha256(<pepper redacted>)",
        })
    }
}

/// Appends `n` uniformly random base62 characters (rejection sampling: a
/// byte is used only below 248 = 4 × 62, so every character is equally
/// likely).
fn push_random_base62(out: &mut String, n: usize) -> Result<(), ConfigError> {
    let mut pushed = 0;
    let mut buf = [0u8; 64];
    while pushed < n {
        aws_lc_rs::rand::fill(&mut buf)
            .map_err(|_| ConfigError::invalid("API key", "the system RNG failed"))?;
        for b in buf {
            if pushed == n {
                break;
            }
            if b < 248 {
                out.push(char::from(BASE62[usize::from(b % 62)]));
                pushed += 1;
            }
        }
    }
    Ok(())
}

fn all_alphanumeric(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(true, |ok, b| ok & b.is_ascii_alphanumeric())
}

/// Whether the last six characters of `key` (at least that long, ASCII)
/// are the checksum of the rest.
pub(crate) fn checksum_matches(key: &str) -> bool {
    let Some(split) = key.len().checked_sub(CHECKSUM_LEN) else {
        return false;
    };
    let (body, checksum) = key.as_bytes().split_at(split);
    base62_checksum(crc32(body)).as_slice() == checksum
}

/// `body` followed by its checksum: a well-formed key for any body (tests
/// craft unknown ids and wrong secrets with it).
#[cfg(test)]
pub(crate) fn with_checksum(body: &str) -> String {
    let mut key = body.to_owned();
    key.extend(base62_checksum(crc32(body.as_bytes())).map(char::from));
    key
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and GitHub's tokens use).
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = 0xFFFF_FFFFu32;
    for b in data {
        crc = TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
    }
    !crc
}

/// `value` as six base62 digits, most significant first, zero-padded.
fn base62_checksum(mut value: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_prefix_shows_labels_and_key_id_never_the_secret() {
        let (key, id) = KeyFormat::live().generate().unwrap();
        let secret = &key[key.len() - SECRET_LEN - CHECKSUM_LEN..];
        let shown = public_prefix(&key).unwrap();
        assert_eq!(shown, format!("pc_live_{id}"));
        assert!(!shown.contains(&secret[..4]));
        // Unknown issuers and environments too; truncated or mistyped keys
        // keep their id; no id position: the labels only.
        assert_eq!(
            public_prefix("acme_staging_abcdefghijkl_xyz").unwrap(),
            "acme_staging_abcdefghijkl"
        );
        assert_eq!(
            public_prefix("pc_live_abcdefghijkl_").unwrap(),
            "pc_live_abcdefghijkl"
        );
        assert_eq!(public_prefix("pc_live_short_secret").unwrap(), "pc_live_");
        assert_eq!(
            public_prefix("pc_live_abcdefghijklSECRET").unwrap(),
            "pc_live_"
        );
        assert_eq!(public_prefix("pc_live_").unwrap(), "pc_live_");
        // Not API-key shaped: nothing.
        for other in [
            "hunter2-my-password",
            "eyJhbGciOiJIUzI1NiJ9.e30.x",
            "PC_LIVE_abcdefghijkl_x",
            "pc_live",
            "pc__abcdefghijkl_x",
            "",
            "a_é_x",
            &"a".repeat(300),
        ] {
            assert_eq!(public_prefix(other), None, "{other:?}");
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(&base62_checksum(0), b"000000");
        assert_eq!(&base62_checksum(61), b"00000z");
        assert_eq!(&base62_checksum(u32::MAX), b"4gfFC3");
    }

    #[test]
    fn generated_keys_parse_and_look_like_github_tokens() {
        let format = KeyFormat::live();
        let (key, id) = format.generate().unwrap();
        assert_eq!(key.len(), format.key_len());
        assert!(key.starts_with("pc_live_"));
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        let parsed = format.parse(&key).unwrap();
        assert_eq!(parsed.id(), id);
        assert_eq!(parsed.key(), key);
        assert!(
            !format!("{parsed:?}").contains(&key[20..]),
            "Debug hides the key"
        );
        let (other, other_id) = format.generate().unwrap();
        assert_ne!(key, other);
        assert_ne!(id, other_id);
    }

    #[test]
    fn parse_rules_in_order() {
        let live = KeyFormat::live();
        let (key, _) = live.generate().unwrap();
        let e = |s: &str| live.parse(s).unwrap_err();
        assert_eq!(e(&"a".repeat(MAX_KEY_LEN + 1)), KeyFormatError::TooLong);
        assert_eq!(e(&format!("{key}\0")), KeyFormatError::Charset);
        assert_eq!(
            e(&key.replace("pc_live_", "pc_live-")),
            KeyFormatError::Charset
        );
        assert_eq!(e("pc_live_caf\u{e9}"), KeyFormatError::Charset);
        assert_eq!(e(""), KeyFormatError::WrongIssuer);
        assert_eq!(
            e(&key.replacen("pc_", "gh_", 1)),
            KeyFormatError::WrongIssuer
        );
        assert_eq!(e(&key[..key.len() - 1]), KeyFormatError::Shape);
        let (test_key, _) = KeyFormat::test().generate().unwrap();
        assert_eq!(e(&test_key), KeyFormatError::WrongEnvironment);
        // Move the separator: same length, wrong layout.
        let mut shifted = key.clone().into_bytes();
        shifted.swap(8 + KEY_ID_LEN, 8 + KEY_ID_LEN + 1);
        assert_eq!(
            e(std::str::from_utf8(&shifted).unwrap()),
            KeyFormatError::Shape
        );
        // Every single-character change of the random parts breaks the checksum.
        for i in 8..key.len() {
            if key.as_bytes()[i] == b'_' {
                continue;
            }
            let mut changed = key.clone().into_bytes();
            changed[i] = if changed[i] == b'a' { b'b' } else { b'a' };
            assert_eq!(
                e(std::str::from_utf8(&changed).unwrap()),
                KeyFormatError::Checksum,
                "position {i}"
            );
        }
    }

    #[test]
    fn labels_are_validated() {
        assert!(KeyFormat::new("", "live").is_err());
        assert!(KeyFormat::new("pc", "li_ve").is_err());
        assert!(KeyFormat::new(&"a".repeat(17), "live").is_err());
        let f = KeyFormat::new("acme", "eu1").unwrap();
        assert_eq!((f.issuer(), f.environment()), ("acme", "eu1"));
    }

    #[test]
    fn hashers_differ_and_peppers_are_checked() {
        assert!(KeyHasher::pepper(&[0; 31]).is_err());
        let plain = KeyHasher::Sha256.digest("k");
        let peppered = KeyHasher::pepper(&[7; 32]).unwrap().digest("k");
        assert_ne!(plain.as_bytes(), peppered.as_bytes());
        assert_eq!(
            plain.as_bytes()[..4],
            [0x82, 0x54, 0xc3, 0x29],
            "SHA-256(\"k\")"
        );
        assert!(!format!("{:?}", KeyHasher::pepper(&[7; 32]).unwrap()).contains('7'));
    }
}
