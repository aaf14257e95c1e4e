//! The commands: each opens what it needs, acts, and prints one result.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use ipnet::IpNet;
use portcullis::api_key::{ApiKeyError, ApiKeys, NewApiKey};
use portcullis::core::{
    ApiKeyFilter, ApiKeyInfo, AttemptKeyKind, AttemptPolicy, AttemptStore as _, AuditRecord,
    AuditSink as _, BoxApiKeyStore, BoxAttemptStore, EventKind, Lock, LockedKey,
    RevocationStore as _, StoreError,
};
use portcullis::jwt::issue::{DEFAULT_ACCESS_TTL, DEFAULT_FAMILY_LIFETIME};
use portcullis::lockout::{LockoutAdmin, LockoutLayer};
use portcullis_cli::backends::{Backends, DEFAULT_DATABASE_URL, DEFAULT_REDIS_PREFIX, Pool};
use serde_json::{Value, json};

use crate::duration::{format_duration, relative, rfc3339};
use crate::output::{Out, Table, sanitize, warn};
use crate::{
    AttemptsCommand, BlockAdd, BlocklistCommand, Cli, Command, Failure, Global, JwtCommand,
    KeysCommand, LockoutCommand, SecretCommand, TokenTarget, TokensCommand,
};

/// The refresh-token lifetime the server uses by default (7 days): every
/// token it issues is dead by then, so revocations need not outlive it.
const DEFAULT_REFRESH_LIFETIME: u64 = 604_800;

pub(crate) async fn run(cli: Cli) -> Result<(), Failure> {
    let out = Out::new(cli.global.json);
    match cli.command {
        // Offline commands: no state is opened (nor created).
        Command::Secret(SecretCommand::Generate { bytes }) => secret_generate(&out, bytes),
        Command::Secret(SecretCommand::Kid) => crate::jwt::secret_kid(&out),
        Command::Jwt(JwtCommand::Inspect { token }) => crate::jwt::inspect(&out, token),
        command => {
            let state = State::open(&cli.global).await?;
            match command {
                Command::Keys(cmd) => keys(&out, &state, cmd).await,
                Command::Tokens(TokensCommand::Revoke(target)) => {
                    tokens_revoke(&out, &state, target).await
                }
                Command::Lockout(cmd) => lockout(&out, &state, cmd).await,
                Command::Blocklist(cmd) => blocklist(&out, &state, cmd).await,
                Command::Attempts(AttemptsCommand::Top { window, limit }) => {
                    attempts_top(&out, &state, window, limit).await
                }
                Command::Cleanup => cleanup(&out, &state).await,
                Command::Secret(_) | Command::Jwt(_) => Ok(()),
            }
        }
    }
}

/// The opened backends and what the CLI derives from the server's settings.
struct State {
    backends: Backends,
    admin: LockoutAdmin<BoxAttemptStore>,
}

impl State {
    async fn open(global: &Global) -> Result<Self, Failure> {
        // Empty values count as unset, as in `Backends::from_env`.
        let non_empty = |v: &str, default: &'static str| {
            if v.trim().is_empty() {
                default.to_owned()
            } else {
                v.to_owned()
            }
        };
        let database = non_empty(&global.database_url, DEFAULT_DATABASE_URL);
        let prefix = non_empty(&global.redis_prefix, DEFAULT_REDIS_PREFIX);
        let redis = global.redis_url.as_deref().filter(|u| !u.trim().is_empty());
        let fresh = sqlite_path(&database).filter(|p| !std::path::Path::new(p).exists());
        let backends = Backends::open(&database, redis, &prefix)
            .await
            .map_err(|e| Failure(format!("cannot open the deployment's state: {e}")))?;
        if let Some(path) = fresh {
            warn(&format!(
                "warning: {} did not exist: a new, empty database was created. Is this the database the server uses (--database-url / PORTCULLIS_DATABASE_URL)?",
                sanitize(&path)
            ));
        }
        let layer = LockoutLayer::new(backends.attempts.clone())
            .with_block_list(backends.block_list.clone())
            .with_account_policy(account_policy()?)
            .map_err(|e| Failure(format!("invalid lockout settings: {e}")))?;
        let admin = layer.admin();
        Ok(Self { backends, admin })
    }

    fn api_keys(&self) -> Result<ApiKeys<BoxApiKeyStore>, Failure> {
        let keys = ApiKeys::new(self.backends.api_keys.clone());
        match std::env::var("PORTCULLIS_API_KEY_PEPPER") {
            Ok(pepper) if !pepper.is_empty() => keys
                .with_pepper(pepper.as_bytes())
                .map_err(|e| Failure(format!("PORTCULLIS_API_KEY_PEPPER: {e}"))),
            _ => Ok(keys),
        }
    }

    /// Records an operator action in the deployment's audit log; a failure
    /// is reported but does not undo the action.
    async fn audit(&self, record: AuditRecord) {
        if let Err(e) = self.backends.audit.write_batch(&[record]).await {
            warn(&format!(
                "warning: the action was done but could not be written to the audit log: {e}"
            ));
        }
    }
}

/// The file of a `sqlite://` URL (no query string), for noticing a typo
/// that would otherwise silently create an empty database.
fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// An audit record of an operator's action: `message` says what was done
/// (the event's default message describes a request decision instead).
fn operator_record(event: EventKind, now: SystemTime, message: &'static str) -> AuditRecord {
    let mut record = AuditRecord::new(event, now, trace_id());
    record.layer = Some("cli");
    record.message = message.into();
    record.detail = Some("operator action with the portcullis CLI".into());
    record
}

/// A fresh trace id for one CLI action (`cli-` and 16 hex digits).
fn trace_id() -> String {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return "cli".to_owned();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("cli-{hex}")
}

/// A user id for the audit log: emails are not written there.
fn audit_user(id: &str) -> Option<Arc<str>> {
    (!id.contains('@')).then(|| Arc::from(id))
}

fn env_secs(var: &'static str, default: u64) -> Result<u64, Failure> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Failure(format!("{var} must be a positive whole number"))),
        _ => Ok(default),
    }
}

/// The per-account policy the server runs with, from the same variables:
/// the window decides which failures `lockout status` counts.
fn account_policy() -> Result<AttemptPolicy, Failure> {
    let limit = env_secs("PORTCULLIS_LOCKOUT_MAX_ATTEMPTS", 5)?;
    let window = env_secs("PORTCULLIS_LOCKOUT_WINDOW_SECONDS", 300)?;
    let lock = env_secs("PORTCULLIS_LOCKOUT_DURATION_SECONDS", 1800)?;
    let limit = u32::try_from(limit)
        .map_err(|_| Failure::new("PORTCULLIS_LOCKOUT_MAX_ATTEMPTS is too large"))?;
    Ok(AttemptPolicy::new(
        limit,
        Duration::from_secs(window),
        Duration::from_secs(lock),
    ))
}

/// How long a family revocation must last: a family lives at most its
/// absolute lifetime from login (the server's default: 30 days, or the
/// refresh lifetime if longer), and its last access token the access
/// lifetime after that.
fn family_lifetime() -> Result<Duration, Failure> {
    let access = env_secs(
        "PORTCULLIS_TOKEN_LIFETIME_SECONDS",
        DEFAULT_ACCESS_TTL.as_secs(),
    )?;
    Ok(DEFAULT_FAMILY_LIFETIME.max(refresh_lifetime()?) + Duration::from_secs(access))
}

fn refresh_lifetime() -> Result<Duration, Failure> {
    env_secs(
        "PORTCULLIS_REFRESH_TOKEN_LIFETIME_SECONDS",
        DEFAULT_REFRESH_LIFETIME,
    )
    .map(Duration::from_secs)
}

fn store_failure(what: &str, e: &StoreError) -> Failure {
    Failure(format!("{what}: {e}"))
}

fn key_failure(e: &ApiKeyError) -> Failure {
    match e {
        ApiKeyError::Store(store) => store_failure("the API key store failed", store),
        other => Failure(other.to_string()),
    }
}

fn time_or(at: Option<SystemTime>, none: &str) -> String {
    at.map_or_else(|| none.to_owned(), rfc3339)
}

fn json_time(at: Option<SystemTime>) -> Value {
    at.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

// ---------------------------------------------------------------- keys

fn key_status(info: &ApiKeyInfo, now: SystemTime) -> &'static str {
    if info.is_revoked_at(now) {
        "revoked"
    } else if info.is_expired_at(now) {
        "expired"
    } else {
        "active"
    }
}

fn key_json(info: &ApiKeyInfo, now: SystemTime) -> Value {
    json!({
        "key_id": info.key_id,
        "owner": info.owner,
        "name": info.name,
        "scopes": info.scopes,
        "status": key_status(info, now),
        "created_at": json_time(Some(info.created_at)),
        "expires_at": json_time(info.expires_at),
        "revoked_at": json_time(info.revoked_at),
        "last_used_at": json_time(info.last_used_at),
    })
}

fn key_details(info: &ApiKeyInfo, now: SystemTime) -> String {
    let scopes = if info.scopes.is_empty() {
        "(none)".to_owned()
    } else {
        info.scopes.join(" ")
    };
    format!(
        "key id:   {}\nowner:    {}\nname:     {}\nscopes:   {}\nstatus:   {}\ncreated:  {}\nexpires:  {}\n",
        info.key_id,
        sanitize(&info.owner),
        sanitize(&info.name),
        sanitize(&scopes),
        key_status(info, now),
        rfc3339(info.created_at),
        time_or(info.expires_at, "never"),
    )
}

/// The only copy of a new key could not be written: say how to clean up.
fn lost_key(key_id: &str, e: &std::io::Error) -> Failure {
    Failure(format!(
        "the key {} was created but could not be printed ({e}); revoke it with `portcullis keys revoke {}` and create another",
        sanitize(key_id),
        sanitize(key_id)
    ))
}

/// A key id from an id or a full key (a leaked key is often all the
/// operator has); the key itself is never printed.
fn key_id_of(keys: &ApiKeys<BoxApiKeyStore>, arg: &str) -> String {
    keys.identify(arg.trim())
        .map_or_else(|_| arg.trim().to_owned(), str::to_owned)
}

async fn keys(out: &Out, state: &State, cmd: KeysCommand) -> Result<(), Failure> {
    let keys = state.api_keys()?;
    let now = SystemTime::now();
    match cmd {
        KeysCommand::Create {
            owner,
            name,
            scopes,
            expires_in,
        } => {
            let mut new = NewApiKey::new(owner, name).with_scopes(scopes);
            if let Some(after) = expires_in {
                new = new.expires_in(after);
            }
            let created = keys.create(new).await.map_err(|e| key_failure(&e))?;
            let info = created.info();
            let mut record = operator_record(
                EventKind::ApiKeyCreated,
                now,
                "API key created by an operator",
            );
            record.user_id = audit_user(&info.owner);
            state.audit(record).await;
            let mut doc = key_json(info, now);
            doc["key"] = Value::String(created.key().to_owned());
            let text = format!(
                "{}\nkey:      {}\n\nThe key is shown only this once: store it now.\n",
                key_details(info, now),
                created.key()
            );
            out.emit(&text, &doc)
                .map_err(|e| lost_key(&info.key_id, &e))?;
        }
        KeysCommand::List {
            owner,
            include_inactive,
            limit,
        } => {
            let mut filter = ApiKeyFilter::active();
            if let Some(owner) = owner {
                filter = filter.owner(owner);
            }
            if include_inactive {
                filter = filter.include_inactive();
            }
            if let Some(limit) = limit {
                filter = filter.limit(limit);
            }
            let list = keys.list(&filter).await.map_err(|e| key_failure(&e))?;
            let mut table = Table::new(&[
                "KEY ID",
                "OWNER",
                "NAME",
                "SCOPES",
                "STATUS",
                "CREATED",
                "EXPIRES",
                "LAST USED",
            ]);
            for info in &list {
                table.row(vec![
                    info.key_id.clone(),
                    info.owner.clone(),
                    info.name.clone(),
                    info.scopes.join(","),
                    key_status(info, now).to_owned(),
                    rfc3339(info.created_at),
                    time_or(info.expires_at, "never"),
                    time_or(info.last_used_at, "never"),
                ]);
            }
            let text = if table.is_empty() {
                "No API keys.\n".to_owned()
            } else {
                table.render()
            };
            let doc = Value::Array(list.iter().map(|i| key_json(i, now)).collect());
            out.emit(&text, &doc)?;
        }
        KeysCommand::Revoke { key } => {
            let id = key_id_of(&keys, &key);
            let info = keys.revoke(&id).await.map_err(|e| key_failure(&e))?;
            // The state as of after the change: the store stamped it after `now`.
            let now = SystemTime::now();
            let mut record = operator_record(
                EventKind::ApiKeyRevoked,
                now,
                "API key revoked by an operator",
            );
            record.user_id = audit_user(&info.owner);
            state.audit(record).await;
            let text = format!(
                "Revoked. Servers refuse it at once or within their key cache TTL (5 s by default).\n{}revoked:  {}\n",
                key_details(&info, now),
                time_or(info.revoked_at, "-"),
            );
            out.emit(&text, &key_json(&info, now))?;
        }
        KeysCommand::Rotate { key, grace } => {
            let id = key_id_of(&keys, &key);
            let rotated = keys.rotate(&id, grace).await.map_err(|e| key_failure(&e))?;
            let now = SystemTime::now();
            let new = rotated.created.info();
            let mut record = operator_record(
                EventKind::ApiKeyCreated,
                now,
                "API key rotated by an operator (new key created)",
            );
            record.user_id = audit_user(&new.owner);
            state.audit(record).await;
            let doc = json!({
                "new": {
                    "key": rotated.created.key(),
                    "key_id": new.key_id,
                    "owner": new.owner,
                    "name": new.name,
                    "scopes": new.scopes,
                    "created_at": json_time(Some(new.created_at)),
                    "expires_at": json_time(new.expires_at),
                },
                "previous": key_json(&rotated.previous, now),
            });
            let text = format!(
                "New key:\n{}key:      {}\n\nThe key is shown only this once: store it now.\n\nThe old key {} stops working at {} ({}).\n",
                key_details(new, now),
                rotated.created.key(),
                rotated.previous.key_id,
                time_or(rotated.previous.expires_at, "-"),
                rotated
                    .previous
                    .expires_at
                    .map_or_else(|| "-".to_owned(), |t| relative(t, now)),
            );
            out.emit(&text, &doc)
                .map_err(|e| lost_key(&new.key_id, &e))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- tokens

/// The user id behind `--user`: an email is looked up in the server's
/// `users` table (exactly, then case-insensitively); anything else is an id.
async fn resolve_user(state: &State, user: &str) -> Result<String, Failure> {
    let user = user.trim();
    if user.is_empty() {
        return Err(Failure::new("--user is empty"));
    }
    if !user.contains('@') {
        return Ok(user.to_owned());
    }
    let found: Result<Option<String>, _> = match state.backends.database.any_pool() {
        Pool::Sqlite(pool) => portcullis_sqlx::sqlx::query_scalar(
            "SELECT id FROM users WHERE email = ?1 OR lower(email) = lower(?1) ORDER BY email = ?1 DESC LIMIT 1",
        )
        .bind(user)
        .fetch_optional(&pool)
        .await,
        Pool::Postgres(pool) => portcullis_sqlx::sqlx::query_scalar(
            "SELECT id FROM users WHERE email = $1 OR lower(email) = lower($1) ORDER BY email = $1 DESC LIMIT 1",
        )
        .bind(user)
        .fetch_optional(&pool)
        .await,
    };
    match found {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Err(Failure::new(
            "no user has this email address (pass the user id instead if the user was deleted)",
        )),
        Err(e) => Err(Failure(format!(
            "cannot look up the email in the users table (does the server use this database?): {}",
            sql_error_kind(&e)
        ))),
    }
}

/// A description of a SQL error that cannot contain the query's values.
fn sql_error_kind(e: &portcullis_sqlx::sqlx::Error) -> String {
    match e {
        portcullis_sqlx::sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

async fn tokens_revoke(out: &Out, state: &State, target: TokenTarget) -> Result<(), Failure> {
    let now = SystemTime::now();
    let retain = now + refresh_lifetime()?;
    let revocations = &state.backends.revocations;
    if let Some(user) = target.user {
        let id = resolve_user(state, &user).await?;
        revocations
            .revoke_subject(&id, now, retain)
            .await
            .map_err(|e| store_failure("the revocation store failed", &e))?;
        let mut record = operator_record(
            EventKind::TokenRevoked,
            now,
            "Every token of the user revoked by an operator",
        );
        record.user_id = audit_user(&id);
        state.audit(record).await;
        let text = format!(
            "Revoked every token issued to user {} until now ({}); the user must log in again.\n",
            sanitize(&id),
            rfc3339(now)
        );
        let doc = json!({
            "revoked": "subject",
            "user_id": id,
            "issued_before": rfc3339(now),
            "retained_until": rfc3339(retain),
        });
        out.emit(&text, &doc)?;
    } else {
        let jti = match target.jti.as_deref().map(str::trim) {
            Some("") => return Err(Failure::new("--jti is empty")),
            other => other,
        };
        let family = match target.family.as_deref().map(str::trim) {
            Some("") => return Err(Failure::new("--family is empty")),
            other => other,
        };
        let mut doc = json!({ "revoked": if family.is_some() { "family" } else { "token" } });
        let mut text = String::new();
        if let Some(jti) = jti {
            let newly = revocations
                .revoke_token(jti, retain)
                .await
                .map_err(|e| store_failure("the revocation store failed", &e))?;
            state
                .audit(operator_record(
                    EventKind::TokenRevoked,
                    now,
                    "Token revoked by an operator",
                ))
                .await;
            text.push_str(if newly {
                "Revoked the token.\n"
            } else {
                "The token was already revoked.\n"
            });
            if family.is_none() {
                text.push_str("Its session's refresh token still works: add --family <fam> (`jwt inspect` shows `fam`) to end the session.\n");
            }
            doc["jti"] = json!(jti);
            doc["already_revoked"] = json!(!newly);
            doc["retained_until"] = json!(rfc3339(retain));
        }
        if let Some(family) = family {
            let family_retain = now + family_lifetime()?;
            revocations
                .revoke_family(family, family_retain)
                .await
                .map_err(|e| store_failure("the revocation store failed", &e))?;
            state
                .audit(operator_record(
                    EventKind::TokenRevoked,
                    now,
                    "Refresh family (a session's tokens) revoked by an operator",
                ))
                .await;
            text.push_str("Revoked the refresh family: the session's refresh token and every access token issued in it are refused; the user must log in again.\n");
            doc["family"] = json!(family);
            doc["family_retained_until"] = json!(rfc3339(family_retain));
        }
        out.emit(&text, &doc)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- lockout

fn lock_json(lock: Lock, now: SystemTime) -> Value {
    match lock {
        Lock::Until(until) => json!({
            "until": rfc3339(until),
            "until_unlocked": false,
            "remaining_seconds": until.duration_since(now).map_or(0, |d| d.as_secs()),
        }),
        Lock::UntilUnlocked => json!({
            "until": Value::Null,
            "until_unlocked": true,
            "remaining_seconds": Value::Null,
        }),
    }
}

fn lock_cells(lock: Lock, now: SystemTime) -> (String, String) {
    match lock {
        Lock::Until(until) => (rfc3339(until), relative(until, now)),
        Lock::UntilUnlocked => ("until unlocked".to_owned(), "-".to_owned()),
    }
}

async fn lockout(out: &Out, state: &State, cmd: LockoutCommand) -> Result<(), Failure> {
    let admin = &state.admin;
    let failed = |e: StoreError| store_failure("the attempt store failed", &e);
    let now = SystemTime::now();
    match cmd {
        LockoutCommand::List { limit } => {
            let accounts = admin.locked_accounts(limit).await.map_err(failed)?;
            let pairs = admin.locked_pairs(limit).await.map_err(failed)?;
            let ips = admin.locked_ips(limit).await.map_err(failed)?;
            let mut table = Table::new(&["KIND", "KEY", "LOCKED UNTIL", "ENDS"]);
            let mut add = |kind: &str, locked: &[LockedKey]| {
                for l in locked {
                    let key = match (l.key.account(), l.key.ip()) {
                        (Some(account), Some(ip)) => format!("{account} from {ip}"),
                        (Some(account), None) => account.to_owned(),
                        (None, Some(ip)) => ip.to_string(),
                        (None, None) => String::new(),
                    };
                    let (until, ends) = lock_cells(l.lock, now);
                    table.row(vec![kind.to_owned(), key, until, ends]);
                }
            };
            add("account", &accounts);
            add("account+ip", &pairs);
            add("ip", &ips);
            let text = if table.is_empty() {
                "Nothing is locked.\n".to_owned()
            } else {
                table.render()
            };
            let doc = json!({
                "accounts": accounts.iter().map(|l| {
                    let mut v = lock_json(l.lock, now);
                    v["account"] = json!(l.key.account());
                    v
                }).collect::<Vec<_>>(),
                "account_ips": pairs.iter().map(|l| {
                    let mut v = lock_json(l.lock, now);
                    v["account"] = json!(l.key.account());
                    v["ip"] = json!(l.key.ip().map(|ip| ip.to_string()));
                    v
                }).collect::<Vec<_>>(),
                "ips": ips.iter().map(|l| {
                    let mut v = lock_json(l.lock, now);
                    v["ip"] = json!(l.key.ip().map(|ip| ip.to_string()));
                    v
                }).collect::<Vec<_>>(),
            });
            out.emit(&text, &doc)?;
        }
        LockoutCommand::Status { account } => {
            let status = admin.account_status(&account).await.map_err(failed)?;
            let pairs = admin.account_pairs(&account).await.map_err(failed)?;
            let window = account_policy()?.window;
            let active = |lock: Option<Lock>| lock.filter(|l| l.is_active(now));
            let lock_text = |lock: Option<Lock>| {
                lock.map_or_else(
                    || "not locked".to_owned(),
                    |l| {
                        let (until, ends) = lock_cells(l, now);
                        format!("locked {until} ({ends})")
                    },
                )
            };
            let mut text = match &status {
                None => "Nothing recorded for the account itself: not locked.\n".to_owned(),
                Some(s) => format!(
                    "state:        {}\nfailures:     {} in the last {}\nconsecutive:  {}\nlocks so far: {}\nin flight:    {}\n",
                    lock_text(active(s.lock)),
                    s.failures,
                    format_duration(window),
                    s.consecutive,
                    s.locks,
                    s.in_flight
                ),
            };
            let locked_pairs = pairs
                .iter()
                .filter(|p| active(p.status.lock).is_some())
                .count();
            if !pairs.is_empty() {
                let mut table = Table::new(&["FROM", "STATE", "FAILURES", "LOCKS"]);
                for p in &pairs {
                    table.row(vec![
                        p.ip.to_string(),
                        lock_text(active(p.status.lock)),
                        p.status.failures.to_string(),
                        p.status.locks.to_string(),
                    ]);
                }
                text.push_str(&format!(
                    "\nFrom single addresses ({locked_pairs} locked; `lockout unlock` lifts them too):\n{}",
                    table.render()
                ));
            }
            let pairs_json: Vec<Value> = pairs
                .iter()
                .map(|p| {
                    let lock = active(p.status.lock);
                    json!({
                        "ip": p.ip.to_string(),
                        "locked": lock.is_some(),
                        "lock": lock.map(|l| lock_json(l, now)),
                        "failures": p.status.failures,
                        "consecutive": p.status.consecutive,
                        "locks": p.status.locks,
                    })
                })
                .collect();
            let doc = match &status {
                None => json!({
                    "recorded": false, "locked": locked_pairs > 0, "failures": 0,
                    "consecutive": 0, "locks": 0, "lock": Value::Null,
                    "window_seconds": window.as_secs(),
                    "from_addresses": pairs_json,
                }),
                Some(s) => {
                    let lock = active(s.lock);
                    json!({
                        "recorded": true,
                        "locked": lock.is_some() || locked_pairs > 0,
                        "failures": s.failures,
                        "consecutive": s.consecutive,
                        "locks": s.locks,
                        "in_flight": s.in_flight,
                        "lock": lock.map(|l| lock_json(l, now)),
                        "window_seconds": window.as_secs(),
                        "from_addresses": pairs_json,
                    })
                }
            };
            out.emit(&text, &doc)?;
        }
        LockoutCommand::Unlock { account } => {
            let (unlocked, event) = admin.unlock_report(&account).await.map_err(failed)?;
            if let Some(event) = &event {
                let mut record = operator_record(
                    EventKind::AccountUnlocked,
                    now,
                    "Account unlocked by an operator",
                );
                record.user_id = event.identifier().and_then(audit_user);
                record.count = event.count();
                state.audit(record).await;
            }
            let text = match (unlocked.own, unlocked.pairs) {
                (false, 0) => {
                    "The account was not locked (its failures, if any, are forgotten).\n".to_owned()
                }
                (true, 0) => "Unlocked; its failures are forgotten.\n".to_owned(),
                (own, n) => format!(
                    "Unlocked{} and from {n} address{}; its failures are forgotten.\n",
                    if own {
                        ""
                    } else {
                        " (the account itself was not locked)"
                    },
                    if n == 1 { "" } else { "es" },
                ),
            };
            out.emit(
                &text,
                &json!({
                    "unlocked": unlocked.any(),
                    "account_lock": unlocked.own,
                    "address_locks": unlocked.pairs,
                }),
            )?;
        }
        LockoutCommand::UnlockIp { ip } => {
            let unlocked = admin.unlock_ip_report(ip).await.map_err(failed)?;
            if unlocked.any() {
                let mut record = operator_record(
                    EventKind::AccountUnlocked,
                    now,
                    "Address unlocked by an operator",
                );
                record.ip_address = Some(ip);
                record.count = u32::try_from(unlocked.pairs + usize::from(unlocked.own)).ok();
                state.audit(record).await;
            }
            let text = match (unlocked.own, unlocked.pairs) {
                (false, 0) => {
                    "The address was not locked (the block list is `portcullis blocklist`).\n"
                        .to_owned()
                }
                (true, 0) => "Unlocked the address.\n".to_owned(),
                (true, n) => format!(
                    "Unlocked the address and {n} account{} locked from it.\n",
                    if n == 1 { "" } else { "s" }
                ),
                (false, n) => format!(
                    "Unlocked {n} account{} locked from this address (the address itself was not locked).\n",
                    if n == 1 { "" } else { "s" }
                ),
            };
            out.emit(
                &text,
                &json!({
                    "unlocked": unlocked.any(),
                    "ip": ip.to_string(),
                    "address_lock": unlocked.own,
                    "account_locks": unlocked.pairs,
                }),
            )?;
        }
        LockoutCommand::Lock { account, duration } => {
            if duration.is_some_and(|d| d.is_zero()) {
                return Err(Failure::new("--duration must be longer than zero"));
            }
            let event = admin.lock(&account, duration).await.map_err(failed)?;
            let Some(event) = event else {
                return Err(Failure::new("the account is empty once canonicalised"));
            };
            let mut record = operator_record(
                EventKind::AccountLocked,
                now,
                "Account locked by an operator",
            );
            record.user_id = event.identifier().and_then(audit_user);
            record.until = event.until();
            state.audit(record).await;
            let lock = duration.map_or(Lock::UntilUnlocked, |d| Lock::Until(now + d));
            let (until, ends) = lock_cells(lock, now);
            let text = format!("Locked {until} ({ends}).\n");
            out.emit(
                &text,
                &json!({ "locked": true, "lock": lock_json(lock, now) }),
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- blocklist

fn parse_network(text: &str) -> Result<IpNet, Failure> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    let net = text.parse::<IpNet>().map_err(|_| {
        Failure::new("not an IP address or network (e.g. 203.0.113.7 or 203.0.113.0/24)")
    })?;
    if net.trunc() != net {
        warn(&format!(
            "note: {net} has host bits set; using {}",
            net.trunc()
        ));
    }
    Ok(net.trunc())
}

async fn blocklist(out: &Out, state: &State, cmd: BlocklistCommand) -> Result<(), Failure> {
    let admin = &state.admin;
    let failed = |e: StoreError| store_failure("the block list failed", &e);
    let now = SystemTime::now();
    match cmd {
        BlocklistCommand::Add(BlockAdd {
            network,
            duration,
            permanent: _,
            reason,
        }) => {
            let net = parse_network(&network)?;
            if duration.is_some_and(|d| d.is_zero()) {
                return Err(Failure::new("--duration must be longer than zero"));
            }
            if reason.trim().is_empty() {
                return Err(Failure::new(
                    "--reason is empty: say why, for the next operator",
                ));
            }
            admin
                .block(net, duration, reason.trim())
                .await
                .map_err(failed)?;
            let until = duration.map(|d| now + d);
            let mut record = operator_record(
                EventKind::IpBlocked,
                now,
                "IP address or network added to the block list by an operator",
            );
            record.ip_address = Some(net.addr());
            record.until = until;
            state.audit(record).await;
            let text = format!(
                "Blocked {net} {}.\n",
                until.map_or_else(
                    || "until removed".to_owned(),
                    |t| format!("until {} ({})", rfc3339(t), relative(t, now))
                )
            );
            let doc = json!({ "network": net.to_string(), "until": json_time(until), "reason": reason.trim() });
            out.emit(&text, &doc)?;
        }
        BlocklistCommand::Remove { network } => {
            let net = parse_network(&network)?;
            let removed = admin.unblock(net).await.map_err(failed)?;
            let Some(entry) = removed else {
                return Err(Failure::new(
                    "no block list entry for this network (see `portcullis blocklist list`)",
                ));
            };
            let text = format!("Removed {}.\n", entry.network);
            out.emit(&text, &json!({ "removed": entry.network.to_string() }))?;
        }
        BlocklistCommand::List => {
            let entries = admin.blocked().await.map_err(failed)?;
            let mut table = Table::new(&["NETWORK", "UNTIL", "ENDS", "ADDED", "REASON"]);
            for e in &entries {
                table.row(vec![
                    e.network.to_string(),
                    time_or(e.until, "until removed"),
                    e.until.map_or_else(|| "-".to_owned(), |t| relative(t, now)),
                    rfc3339(e.created_at),
                    e.reason.clone(),
                ]);
            }
            let text = if table.is_empty() {
                "The block list is empty.\n".to_owned()
            } else {
                table.render()
            };
            let doc = Value::Array(
                entries
                    .iter()
                    .map(|e| {
                        json!({
                            "network": e.network.to_string(),
                            "until": json_time(e.until),
                            "created_at": json_time(Some(e.created_at)),
                            "reason": e.reason,
                        })
                    })
                    .collect(),
            );
            out.emit(&text, &doc)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- attempts

async fn attempts_top(
    out: &Out,
    state: &State,
    window: Duration,
    limit: usize,
) -> Result<(), Failure> {
    if window.is_zero() {
        return Err(Failure::new("--window must be longer than zero"));
    }
    let now = SystemTime::now();
    let store = &state.backends.attempts;
    let failed = |e: StoreError| store_failure("the attempt store failed", &e);
    let accounts = store
        .hottest(AttemptKeyKind::Account, window, now, limit)
        .await
        .map_err(failed)?;
    let ips = store
        .hottest(AttemptKeyKind::Ip, window, now, limit)
        .await
        .map_err(failed)?;
    let mut table = Table::new(&["KIND", "KEY", "FAILURES"]);
    for (key, n) in &accounts {
        table.row(vec![
            "account".to_owned(),
            key.account().unwrap_or_default().to_owned(),
            n.to_string(),
        ]);
    }
    for (key, n) in &ips {
        table.row(vec![
            "ip".to_owned(),
            key.ip().map(|ip| ip.to_string()).unwrap_or_default(),
            n.to_string(),
        ]);
    }
    let text = if table.is_empty() {
        format!("No failures in the last {}.\n", format_duration(window))
    } else {
        format!(
            "Failures in the last {}:\n{}",
            format_duration(window),
            table.render()
        )
    };
    let doc = json!({
        "window_seconds": window.as_secs(),
        "accounts": accounts.iter().map(|(k, n)| json!({ "account": k.account(), "failures": n })).collect::<Vec<_>>(),
        "ips": ips.iter().map(|(k, n)| json!({ "ip": k.ip().map(|ip| ip.to_string()), "failures": n })).collect::<Vec<_>>(),
    });
    out.emit(&text, &doc)?;
    Ok(())
}

// ---------------------------------------------------------------- cleanup

async fn cleanup(out: &Out, state: &State) -> Result<(), Failure> {
    let report = state
        .backends
        .database
        .cleanup(SystemTime::now())
        .await
        .map_err(|e| store_failure("cleanup failed", &e))?;
    let mut table = Table::new(&["TABLE", "DELETED"]);
    let rows = [
        ("revoked_tokens", report.revocations),
        ("login_attempts", report.login_attempts),
        ("csrf_tokens", report.csrf_tokens),
        ("login_attempt_state", report.attempt_states),
        ("ip_blocks", report.block_entries),
    ];
    for (name, n) in rows {
        table.row(vec![name.to_owned(), n.to_string()]);
    }
    let mut text = table.render();
    text.push_str(&format!("total: {} rows\n", report.total()));
    if state.backends.redis.is_some() {
        text.push_str("(Redis keys expire on their own: nothing to clean there.)\n");
    }
    let doc = json!({
        "revoked_tokens": report.revocations,
        "login_attempts": report.login_attempts,
        "csrf_tokens": report.csrf_tokens,
        "login_attempt_state": report.attempt_states,
        "ip_blocks": report.block_entries,
        "total": report.total(),
    });
    out.emit(&text, &doc)?;
    Ok(())
}

// ---------------------------------------------------------------- secret

fn secret_generate(out: &Out, bytes: u16) -> Result<(), Failure> {
    let mut buf = vec![0u8; usize::from(bytes)];
    aws_lc_rs::rand::fill(&mut buf)
        .map_err(|_| Failure::new("the operating system's random number generator failed"))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf);
    let text = format!("{secret}\n");
    out.emit(
        &text,
        &json!({ "secret": secret, "bytes": bytes, "encoding": "base64url" }),
    )?;
    Ok(())
}
