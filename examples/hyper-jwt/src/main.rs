//! Runs the bare-hyper example on 127.0.0.1:8002.

use portcullis::jwt::{Algorithm, JwtVerifier, KeySet, VerifyingKey};

#[tokio::main]
#[allow(clippy::print_stdout)] // the instructions are the output
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("EXAMPLE_JWT_SECRET")
        .map_err(|_| "set EXAMPLE_JWT_SECRET (32 bytes or more)")?;
    let keys = KeySet::new().with_key(VerifyingKey::hmac(Algorithm::HS256, &secret)?)?;
    let verifier = JwtVerifier::builder(keys).build()?;
    let addr = "127.0.0.1:8002".parse()?;
    println!("listening on http://{addr}: GET /me (any token), GET /admin (scope admin)");
    example_hyper_jwt::run(addr, verifier).await?;
    Ok(())
}
