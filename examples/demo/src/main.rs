//! Runs the Portcullis reference server on its embedded defaults.
//!
//! `PORTCULLIS_DEMO_ADDR` sets the listen address (default `127.0.0.1:3000`)
//! and `PORTCULLIS_JWT_SECRET` the HMAC signing secret (default: a random
//! secret generated at start, so tokens do not survive a restart).

use std::net::SocketAddr;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::var("PORTCULLIS_DEMO_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let (secret, origin) = match std::env::var("PORTCULLIS_JWT_SECRET") {
        Ok(secret) => (secret, "from PORTCULLIS_JWT_SECRET"),
        Err(_) => (
            demo::generate_secret(),
            "generated at start; set PORTCULLIS_JWT_SECRET to keep tokens across restarts",
        ),
    };
    // One JSON line per security event on stdout, as in seed 000:
    //   cargo run -p demo | jq -r 'select(.event == "security.auth_failure") | .context.failure_reason'
    let app = demo::app_with_audit(
        secret.as_bytes(),
        portcullis::audit::JsonLinesSink::new(std::io::stdout()),
    )?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let banner = format!(
        "Portcullis demo listening on {base} (signing secret {origin})

Get a token pair:
  curl -s -X POST {base}/auth/login -H 'content-type: application/json' \\
       -d '{{\"username\":\"alice\",\"password\":\"wonderland\"}}'

Call a protected route with the access token:
  TOKEN=$(curl -s -X POST {base}/auth/login -H 'content-type: application/json' \\
          -d '{{\"username\":\"alice\",\"password\":\"wonderland\"}}' | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')
  curl -i {base}/api/me -H \"authorization: Bearer $TOKEN\"
  curl -i {base}/api/orders -H \"authorization: Bearer $TOKEN\"
  curl -i {base}/api/admin -H \"authorization: Bearer $TOKEN\"   # 403: alice is not an admin

Without a token:
  curl -i {base}/api/me

Metrics (Prometheus text) and the audit trail (JSON lines on this terminal):
  curl -s {base}/metrics | grep portcullis_auth

Refresh (rotation; replaying an old refresh token revokes the session):
  curl -s -X POST {base}/auth/refresh -H 'content-type: application/json' -d '{{\"refresh_token\":\"...\"}}'
"
    );
    #[allow(clippy::print_stdout)]
    {
        println!("{banner}");
    }
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
