//! `portcullis-demo users …`: the operator's account actions on the
//! application's own data (the `users` table), on the same database and
//! revocation store as the running server — disable and re-enable an
//! account, force a password reset, grant and revoke scopes.
//!
//! What takes effect when:
//!
//! - `disable`: at once. Login answers `401 user_disabled` (only to the
//!   right password: a wrong one stays `invalid_credentials`); every token
//!   of the user is revoked through the revocation store, and the server
//!   answers `401 user_disabled` to them and to the user's API keys (after
//!   the JWT layer's 2-second revocation cache at most).
//! - `enable`: at the next login. Tokens revoked by `disable` stay revoked.
//! - `reset-password`: at once. The old password stops working, every
//!   token is revoked; the new password is read from stdin or generated and
//!   printed once.
//! - `grant` and `revoke` (scopes): at once for the user's sessions (the
//!   server reads the account's scopes on every request; new tokens carry
//!   them in `scope`). An API key keeps the scopes it was created with,
//!   narrowed to its owner's current ones: a revoke applies to it at once,
//!   a grant never widens it (create a new key).

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis::core::{AuditRecord, AuditSink as _, EventKind};
use portcullis_cli::backends::Backends;
use serde_json::{Value, json};

use crate::users::{self, Change, User};
use crate::{Config, StartError};

/// Longest scope name accepted.
const MAX_SCOPE: usize = 64;
/// Most scopes an account may hold.
const MAX_SCOPES: usize = 32;

/// One account action.
#[derive(Debug, Clone)]
pub enum Action {
    /// Shows the account.
    Show,
    /// Disables the account and revokes its tokens.
    Disable,
    /// Re-enables the account.
    Enable,
    /// Replaces the password (given, or generated when `None`) and revokes
    /// every token.
    ResetPassword(Option<String>),
    /// Adds scopes.
    Grant(Vec<String>),
    /// Removes scopes.
    Revoke(Vec<String>),
}

/// A failed action: a message for the operator (never a secret).
#[derive(Debug)]
pub struct AdminError(pub String);

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AdminError {}

fn fail(message: impl Into<String>) -> StartError {
    Box::new(AdminError(message.into()))
}

/// What an action did, for the human line and `--json`.
#[derive(Debug)]
pub struct Report {
    /// The account after the action.
    pub user: User,
    /// What was done, one sentence.
    pub done: String,
    /// Whether every token of the user was revoked.
    pub tokens_revoked: bool,
    /// A generated password, shown once.
    pub temporary_password: Option<String>,
}

impl Report {
    /// The `--json` object.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "id": self.user.id,
            "email": self.user.email,
            "disabled": self.user.is_disabled(),
            "disabled_at": self.user.disabled_at.map(|ms| ms / 1000),
            "scopes": self.user.scopes,
            "tokens_revoked": self.tokens_revoked,
            "result": self.done,
        });
        if let Some(password) = &self.temporary_password {
            out["temporary_password"] = json!(password);
        }
        out
    }

    /// The human-readable lines.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}\nuser      {}\nemail     {}\nstatus    {}\nscopes    {}\n",
            self.done,
            self.user.id,
            self.user.email,
            if self.user.is_disabled() {
                "disabled"
            } else {
                "enabled"
            },
            self.user.scopes.join(" "),
        );
        if self.tokens_revoked {
            out.push_str("tokens    all revoked (refused within 2 s)\n");
        }
        if let Some(password) = &self.temporary_password {
            out.push_str(&format!(
                "temporary password (shown once, give it to the user over a trusted channel):\n{password}\n"
            ));
        }
        out
    }
}

fn check_scopes(scopes: &[String]) -> Result<(), StartError> {
    if scopes.is_empty() {
        return Err(fail("name at least one scope"));
    }
    for scope in scopes {
        if scope.is_empty()
            || scope.len() > MAX_SCOPE
            || !scope
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        {
            return Err(fail(format!(
                "{scope:?} is not a scope name (1 to {MAX_SCOPE} printable ASCII characters, no spaces or quotes)"
            )));
        }
    }
    Ok(())
}

/// Runs `action` on the account with `email` (or user id `usr_…`).
///
/// # Errors
///
/// No such account, an invalid scope or password, or a store failure.
pub async fn run(
    backends: &Backends,
    config: &Config,
    who: &str,
    action: Action,
) -> Result<Report, StartError> {
    let pool = backends.database.any_pool();
    users::migrate(&pool)
        .await
        .map_err(|_| fail("cannot read the users table (is this the server's database?)"))?;
    let who = who.trim();
    let found = if who.contains('@') {
        users::by_email(&pool, &who.to_lowercase()).await
    } else {
        users::by_id(&pool, who).await
    };
    let user = found
        .map_err(|_| fail("the database failed"))?
        .ok_or_else(|| fail("no account has this email or id"))?;
    let mut tokens_revoked = false;
    let mut temporary_password = None;
    let done = match action {
        Action::Show => "account".to_owned(),
        Action::Disable => {
            apply(&pool, &user, &Change::Disabled(true)).await?;
            revoke(
                backends,
                config,
                &user.id,
                "Every token revoked: account disabled",
            )
            .await?;
            tokens_revoked = true;
            "disabled: login and every token of the account are refused (user_disabled)".to_owned()
        }
        Action::Enable => {
            apply(&pool, &user, &Change::Disabled(false)).await?;
            "enabled: the user may log in again (tokens revoked earlier stay revoked)".to_owned()
        }
        Action::ResetPassword(given) => {
            let password = match given {
                Some(p) => p,
                None => {
                    let generated = crate::generate_secret()?;
                    temporary_password = Some(generated.clone());
                    generated
                }
            };
            let length = password.chars().count();
            if length < 8 || password.len() > 1024 {
                return Err(fail(
                    "the password must be 8 characters to 1024 bytes (as at signup)",
                ));
            }
            let hash = crate::blocking(move || crate::password::hash(&password))
                .await
                .flatten()
                .ok_or_else(|| fail("cannot hash the password"))?;
            apply(&pool, &user, &Change::PasswordHash(hash)).await?;
            revoke(
                backends,
                config,
                &user.id,
                "Every token revoked: password reset",
            )
            .await?;
            tokens_revoked = true;
            "password reset: the old password no longer logs in, every token is revoked".to_owned()
        }
        Action::Grant(scopes) => {
            check_scopes(&scopes)?;
            let mut next = user.scopes.clone();
            for scope in scopes {
                if !next.contains(&scope) {
                    next.push(scope);
                }
            }
            if next.len() > MAX_SCOPES {
                return Err(fail(format!(
                    "an account holds at most {MAX_SCOPES} scopes"
                )));
            }
            apply(&pool, &user, &Change::Scopes(next)).await?;
            "granted: for the user's sessions at once (API keys keep the scopes they were created with)"
                .to_owned()
        }
        Action::Revoke(scopes) => {
            check_scopes(&scopes)?;
            let next: Vec<String> = user
                .scopes
                .iter()
                .filter(|s| !scopes.contains(s))
                .cloned()
                .collect();
            apply(&pool, &user, &Change::Scopes(next)).await?;
            "revoked: refused at once for every session and API key of the account".to_owned()
        }
    };
    let user = users::by_id(&pool, &user.id)
        .await
        .map_err(|_| fail("the database failed"))?
        .ok_or_else(|| fail("the account disappeared"))?;
    Ok(Report {
        user,
        done,
        tokens_revoked,
        temporary_password,
    })
}

async fn apply(
    pool: &portcullis_cli::backends::Pool,
    user: &User,
    change: &Change,
) -> Result<(), StartError> {
    match users::update(pool, &user.id, change).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(fail("the account disappeared")),
        Err(_) => Err(fail("the database failed")),
    }
}

/// Revokes every token of `id` and records it in the audit log.
async fn revoke(
    backends: &Backends,
    config: &Config,
    id: &str,
    message: &'static str,
) -> Result<(), StartError> {
    crate::revoke_all_tokens(backends, config, id)
        .await
        .map_err(|_| fail("the revocation store failed (nothing was revoked)"))?;
    let now = SystemTime::now();
    let trace = format!(
        "admin-{}",
        now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
    );
    let mut record = AuditRecord::new(EventKind::TokenRevoked, now, trace);
    record.user_id = Some(id.into());
    record.layer = Some("admin");
    record.message = message.into();
    record.detail = Some("operator action with portcullis-demo users".into());
    // The revocation happened: say so if its audit row was lost.
    if backends.audit.write_batch(&[record]).await.is_err() {
        return Err(fail(
            "tokens revoked, but the audit event could not be written",
        ));
    }
    Ok(())
}
