//! Runs the Portcullis reference server. Zero configuration: state in
//! `portcullis-demo.db` (SQLite) and an ephemeral JWT secret; every
//! variable is listed in the crate docs and README.

use std::process::ExitCode;

use portcullis_cli::backends::Backends;
use portcullis_demo::{Config, build, serve};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report_error(&err);
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stderr)] // the binary's one error line
fn report_error(err: &portcullis_demo::StartError) {
    eprintln!("portcullis-demo: {err}");
}

async fn run() -> Result<(), portcullis_demo::StartError> {
    let config = Config::from_env().map_err(|e| format!("invalid configuration: {e}"))?;
    let backends = Backends::from_env().await.map_err(|e| {
        format!("cannot open the state (PORTCULLIS_DATABASE_URL / PORTCULLIS_REDIS_URL): {e}")
    })?;
    let engine = backends.database.engine();
    let redis = backends.redis.is_some();
    let addr = config.addr;
    let app = build(config, backends).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (PORTCULLIS_DEMO_ADDR): {e}"))?;
    let base = format!("http://{}", listener.local_addr()?);
    banner(&base, engine, redis, app.ephemeral_secret);
    serve(listener, app.router).await?;
    Ok(())
}

#[allow(clippy::print_stdout, clippy::print_stderr)] // the startup banner and warning
fn banner(base: &str, engine: &str, redis: bool, ephemeral: bool) {
    if ephemeral {
        eprintln!(
            "\n\
             ************************************************************************\n\
             WARNING: PORTCULLIS_JWT_SECRET is not set. Tokens are signed with an\n\
             ephemeral secret generated at start: every token dies with this process,\n\
             and several instances cannot verify each other's tokens. Set one with\n\
               export PORTCULLIS_JWT_SECRET=$(portcullis secret generate)\n\
             ************************************************************************\n"
        );
    }
    let state = if redis {
        format!("{engine} + redis")
    } else {
        engine.to_owned()
    };
    // Printed to stderr: stdout carries one JSON security event per line,
    // for `jq`.
    eprintln!(
        "Portcullis demo listening on {base} (state: {state})

Sign up and log in:
  curl -s -X POST {base}/api/auth/signup -H 'content-type: application/json' \\
       -d '{{\"email\":\"alice@example.com\",\"name\":\"Alice\",\"password\":\"correct horse battery\"}}'
  TOKEN=$(curl -s -X POST {base}/api/auth/login -H 'content-type: application/json' \\
       -d '{{\"email\":\"alice@example.com\",\"password\":\"correct horse battery\"}}' | jq -r .access_token)

Call the API:
  curl -s {base}/api/me -H \"authorization: Bearer $TOKEN\"
  curl -s {base}/api/workflows -H \"authorization: Bearer $TOKEN\"
  curl -s -X POST {base}/api/workflows -H \"authorization: Bearer $TOKEN\"

An API key with one scope (shown once), then use it:
  KEY=$(curl -s -X POST {base}/api/api-keys -H \"authorization: Bearer $TOKEN\" \\
       -H 'content-type: application/json' -d '{{\"name\":\"ci\",\"scopes\":[\"workflows:read\"]}}' | jq -r .key)
  curl -s {base}/api/workflows -H \"x-api-key: $KEY\"
  curl -s -X POST {base}/api/workflows -H \"x-api-key: $KEY\"   # 403 insufficient_permissions

Health, metrics and the audit trail (JSON lines on stdout):
  curl -s {base}/health/detailed
  curl -s {base}/metrics | grep portcullis_auth
  cargo run -p portcullis-demo | jq -r 'select(.event == \"security.auth_failure\") | .context.failure_reason'
"
    );
}
