//! `portcullis`, the operator CLI: API keys, token revocation, lockouts, the
//! IP block list, failed-attempt hot spots, cleanup, secrets and JWT
//! inspection, on the same database and Redis as a running server.
//!
//! Run `portcullis --help` (or `portcullis <command> --help`) for the
//! commands and examples; `docs/cli.md` has the full reference.
//!
//! Exit codes: `0` success, `1` the command failed (a backend, an unknown
//! id, invalid input to a command), `2` the command line is invalid.

mod commands;
mod duration;
mod jwt;
mod output;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_duration;

const EXAMPLES: &str = "\
Examples:
  portcullis keys create --owner usr_1f2e --name ci-deploy --scope workflows:read --expires-in 90d
  portcullis keys list --include-inactive
  portcullis tokens revoke --user alice@example.com
  portcullis lockout list
  portcullis lockout unlock alice@example.com
  portcullis blocklist add 203.0.113.0/24 --duration 24h --reason 'credential stuffing'
  portcullis attempts top --window 1h
  portcullis --json keys list | jq '.[].key_id'
  portcullis secret generate
  portcullis secret kid
  portcullis tokens revoke --jti kgrWRxX5OMtKWYbnQcaG9g --family JJ8IM3VTBWuOogHquEyxGQ
  portcullis jwt inspect < token.txt

State: --database-url / PORTCULLIS_DATABASE_URL (sqlite://<path> or postgres://...),
--redis-url / PORTCULLIS_REDIS_URL, --redis-prefix / PORTCULLIS_REDIS_PREFIX: the same
settings as the server, so the CLI acts on what the running server sees.

Exit codes: 0 success, 1 the command failed, 2 invalid command line.";

// No `Debug` on the command-line types: they hold database URLs (with
// passwords), tokens given to `jwt inspect`, account names.

/// The Portcullis operator CLI.
#[derive(Parser)]
#[command(name = "portcullis", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Args)]
struct Global {
    /// The database: sqlite://PATH or postgres://… (never printed).
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_DATABASE_URL",
        default_value = portcullis_cli::backends::DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    database_url: String,
    /// Redis, when the server uses it for counters and revocations.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_REDIS_URL",
        hide_env_values = true
    )]
    redis_url: Option<String>,
    /// The Redis key prefix.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_REDIS_PREFIX",
        default_value = portcullis_cli::backends::DEFAULT_REDIS_PREFIX
    )]
    redis_prefix: String,
    /// Print one JSON document (stable field names) instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, revoke and rotate API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Revoke JWTs: every token of a user, or one token by its jti.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Locked accounts and addresses: list, inspect, unlock, lock.
    #[command(subcommand)]
    Lockout(LockoutCommand),
    /// The IP block list: add, remove, list.
    #[command(subcommand)]
    Blocklist(BlocklistCommand),
    /// Failed-attempt counters: the accounts and addresses failing most.
    #[command(subcommand)]
    Attempts(AttemptsCommand),
    /// Delete expired rows (seed 003's cleanup schedule) and report counts.
    #[command(after_help = "Example:\n  portcullis cleanup\n\nRun it from cron, e.g. hourly.")]
    Cleanup,
    /// Generate secrets (JWT signing secrets, API key peppers); show the kid a secret signs with.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Look inside JWTs without verifying them.
    #[command(subcommand)]
    Jwt(JwtCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; the key is printed once and cannot be shown again.
    #[command(
        after_help = "Example:\n  portcullis keys create --owner usr_1f2e --name ci-deploy \\\n    --scope workflows:read --scope workflows:execute --expires-in 90d"
    )]
    Create {
        /// The user id the key acts for (the principal's subject).
        #[arg(long)]
        owner: String,
        /// A label (`ci-deploy`).
        #[arg(long)]
        name: String,
        /// A scope to grant; repeat for more (or separate with commas).
        #[arg(long = "scope", value_delimiter = ',')]
        scopes: Vec<String>,
        /// Expire after this long (`90d`, `12h`); default: never.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// List keys (never their secrets).
    #[command(after_help = "Example:\n  portcullis keys list --owner usr_1f2e --include-inactive")]
    List {
        /// Only the keys of this user id.
        #[arg(long)]
        owner: Option<String>,
        /// Also revoked and expired keys.
        #[arg(long)]
        include_inactive: bool,
        /// At most this many keys.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Revoke a key now, by its id (or by the full key, e.g. a leaked one).
    #[command(after_help = "Example:\n  portcullis keys revoke 3kq9x0c1v2b7")]
    Revoke {
        /// The key id (`pc_live_<id>_…` shows it), or the full key.
        key: String,
    },
    /// Replace a key with a new one; the old one stays valid for --grace.
    #[command(after_help = "Example:\n  portcullis keys rotate 3kq9x0c1v2b7 --grace 24h")]
    Rotate {
        /// The key id, or the full key.
        key: String,
        /// How long the old key keeps working (`0s`: stop it now).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        grace: Duration,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Revoke every token of a user (--user), one token (--jti), a session's refresh family (--family), or a token and its family.
    #[command(
        after_help = "Examples:\n  portcullis tokens revoke --user alice@example.com\n  portcullis tokens revoke --user usr_5d1c0a\n  portcullis tokens revoke --jti 01J9Z3V6\n  portcullis tokens revoke --jti kgrWRxX5OMtKWYbnQcaG9g --family JJ8IM3VTBWuOogHquEyxGQ\n\n`portcullis jwt inspect < token.txt` shows a token's `jti` and `fam` (its family).\n--jti alone ends that token only: its session's refresh token keeps working.\nWith --family the session's refresh token and every access token issued\nin it are revoked too."
    )]
    Revoke(TokenTarget),
}

#[derive(Args)]
#[group(required = true, multiple = true)]
struct TokenTarget {
    /// A user id (`usr_…`) or email: every token issued to it until now.
    #[arg(long, conflicts_with_all = ["jti", "family"])]
    user: Option<String>,
    /// One token's `jti`. Ids are base64url and may start with `-`.
    #[arg(long, allow_hyphen_values = true)]
    jti: Option<String>,
    /// A refresh family (the token's `fam` claim): the session's refresh
    /// token and every access token issued in it.
    #[arg(long, value_name = "FAM", allow_hyphen_values = true)]
    family: Option<String>,
}

#[derive(Subcommand)]
enum LockoutCommand {
    /// Accounts, accounts locked from one address, and addresses locked now.
    #[command(
        after_help = "Example:\n  portcullis lockout list\n  portcullis --json lockout list | jq '.account_ips'"
    )]
    List {
        /// At most this many of each kind.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Failures, lock and lock count of one account, and its counters from single addresses.
    #[command(after_help = "Example:\n  portcullis lockout status alice@example.com")]
    Status {
        /// The account as users type it at login (canonicalised like the server does).
        account: String,
    },
    /// Unlock an account (its own lock and its locks from single addresses) and forget its failures.
    #[command(after_help = "Example:\n  portcullis lockout unlock alice@example.com")]
    Unlock {
        /// The account as users type it at login.
        account: String,
    },
    /// Unlock an address locked after repeated failures, and the accounts locked from it (not the block list).
    #[command(after_help = "Example:\n  portcullis lockout unlock-ip 203.0.113.7")]
    UnlockIp {
        /// The address.
        ip: std::net::IpAddr,
    },
    /// Lock an account (for --duration, or until unlocked).
    #[command(after_help = "Example:\n  portcullis lockout lock alice@example.com --duration 1h")]
    Lock {
        /// The account as users type it at login.
        account: String,
        /// How long; default: until `lockout unlock`.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
}

#[derive(Subcommand)]
enum BlocklistCommand {
    /// Block an address or network (requests get 403 ip_blocked).
    #[command(
        after_help = "Examples:\n  portcullis blocklist add 203.0.113.7 --duration 24h --reason 'brute force'\n  portcullis blocklist add 198.51.100.0/24 --permanent --reason 'abuse report 1234'"
    )]
    Add(BlockAdd),
    /// Remove an address or network from the block list.
    #[command(after_help = "Example:\n  portcullis blocklist remove 203.0.113.7")]
    Remove {
        /// The address or network, as added.
        network: String,
    },
    /// The entries in force.
    #[command(after_help = "Example:\n  portcullis blocklist list")]
    List,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("how_long").required(true).args(["duration", "permanent"])))]
struct BlockAdd {
    /// An address (`203.0.113.7`) or a network (`203.0.113.0/24`).
    network: String,
    /// How long (`30m`, `24h`, `7d`).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Until removed.
    #[arg(long)]
    permanent: bool,
    /// Why (kept with the entry; at most 256 characters).
    #[arg(long)]
    reason: String,
}

#[derive(Subcommand)]
enum AttemptsCommand {
    /// The accounts and addresses with the most failures in a window.
    #[command(after_help = "Example:\n  portcullis attempts top --window 15m --limit 20")]
    Top {
        /// The window (`15m`, `1h`). Counters only keep failures within the
        /// server's lockout windows, so longer windows see no more.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        window: Duration,
        /// At most this many of each kind.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Random bytes from the OS, base64url without padding.
    #[command(
        after_help = "Examples:\n  export PORTCULLIS_JWT_SECRET=\"$(portcullis secret generate)\"\n  portcullis secret generate --bytes 64"
    )]
    Generate {
        /// How many random bytes (16 to 1024).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(16..=1024))]
        bytes: u16,
    },
    /// The `kid` a server signs with: the fingerprint of PORTCULLIS_JWT_SECRET (or of a secret on stdin).
    #[command(
        after_help = "Examples:\n  PORTCULLIS_JWT_SECRET=... portcullis secret kid\n  portcullis secret kid < secret.txt\n\nCompare it with the `kid` in a token's header (`portcullis jwt inspect`). The\nsecret is never printed. Old secrets in PORTCULLIS_JWT_SECRET_OLD (comma-separated)\nare listed too."
    )]
    Kid,
}

#[derive(Subcommand)]
enum JwtCommand {
    /// Decode a JWT's header and claims WITHOUT verifying it; the signature is redacted.
    #[command(
        after_help = "Examples:\n  portcullis jwt inspect < token.txt        (keeps the token out of shell history)\n  portcullis jwt inspect eyJhbGciOi...\n\nWith PORTCULLIS_JWT_SECRET (and PORTCULLIS_JWT_SECRET_OLD) set, it also says whether the\ntoken's `kid` is the fingerprint of one of those secrets.\n\nThe output is unverified: never trust a claim because it is shown here."
    )]
    Inspect {
        /// The token; `-` or nothing: read it from stdin.
        token: Option<String>,
    },
}

/// A command failed: the message is for the operator and never holds a
/// secret, a URL or an email address.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader stopped (`| head`): nothing to say, nobody to say it to.
            return Self(String::new());
        }
        Self(format!("cannot write the output: {e}"))
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::warn(&format!("error: cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) if message.is_empty() => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            output::warn(&format!("error: {message}"));
            ExitCode::FAILURE
        }
    }
}
