//! `jwt inspect`: a JWT's header and claims, decoded **without** checking
//! the signature, which is never printed.

use std::io::Read as _;
use std::time::SystemTime;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use portcullis_cli::secret::{MIN_SECRET_BYTES, key_id};

use crate::Failure;
use crate::duration::{from_unix_secs, relative, rfc3339_secs};
use crate::output::{Out, sanitize, warn};

/// Longest token accepted, in bytes: far above any real JWT (a few KiB),
/// small enough that decoding hostile input costs nothing.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The time claims shown also as RFC 3339 and relative to now.
const TIME_CLAIMS: [&str; 3] = ["exp", "iat", "nbf"];

pub(crate) fn inspect(out: &Out, token: Option<String>) -> Result<(), Failure> {
    let token = match token {
        Some(t) if t != "-" => t,
        _ => read_stdin()?,
    };
    let decoded = decode(token.trim())?;
    warn("warning: UNVERIFIED — the signature was not checked; do not trust these claims.");
    let now = SystemTime::now();
    let times = time_claims(&decoded.claims, now);
    let expired = decoded
        .claims
        .get("exp")
        .and_then(Value::as_i64)
        .and_then(from_unix_secs)
        .map(|exp| exp <= now);

    let mut text = String::from("UNVERIFIED token (signature not checked)\n\nheader:\n");
    text.push_str(&sanitize_block(&pretty(&decoded.header)));
    text.push_str("\n\nclaims:\n");
    text.push_str(&sanitize_block(&pretty(&decoded.claims)));
    text.push('\n');
    if !times.is_empty() {
        text.push_str("\ntimes:\n");
        for (name, v) in &times {
            text.push_str(&format!(
                "  {name}: {} ({})\n",
                v["rfc3339"].as_str().unwrap_or("-"),
                v["relative"].as_str().unwrap_or("-"),
            ));
        }
    }
    if let Some(expired) = expired {
        text.push_str(if expired {
            "\nexpired: yes\n"
        } else {
            "\nexpired: no\n"
        });
    }
    let kid = decoded.header.get("kid").and_then(Value::as_str);
    let secrets = configured_secrets();
    let matched = kid.zip(secrets.as_ref()).map(|(kid, s)| s.find(kid));
    if let Some(kid) = kid {
        text.push_str(&format!("\nkid: {}\n", sanitize(kid)));
    } else {
        text.push_str("\nkid: none (the header names no key)\n");
    }
    match (&matched, &secrets) {
        (Some(KidMatch::Current), _) => {
            text.push_str("kid matches PORTCULLIS_JWT_SECRET (signature still not checked)\n");
        }
        (Some(KidMatch::Old(n)), _) => text.push_str(&format!(
            "kid matches PORTCULLIS_JWT_SECRET_OLD #{n} (signed before a rotation; signature still not checked)\n"
        )),
        (Some(KidMatch::None), Some(s)) => text.push_str(&format!(
            "kid matches none of the configured secrets (PORTCULLIS_JWT_SECRET is {}): signed with another secret, or not by this deployment\n",
            s.current_kid
        )),
        _ => {}
    }
    text.push_str(&format!(
        "\nsignature: <redacted, {} bytes>\n",
        decoded.signature_len
    ));

    let doc = json!({
        "verified": false,
        "header": decoded.header,
        "claims": decoded.claims,
        "times": Value::Object(times.into_iter().collect()),
        "expired": expired,
        "signature": "<redacted>",
        "signature_bytes": decoded.signature_len,
        "kid": kid,
        "kid_match": matched.map(|m| m.as_str()),
        "server_kid": secrets.as_ref().map(|s| s.current_kid.clone()),
    });
    out.emit(&text, &doc)?;
    Ok(())
}

/// The signing secrets a server is configured with, as kids.
struct Secrets {
    current_kid: String,
    old_kids: Vec<String>,
}

/// Which configured secret a token's `kid` names.
enum KidMatch {
    Current,
    /// 1-based position in `PORTCULLIS_JWT_SECRET_OLD`.
    Old(usize),
    None,
}

impl KidMatch {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Old(_) => "old",
            Self::None => "none",
        }
    }
}

impl Secrets {
    fn find(&self, kid: &str) -> KidMatch {
        if kid == self.current_kid {
            return KidMatch::Current;
        }
        self.old_kids
            .iter()
            .position(|old| old == kid)
            .map_or(KidMatch::None, |i| KidMatch::Old(i + 1))
    }
}

/// The kids of `PORTCULLIS_JWT_SECRET` and `PORTCULLIS_JWT_SECRET_OLD`
/// (comma-separated), read the way the reference server reads them;
/// `None` when the current secret is not set.
fn configured_secrets() -> Option<Secrets> {
    let current = std::env::var("PORTCULLIS_JWT_SECRET")
        .ok()
        .filter(|v| !v.is_empty())?;
    Some(Secrets {
        current_kid: key_id(current.as_bytes()),
        old_kids: old_kids(),
    })
}

fn old_kids() -> Vec<String> {
    std::env::var("PORTCULLIS_JWT_SECRET_OLD")
        .ok()
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| key_id(s.as_bytes()))
                .collect()
        })
        .unwrap_or_default()
}

/// `secret kid`: the fingerprint of `PORTCULLIS_JWT_SECRET`, or of the
/// secret on stdin (one trailing newline dropped), never the secret.
pub(crate) fn secret_kid(out: &Out) -> Result<(), Failure> {
    let (secret, source) = match std::env::var("PORTCULLIS_JWT_SECRET") {
        Ok(v) if !v.is_empty() => (v.into_bytes(), "PORTCULLIS_JWT_SECRET"),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_end(&mut buf)
                .map_err(|e| Failure(format!("cannot read the secret from stdin: {e}")))?;
            if buf.ends_with(b"\n") {
                buf.pop();
                if buf.ends_with(b"\r") {
                    buf.pop();
                }
            }
            (buf, "stdin")
        }
    };
    if secret.is_empty() {
        return Err(Failure::new(
            "no secret: set PORTCULLIS_JWT_SECRET or pass the secret on stdin",
        ));
    }
    if secret.len() < MIN_SECRET_BYTES {
        warn(&format!(
            "warning: the secret is {} bytes; the server refuses fewer than {MIN_SECRET_BYTES}",
            secret.len()
        ));
    }
    let kid = key_id(&secret);
    let old = old_kids();
    let mut text = format!("{kid}\n");
    for (i, old) in old.iter().enumerate() {
        text.push_str(&format!("{old}  (PORTCULLIS_JWT_SECRET_OLD #{})\n", i + 1));
    }
    out.emit(
        &text,
        &json!({ "kid": kid, "source": source, "old_kids": old }),
    )?;
    Ok(())
}

fn read_stdin() -> Result<String, Failure> {
    let mut buf = Vec::new();
    // One byte more than allowed tells an oversized token from a full one.
    let limit = u64::try_from(MAX_TOKEN_BYTES + 1).unwrap_or(u64::MAX);
    std::io::stdin()
        .take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| Failure(format!("cannot read the token from stdin: {e}")))?;
    if buf.len() > MAX_TOKEN_BYTES {
        return Err(too_large());
    }
    String::from_utf8(buf).map_err(|_| Failure::new("not a JWT: the input is not UTF-8 text"))
}

fn too_large() -> Failure {
    Failure(format!(
        "the token is larger than {MAX_TOKEN_BYTES} bytes: refusing to decode it"
    ))
}

/// A decoded, unverified JWT.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) header: Map<String, Value>,
    pub(crate) claims: Map<String, Value>,
    pub(crate) signature_len: usize,
}

/// Splits and decodes a compact JWS. Errors never quote the input.
pub(crate) fn decode(token: &str) -> Result<Decoded, Failure> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(too_large());
    }
    let token = token
        .strip_prefix("Bearer ")
        .or_else(|| token.strip_prefix("bearer "))
        .unwrap_or(token)
        .trim();
    if token.is_empty() {
        return Err(Failure::new(
            "no token given (pass it as an argument or on stdin)",
        ));
    }
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() == 5 {
        return Err(Failure::new(
            "this is an encrypted JWT (JWE): its claims cannot be read without the key",
        ));
    }
    let [header, claims, signature] = parts.as_slice() else {
        return Err(Failure::new(
            "not a JWT: expected three base64url parts separated by dots",
        ));
    };
    let header = object(header, "header")?;
    let claims = object(claims, "claims")?;
    let signature_len = b64(signature, "signature")?.len();
    Ok(Decoded {
        header,
        claims,
        signature_len,
    })
}

fn b64(part: &str, what: &str) -> Result<Vec<u8>, Failure> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| Failure(format!("not a JWT: the {what} is not base64url")))
}

fn object(part: &str, what: &str) -> Result<Map<String, Value>, Failure> {
    let bytes = b64(part, what)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Failure(format!(
            "not a JWT: the {what} is not a JSON object"
        ))),
        Err(_) => Err(Failure(format!("not a JWT: the {what} is not JSON"))),
    }
}

/// `exp`, `iat`, `nbf` (when numeric) as `{unix, rfc3339, relative}`.
fn time_claims(claims: &Map<String, Value>, now: SystemTime) -> Vec<(String, Value)> {
    TIME_CLAIMS
        .iter()
        .filter_map(|name| {
            let secs = claims.get(*name)?.as_i64()?;
            let at = from_unix_secs(secs)?;
            Some((
                (*name).to_owned(),
                json!({
                    "unix": secs,
                    "rfc3339": rfc3339_secs(secs),
                    "relative": relative(at, now),
                }),
            ))
        })
        .collect()
}

fn pretty(map: &Map<String, Value>) -> String {
    serde_json::to_string_pretty(map).unwrap_or_else(|_| "{}".to_owned())
}

/// Claims are attacker-chosen: keep terminal escapes out, keep newlines.
fn sanitize_block(text: &str) -> String {
    text.lines()
        .map(|line| format!("  {}", sanitize(line)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn decodes_a_jws_and_counts_the_signature() {
        let token = format!(
            "{}.{}.{}",
            enc(&json!({"alg": "HS256", "typ": "JWT"})),
            enc(&json!({"sub": "usr_1", "exp": 1_700_000_000})),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32])
        );
        let d = decode(&token).unwrap();
        assert_eq!(d.header["alg"], "HS256");
        assert_eq!(d.claims["sub"], "usr_1");
        assert_eq!(d.signature_len, 32);
        assert!(decode(&format!("Bearer {token}")).is_ok());
    }

    #[test]
    fn refuses_garbage_without_echoing_it() {
        for bad in [
            "",
            "SECRETxyz",
            "SECRETxyz.b",
            "SECRETxyz.b.c",
            "SECRETxyz.b.c.d",
            "!SECRET.?.x",
        ] {
            let Err(Failure(msg)) = decode(bad) else {
                panic!("{bad:?} decoded");
            };
            assert!(!msg.contains("SECRET"), "{msg}");
        }
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(decode(&big).is_err());
        let five = "a.b.c.d.e";
        assert!(decode(five).unwrap_err().0.contains("JWE"));
    }
}
