//! Runs the Portcullis reference server. Zero configuration: state in
//! `portcullis-demo.db` (SQLite) and an ephemeral JWT secret; every
//! variable is listed in the crate docs and README.
//!
//! `portcullis-demo users …` acts on the accounts of the same database
//! (see `portcullis-demo users --help`).

use std::io::Read as _;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use portcullis_cli::backends::Backends;
use portcullis_demo::admin::{self, Action};
use portcullis_demo::{Config, build, serve};

/// The Portcullis reference server, and its account administration.
#[derive(Parser)]
#[command(
    name = "portcullis-demo",
    version,
    after_help = "Without a command, serves (configured by PORTCULLIS_* variables, see the README)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the API (the default).
    Serve,
    /// Account actions on the server's database (PORTCULLIS_DATABASE_URL,
    /// PORTCULLIS_REDIS_URL), while it runs.
    #[command(after_help = "Examples:
  portcullis-demo users show alice@example.com
  portcullis-demo users disable alice@example.com --json
  portcullis-demo users enable alice@example.com
  portcullis-demo users grant alice@example.com reports:read
  portcullis-demo users revoke alice@example.com workflows:execute
  portcullis-demo users reset-password alice@example.com          # prints a generated password once
  printf '%s' \"$NEW\" | portcullis-demo users reset-password alice@example.com --password-stdin

disable, reset-password, grant and revoke take effect at once (sessions and
API keys included; an API key never gains a scope); enable at the next
login.")]
    Users(Users),
}

#[derive(Args)]
struct Users {
    #[command(subcommand)]
    action: UserAction,
    /// Prints one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum UserAction {
    /// Shows the account: id, status, scopes.
    Show {
        /// Email or user id (usr_…).
        user: String,
    },
    /// Disables the account: login and every token refused (user_disabled).
    Disable {
        /// Email or user id (usr_…).
        user: String,
    },
    /// Re-enables a disabled account (the user logs in again).
    Enable {
        /// Email or user id (usr_…).
        user: String,
    },
    /// Forces a password reset: a new password, every token revoked.
    ResetPassword {
        /// Email or user id (usr_…).
        user: String,
        /// Reads the new password from stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Grants scopes (to the user's sessions at once; not to API keys).
    Grant {
        /// Email or user id (usr_…).
        user: String,
        /// The scopes, such as workflows:execute.
        #[arg(required = true)]
        scopes: Vec<String>,
    },
    /// Revokes scopes (refused at once).
    Revoke {
        /// Email or user id (usr_…).
        user: String,
        /// The scopes, such as workflows:execute.
        #[arg(required = true)]
        scopes: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None | Some(Command::Serve) => run().await,
        Some(Command::Users(users)) => users_command(users).await,
    };
    match result {
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

async fn open_state() -> Result<(Config, Backends), portcullis_demo::StartError> {
    let config = Config::from_env().map_err(|e| format!("invalid configuration: {e}"))?;
    let backends = Backends::from_env().await.map_err(|e| {
        format!("cannot open the state (PORTCULLIS_DATABASE_URL / PORTCULLIS_REDIS_URL): {e}")
    })?;
    Ok((config, backends))
}

#[allow(clippy::print_stdout)] // the command's answer
async fn users_command(users: Users) -> Result<(), portcullis_demo::StartError> {
    let (who, action) = match users.action {
        UserAction::Show { user } => (user, Action::Show),
        UserAction::Disable { user } => (user, Action::Disable),
        UserAction::Enable { user } => (user, Action::Enable),
        UserAction::ResetPassword {
            user,
            password_stdin,
        } => {
            let given = if password_stdin {
                let mut password = String::new();
                std::io::stdin()
                    .take(4096)
                    .read_to_string(&mut password)
                    .map_err(|_| "cannot read the password from stdin (UTF-8 expected)")?;
                Some(password.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                None
            };
            (user, Action::ResetPassword(given))
        }
        UserAction::Grant { user, scopes } => (user, Action::Grant(scopes)),
        UserAction::Revoke { user, scopes } => (user, Action::Revoke(scopes)),
    };
    let (config, backends) = open_state().await?;
    let report = admin::run(&backends, &config, &who, action).await?;
    if users.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

async fn run() -> Result<(), portcullis_demo::StartError> {
    let (config, backends) = open_state().await?;
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

Accounts (disable, reset-password, grant/revoke scopes) on this server's database:
  portcullis-demo users --help
"
    );
}
