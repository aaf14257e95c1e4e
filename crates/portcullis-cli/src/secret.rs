//! What a deployment derives from its JWT signing secret, in one place:
//! the reference server signs with these values and the CLI shows them.
//!
//! A token's `kid` is a **fingerprint** of the secret that signed it — the
//! first 8 bytes, hex, of HMAC-SHA256(secret, `"kid"`) — so an operator
//! can tell which secret a token (or a server) uses without the secret
//! ever being printed, and a server given an old secret as a fallback
//! finds the key a token names.
//!
//! ```
//! use portcullis_cli::secret::key_id;
//!
//! let kid = key_id(b"an-example-secret-of-32-bytes-or-more!");
//! assert_eq!(kid.len(), 16);
//! assert!(kid.bytes().all(|b| b.is_ascii_hexdigit()));
//! assert_ne!(kid, key_id(b"another-secret-of-at-least-32-bytes!!"));
//! ```

use std::fmt::Write as _;

/// The shortest signing secret the reference server accepts, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// A key for `purpose` derived from the signing secret (HMAC-SHA256 keyed
/// with the secret), so one secret configures a server without reusing it
/// across primitives.
#[must_use]
pub fn derive_key(secret: &[u8], purpose: &[u8]) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::sign(&key, purpose).as_ref().to_vec()
}

/// The `kid` of the key made from `secret`: 16 lowercase hex digits (the
/// first 8 bytes of [`derive_key`]`(secret, b"kid")`). It reveals nothing
/// usable about the secret.
#[must_use]
pub fn key_id(secret: &[u8]) -> String {
    derive_key(secret, b"kid")[..8]
        .iter()
        .fold(String::with_capacity(16), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_the_hmac_fingerprint() {
        // HMAC-SHA256(key = "a-test-secret-of-at-least-32-bytes!!", "kid"),
        // first 8 bytes, computed independently with openssl:
        // printf kid | openssl dgst -sha256 -hmac 'a-test-secret-of-at-least-32-bytes!!'
        let secret = b"a-test-secret-of-at-least-32-bytes!!";
        let full = derive_key(secret, b"kid");
        assert_eq!(full.len(), 32);
        let hex: String = full[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(key_id(secret), hex);
        assert_eq!(key_id(secret), "253e84dea9365b80");
        assert_ne!(derive_key(secret, b"kid"), derive_key(secret, b"csrf"));
    }
}
