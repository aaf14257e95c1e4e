//! The token, keys and client addresses the peer and pipeline benches share
//! (included with `#[path]` by both), so that both measure the same request.

use std::net::{IpAddr, SocketAddr};

use portcullis::jwt::{Algorithm, JwtVerifier, KeySet, VerifyingKey};
use serde::{Deserialize, Serialize};

pub(crate) const SECRET: &str = "bench-secret-0123456789-abcdefghijklmnopq";
pub(crate) const ISSUER: &str = "https://auth.example";
pub(crate) const AUDIENCE: &str = "orders-api";
pub(crate) const ORIGIN: &str = "https://app.example.org";
/// Distinct client addresses the requests cycle through.
pub(crate) const ADDRESSES: u32 = 1_000;

/// The claims every case validates (and the peers deserialize).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: String,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
    pub(crate) jti: String,
    pub(crate) scope: String,
}

/// An HS256 token valid for an hour, signed with `jsonwebtoken`.
pub(crate) fn token() -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        iss: ISSUER.into(),
        sub: "user-42".into(),
        aud: AUDIENCE.into(),
        exp: now + 3600,
        iat: now,
        jti: "6f1c2a9e-jti".into(),
        scope: "orders:read orders:write".into(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Our verifier for [`token`]: same key, `iss` and `aud`.
pub(crate) fn verifier() -> JwtVerifier {
    let keys = KeySet::new()
        .with_key(VerifyingKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .unwrap();
    JwtVerifier::builder(keys)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

/// The `i`-th client address (cycling through [`ADDRESSES`]).
pub(crate) fn address(i: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::from((0xc633_6400 + i % ADDRESSES).to_be_bytes()),
        40_000,
    )
}
