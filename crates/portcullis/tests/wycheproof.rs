//! Wycheproof JOSE vectors (C2SP/wycheproof `testvectors_v1`) through our
//! key loading and JWS verification.
//!
//! The vectors are read at test time from `$PORTCULLIS_VECTORS/wycheproof`
//! (default `../shared/vectors` next to the repository). Without them the
//! test prints a notice and passes locally; with `CI` set it fails.
//!
//! Payloads are not JWT claims (`foo`, `Test`, the RFC 7520 text), so the
//! vectors drive `JwtVerifier::verify_signature`: alphabet and segment
//! checks, header rules, algorithm allow-list, key selection and the
//! signature. Keys go through `VerifyingKey::from_jwk` / `KeySet::from_jwks`,
//! which apply our key rules (`use`, `key_ops`, sizes, ROCA, curve checks).
//!
//! Documented exceptions are where our verdict differs from the label on
//! purpose; every other vector must agree, and no exception is a false
//! accept. The `base64` group signs with an all-zero HMAC key, which our
//! weak-key rule refuses, so its base64 edge cases are covered by the
//! parser's own unit tests instead (`jwt::parse::tests`).
#![cfg(feature = "jwt")]
#![allow(clippy::unwrap_used)] // a malformed vector file is a test failure

use std::collections::BTreeMap;
use std::path::PathBuf;

use portcullis::jwt::{Algorithm, JwtVerifier, KeySet, VerifyingKey};
use serde_json::Value;

/// `json_web_signature_test.json`: tcId → why we differ.
const JWS_EXCEPTIONS: &[(u64, &str)] = &[
    (
        346,
        "one key, one algorithm: a PS384 token is refused by a key bound to PS256 (RFC 8725 §3.1)",
    ),
    (
        347,
        "ES512 (P-521) is not a supported algorithm: the key is refused",
    ),
    (
        350,
        "one key, one algorithm: a PS384 token is refused by a key bound to PS256 (RFC 8725 §3.1)",
    ),
    (
        351,
        "ES512 (P-521) is not a supported algorithm: the key is refused",
    ),
    (
        357,
        "the `base64` group's HMAC key is 32 zero bytes: refused by the weak-key rule (RFC 8725 §3.5)",
    ),
    (
        358,
        "the `base64` group's HMAC key is 32 zero bytes: refused by the weak-key rule (RFC 8725 §3.5)",
    ),
    (
        359,
        "the `base64` group's HMAC key is 32 zero bytes: refused by the weak-key rule (RFC 8725 §3.5)",
    ),
    (
        372,
        "label anomaly: `?` inserted into the header is labelled valid; we refuse any non-base64url character",
    ),
    (
        373,
        "label anomaly: `?` inserted into the payload is labelled valid; we refuse any non-base64url character",
    ),
    (
        376,
        "the `base64` group's HMAC key is 32 zero bytes: refused by the weak-key rule (RFC 8725 §3.5)",
    ),
    (
        377,
        "the `base64` group's HMAC key is 32 zero bytes: refused by the weak-key rule (RFC 8725 §3.5)",
    ),
];

/// `json_web_crypto_test.json` (JWS groups only; JWE is out of scope).
const JWC_EXCEPTIONS: &[(u64, &str)] = &[];

/// `json_web_key_test.json`.
const JWK_EXCEPTIONS: &[(u64, &str)] = &[];

fn vectors_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PORTCULLIS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
        });
    let dir = dir.join("wycheproof");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "Wycheproof vectors not found at {} (set PORTCULLIS_VECTORS); CI requires them",
        dir.display()
    );
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "SKIPPED: Wycheproof vectors not found at {}; set PORTCULLIS_VECTORS to run them",
            dir.display()
        );
    }
    None
}

/// The verifier a group's key material yields, or `None` when our key rules
/// refuse it (every vector of the group must then be invalid).
fn verifier_for(material: &Value) -> Option<JwtVerifier> {
    let keys = if material.get("keys").is_some() {
        KeySet::from_jwks(&material.to_string()).ok()?
    } else {
        KeySet::new()
            .with_key(VerifyingKey::from_jwk(&material.to_string()).ok()?)
            .ok()?
    };
    JwtVerifier::builder(keys)
        .algorithms(Algorithm::ALL)
        .build()
        .ok()
}

/// Runs every JWS vector of `file`, returning (count, tcId → (expected, got)).
fn run(file: &str) -> Option<(usize, BTreeMap<u64, (String, bool)>)> {
    let path = vectors_dir()?.join(file);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut count = 0;
    let mut differ = BTreeMap::new();
    for group in doc["testGroups"].as_array().unwrap() {
        let material = group
            .get("public")
            .or_else(|| group.get("private"))
            .unwrap();
        let verifier = verifier_for(material);
        for test in group["tests"].as_array().unwrap() {
            let Some(jws) = test.get("jws").and_then(Value::as_str) else {
                continue; // JWE vectors: out of scope
            };
            count += 1;
            let expected = test["result"].as_str().unwrap().to_owned();
            let accepted = verifier
                .as_ref()
                .is_some_and(|v| v.verify_signature(jws).is_ok());
            let agrees = match expected.as_str() {
                "valid" => accepted,
                "invalid" => !accepted,
                _ => true, // "acceptable": either verdict is fine
            };
            if !agrees {
                differ.insert(test["tcId"].as_u64().unwrap(), (expected, accepted));
            }
        }
    }
    Some((count, differ))
}

fn check(file: &str, exceptions: &[(u64, &str)], expected_count: usize) {
    let Some((count, differ)) = run(file) else {
        return;
    };
    assert_eq!(count, expected_count, "{file}: number of JWS vectors run");
    let documented: Vec<u64> = exceptions.iter().map(|(id, _)| *id).collect();
    let found: Vec<u64> = differ.keys().copied().collect();
    assert_eq!(found, documented, "{file}: differences {differ:?}");
    let false_accepts: Vec<u64> = differ
        .iter()
        .filter(|(_, (expected, accepted))| expected == "invalid" && *accepted)
        .map(|(id, _)| *id)
        .collect();
    assert!(
        false_accepts.is_empty(),
        "{file}: false accepts {false_accepts:?}"
    );
}

#[test]
fn json_web_signature_vectors() {
    check("json_web_signature_test.json", JWS_EXCEPTIONS, 401);
}

#[test]
fn json_web_key_vectors() {
    check("json_web_key_test.json", JWK_EXCEPTIONS, 26);
}

#[test]
fn json_web_crypto_jws_vectors() {
    check("json_web_crypto_test.json", JWC_EXCEPTIONS, 48);
}
