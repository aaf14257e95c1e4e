//! Verification keys: parsed once, bound to one algorithm, checked for weakness.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::{hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::Algorithm;
use super::algorithm::KeyFamily;
use crate::ConfigError;

/// A key that verifies JWS signatures for exactly one [`Algorithm`].
///
/// Keys are parsed when they are built (or when a JWKS is refreshed), never
/// per request: RSA and ECDSA verification with a pre-parsed key is several
/// times cheaper than parsing it each time.
///
/// Building refuses weak material: HMAC secrets shorter than the hash
/// (RFC 7518 §3.2), secrets on a list of well-known examples or with almost
/// no variety, PEM text passed as an HMAC secret (the RS256→HS256 confusion),
/// RSA moduli under 2048 bits, RSA exponents other than odd numbers ≥ 3, and
/// moduli with the ROCA fingerprint.
///
/// `Debug` never prints key material.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<Arc<str>>,
    alg: Algorithm,
    material: Arc<Material>,
}

enum Material {
    // Boxed: an HMAC key holds precomputed inner and outer hash states.
    Hmac(Box<hmac::Key>),
    Public(signature::ParsedPublicKey),
}

impl VerifyingKey {
    /// An HMAC key (`HS256`, `HS384`, `HS512`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::WeakKey`] for secrets that are too short, well known,
    /// low-variety or look like a PEM key; [`ConfigError::InvalidKey`] when
    /// `alg` is not an HMAC algorithm.
    pub fn hmac(alg: Algorithm, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        let digest = match alg {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            _ => return Err(ConfigError::invalid_key(None, "not an HMAC algorithm")),
        };
        check_hmac_secret(alg, secret)?;
        Ok(Self {
            kid: None,
            alg,
            material: Arc::new(Material::Hmac(Box::new(hmac::Key::new(digest, secret)))),
        })
    }

    /// A public key from PEM (`PUBLIC KEY` / SubjectPublicKeyInfo, or
    /// `RSA PUBLIC KEY` / PKCS#1).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] if the PEM does not hold a public key of
    /// `alg`'s family, [`ConfigError::WeakKey`] for weak RSA keys.
    pub fn from_public_pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let parsed = pem::parse(pem.as_ref())
            .map_err(|_| ConfigError::invalid_key(None, "not a PEM document"))?;
        match parsed.tag() {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Self::from_public_der(alg, parsed.contents()),
            _ => Err(ConfigError::invalid_key(
                None,
                "expected a PEM public key (PUBLIC KEY or RSA PUBLIC KEY)",
            )),
        }
    }

    /// A public key from DER: SubjectPublicKeyInfo for any family, PKCS#1
    /// `RSAPublicKey` for RSA, an uncompressed SEC1 point for EC, or the raw
    /// 32 bytes for Ed25519.
    ///
    /// # Errors
    ///
    /// As [`from_public_pem`](Self::from_public_pem).
    pub fn from_public_der(alg: Algorithm, der: &[u8]) -> Result<Self, ConfigError> {
        if alg.family() == KeyFamily::Rsa {
            let key = aws_lc_rs::rsa::PublicKey::from_der(der)
                .map_err(|_| ConfigError::invalid_key(None, "not an RSA public key"))?;
            let (n, e) = der::rsa_components(key.as_ref())
                .ok_or_else(|| ConfigError::invalid_key(None, "unreadable RSA public key"))?;
            check_rsa(n, e)?;
            return Self::public(alg, key.as_ref());
        }
        Self::public(alg, der)
    }

    fn public(alg: Algorithm, bytes: &[u8]) -> Result<Self, ConfigError> {
        let verification: &'static dyn signature::VerificationAlgorithm = match alg {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &signature::ED25519,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                return Err(ConfigError::invalid_key(
                    None,
                    "HMAC algorithms take a secret, not a public key",
                ));
            }
        };
        let parsed = signature::ParsedPublicKey::new(verification, bytes).map_err(|_| {
            ConfigError::invalid_key(None, "public key rejected for this algorithm")
        })?;
        Ok(Self {
            kid: None,
            alg,
            material: Arc::new(Material::Public(parsed)),
        })
    }

    /// A key from one JWK (RFC 7517), for keys you configure yourself.
    ///
    /// Symmetric (`oct`) keys are accepted here; remote JWKS never accept
    /// them. See [`Jwk`] for the rules.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] or [`ConfigError::WeakKey`] as the JWK
    /// rules say.
    pub fn from_jwk(json: &str) -> Result<Self, ConfigError> {
        let jwk: Jwk = serde_json::from_str(json)
            .map_err(|_| ConfigError::invalid_key(None, "not a JWK object"))?;
        jwk.to_key(true)
    }

    /// Names the key, matched against the token header's `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if named.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Verifies `signature` over `message`. HMAC tags are compared in
    /// constant time.
    #[must_use]
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &*self.material {
            Material::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Material::Public(key) => key.verify_sig(message, signature).is_ok(),
        }
    }

    pub(crate) fn is_symmetric(&self) -> bool {
        matches!(&*self.material, Material::Hmac(_))
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("material", &"<redacted>")
            .finish()
    }
}

/// A JSON Web Key as read from a JWKS, before it becomes a [`VerifyingKey`].
///
/// Rules, each a reason to skip the key:
/// - `use` other than `sig`; `key_ops` present without `verify`;
/// - `alg` missing where it cannot be inferred (`oct`), unknown, or not
///   matching `kty`/`crv` (`ES256` needs P-256, `ES384` P-384, `EdDSA`
///   Ed25519); RSA keys without `alg` are taken as `RS256`;
/// - weak material, as for [`VerifyingKey`];
/// - `oct` keys, unless the caller allows symmetric keys.
///
/// Private members (`d`, `p`, …) are ignored: only the public half is used.
#[derive(Clone, Deserialize)]
pub struct Jwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    k: Option<String>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Jwk {
    /// The key id, if any.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Converts the JWK to a key, applying the rules above.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] / [`ConfigError::WeakKey`] naming the rule
    /// that failed (never the key material).
    pub fn to_key(&self, allow_symmetric: bool) -> Result<VerifyingKey, ConfigError> {
        let kid = self.kid.as_deref();
        let bad = |reason| ConfigError::invalid_key(kid, reason);
        if let Some(u) = &self.use_
            && u != "sig"
        {
            return Err(bad("key `use` is not `sig`"));
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return Err(bad("key `key_ops` does not include `verify`"));
        }
        let kty = self.kty.as_deref().ok_or_else(|| bad("missing `kty`"))?;
        let alg = match self.alg.as_deref() {
            Some(name) => Algorithm::from_name(name).ok_or_else(|| bad("unsupported `alg`"))?,
            None => match (kty, self.crv.as_deref()) {
                ("EC", Some("P-256")) => Algorithm::ES256,
                ("EC", Some("P-384")) => Algorithm::ES384,
                ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
                ("RSA", _) => Algorithm::RS256,
                _ => return Err(bad("missing `alg` and it cannot be inferred")),
            },
        };
        let b64 = |field: &Option<String>, name: &'static str| -> Result<Vec<u8>, ConfigError> {
            let value = field.as_deref().ok_or_else(|| bad(name))?;
            URL_SAFE_NO_PAD.decode(value).map_err(|_| bad(name))
        };
        let key = match (kty, alg.family()) {
            ("oct", KeyFamily::Hmac) => {
                if !allow_symmetric {
                    return Err(bad("symmetric keys are not accepted from this source"));
                }
                let secret = b64(&self.k, "missing or malformed `k`")?;
                VerifyingKey::hmac(alg, secret).map_err(|e| e.with_kid(kid))?
            }
            ("RSA", KeyFamily::Rsa) => {
                let n = b64(&self.n, "missing or malformed `n`")?;
                let e = b64(&self.e, "missing or malformed `e`")?;
                check_rsa(&n, &e).map_err(|err| err.with_kid(kid))?;
                VerifyingKey::public(alg, &der::rsa_public_key(&n, &e))?
            }
            ("EC", KeyFamily::Ec) => {
                let (crv, len) = match alg {
                    Algorithm::ES256 => ("P-256", 32),
                    _ => ("P-384", 48),
                };
                if self.crv.as_deref() != Some(crv) {
                    return Err(bad("`crv` does not match `alg`"));
                }
                let x = b64(&self.x, "missing or malformed `x`")?;
                let y = b64(&self.y, "missing or malformed `y`")?;
                if x.len() != len || y.len() != len {
                    return Err(bad("EC coordinates have the wrong length"));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                VerifyingKey::public(alg, &point)?
            }
            ("OKP", KeyFamily::Okp) => {
                if self.crv.as_deref() != Some("Ed25519") {
                    return Err(bad("only Ed25519 is supported for OKP keys"));
                }
                let x = b64(&self.x, "missing or malformed `x`")?;
                if x.len() != 32 {
                    return Err(bad("Ed25519 key has the wrong length"));
                }
                VerifyingKey::public(alg, &x)?
            }
            _ => return Err(bad("`kty` does not match `alg`")),
        };
        Ok(match kid {
            Some(kid) => key.with_kid(kid),
            None => key,
        })
    }
}

/// Well-known example secrets that must never sign real tokens. The length
/// check already refuses the many short ones (`secret`, `changeme`, …).
const KNOWN_EXAMPLE_SECRETS: &[&str] = &[
    "new-secret-key-at-least-32-chars-long",
    "your-secret-key-at-least-32-characters-long",
    "your-256-bit-secret-your-256-bit-secret",
    "please-change-this-secret-in-production",
    "change-me-change-me-change-me-change-me",
    "thisisasecretkeythisisasecretkey",
    "secretsecretsecretsecretsecretsecret",
    "0123456789abcdef0123456789abcdef",
    "00000000000000000000000000000000",
    "supersecretkeysupersecretkeysupersecretkey",
    "my-super-secret-key-that-is-at-least-32-chars",
    "a-string-secret-at-least-256-bits-long",
];

fn check_hmac_secret(alg: Algorithm, secret: &[u8]) -> Result<(), ConfigError> {
    if secret.len() < alg.min_hmac_key_len() {
        return Err(ConfigError::weak_key(
            "HMAC secret is shorter than the hash output (RFC 7518 §3.2)",
        ));
    }
    let text = String::from_utf8_lossy(secret);
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") || trimmed.starts_with("{\"kty\"") {
        return Err(ConfigError::weak_key(
            "HMAC secret looks like a public key: algorithm confusion risk",
        ));
    }
    if KNOWN_EXAMPLE_SECRETS
        .iter()
        .any(|known| known.as_bytes().eq_ignore_ascii_case(secret))
    {
        return Err(ConfigError::weak_key(
            "HMAC secret is a well-known example value",
        ));
    }
    let mut seen = [false; 256];
    for b in secret {
        seen[usize::from(*b)] = true;
    }
    if seen.iter().filter(|s| **s).count() < 8 {
        return Err(ConfigError::weak_key(
            "HMAC secret has too little variety to be random",
        ));
    }
    Ok(())
}

fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), ConfigError> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    if bits < 2048 {
        return Err(ConfigError::weak_key(
            "RSA modulus is shorter than 2048 bits (RFC 7518 §3.3)",
        ));
    }
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    let at_least_three = e.len() > 1 || e.first().is_some_and(|b| *b >= 3);
    if !odd || !at_least_three || e.len() > 8 {
        return Err(ConfigError::weak_key(
            "RSA public exponent must be odd, at least 3",
        ));
    }
    if roca::has_fingerprint(n) {
        return Err(ConfigError::weak_key(
            "RSA modulus has the ROCA fingerprint (CVE-2017-15361)",
        ));
    }
    Ok(())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The ROCA test (Nemec et al., CCS 2017): moduli from the affected Infineon
/// library are congruent, modulo each of these small primes, to a power of
/// 65537. A random modulus passes every prime with negligible probability.
mod roca {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];

    pub(super) fn has_fingerprint(modulus: &[u8]) -> bool {
        PRIMES.iter().all(|&p| {
            let residue = modulus
                .iter()
                .fold(0u32, |acc, byte| (acc * 256 + u32::from(*byte)) % p);
            in_subgroup_of_65537(residue, p)
        })
    }

    fn in_subgroup_of_65537(residue: u32, p: u32) -> bool {
        let g = 65537 % p;
        let mut x = 1u32;
        // The subgroup has at most p - 1 elements.
        for _ in 0..p {
            if x == residue {
                return true;
            }
            x = x * g % p;
            if x == 1 {
                break;
            }
        }
        false
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn random_looking_modulus_passes() {
            let n: Vec<u8> = (0u32..256).map(|i| (i * 7919 % 251) as u8 | 1).collect();
            assert!(!super::has_fingerprint(&n));
        }
    }
}

/// Just enough DER for RSA public keys: read and write
/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
mod der {
    pub(super) fn rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(n.len() + e.len() + 16);
        integer(&mut body, n);
        integer(&mut body, e);
        let mut out = Vec::with_capacity(body.len() + 4);
        out.push(0x30);
        length(&mut out, body.len());
        out.extend_from_slice(&body);
        out
    }

    fn integer(out: &mut Vec<u8>, value: &[u8]) {
        let value = super::strip_leading_zeros(value);
        let pad = value.first().is_none_or(|b| b & 0x80 != 0);
        out.push(0x02);
        length(out, value.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(value);
    }

    fn length(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes
                .iter()
                .position(|b| *b != 0)
                .unwrap_or(bytes.len() - 1);
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }

    /// Reads `(n, e)` from a PKCS#1 `RSAPublicKey`.
    pub(super) fn rsa_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
        let (tag, body, rest) = element(der)?;
        if tag != 0x30 || !rest.is_empty() {
            return None;
        }
        let (tag_n, n, rest) = element(body)?;
        let (tag_e, e, rest) = element(rest)?;
        (tag_n == 0x02 && tag_e == 0x02 && rest.is_empty()).then_some((n, e))
    }

    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, input) = input.split_first()?;
        let (&first, mut input) = input.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || input.len() < count {
                return None;
            }
            let len = input[..count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            input = &input[count..];
            len
        };
        (input.len() >= len).then(|| (tag, &input[..len], &input[len..]))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trip() {
            let n = vec![0xc5; 256];
            let e = [1, 0, 1];
            let der = super::rsa_public_key(&n, &e);
            let (n2, e2) = super::rsa_components(&der).unwrap();
            assert_eq!(super::super::strip_leading_zeros(n2), &n[..]);
            assert_eq!(e2, &e[..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_empty_and_example_secrets_are_refused() {
        for secret in [&b""[..], b"secret", b"0123456789012345678901234567890"] {
            assert!(matches!(
                VerifyingKey::hmac(Algorithm::HS256, secret),
                Err(ConfigError::WeakKey { .. })
            ));
        }
        assert!(
            VerifyingKey::hmac(Algorithm::HS256, "new-secret-key-at-least-32-chars-long").is_err()
        );
        assert!(
            VerifyingKey::hmac(Algorithm::HS256, "a".repeat(64)).is_err(),
            "no variety"
        );
        assert!(
            VerifyingKey::hmac(
                Algorithm::HS384,
                [7u8; 40]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ i as u8)
                    .collect::<Vec<_>>()
            )
            .is_err(),
            "HS384 needs 48 bytes"
        );
        assert!(
            VerifyingKey::hmac(
                Algorithm::HS256,
                "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
            )
            .is_err()
        );
        assert!(
            VerifyingKey::hmac(Algorithm::HS256, "k3y-for-tests-0123456789-abcdefghij").is_ok()
        );
    }

    #[test]
    fn hmac_key_only_for_hmac_algorithms() {
        assert!(
            VerifyingKey::hmac(Algorithm::RS256, "k3y-for-tests-0123456789-abcdefghij").is_err()
        );
    }

    #[test]
    fn debug_redacts_material() {
        let key = VerifyingKey::hmac(Algorithm::HS256, "k3y-for-tests-0123456789-abcdefghij")
            .unwrap()
            .with_kid("k1");
        let shown = format!("{key:?}");
        assert!(shown.contains("k1") && shown.contains("<redacted>") && !shown.contains("k3y"));
    }

    #[test]
    fn jwk_use_and_key_ops_are_enforced() {
        let base = r#""kty":"oct","alg":"HS256","k":"-ebuDNsVZ2iJtoZ-akfXTSCt4UO2cruLCsbWlBinggE""#;
        assert!(VerifyingKey::from_jwk(&format!("{{{base}}}")).is_ok());
        assert!(VerifyingKey::from_jwk(&format!("{{{base},\"use\":\"enc\"}}")).is_err());
        assert!(VerifyingKey::from_jwk(&format!("{{{base},\"key_ops\":[\"encrypt\"]}}")).is_err());
        assert!(
            VerifyingKey::from_jwk(&format!("{{{base},\"key_ops\":[\"sign, verify\"]}}")).is_err()
        );
        let jwk: Jwk = serde_json::from_str(&format!("{{{base}}}")).unwrap();
        assert!(
            jwk.to_key(false).is_err(),
            "symmetric keys refused from remote sources"
        );
    }
}
