//! Runs the layered gRPC server on 127.0.0.1:50051 and creates one API key.

use portcullis::api_key::{ApiKeyLayer, NewApiKey};
use portcullis::core::MemoryApiKeyStore;
use portcullis::jwt::{Algorithm, JwtVerifier, KeySet, VerifyingKey};

#[tokio::main]
#[allow(clippy::print_stdout)] // the instructions are the output
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("EXAMPLE_JWT_SECRET")
        .map_err(|_| "set EXAMPLE_JWT_SECRET (32 bytes or more)")?;
    let keys = KeySet::new().with_key(VerifyingKey::hmac(Algorithm::HS256, &secret)?)?;
    let verifier = JwtVerifier::builder(keys).build()?;
    let api_keys = ApiKeyLayer::new(MemoryApiKeyStore::default());
    let created = api_keys
        .keys()
        .create(NewApiKey::new("example-client", "demo").with_scopes(["greeter:admin"]))
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
    println!("gRPC on 127.0.0.1:50051 (greeter.Greeter, greeter.Admin)");
    println!(
        "an API key with scope greeter:admin (shown once): {}",
        created.key()
    );
    example_tonic_auth::serve(listener, verifier, &api_keys).await?;
    Ok(())
}
