//! Runs the hand-assembled pipeline on 127.0.0.1:8001.

use std::net::SocketAddr;

use example_custom_pipeline::{ServiceToken, SharedRevocations, app};
use portcullis::jwt::{Algorithm, JwtVerifier, KeySet, VerifyingKey};

#[tokio::main]
#[allow(clippy::print_stdout)] // the instructions are the output
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("EXAMPLE_JWT_SECRET")
        .map_err(|_| "set EXAMPLE_JWT_SECRET (32 bytes or more)")?;
    let service_secret =
        std::env::var("EXAMPLE_SERVICE_SECRET").map_err(|_| "set EXAMPLE_SERVICE_SECRET")?;
    let keys = KeySet::new().with_key(VerifyingKey::hmac(Algorithm::HS256, &secret)?)?;
    let verifier = JwtVerifier::builder(keys).build()?;
    let services = ServiceToken::new().with_service("billing", &service_secret, ["reports:read"]);
    let router = app(verifier, services, SharedRevocations::default());
    let addr: SocketAddr = "127.0.0.1:8001".parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on http://{addr}");
    println!("  curl -H 'X-Service-Token: billing.$EXAMPLE_SERVICE_SECRET' http://{addr}/reports");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
