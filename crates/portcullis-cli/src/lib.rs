//! The Portcullis operator CLI.
//!
//! The binary, `portcullis`, manages a deployment's state: API keys
//! (`keys create|list|revoke|rotate`), token revocation (`tokens revoke
//! --user|--jti`), lockouts (`lockout list|status|unlock`), the IP block
//! list (`blocklist add|remove|list`), failed-attempt hot spots (`attempts
//! top`), cleanup (`cleanup`), secrets (`secret generate`) and unverified
//! JWT inspection (`jwt inspect`). Run `portcullis --help`; the reference
//! is `docs/cli.md` in the repository.
//!
//! As a library the crate offers what the CLI shares with the reference
//! server, so that the CLI acts on what a running server sees: how a
//! deployment's state is opened ([`backends`]), and what is derived from
//! the JWT signing secret ([`secret`]: the `kid` a server signs with,
//! [`secret::key_id`]).
//!
//! ```no_run
//! use portcullis_cli::backends::Backends;
//!
//! # async fn run() -> Result<(), portcullis_cli::backends::BackendError> {
//! // PORTCULLIS_DATABASE_URL, PORTCULLIS_REDIS_URL, PORTCULLIS_REDIS_PREFIX
//! let backends = Backends::from_env().await?;
//! assert!(backends.database.ping().await);
//! # Ok(())
//! # }
//! ```

pub mod backends;
pub mod secret;
