//! The JWT bench's cases — one token and key per algorithm, the
//! hand-written verification floor, the verifier — shared by
//! `benches/jwt.rs` (wall time) and `examples/jwt_profile.rs` (callgrind
//! instruction counts).

use aws_lc_rs::{hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use portcullis::jwt::{Algorithm, JwtVerifier, KeySet, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

pub(crate) const SECRET: &str = "bench-secret-0123456789-abcdefghijklmnopq";
pub(crate) const ISSUER: &str = "https://auth.example";
pub(crate) const AUDIENCE: &str = "orders-api";

#[derive(Serialize, Deserialize)]
pub(crate) struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    jti: String,
    scope: String,
}

#[derive(Deserialize)]
struct FloorHeader<'a> {
    #[serde(borrow)]
    alg: &'a str,
    #[serde(borrow, default)]
    kid: Option<&'a str>,
}

#[derive(Deserialize)]
struct FloorClaims<'a> {
    #[serde(borrow)]
    sub: &'a str,
    exp: u64,
    #[serde(borrow)]
    iss: &'a str,
    #[serde(borrow)]
    aud: &'a str,
}

pub(crate) fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

pub(crate) fn claims() -> Claims {
    Claims {
        iss: ISSUER.into(),
        sub: "user-42".into(),
        aud: AUDIENCE.into(),
        exp: now() + 3600,
        iat: now(),
        jti: "6f1c2a9e-jti".into(),
        scope: "orders:read orders:write".into(),
    }
}

/// The verification every verifier must do, and nothing else.
pub(crate) fn floor(token: &str, verify: &dyn Fn(&[u8], &[u8]) -> bool) -> usize {
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let (header, payload) = signing_input.split_once('.').unwrap();
    let mut sig = [0u8; 512];
    let n = URL_SAFE_NO_PAD.decode_slice(signature, &mut sig).unwrap();
    assert!(verify(signing_input.as_bytes(), &sig[..n]));
    let mut head = [0u8; 256];
    let hn = URL_SAFE_NO_PAD.decode_slice(header, &mut head).unwrap();
    let header: FloorHeader<'_> = serde_json::from_slice(&head[..hn]).unwrap();
    let body = URL_SAFE_NO_PAD.decode(payload).unwrap();
    let claims: FloorClaims<'_> = serde_json::from_slice(&body).unwrap();
    assert!(claims.exp > now() && claims.iss == ISSUER && claims.aud == AUDIENCE);
    header.alg.len() + header.kid.map_or(0, str::len) + claims.sub.len()
}

pub(crate) fn request(header: &HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    request.headers_mut().insert(AUTHORIZATION, header.clone());
    request
}

pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) alg: Algorithm,
    pub(crate) token: String,
    pub(crate) verifying: VerifyingKey,
    pub(crate) decoding: jsonwebtoken::DecodingKey,
    pub(crate) floor: Box<dyn Fn(&[u8], &[u8]) -> bool>,
}

pub(crate) fn cases() -> Vec<Case> {
    let mut out = Vec::new();

    let hs = SigningKey::hmac(Algorithm::HS256, SECRET)
        .unwrap()
        .with_kid("k1");
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    out.push(Case {
        name: "HS256",
        alg: Algorithm::HS256,
        token: hs.sign("JWT", &claims()).unwrap(),
        verifying: hs.verifying_key(),
        decoding: jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        floor: Box::new(move |m, s| hmac::verify(&hmac_key, m, s).is_ok()),
    });

    let asymmetric: [(
        &str,
        Algorithm,
        &str,
        &str,
        &'static dyn signature::VerificationAlgorithm,
    ); 3] = [
        (
            "ES256",
            Algorithm::ES256,
            include_str!("../../keys/ec256.pem"),
            include_str!("../../keys/ec256.pub.pem"),
            &signature::ECDSA_P256_SHA256_FIXED,
        ),
        (
            "RS256",
            Algorithm::RS256,
            include_str!("../../keys/rsa2048.pem"),
            include_str!("../../keys/rsa2048.pub.pem"),
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            include_str!("../../keys/ed25519.pem"),
            include_str!("../../keys/ed25519.pub.pem"),
            &signature::ED25519,
        ),
    ];
    for (name, alg, private, public, verification) in asymmetric {
        let signing = SigningKey::from_pem(alg, private).unwrap().with_kid("k1");
        let decoding = match alg {
            Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_pem(public.as_bytes()),
            Algorithm::RS256 => jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()),
            _ => jsonwebtoken::DecodingKey::from_ed_pem(public.as_bytes()),
        }
        .unwrap();
        let spki = pem::parse(public).unwrap().into_contents();
        let parsed = match alg {
            // aws-lc-rs takes PKCS#1 for RSA; SPKI works for EC and Ed25519.
            Algorithm::RS256 => {
                let rsa = aws_lc_rs::rsa::PublicKey::from_der(&spki).unwrap();
                signature::ParsedPublicKey::new(verification, rsa.as_ref()).unwrap()
            }
            _ => signature::ParsedPublicKey::new(verification, &spki).unwrap(),
        };
        out.push(Case {
            name,
            alg,
            token: signing.sign("JWT", &claims()).unwrap(),
            verifying: signing.verifying_key(),
            decoding,
            floor: Box::new(move |m, s| parsed.verify_sig(m, s).is_ok()),
        });
    }
    out
}

pub(crate) fn verifier(case: &Case) -> JwtVerifier {
    JwtVerifier::builder(KeySet::new().with_key(case.verifying.clone()).unwrap())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap()
}
