//! Property tests for JWT verification: hostile input never panics and
//! never reaches the handler, and generated claim sets are decided exactly
//! as a small model of the policy says (SECURITY.md rows 143, D).
#![cfg(feature = "jwt")]
#![allow(clippy::unwrap_used)] // a failed setup is a failed test

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response};
use portcullis::jwt::{Algorithm, JwtLayer, JwtVerifier, KeySet, VerifyingKey};
use portcullis::{FakeClock, Rejection};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tower::{Layer, ServiceExt, service_fn};

const SECRET: &str = "property-secret-0123456789-abcdefghij";
const NOW: i64 = 1_700_000_000;
const LEEWAY: i64 = 30;
const MAX_LIFETIME: i64 = 24 * 3600;
/// 9999-12-31T23:59:59Z, the largest date the verifier reads.
const MAX_DATE: i64 = 253_402_300_799;

fn verifier() -> JwtVerifier {
    let keys = KeySet::new()
        .with_key(VerifyingKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .unwrap();
    JwtVerifier::builder(keys)
        .clock(Arc::new(FakeClock::at_unix(NOW as u64)))
        .build()
        .unwrap()
}

fn sign(header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes()),
        input.as_bytes(),
    );
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any header value: a 400 or 401 with a rejection, never a panic, never
    /// the handler.
    #[test]
    fn arbitrary_authorization_values_are_refused(value in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let Ok(header) = HeaderValue::from_bytes(&value) else { return Ok(()); };
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let service = JwtLayer::new(verifier()).layer(service_fn(move |_: Request<String>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        }));
        let mut request = Request::new(String::new());
        request.headers_mut().insert("authorization", header);
        let response = runtime().block_on(service.oneshot(request)).unwrap();
        prop_assert!(matches!(response.status().as_u16(), 400 | 401), "{}", response.status());
        prop_assert!(response.extensions().get::<Rejection>().is_some());
        prop_assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    /// Well-signed tokens with arbitrary bytes as header and payload: decided
    /// without panicking; anything accepted is a well-formed principal.
    #[test]
    fn signed_garbage_never_panics(header in proptest::collection::vec(any::<u8>(), 0..256),
                                   payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let token = sign(&header, &payload);
        if let Ok(verified) = verifier().verify(&token) {
            prop_assert!(!verified.principal().subject().is_empty());
        }
    }

    /// Arbitrary token-alphabet strings with dots: refused, no panic.
    #[test]
    fn alphabet_soup_is_refused(token in "[A-Za-z0-9_.-]{0,600}") {
        prop_assert!(verifier().verify(&token).is_err());
    }

    /// Generated claim sets agree with the model of the default policy.
    #[test]
    fn claims_follow_the_policy_model(claims in claim_set()) {
        let token = sign(br#"{"alg":"HS256","typ":"JWT"}"#, Value::Object(claims.clone()).to_string().as_bytes());
        let accepted = verifier().verify(&token).is_ok();
        prop_assert_eq!(accepted, model_accepts(&claims), "claims {}", Value::Object(claims));
    }
}

/// One value of each interesting shape for a date claim.
/// Offsets from now, concentrated around the leeway boundaries.
fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![-40i64..40, -4000i64..4000]
}

fn date_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => Just(None),
        6 => offset().prop_map(|d| Some(json!(NOW + d))),
        1 => offset().prop_map(|d| Some(json!((NOW + d).to_string()))),
        1 => Just(Some(json!(true))),
        1 => Just(Some(json!(-1))),
        1 => Just(Some(json!(1e300))),
        1 => (-40i64..40).prop_map(|d| Some(json!(NOW + MAX_LIFETIME + d))),
        2 => offset().prop_map(|d| Some(json!((NOW + d) as f64 + 0.5))),
    ]
}

fn sub_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        6 => Just(Some(json!("user-1"))),
        1 => Just(Some(json!(""))),
        1 => Just(Some(json!(7))),
        1 => Just(Some(json!(null))),
    ]
}

fn aud_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(json!("api"))),
        1 => Just(Some(json!([]))),
        1 => Just(Some(json!(["api"]))),
    ]
}

fn claim_set() -> impl Strategy<Value = Map<String, Value>> {
    (
        date_value(),
        date_value(),
        date_value(),
        sub_value(),
        aud_value(),
    )
        .prop_map(|(exp, nbf, iat, sub, aud)| {
            let mut map = Map::new();
            for (name, value) in [
                ("exp", exp),
                ("nbf", nbf),
                ("iat", iat),
                ("sub", sub),
                ("aud", aud),
            ] {
                if let Some(value) = value {
                    map.insert(name.to_owned(), value);
                }
            }
            map
        })
}

/// A NumericDate as the policy reads it: a non-negative finite number,
/// floored; anything else makes the token malformed.
fn date(value: Option<&Value>) -> Result<Option<i64>, ()> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) if (0..=MAX_DATE).contains(&i) => Ok(Some(i)),
            (None, Some(f)) if f.is_finite() && (0.0..=MAX_DATE as f64).contains(&f) => {
                Ok(Some(f.floor() as i64))
            }
            _ => Err(()),
        },
        Some(_) => Err(()),
    }
}

/// The default policy, written independently of the implementation.
fn model_accepts(claims: &Map<String, Value>) -> bool {
    let (Ok(exp), Ok(nbf), Ok(iat)) = (
        date(claims.get("exp")),
        date(claims.get("nbf")),
        date(claims.get("iat")),
    ) else {
        return false;
    };
    let Some(exp) = exp else { return false };
    let sub_ok = matches!(claims.get("sub"), Some(Value::String(s)) if !s.is_empty());
    let aud_ok = !claims.contains_key("aud"); // no audience configured
    let nbf_ok = nbf.is_none_or(|nbf| nbf <= NOW + LEEWAY);
    let iat_ok = iat.is_none_or(|iat| iat <= NOW + LEEWAY && exp >= iat);
    let from = iat.unwrap_or(NOW);
    let lifetime_ok = exp - from <= MAX_LIFETIME && exp - NOW <= MAX_LIFETIME + LEEWAY;
    let unexpired = NOW <= exp + LEEWAY;
    sub_ok && aud_ok && nbf_ok && iat_ok && lifetime_ok && unexpired
}
