//! Strict, single-pass parsing of compact JWS tokens, their headers and
//! claims.
//!
//! Each segment is decoded once into a buffer on the stack and parsed once
//! into borrowed, typed fields. Duplicate member names are rejected in both
//! the header and the claims (RFC 7515 §4, RFC 7519 §4), including names we
//! do not otherwise read, so two verifiers can never disagree on which
//! `role` a token carries.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::JwtError;

/// Most member names kept for duplicate detection; more is malformed.
const MAX_MEMBERS: usize = 64;

/// Header and signature size caps (decoded bytes). RSA-8192 signatures are
/// 1024 bytes; real headers are well under 1 KiB.
pub(crate) const MAX_HEADER: usize = 1024;
pub(crate) const MAX_SIGNATURE: usize = 1024;
pub(crate) const MAX_KID: usize = 256;

/// The three segments of a compact JWS, still encoded.
pub(crate) struct Segments<'t> {
    pub(crate) header: &'t str,
    pub(crate) payload: &'t str,
    pub(crate) signature: &'t str,
    /// `header.payload`, the signing input.
    pub(crate) signing_input: &'t str,
}

/// Splits a token after checking its alphabet: only base64url characters
/// and exactly two dots (RFC 7515 §2, 7.1; draft-ietf-oauth-rfc8725bis).
pub(crate) fn split(token: &str) -> Result<Segments<'_>, JwtError> {
    // No early exit: the whole-token fold compiles to SIMD compares.
    let ok = token.bytes().fold(true, |ok, b| {
        ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_') | (b == b'.'))
    });
    if !ok {
        return Err(JwtError::Malformed("character outside base64url"));
    }
    let mut parts = token.splitn(4, '.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three segments"));
    };
    // An empty payload is a valid JWS (RFC 7515); it is never a valid JWT
    // and fails later, when the claims are read.
    if header.is_empty() || signature.is_empty() {
        return Err(JwtError::Malformed("empty segment"));
    }
    Ok(Segments {
        header,
        payload,
        signature,
        signing_input: &token[..header.len() + 1 + payload.len()],
    })
}

/// Decodes strict base64url (no padding, canonical trailing bits) into
/// `out`, returning the decoded length.
pub(crate) fn decode_into(segment: &str, out: &mut [u8]) -> Result<usize, JwtError> {
    if base64::decoded_len_estimate(segment.len()) > out.len() {
        return Err(JwtError::TooLarge);
    }
    URL_SAFE_NO_PAD
        .decode_slice(segment, out)
        .map_err(|_| JwtError::Malformed("invalid base64url"))
}

/// A JSON string that borrows from the input when it has no escapes.
struct Str<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A list of strings (`crit`, `roles`, `scp`, array `aud`).
fn string_list<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Vec<Cow<'de, str>>, A::Error> {
    struct Seed;
    impl<'de> DeserializeSeed<'de> for Seed {
        type Value = Vec<Cow<'de, str>>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Vec<Cow<'de, str>>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an array of strings")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some(Str(s)) = seq.next_element()? {
                        if out.len() >= MAX_MEMBERS {
                            return Err(de::Error::custom("too many entries"));
                        }
                        out.push(s);
                    }
                    Ok(out)
                }
            }
            d.deserialize_seq(V)
        }
    }
    map.next_value_seed(Seed)
}

/// One string or an array of strings (`aud`, `scp`).
enum OneOrMany<'de> {
    One(Cow<'de, str>),
    Many(Vec<Cow<'de, str>>),
}

fn one_or_many<'de, A: MapAccess<'de>>(map: &mut A) -> Result<OneOrMany<'de>, A::Error> {
    struct Seed;
    impl<'de> DeserializeSeed<'de> for Seed {
        type Value = OneOrMany<'de>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OneOrMany<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string or an array of strings")
                }
                fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                    Ok(OneOrMany::One(Cow::Borrowed(v)))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(OneOrMany::One(Cow::Owned(v.to_owned())))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some(Str(s)) = seq.next_element()? {
                        if out.len() >= MAX_MEMBERS {
                            return Err(de::Error::custom("too many entries"));
                        }
                        out.push(s);
                    }
                    Ok(OneOrMany::Many(out))
                }
            }
            d.deserialize_any(V)
        }
    }
    map.next_value_seed(Seed)
}

/// A JWT `NumericDate`: a JSON number of seconds, integral or not. Strings,
/// booleans, negatives and values past year 9999 are refused (the
/// wrong-typed-`exp` bypass, CVE-2026-25537, cannot happen here).
fn numeric_date<'de, A: MapAccess<'de>>(map: &mut A) -> Result<i64, A::Error> {
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    struct Seed;
    impl<'de> DeserializeSeed<'de> for Seed {
        type Value = i64;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = i64;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a NumericDate")
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
                    i64::try_from(v)
                        .ok()
                        .filter(|v| *v <= MAX)
                        .ok_or_else(|| E::custom("date out of range"))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
                    if (0..=MAX).contains(&v) {
                        Ok(v)
                    } else {
                        Err(E::custom("date out of range"))
                    }
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
                    if v.is_finite() && v >= 0.0 && v <= MAX as f64 {
                        #[allow(clippy::cast_possible_truncation)]
                        Ok(v.floor() as i64)
                    } else {
                        Err(E::custom("date out of range"))
                    }
                }
            }
            d.deserialize_any(V)
        }
    }
    map.next_value_seed(Seed)
}

/// Most nesting accepted inside an ignored member.
const MAX_DEPTH: u8 = 32;

/// Skips any JSON value, refusing nesting deeper than [`MAX_DEPTH`] (so a
/// 100 000-deep array is refused, not walked).
struct Skip(u8);

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.0 > MAX_DEPTH {
            return Err(de::Error::custom("nesting too deep"));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Self(self.0 + 1))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Self(self.0 + 1))?;
        }
        Ok(())
    }
}

/// Stores a known member, refusing a second occurrence.
fn set<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::custom("duplicate member"));
    }
    *slot = Some(value);
    Ok(())
}

/// Tracks the names of members we do not read, to reject duplicates, with a bounded count. Names
/// without escapes (all real ones) are kept as borrowed slices on the stack;
/// escaped names go to a small heap list.
struct Seen<'de> {
    borrowed: [&'de str; 8],
    len: usize,
    owned: Vec<String>,
}

impl<'de> Seen<'de> {
    fn new() -> Self {
        Self {
            borrowed: [""; 8],
            len: 0,
            owned: Vec::new(),
        }
    }

    // Takes the `Cow` itself: a borrowed name is kept as a slice, no copy.
    #[allow(clippy::ptr_arg)]
    fn insert<E: de::Error>(&mut self, name: &Cow<'de, str>) -> Result<(), E> {
        if self.len + self.owned.len() >= MAX_MEMBERS {
            return Err(E::custom("too many members"));
        }
        if self.contains(name) {
            return Err(E::custom("duplicate member"));
        }
        match name {
            Cow::Borrowed(b) if self.len < self.borrowed.len() => {
                self.borrowed[self.len] = b;
                self.len += 1;
            }
            _ => self.owned.push(name.clone().into_owned()),
        }
        Ok(())
    }

    fn contains(&self, name: &str) -> bool {
        self.borrowed[..self.len].contains(&name) || self.owned.iter().any(|n| n == name)
    }
}

/// The JOSE header members we act on.
pub(crate) struct Header<'de> {
    pub(crate) alg: Cow<'de, str>,
    pub(crate) kid: Option<Cow<'de, str>>,
    pub(crate) typ: Option<Cow<'de, str>>,
    pub(crate) crit: Option<Vec<Cow<'de, str>>>,
    /// Members that turn a JWS into something we do not process (`b64`,
    /// `enc`, `zip`): present means refuse.
    pub(crate) unsupported: bool,
    names: Seen<'de>,
}

/// Header parameters registered by RFC 7515/7516; `crit` must not list them.
const REGISTERED_HEADER: &[&str] = &[
    "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "enc",
    "zip", "epk", "apu", "apv", "iv", "tag", "p2s", "p2c",
];

impl<'de> Header<'de> {
    pub(crate) fn parse(json: &'de [u8]) -> Result<Self, JwtError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let mut header = Header {
            alg: Cow::Borrowed(""),
            kid: None,
            typ: None,
            crit: None,
            unsupported: false,
            names: Seen::new(),
        };
        // Filled in place: the struct is large and moving it through
        // serde's layers showed up as memcpy in profiles.
        HeaderSeed(&mut header)
            .deserialize(&mut de)
            .map_err(|_| JwtError::Malformed("invalid header JSON"))?;
        de.end()
            .map_err(|_| JwtError::Malformed("trailing data after header"))?;
        Ok(header)
    }

    /// RFC 7515 §4.1.11: every listed extension must be understood; an
    /// empty list, duplicates, registered names and names absent from the
    /// header are refused.
    pub(crate) fn check_crit(&self, understood: &[String]) -> Result<(), JwtError> {
        let Some(crit) = &self.crit else {
            return Ok(());
        };
        if crit.is_empty() {
            return Err(JwtError::UnsupportedCritical);
        }
        for (i, name) in crit.iter().enumerate() {
            let duplicate = crit[..i].contains(name);
            let registered = REGISTERED_HEADER.contains(&name.as_ref());
            let present = self.names.contains(name);
            let known = understood.iter().any(|u| u == name);
            if duplicate || registered || !present || !known {
                return Err(JwtError::UnsupportedCritical);
            }
        }
        Ok(())
    }
}

struct HeaderSeed<'a, 'de>(&'a mut Header<'de>);

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(HeaderVisitor(self.0))
    }
}

struct HeaderVisitor<'a, 'de>(&'a mut Header<'de>);

impl<'de> Visitor<'de> for HeaderVisitor<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Header {
            alg: out_alg,
            kid,
            typ,
            crit,
            unsupported,
            names,
        } = self.0;
        let mut alg = None;
        while let Some(Str(name)) = map.next_key()? {
            match name.as_ref() {
                "alg" => set::<_, A::Error>(&mut alg, map.next_value::<Str<'de>>()?.0)?,
                "kid" => {
                    let value = map.next_value::<Str<'de>>()?.0;
                    if value.len() > MAX_KID {
                        return Err(de::Error::custom("kid too long"));
                    }
                    set::<_, A::Error>(kid, value)?;
                }
                "typ" => set::<_, A::Error>(typ, map.next_value::<Str<'de>>()?.0)?,
                "crit" => set::<_, A::Error>(crit, string_list(&mut map)?)?,
                "b64" | "enc" | "zip" => {
                    names.insert(&name)?;
                    map.next_value_seed(Skip(1))?;
                    *unsupported = true;
                }
                // jku, jwk, x5u, x5c, … are never used to find keys.
                _ => {
                    names.insert(&name)?;
                    map.next_value_seed(Skip(1))?;
                }
            }
        }
        *out_alg = alg.ok_or_else(|| de::Error::custom("missing alg"))?;
        Ok(())
    }
}

/// The registered claims we validate, plus the ones a `Principal` carries.
#[derive(Default)]
pub(crate) struct Claims<'de> {
    pub(crate) iss: Option<Cow<'de, str>>,
    pub(crate) sub: Option<Cow<'de, str>>,
    pub(crate) aud: Option<Vec<Cow<'de, str>>>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) jti: Option<Cow<'de, str>>,
    pub(crate) scope: Option<Cow<'de, str>>,
    pub(crate) scp: Option<Vec<Cow<'de, str>>>,
    pub(crate) roles: Option<Vec<Cow<'de, str>>>,
    pub(crate) client_id: Option<Cow<'de, str>>,
    /// Refresh family (tokens we issue).
    pub(crate) fam: Option<Cow<'de, str>>,
    /// When the user first authenticated (refresh absolute lifetime).
    pub(crate) auth_time: Option<i64>,
}

impl<'de> Claims<'de> {
    /// Parses claims from text already checked to be UTF-8, so serde_json
    /// does not validate every string again.
    pub(crate) fn parse(json: &'de str) -> Result<Self, JwtError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let mut claims = Claims::default();
        ClaimsSeed(&mut claims)
            .deserialize(&mut de)
            .map_err(|err| JwtError::Malformed(claims_error(&err)))?;
        de.end()
            .map_err(|_| JwtError::Malformed("trailing data after claims"))?;
        Ok(claims)
    }

    /// Scopes from `scope` (space-separated, RFC 8693) and `scp` (a string
    /// or an array, as some issuers emit).
    pub(crate) fn scope_names(&self) -> impl Iterator<Item = &str> {
        let words = self
            .scope
            .as_deref()
            .into_iter()
            .flat_map(str::split_ascii_whitespace);
        words.chain(self.scp.iter().flatten().map(AsRef::as_ref))
    }
}

fn claims_error(err: &serde_json::Error) -> &'static str {
    let text = err.to_string();
    if text.starts_with("duplicate member") {
        "duplicate claim"
    } else if text.starts_with("date out of range") || text.contains("NumericDate") {
        "invalid NumericDate claim"
    } else {
        "invalid claims JSON"
    }
}

struct ClaimsSeed<'a, 'de>(&'a mut Claims<'de>);

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(ClaimsVisitor(self.0))
    }
}

struct ClaimsVisitor<'a, 'de>(&'a mut Claims<'de>);

impl<'de> Visitor<'de> for ClaimsVisitor<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let c = self.0;
        let mut names = Seen::new();
        while let Some(Str(name)) = map.next_key()? {
            match name.as_ref() {
                "iss" => set::<_, A::Error>(&mut c.iss, map.next_value::<Str<'de>>()?.0)?,
                "sub" => set::<_, A::Error>(&mut c.sub, map.next_value::<Str<'de>>()?.0)?,
                "aud" => {
                    let aud = match one_or_many(&mut map)? {
                        OneOrMany::One(s) => vec![s],
                        OneOrMany::Many(v) => v,
                    };
                    set::<_, A::Error>(&mut c.aud, aud)?;
                }
                "exp" => set::<_, A::Error>(&mut c.exp, numeric_date(&mut map)?)?,
                "nbf" => set::<_, A::Error>(&mut c.nbf, numeric_date(&mut map)?)?,
                "iat" => set::<_, A::Error>(&mut c.iat, numeric_date(&mut map)?)?,
                "auth_time" => set::<_, A::Error>(&mut c.auth_time, numeric_date(&mut map)?)?,
                "jti" => set::<_, A::Error>(&mut c.jti, map.next_value::<Str<'de>>()?.0)?,
                "scope" => set::<_, A::Error>(&mut c.scope, map.next_value::<Str<'de>>()?.0)?,
                "scp" => {
                    let scp = match one_or_many(&mut map)? {
                        OneOrMany::One(s) => s
                            .split_ascii_whitespace()
                            .map(|s| Cow::Owned(s.to_owned()))
                            .collect(),
                        OneOrMany::Many(v) => v,
                    };
                    set::<_, A::Error>(&mut c.scp, scp)?;
                }
                "roles" => set::<_, A::Error>(&mut c.roles, string_list(&mut map)?)?,
                "client_id" => {
                    set::<_, A::Error>(&mut c.client_id, map.next_value::<Str<'de>>()?.0)?
                }
                "fam" => set::<_, A::Error>(&mut c.fam, map.next_value::<Str<'de>>()?.0)?,
                _ => {
                    names.insert(&name)?;
                    map.next_value_seed(Skip(1))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_strict() {
        assert!(split("a.b.c").is_ok());
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "a.b.c.d.e",
            "...",
            "a.b.",
            ".b.c",
            "a.b.c=",
            "a+b.c.d",
            "a.b/c.d",
            "a .b.c",
            "a.b.c\n",
            "a.b.%41",
            "a.b.\u{e9}",
            "a.b.c\0",
        ] {
            assert!(split(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base64_is_strict() {
        let mut buf = [0u8; 16];
        assert_eq!(decode_into("Zm9v", &mut buf).unwrap(), 3);
        assert!(decode_into("Zm9v=", &mut buf).is_err(), "padding");
        assert!(decode_into("Zm9w", &mut buf).is_ok());
        assert!(decode_into("Zm8", &mut buf).is_ok());
        assert!(
            decode_into("Zm9", &mut buf).is_err(),
            "non-canonical trailing bits"
        );
        assert!(matches!(
            decode_into(&"A".repeat(100), &mut buf),
            Err(JwtError::TooLarge)
        ));
    }

    #[test]
    fn header_duplicates_and_shapes() {
        assert!(Header::parse(br#"{"alg":"HS256"}"#).is_ok());
        assert!(Header::parse(br#"{"alg":"HS256","alg":"HS256"}"#).is_err());
        assert!(
            Header::parse(br#"{"alg":"HS256","x":1,"x":2}"#).is_err(),
            "duplicate unknown member"
        );
        assert!(
            Header::parse(br#"{"alg":"HS256","x":1}"#).is_ok(),
            "non-string unknown members are allowed"
        );
        for bad in [
            &br#"["alg"]"#[..],
            b"\"HS256\"",
            b"null",
            b"",
            b"{}",
            br#"{"alg":1}"#,
            br#"{"alg":"HS256"} x"#,
            b"\xef\xbb\xbf{\"alg\":\"HS256\"}",
        ] {
            assert!(
                Header::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_kid = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "k".repeat(MAX_KID + 1));
        assert!(Header::parse(long_kid.as_bytes()).is_err());
    }

    #[test]
    fn crit_rules() {
        let understood = vec!["x-ext".to_owned()];
        let check =
            |json: &str, u: &[String]| Header::parse(json.as_bytes()).and_then(|h| h.check_crit(u));
        assert!(check(r#"{"alg":"HS256"}"#, &[]).is_ok());
        assert!(check(r#"{"alg":"HS256","crit":["x-ext"],"x-ext":"v"}"#, &[]).is_err());
        assert!(
            check(
                r#"{"alg":"HS256","crit":["x-ext"],"x-ext":"v"}"#,
                &understood
            )
            .is_ok()
        );
        for bad in [
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":["alg"]}"#,
            r#"{"alg":"HS256","crit":["x-ext"]}"#,
            r#"{"alg":"HS256","crit":["x-ext","x-ext"],"x-ext":1}"#,
            r#"{"alg":"HS256","crit":"x-ext","x-ext":1}"#,
        ] {
            assert!(check(bad, &understood).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_types_and_duplicates() {
        let c = Claims::parse(r#"{"sub":"u","exp":10,"nbf":1.5,"aud":["a","b"],"scope":"x y","scp":["z"],"roles":["r"]}"#).unwrap();
        assert_eq!(c.exp, Some(10));
        assert_eq!(c.nbf, Some(1));
        assert_eq!(c.aud.as_ref().unwrap().len(), 2);
        assert_eq!(c.scopes_for_test(), vec!["x", "y", "z"]);
        for bad in [
            &br#"{"exp":"100"}"#[..],
            br#"{"exp":true}"#,
            br#"{"exp":-1}"#,
            br#"{"exp":1e300}"#,
            br#"{"exp":18446744073709551615}"#,
            br#"{"nbf":"1"}"#,
            br#"{"exp":1,"exp":2}"#,
            br#"{"role":"user","role":"admin"}"#,
            br#"{"iss":7}"#,
            br#"{"aud":5}"#,
            br#"{"aud":{}}"#,
            br#"{"aud":null}"#,
            br#"{"aud":[5]}"#,
            br#"{"aud":["api",5]}"#,
            br#"{"sub":1}"#,
            br#"[]"#,
            br#"{"sub":"u"}garbage"#,
        ] {
            assert!(
                Claims::parse(std::str::from_utf8(bad).unwrap()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let mut json = String::from(r#"{"sub":"u","x":"#);
        json.push_str(&"[".repeat(100_000));
        json.push_str(&"]".repeat(100_000));
        json.push('}');
        assert!(Claims::parse(&json).is_err());
    }

    impl Claims<'_> {
        fn scopes_for_test(&self) -> Vec<&str> {
            self.scope_names().collect()
        }
    }
}
