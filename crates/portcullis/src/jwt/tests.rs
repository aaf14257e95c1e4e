//! Service tests for `JwtLayer`: one test per hostile case of
//! `shared/SECURITY.md` §3 A–E, G and M that applies to JWT authentication
//! (row numbers in the test names).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response, StatusCode};
use portcullis_core::{
    AuthMethod, AuthOutcome, Clock, FailureReason, FakeClock, MemoryRevocationStore, Principal,
    PrincipalKind, Rejection, RevocationStore, StoreError, StoreErrorKind, TokenRef,
};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::test_support::Echo;

const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";
const NOW: u64 = 1_700_000_000;

fn b64(s: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// Signs arbitrary header and payload text with the test HS256 key.
fn mint_raw(header: &str, payload: &str) -> String {
    mint_with(SECRET.as_bytes(), &b64(header), &b64(payload))
}

fn mint_with(secret: &[u8], header_b64: &str, payload_b64: &str) -> String {
    let input = format!("{header_b64}.{payload_b64}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

fn claims(extra: serde_json::Value) -> String {
    let mut base = serde_json::json!({"sub": "user-1", "exp": NOW + 600, "iat": NOW - 10});
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                base.remove(k);
            } else {
                base.insert(k.clone(), v.clone());
            }
        }
    }
    base.to_string()
}

fn token(extra: serde_json::Value) -> String {
    mint_raw(r#"{"alg":"HS256","typ":"JWT"}"#, &claims(extra))
}

fn clock() -> FakeClock {
    FakeClock::at_unix(NOW)
}

fn keys() -> KeySet {
    KeySet::new()
        .with_key(VerifyingKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .unwrap()
}

fn verifier(clock: &FakeClock) -> JwtVerifierBuilder {
    JwtVerifier::builder(keys()).clock(Arc::new(clock.clone()))
}

async fn send(layer: &JwtLayer, echo: &Echo, request: Request<String>) -> Response<String> {
    layer.layer(echo.service()).oneshot(request).await.unwrap()
}

fn bearer(token: &str) -> Request<String> {
    Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap()
}

fn reason(res: &Response<String>) -> Option<FailureReason> {
    res.extensions().get::<Rejection>().map(Rejection::reason)
}

fn body_error(res: &Response<String>) -> String {
    let v: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    v["error"].as_str().unwrap().to_owned()
}

/// Asserts a rejection: status, reason in extensions and body, failure
/// outcome, inner service not called.
fn assert_rejected(res: &Response<String>, echo: &Echo, status: u16, expected: FailureReason) {
    assert_eq!(res.status(), status, "body: {}", res.body());
    assert_eq!(reason(res), Some(expected));
    assert_eq!(body_error(res), expected.as_str());
    let outcome = AuthOutcome::of(res).expect("failure outcome");
    assert_eq!(outcome.reason(), Some(expected));
    assert_eq!(outcome.method(), AuthMethod::Jwt);
    assert_eq!(echo.calls(), 0, "inner service must not be called");
}

async fn check(layer: &JwtLayer, token: &str) -> Response<String> {
    send(layer, &Echo::default(), bearer(token)).await
}

async fn assert_invalid(layer: &JwtLayer, token: &str, expected: FailureReason) {
    let echo = Echo::default();
    let res = send(layer, &echo, bearer(token)).await;
    assert_rejected(&res, &echo, 401, expected);
    let www = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(www.contains(r#"error="invalid_token""#), "{www}");
    assert!(
        !res.body().contains(token.get(..20).unwrap_or(token)),
        "body never echoes the token"
    );
}

fn default_layer(clock: &FakeClock) -> JwtLayer {
    JwtLayer::new(verifier(clock).build().unwrap())
}

// ---------------------------------------------------------------- A

#[tokio::test]
async fn accepts_a_valid_token_and_reports_success() {
    let clock = clock();
    let echo = Echo::default();
    let res = send(
        &default_layer(&clock),
        &echo,
        bearer(&token(serde_json::json!({}))),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "user-1");
    let outcome = AuthOutcome::of(&res).unwrap();
    assert!(outcome.is_success());
    assert_eq!(outcome.subject(), Some("user-1"));
    assert_eq!(echo.calls(), 1);
}

#[tokio::test]
async fn row01_no_credentials_is_401_without_error_code() {
    let echo = Echo::default();
    let layer = default_layer(&clock()).with_realm("api");
    let res = send(&layer, &echo, Request::new(String::new())).await;
    assert_rejected(&res, &echo, 401, FailureReason::MissingToken);
    assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api""#);
}

#[tokio::test]
async fn row02_empty_bearer_is_400_invalid_request() {
    for value in ["Bearer", "Bearer ", "Bearer   "] {
        let echo = Echo::default();
        let req = Request::builder()
            .header("authorization", value)
            .body(String::new())
            .unwrap();
        let res = send(&default_layer(&clock()), &echo, req).await;
        assert_rejected(&res, &echo, 400, FailureReason::InvalidRequest);
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_request""#)
        );
    }
}

#[tokio::test]
async fn row03_row04_query_tokens_are_never_used() {
    let t = token(serde_json::json!({}));
    let echo = Echo::default();
    let mut req = bearer(&t);
    *req.uri_mut() = format!("/?access_token={t}").parse().unwrap();
    let res = send(&default_layer(&clock()), &echo, req).await;
    assert_rejected(&res, &echo, 400, FailureReason::InvalidRequest);

    let req = Request::builder()
        .uri(format!("/x?access_token={t}"))
        .body(String::new())
        .unwrap();
    let res = send(&default_layer(&clock()), &echo, req).await;
    assert_rejected(&res, &echo, 401, FailureReason::MissingToken);
}

#[tokio::test]
async fn row05_two_authorization_headers_is_400() {
    let t = token(serde_json::json!({}));
    let echo = Echo::default();
    let mut req = bearer(&t);
    req.headers_mut().append(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
    );
    let res = send(&default_layer(&clock()), &echo, req).await;
    assert_rejected(&res, &echo, 400, FailureReason::InvalidRequest);
}

#[tokio::test]
async fn row06_basic_credentials_get_a_bearer_challenge() {
    let echo = Echo::default();
    let req = Request::builder()
        .header("authorization", "Basic dXNlcjpwYXNz")
        .body(String::new())
        .unwrap();
    let res = send(&default_layer(&clock()), &echo, req).await;
    assert_rejected(&res, &echo, 401, FailureReason::MissingToken);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn row07_tokens_with_foreign_characters_are_invalid() {
    let layer = default_layer(&clock());
    let good = token(serde_json::json!({}));
    for bad in ["{", "\"", "%", " x", "\u{e9}"] {
        let t = format!("{good}{bad}");
        assert_invalid(&layer, &t, FailureReason::InvalidToken).await;
    }
    let echo = Echo::default();
    let mut req = Request::new(String::new());
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_bytes(b"Bearer ab\xffcd").unwrap(),
    );
    assert_rejected(
        &send(&layer, &echo, req).await,
        &echo,
        401,
        FailureReason::InvalidToken,
    );
}

#[tokio::test]
async fn row09_bodies_say_the_reason_and_nothing_else() {
    let clock = clock();
    let layer = default_layer(&clock);
    let expired = token(serde_json::json!({"exp": NOW - 3600, "iat": NOW - 7200}));
    let forged = mint_with(
        b"another-secret-0123456789-abcdefghijkl",
        &b64(r#"{"alg":"HS256"}"#),
        &b64(claims(serde_json::json!({}))),
    );
    let mut descriptions = Vec::new();
    for t in [expired, forged, "a.b.c".to_owned()] {
        let res = check(&layer, &t).await;
        let v: serde_json::Value = serde_json::from_str(res.body()).unwrap();
        assert_eq!(
            v.as_object().unwrap().len(),
            2,
            "only error and error_description"
        );
        assert!(!res.body().contains(&t[..5]));
        descriptions.push(v["error_description"].clone());
    }
    assert!(
        descriptions.windows(2).all(|w| w[0] == w[1]),
        "one generic description"
    );
}

// ---------------------------------------------------------------- B

#[tokio::test]
async fn row11_row12_alg_none_and_null_signatures() {
    let layer = default_layer(&clock());
    let payload = b64(claims(serde_json::json!({})));
    for alg in ["none", "None", "NONE", "nOnE", "", "hs256", "HS256 "] {
        let header = b64(format!(r#"{{"alg":"{alg}"}}"#));
        assert_invalid(
            &layer,
            &format!("{header}.{payload}."),
            FailureReason::InvalidToken,
        )
        .await;
        let signed = mint_with(SECRET.as_bytes(), &header, &payload);
        assert_invalid(&layer, &signed, FailureReason::InvalidToken).await;
    }
    let header = b64(r#"{"alg":"HS256"}"#);
    assert_invalid(
        &layer,
        &format!("{header}.{payload}."),
        FailureReason::InvalidToken,
    )
    .await;
    assert_invalid(
        &layer,
        &format!("{header}.{payload}.AAAA"),
        FailureReason::InvalidSignature,
    )
    .await;
}

const RSA_PUBLIC_PEM: &str = include_str!("testdata/rsa2048_public.pem");

#[tokio::test]
async fn row13_hs256_signed_with_the_rsa_public_key_is_refused() {
    let key = VerifyingKey::from_public_pem(Algorithm::RS256, RSA_PUBLIC_PEM).unwrap();
    let layer = JwtLayer::new(
        JwtVerifier::builder(KeySet::new().with_key(key).unwrap())
            .clock(Arc::new(clock()))
            .build()
            .unwrap(),
    );
    let payload = b64(claims(serde_json::json!({})));
    let header = b64(r#"{"alg":"HS256"}"#);
    let der = pem::parse(RSA_PUBLIC_PEM).unwrap().into_contents();
    for secret in [RSA_PUBLIC_PEM.as_bytes(), &der] {
        assert_invalid(
            &layer,
            &mint_with(secret, &header, &payload),
            FailureReason::InvalidToken,
        )
        .await;
    }
    // And the PEM can never become an HMAC key in the first place.
    assert!(VerifyingKey::hmac(Algorithm::HS256, RSA_PUBLIC_PEM).is_err());
}

#[tokio::test]
async fn row14_algorithms_outside_the_allow_list() {
    let layer = default_layer(&clock());
    let payload = b64(claims(serde_json::json!({})));
    for alg in [
        "HS384", "HS512", "RS256", "PS256", "ES256", "EdDSA", "ES512",
    ] {
        let t = mint_with(
            SECRET.as_bytes(),
            &b64(format!(r#"{{"alg":"{alg}"}}"#)),
            &payload,
        );
        assert_invalid(&layer, &t, FailureReason::InvalidToken).await;
    }
}

#[test]
fn row15_misconfigured_algorithms_refuse_to_build() {
    assert!(matches!(
        JwtVerifier::builder(keys()).algorithms([]).build(),
        Err(crate::ConfigError::Invalid { .. })
    ));
    assert!(
        JwtVerifier::builder(keys())
            .algorithms([Algorithm::RS256])
            .build()
            .is_err()
    );
    assert!(matches!(
        JwtVerifier::builder(KeySet::new()).build(),
        Err(crate::ConfigError::NoKeys)
    ));
    assert!(VerifyingKey::hmac(Algorithm::RS256, SECRET).is_err());
    assert!(VerifyingKey::from_public_pem(Algorithm::HS256, RSA_PUBLIC_PEM).is_err());
    assert!(
        JwtVerifier::builder(keys())
            .leeway(Duration::from_secs(3600))
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn row16_to_18_header_keys_and_urls_are_never_used() {
    let layer = default_layer(&clock());
    let attacker = "attacker-secret-0123456789-abcdefghijkl";
    let payload = b64(claims(serde_json::json!({})));
    for header in [
        format!(
            r#"{{"alg":"HS256","jwk":{{"kty":"oct","k":"{}"}}}}"#,
            b64(attacker)
        ),
        r#"{"alg":"HS256","jku":"http://127.0.0.1:9/jwks.json"}"#.to_owned(),
        r#"{"alg":"HS256","x5u":"http://127.0.0.1:9/cert.pem"}"#.to_owned(),
        r#"{"alg":"HS256","x5c":["MIIBszCCAVmgAwIBAgIUZm9v"]}"#.to_owned(),
    ] {
        let t = mint_with(attacker.as_bytes(), &b64(&header), &payload);
        assert_invalid(&layer, &t, FailureReason::InvalidSignature).await;
    }
}

#[tokio::test]
async fn row22_huge_kid_and_header_are_refused_before_parsing() {
    let layer = default_layer(&clock());
    let kid = "k".repeat(1 << 20);
    let t = mint_raw(
        &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
        &claims(serde_json::json!({})),
    );
    let res = check(&layer, &t).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().detail(),
        Some("token too large")
    );
    let t = mint_raw(
        &format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "k".repeat(300)),
        &claims(serde_json::json!({})),
    );
    assert_invalid(&layer, &t, FailureReason::InvalidToken).await;
}

#[tokio::test]
async fn row23_to_25_crit_handling() {
    let layer = default_layer(&clock());
    let c = claims(serde_json::json!({}));
    for header in [
        r#"{"alg":"HS256","crit":["x-ext"],"x-ext":"v"}"#,
        r#"{"alg":"HS256","crit":[]}"#,
        r#"{"alg":"HS256","crit":["alg"]}"#,
        r#"{"alg":"HS256","crit":["absent"]}"#,
        r#"{"alg":"HS256","crit":["a","a"],"a":1}"#,
        r#"{"alg":"HS256","crit":"x"}"#,
        r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
        r#"{"alg":"HS256","b64":false}"#,
    ] {
        assert_invalid(&layer, &mint_raw(header, &c), FailureReason::InvalidToken).await;
    }
    // An extension the application declares it understands is accepted.
    let layer = JwtLayer::new(
        verifier(&clock())
            .understood_crit(["x-ext"])
            .build()
            .unwrap(),
    );
    let res = check(
        &layer,
        &mint_raw(r#"{"alg":"HS256","crit":["x-ext"],"x-ext":"v"}"#, &c),
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn row27_row28_typ_policies() {
    let c = claims(serde_json::json!({}));
    let default = default_layer(&clock());
    for typ in [
        None,
        Some("JWT"),
        Some("at+jwt"),
        Some("application/at+jwt"),
    ] {
        let header = match typ {
            Some(t) => format!(r#"{{"alg":"HS256","typ":"{t}"}}"#),
            None => r#"{"alg":"HS256"}"#.to_owned(),
        };
        assert_eq!(
            check(&default, &mint_raw(&header, &c)).await.status(),
            200,
            "{typ:?}"
        );
    }
    for typ in ["refresh+jwt", "id+jwt", "JWE"] {
        let t = mint_raw(&format!(r#"{{"alg":"HS256","typ":"{typ}"}}"#), &c);
        assert_invalid(&default, &t, FailureReason::InvalidToken).await;
    }
    let strict = JwtLayer::new(
        verifier(&clock())
            .typ(TypPolicy::rfc9068())
            .build()
            .unwrap(),
    );
    assert_eq!(
        check(&strict, &mint_raw(r#"{"alg":"HS256","typ":"at+jwt"}"#, &c))
            .await
            .status(),
        200
    );
    for header in [
        r#"{"alg":"HS256","typ":"JWT"}"#,
        r#"{"alg":"HS256","typ":"refresh+jwt"}"#,
        r#"{"alg":"HS256"}"#,
        r#"{"alg":"HS256","typ":"AT+JWT"}"#,
    ] {
        assert_invalid(&strict, &mint_raw(header, &c), FailureReason::InvalidToken).await;
    }
}

#[tokio::test]
async fn row29_row30_jwe_and_json_serialization_are_refused() {
    let layer = default_layer(&clock());
    let jwe = format!(
        "{}.AAAA.BBBB.CCCC.DDDD",
        b64(r#"{"alg":"dir","enc":"A128GCM"}"#)
    );
    assert_invalid(&layer, &jwe, FailureReason::InvalidToken).await;
    let zip = mint_raw(
        r#"{"alg":"HS256","zip":"DEF"}"#,
        &claims(serde_json::json!({})),
    );
    assert_invalid(&layer, &zip, FailureReason::InvalidToken).await;
    let json = r#"{"payload":"e30","protected":"eyJhbGciOiJIUzI1NiJ9","signature":"AAAA"}"#;
    assert_invalid(&layer, json, FailureReason::InvalidToken).await;
}

#[tokio::test]
async fn row32_unknown_header_parameters_of_any_type_are_ignored() {
    // Pinned: jsonwebtoken 10.4 refused non-string custom header values;
    // we accept them (they are never used), as jsonwebtoken master does.
    let t = mint_raw(
        r#"{"alg":"HS256","x":1,"y":{"z":[true]}}"#,
        &claims(serde_json::json!({})),
    );
    assert_eq!(check(&default_layer(&clock()), &t).await.status(), 200);
}

// ---------------------------------------------------------------- C

#[tokio::test]
async fn row33_to_38_encoding_rules() {
    let layer = default_layer(&clock());
    let good = token(serde_json::json!({}));
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let cases = [
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}=.{s}"),
        format!("{h}.{p}.{s}="),
        format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/")),
        format!("{h}.\t{p}.{s}"),
        format!("{h}.{p}\n.{s}"),
        String::new(),
        "...".to_owned(),
        h.to_owned(),
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.{p}.{s}.{s}.{s}"),
    ];
    let direct = verifier(&clock()).build().unwrap();
    for t in cases {
        assert!(direct.verify(&t).is_err(), "{t:?}");
        if HeaderValue::from_str(&t).is_err() {
            continue; // a newline cannot travel in a header at all
        }
        let echo = Echo::default();
        let res = send(&layer, &echo, bearer(&t)).await;
        assert!(
            matches!(res.status().as_u16(), 400 | 401),
            "{t:?}: {}",
            res.status()
        );
        assert_eq!(echo.calls(), 0);
    }
}

#[tokio::test]
async fn row39_to_43_json_rules() {
    let layer = default_layer(&clock());
    let valid = claims(serde_json::json!({}));
    let utf16: Vec<u8> = valid.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut bom = vec![0xef, 0xbb, 0xbf];
    bom.extend_from_slice(valid.as_bytes());
    let header = b64(r#"{"alg":"HS256"}"#);
    let mut deep = String::from(r#"{"sub":"u","exp":1700000600,"x":"#);
    deep.push_str(&"[".repeat(3000));
    deep.push_str(&"]".repeat(3000));
    deep.push('}');
    let payloads = [
        b64(&utf16),
        b64(&bom),
        b64(b"{\"sub\":\"u\xff\",\"exp\":1700000600}"),
        b64(r#"{"sub":"u","exp":1,"exp":1700000600}"#),
        b64(r#"{"sub":"u","sub":"admin","exp":1700000600}"#),
        b64(r#"{"sub":"u","exp":1700000600,"role":"user","role":"admin"}"#),
        b64(format!("{valid} x")),
        b64("[]"),
        b64(r#""sub""#),
        b64("null"),
        b64(deep),
    ];
    for payload in payloads {
        let t = mint_with(SECRET.as_bytes(), &header, &payload);
        assert_invalid(&layer, &t, FailureReason::InvalidToken).await;
    }
    for bad_header in [
        r#"["HS256"]"#,
        r#""HS256""#,
        "null",
        r#"{"alg":"HS256"} x"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
    ] {
        assert_invalid(
            &layer,
            &mint_raw(bad_header, &valid),
            FailureReason::InvalidToken,
        )
        .await;
    }
}

// ---------------------------------------------------------------- D

#[tokio::test]
async fn row45_to_48_exp_and_nbf_types() {
    let layer = default_layer(&clock());
    for extra in [
        serde_json::json!({"exp": null}),
        serde_json::json!({"exp": (NOW + 600).to_string()}),
        serde_json::json!({"exp": true}),
        serde_json::json!({"exp": -1}),
        serde_json::json!({"exp": 1e300}),
        serde_json::json!({"nbf": NOW + 3600}),
        serde_json::json!({"nbf": (NOW + 3600).to_string()}),
        serde_json::json!({"exp": u64::MAX}),
    ] {
        assert_invalid(&layer, &token(extra), FailureReason::InvalidToken).await;
    }
}

#[tokio::test]
async fn row49_leeway_boundaries_are_exact() {
    let clock = clock();
    let layer = JwtLayer::new(
        verifier(&clock)
            .leeway(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let t = token(serde_json::json!({"exp": NOW - 31, "iat": NOW - 100}));
    assert_invalid(&layer, &t, FailureReason::TokenExpired).await;
    let t = token(serde_json::json!({"exp": NOW - 29, "iat": NOW - 100}));
    assert_eq!(check(&layer, &t).await.status(), 200);
    let t = token(serde_json::json!({"nbf": NOW + 31}));
    assert_invalid(&layer, &t, FailureReason::InvalidToken).await;
    let t = token(serde_json::json!({"nbf": NOW + 29}));
    assert_eq!(check(&layer, &t).await.status(), 200);
}

#[tokio::test]
async fn expiry_grace_accepts_recently_expired_tokens_and_says_so() {
    let clock = clock();
    let v = verifier(&clock)
        .leeway(Duration::ZERO)
        .expiry_grace(Duration::from_secs(300))
        .build()
        .unwrap();
    let ok = v
        .verify(&token(
            serde_json::json!({"exp": NOW - 299, "iat": NOW - 900}),
        ))
        .unwrap();
    assert!(ok.in_grace_period());
    assert!(matches!(
        v.verify(&token(
            serde_json::json!({"exp": NOW - 301, "iat": NOW - 900})
        )),
        Err(JwtError::Expired { .. })
    ));
}

#[tokio::test]
async fn row50_row51_lifetime_and_future_iat() {
    let layer = default_layer(&clock());
    for extra in [
        serde_json::json!({"exp": NOW + 25 * 3600, "iat": NOW}),
        serde_json::json!({"exp": NOW + 25 * 3600, "iat": null}),
        serde_json::json!({"iat": NOW + 86_400, "exp": NOW + 86_500}),
    ] {
        assert_invalid(&layer, &token(extra), FailureReason::InvalidToken).await;
    }
}

#[tokio::test]
async fn row52_issuer_is_exact_and_required() {
    let layer = JwtLayer::new(
        verifier(&clock())
            .issuer("https://issuer.example")
            .build()
            .unwrap(),
    );
    assert_eq!(
        check(
            &layer,
            &token(serde_json::json!({"iss": "https://issuer.example"}))
        )
        .await
        .status(),
        200
    );
    for iss in [
        serde_json::Value::Null,
        serde_json::json!(7),
        serde_json::json!("https://issuer.example/"),
    ] {
        let t = if iss.is_null() {
            token(serde_json::json!({}))
        } else {
            token(serde_json::json!({"iss": iss}))
        };
        assert_invalid(&layer, &t, FailureReason::InvalidToken).await;
    }
}

#[tokio::test]
async fn row53_to_55_audience_rules() {
    let layer = JwtLayer::new(verifier(&clock()).audience("orders").build().unwrap());
    assert_eq!(
        check(&layer, &token(serde_json::json!({"aud": "orders"})))
            .await
            .status(),
        200
    );
    assert_eq!(
        check(
            &layer,
            &token(serde_json::json!({"aud": ["billing", "orders"]}))
        )
        .await
        .status(),
        200
    );
    let bad = [
        token(serde_json::json!({})),
        token(serde_json::json!({"aud": 5})),
        token(serde_json::json!({"aud": {}})),
        mint_raw(
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"u","exp":1700000600,"aud":null}"#,
        ),
        token(serde_json::json!({"aud": [5]})),
        token(serde_json::json!({"aud": ["orders", 5]})),
        token(serde_json::json!({"aud": []})),
        token(serde_json::json!({"aud": "billing"})),
    ];
    for t in bad {
        assert_invalid(&layer, &t, FailureReason::InvalidToken).await;
    }
    // No audience configured: a token that names one is not for us.
    assert_invalid(
        &default_layer(&clock()),
        &token(serde_json::json!({"aud": "orders"})),
        FailureReason::InvalidToken,
    )
    .await;
}

#[tokio::test]
async fn sub_is_required_and_typed() {
    let layer = default_layer(&clock());
    for extra in [
        serde_json::json!({"sub": null}),
        serde_json::json!({"sub": 1}),
        serde_json::json!({"sub": ""}),
    ] {
        assert_invalid(&layer, &token(extra), FailureReason::InvalidToken).await;
    }
}

#[tokio::test]
async fn principal_carries_scopes_roles_and_claims() {
    let t = token(
        serde_json::json!({"scope": "a b", "scp": ["c"], "roles": ["admin"], "jti": "j1", "email": "e@x"}),
    );
    let v = verifier(&clock()).build().unwrap().verify(&t).unwrap();
    let p = v.principal();
    assert_eq!(p.scopes().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(p.roles().collect::<Vec<_>>(), ["admin"]);
    assert_eq!(p.token_id(), Some("j1"));
    assert_eq!(p.kind(), PrincipalKind::User);
    let claims: serde_json::Value = p.claims().unwrap();
    assert_eq!(claims["email"], "e@x");
    let service = token(serde_json::json!({"sub": "svc", "client_id": "svc"}));
    let v = verifier(&clock())
        .build()
        .unwrap()
        .verify(&service)
        .unwrap();
    assert_eq!(v.principal().kind(), PrincipalKind::Service);
}

// ---------------------------------------------------------------- E

#[test]
fn row58_row59_weak_hmac_keys_are_refused_at_build_time() {
    for secret in [
        "",
        "secret",
        "your-256-bit-secret",
        "0123456789abcdef0123456789abcdef",
        "new-secret-key-at-least-32-chars-long",
    ] {
        assert!(
            VerifyingKey::hmac(Algorithm::HS256, secret).is_err(),
            "{secret:?}"
        );
        assert!(
            SigningKey::hmac(Algorithm::HS256, secret).is_err(),
            "{secret:?}"
        );
    }
}

#[tokio::test]
async fn rotation_fallback_keys_expire_at_their_deadline() {
    let clock = clock();
    let old = "old-secret-0123456789-abcdefghijklmnopq";
    let new = "new-secret-0123456789-abcdefghijklmnopq";
    let keys = KeySet::new()
        .with_key(VerifyingKey::hmac(Algorithm::HS256, new).unwrap())
        .unwrap()
        .with_fallback_key(
            VerifyingKey::hmac(Algorithm::HS256, old).unwrap(),
            clock.now() + Duration::from_secs(3600),
        )
        .unwrap();
    let layer = JwtLayer::new(
        JwtVerifier::builder(keys)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap(),
    );
    let header = b64(r#"{"alg":"HS256"}"#);
    let payload = b64(claims(serde_json::json!({"exp": NOW + 7200, "iat": NOW})));
    let by_old = mint_with(old.as_bytes(), &header, &payload);
    let by_new = mint_with(new.as_bytes(), &header, &payload);
    assert_eq!(check(&layer, &by_old).await.status(), 200);
    assert_eq!(check(&layer, &by_new).await.status(), 200);
    clock.advance(Duration::from_secs(3601));
    // Past the deadline only the current key is tried, and it does not match.
    assert_invalid(&layer, &by_old, FailureReason::InvalidSignature).await;
    assert_eq!(check(&layer, &by_new).await.status(), 200);
}

#[tokio::test]
async fn kid_selects_exactly_one_key() {
    let clock = clock();
    let a = "key-a-secret-0123456789-abcdefghijklmno";
    let b = "key-b-secret-0123456789-abcdefghijklmno";
    let keys = KeySet::new()
        .with_key(
            VerifyingKey::hmac(Algorithm::HS256, a)
                .unwrap()
                .with_kid("a"),
        )
        .unwrap()
        .with_key(
            VerifyingKey::hmac(Algorithm::HS256, b)
                .unwrap()
                .with_kid("b"),
        )
        .unwrap();
    let layer = JwtLayer::new(
        JwtVerifier::builder(keys)
            .clock(Arc::new(clock))
            .build()
            .unwrap(),
    );
    let payload = b64(claims(serde_json::json!({})));
    let good = mint_with(b.as_bytes(), &b64(r#"{"alg":"HS256","kid":"b"}"#), &payload);
    assert_eq!(check(&layer, &good).await.status(), 200);
    let wrong = mint_with(a.as_bytes(), &b64(r#"{"alg":"HS256","kid":"b"}"#), &payload);
    assert_invalid(&layer, &wrong, FailureReason::InvalidSignature).await;
    for kid in [
        "c",
        "",
        "../../../../dev/null",
        "x' UNION SELECT '1';--",
        "|sleep 10",
    ] {
        let t = mint_with(
            a.as_bytes(),
            &b64(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#)),
            &payload,
        );
        assert_invalid(&layer, &t, FailureReason::InvalidToken).await;
    }
    assert!(matches!(
        KeySet::new()
            .with_key(
                VerifyingKey::hmac(Algorithm::HS256, a)
                    .unwrap()
                    .with_kid("a")
            )
            .unwrap()
            .with_key(
                VerifyingKey::hmac(Algorithm::HS256, b)
                    .unwrap()
                    .with_kid("a")
            ),
        Err(crate::ConfigError::DuplicateKeyId { .. })
    ));
}

// ---------------------------------------------------------------- G

#[tokio::test]
async fn row75_oversized_authorization_is_refused_in_constant_work() {
    let layer = default_layer(&clock());
    for size in [16 << 10, 64 << 10, 1 << 20, 8 << 20] {
        let t = "a".repeat(size);
        let res = check(&layer, &t).await;
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.extensions().get::<Rejection>().unwrap().detail(),
            Some("token too large")
        );
    }
}

#[tokio::test]
async fn row77_huge_cookie_header_is_bounded() {
    let layer = default_layer(&clock()).with_cookie("access_token");
    // 1 000 cookies (about 11 KiB) are scanned; the token cookie is found.
    let cookies: String = (0..1000).map(|i| format!("c{i}=v{i}; ")).collect();
    let echo = Echo::default();
    let req = Request::builder()
        .header("cookie", cookies + "access_token=x")
        .body(String::new())
        .unwrap();
    assert_rejected(
        &send(&layer, &echo, req).await,
        &echo,
        401,
        FailureReason::InvalidToken,
    );
    // 64 KiB of cookies are refused without scanning past the cap.
    let cookies = "c=v; ".repeat(64 * 1024 / 5);
    let req = Request::builder()
        .header("cookie", cookies + "access_token=x")
        .body(String::new())
        .unwrap();
    assert_rejected(
        &send(&layer, &echo, req).await,
        &echo,
        400,
        FailureReason::InvalidRequest,
    );
}

#[tokio::test]
async fn cookie_tokens_are_accepted_and_cannot_be_doubled() {
    let layer = default_layer(&clock()).with_cookie("access_token");
    let t = token(serde_json::json!({}));
    let req = Request::builder()
        .header("cookie", format!("a=1; access_token={t}"))
        .body(String::new())
        .unwrap();
    assert_eq!(send(&layer, &Echo::default(), req).await.status(), 200);
    let echo = Echo::default();
    let req = Request::builder()
        .header("cookie", format!("access_token={t}; access_token={t}"))
        .body(String::new())
        .unwrap();
    assert_rejected(
        &send(&layer, &echo, req).await,
        &echo,
        400,
        FailureReason::InvalidRequest,
    );
}

// ---------------------------------------------------------------- M

fn issuer(clock: &FakeClock, store: Arc<MemoryRevocationStore>) -> TokenIssuer {
    TokenIssuer::builder(
        SigningKey::hmac(Algorithm::HS256, SECRET).unwrap(),
        "https://auth.example",
    )
    .audience("api")
    .clock(Arc::new(clock.clone()))
    .build(store)
    .unwrap()
}

fn user() -> Principal {
    Principal::new("user-1", PrincipalKind::User)
        .with_scopes(["orders:read"])
        .with_roles(["admin"])
}

fn issued_layer(issuer: &TokenIssuer, store: Arc<MemoryRevocationStore>) -> JwtLayer {
    JwtLayer::new(issuer.access_verifier().build().unwrap())
        .with_revocation(store)
        .with_revocation_cache_ttl(Duration::ZERO)
}

#[tokio::test]
async fn issued_access_tokens_verify_with_their_grants() {
    let clock = clock();
    let store = Arc::new(MemoryRevocationStore::with_clock(
        1000,
        Arc::new(clock.clone()),
    ));
    let issuer = issuer(&clock, Arc::clone(&store));
    let pair = issuer.issue(&user()).unwrap();
    assert_eq!(pair.expires_in, 900);
    assert_eq!(pair.refresh_expires_in, 7 * 24 * 3600);
    let v = issuer
        .access_verifier()
        .build()
        .unwrap()
        .verify(&pair.access_token)
        .unwrap();
    assert_eq!(v.principal().scopes().collect::<Vec<_>>(), ["orders:read"]);
    assert_eq!(v.principal().roles().collect::<Vec<_>>(), ["admin"]);
    assert!(v.family().is_some());
    assert!(!format!("{pair:?}").contains(&pair.access_token[..10]));
}

#[tokio::test]
async fn row132_revoked_jti_is_refused() {
    let clock = clock();
    let store = Arc::new(MemoryRevocationStore::with_clock(
        1000,
        Arc::new(clock.clone()),
    ));
    let issuer = issuer(&clock, Arc::clone(&store));
    let layer = issued_layer(&issuer, Arc::clone(&store));
    let pair = issuer.issue(&user()).unwrap();
    assert_eq!(check(&layer, &pair.access_token).await.status(), 200);
    let principal = issuer
        .access_verifier()
        .build()
        .unwrap()
        .verify(&pair.access_token)
        .unwrap()
        .into_principal();
    issuer.revoke_access_token(&principal).await.unwrap();
    assert_invalid(&layer, &pair.access_token, FailureReason::TokenRevoked).await;
    let res = check(&layer, &pair.access_token).await;
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().subject(),
        Some("user-1")
    );
}

#[tokio::test]
async fn row133_logout_everywhere_revokes_older_tokens_only() {
    let clock = clock();
    let store = Arc::new(MemoryRevocationStore::with_clock(
        1000,
        Arc::new(clock.clone()),
    ));
    let issuer = issuer(&clock, Arc::clone(&store));
    let layer = issued_layer(&issuer, Arc::clone(&store));
    let before = issuer.issue(&user()).unwrap();
    clock.advance(Duration::from_secs(5));
    issuer.revoke_all_for_subject("user-1").await.unwrap();
    assert_invalid(&layer, &before.access_token, FailureReason::TokenRevoked).await;
    assert!(matches!(
        issuer.refresh(&before.refresh_token).await,
        Err(RefreshError::Revoked)
    ));
    clock.advance(Duration::from_secs(1));
    let after = issuer.issue(&user()).unwrap();
    assert_eq!(check(&layer, &after.access_token).await.status(), 200);
}

#[tokio::test]
async fn row134_refresh_reuse_revokes_the_family() {
    let clock = clock();
    let store = Arc::new(MemoryRevocationStore::with_clock(
        1000,
        Arc::new(clock.clone()),
    ));
    let issuer = issuer(&clock, Arc::clone(&store));
    let layer = issued_layer(&issuer, Arc::clone(&store));
    let first = issuer.issue(&user()).unwrap();
    let second = issuer.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(check(&layer, &second.access_token).await.status(), 200);
    // The stolen first refresh token is replayed.
    let err = issuer.refresh(&first.refresh_token).await.unwrap_err();
    assert!(matches!(err, RefreshError::Reused));
    assert_eq!(err.reason(), FailureReason::TokenRevoked);
    assert!(matches!(
        issuer.refresh(&second.refresh_token).await,
        Err(RefreshError::Revoked)
    ));
    assert_invalid(&layer, &second.access_token, FailureReason::TokenRevoked).await;
    assert_invalid(&layer, &first.access_token, FailureReason::TokenRevoked).await;
    // Other families of the same user are untouched.
    let other = issuer.issue(&user()).unwrap();
    assert_eq!(check(&layer, &other.access_token).await.status(), 200);
}

#[tokio::test]
async fn parallel_refreshes_of_one_token_succeed_at_most_once() {
    let clock = clock();
    let store = Arc::new(MemoryRevocationStore::with_clock(
        1000,
        Arc::new(clock.clone()),
    ));
    let issuer = Arc::new(issuer(&clock, store));
    let pair = issuer.issue(&user()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let issuer = Arc::clone(&issuer);
        let rt = pair.refresh_token.clone();
        tasks.push(tokio::spawn(
            async move { issuer.refresh(&rt).await.is_ok() },
        ));
    }
    let mut successes = 0;
    for task in tasks {
        successes += usize::from(task.await.unwrap());
    }
    assert!(successes <= 1, "{successes} parallel refreshes succeeded");
}

#[tokio::test]
async fn row136_refresh_and_access_tokens_are_not_interchangeable() {
    let clock = clock();
    let store = Arc::new(MemoryRevocationStore::with_clock(
        1000,
        Arc::new(clock.clone()),
    ));
    let issuer = issuer(&clock, Arc::clone(&store));
    let layer = issued_layer(&issuer, store);
    let pair = issuer.issue(&user()).unwrap();
    assert_invalid(&layer, &pair.refresh_token, FailureReason::InvalidToken).await;
    let default = JwtLayer::new(
        JwtVerifier::builder(keys())
            .audience("api")
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap(),
    );
    assert_invalid(&default, &pair.refresh_token, FailureReason::InvalidToken).await;
    assert!(matches!(
        issuer.refresh(&pair.access_token).await,
        Err(RefreshError::Invalid(_))
    ));
}

#[tokio::test]
async fn row137_families_end_at_their_absolute_lifetime() {
    let clock = clock();
    let store = Arc::new(MemoryRevocationStore::with_clock(
        1000,
        Arc::new(clock.clone()),
    ));
    let issuer = TokenIssuer::builder(
        SigningKey::hmac(Algorithm::HS256, SECRET).unwrap(),
        "https://auth.example",
    )
    .refresh_ttl(Duration::from_secs(3600))
    .family_lifetime(Duration::from_secs(3 * 3600))
    .clock(Arc::new(clock.clone()))
    .build(store)
    .unwrap();
    let mut pair = issuer.issue(&user()).unwrap();
    for _ in 0..3 {
        clock.advance(Duration::from_secs(3000));
        pair = issuer.refresh(&pair.refresh_token).await.unwrap();
    }
    // The last refresh token is capped at the family's end (3 h after login).
    assert_eq!(pair.refresh_expires_in, 3 * 3600 - 9000);
    clock.advance(Duration::from_secs(1900));
    let err = issuer.refresh(&pair.refresh_token).await.unwrap_err();
    assert!(
        matches!(
            err,
            RefreshError::FamilyExpired | RefreshError::Invalid(JwtError::Expired { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn logout_ends_the_session_family() {
    let clock = clock();
    let store = Arc::new(MemoryRevocationStore::with_clock(
        1000,
        Arc::new(clock.clone()),
    ));
    let issuer = issuer(&clock, Arc::clone(&store));
    let layer = issued_layer(&issuer, Arc::clone(&store));
    let pair = issuer.issue(&user()).unwrap();
    issuer.logout(&pair.refresh_token).await.unwrap();
    assert_invalid(&layer, &pair.access_token, FailureReason::TokenRevoked).await;
    assert!(issuer.refresh(&pair.refresh_token).await.is_err());
}

/// A store whose backend is down.
struct DownStore;

impl RevocationStore for DownStore {
    async fn revoke_token(&self, _: &str, _: std::time::SystemTime) -> Result<bool, StoreError> {
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "connection refused",
        ))
    }
    async fn revoke_family(&self, _: &str, _: std::time::SystemTime) -> Result<(), StoreError> {
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "connection refused",
        ))
    }
    async fn revoke_subject(
        &self,
        _: &str,
        _: std::time::SystemTime,
        _: std::time::SystemTime,
    ) -> Result<(), StoreError> {
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "connection refused",
        ))
    }
    async fn is_revoked(&self, _: &TokenRef<'_>) -> Result<bool, StoreError> {
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "connection refused",
        ))
    }
}

#[tokio::test]
async fn row138_revocation_store_down_fails_closed() {
    let layer = default_layer(&clock()).with_revocation(DownStore);
    let echo = Echo::default();
    let res = send(
        &layer,
        &echo,
        bearer(&token(serde_json::json!({"jti": "j"}))),
    )
    .await;
    assert_rejected(&res, &echo, 503, FailureReason::UpstreamUnavailable);
    let rejection = res.extensions().get::<Rejection>().unwrap();
    assert!(
        std::error::Error::source(rejection).is_some(),
        "the store error travels as the source"
    );
    assert!(
        !res.body().contains("connection refused"),
        "no internals in the body"
    );
}

#[tokio::test]
async fn revocation_cache_bounds_propagation() {
    let clock = clock();
    let store = Arc::new(MemoryRevocationStore::with_clock(
        1000,
        Arc::new(clock.clone()),
    ));
    let layer = default_layer(&clock)
        .with_revocation(Arc::clone(&store))
        .with_revocation_cache_ttl(Duration::from_secs(2));
    let t = token(serde_json::json!({"jti": "j-1"}));
    assert_eq!(check(&layer, &t).await.status(), 200);
    store
        .revoke_token("j-1", clock.now() + Duration::from_secs(600))
        .await
        .unwrap();
    // Within the stated bound the cached answer may still be used…
    assert_eq!(check(&layer, &t).await.status(), 200);
    // …and past it the revocation holds.
    clock.advance(Duration::from_secs(3));
    assert_invalid(&layer, &t, FailureReason::TokenRevoked).await;
}

// ---------------------------------------------------------------- caches, shadow, protocol

#[tokio::test]
async fn token_cache_hits_still_check_expiry() {
    let clock = clock();
    let layer = JwtLayer::new(verifier(&clock).leeway(Duration::ZERO).build().unwrap())
        .with_token_cache(100, Duration::from_secs(60));
    let t = token(serde_json::json!({"exp": NOW + 10}));
    assert_eq!(check(&layer, &t).await.status(), 200);
    assert_eq!(check(&layer, &t).await.status(), 200);
    clock.advance(Duration::from_secs(11));
    assert_invalid(&layer, &t, FailureReason::TokenExpired).await;
}

#[tokio::test]
async fn shadow_mode_reports_without_rejecting() {
    let layer = default_layer(&clock()).shadow_mode();
    let echo = Echo::default();
    let res = send(&layer, &echo, bearer("garbage")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.body(), "<none>", "no principal in shadow mode");
    let outcome = AuthOutcome::of(&res).unwrap();
    assert!(outcome.is_shadow());
    assert_eq!(outcome.reason(), Some(FailureReason::InvalidToken));
    assert!(res.extensions().get::<Rejection>().is_none());
}

#[tokio::test]
async fn handler_outcomes_are_not_overwritten() {
    let layer = default_layer(&clock());
    let svc = layer.layer(service_fn(|_: Request<String>| async {
        let mut res = Response::new(String::new());
        AuthOutcome::failure(AuthMethod::Password, FailureReason::InvalidCredentials)
            .with_identifier("alice")
            .attach(&mut res);
        Ok::<_, Infallible>(res)
    }));
    let res = svc
        .oneshot(bearer(&token(serde_json::json!({}))))
        .await
        .unwrap();
    assert_eq!(
        AuthOutcome::of(&res).unwrap().reason(),
        Some(FailureReason::InvalidCredentials)
    );
}

#[tokio::test]
async fn grpc_requests_get_trailers_only_rejections() {
    let echo = Echo::default();
    let req = Request::builder()
        .header("content-type", "application/grpc")
        .body(String::new())
        .unwrap();
    let res = send(&default_layer(&clock()), &echo, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert!(res.body().is_empty());
    assert_eq!(echo.calls(), 0);
}

#[tokio::test]
async fn readiness_is_delegated() {
    let (mut service, mut handle) =
        tower_test::mock::spawn_layer::<Request<String>, Response<String>, _>(default_layer(
            &clock(),
        ));
    handle.allow(0);
    tokio_test_assert_pending(&mut service);
    handle.allow(1);
    assert!(service.poll_ready().is_ready());
}

fn tokio_test_assert_pending<T, U>(service: &mut tower_test::mock::Spawn<T>)
where
    T: Service<U>,
{
    assert!(service.poll_ready().is_pending());
}

#[test]
fn rfc7515_a1_hs256_example_verifies_with_an_old_clock() {
    // RFC 7515 Appendix A.1: HS256 with the key from the RFC; exp 1300819380.
    let k =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let key = VerifyingKey::hmac(Algorithm::HS256, URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
    let v = JwtVerifier::builder(KeySet::new().with_key(key).unwrap())
        .clock(Arc::new(FakeClock::at_unix(1_300_819_000)))
        .build()
        .unwrap();
    let payload = v.verify_signature(token).unwrap();
    assert!(
        String::from_utf8(payload)
            .unwrap()
            .contains("\"iss\":\"joe\"")
    );
    // Our policy also requires `sub`, which the example lacks.
    assert!(matches!(v.verify(token), Err(JwtError::MissingClaim(_))));
    // RFC 7515 A.5 (unsecured JWS) is refused.
    let unsecured = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.";
    assert!(v.verify_signature(unsecured).is_err());
}
