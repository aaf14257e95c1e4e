//! The application's `users` table (seed 003's columns, plus the
//! operator's `disabled_at` and `scopes`), in the same database as the
//! Portcullis stores, on SQLite or PostgreSQL. Parameterised queries only.

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_cli::backends::Pool;
use portcullis_sqlx::sqlx;

/// The scopes a user has until an operator changes them.
pub const DEFAULT_SCOPES: [&str; 2] = ["workflows:read", "workflows:execute"];

/// A stored user.
#[derive(Clone)]
pub struct User {
    /// `usr_` + random hex: the JWT `sub` and API key owner.
    pub id: String,
    /// Canonical (trimmed, lowercased) email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// When an operator disabled the account (Unix milliseconds).
    pub disabled_at: Option<i64>,
    /// The scopes tokens are issued with.
    pub scopes: Vec<String>,
}

impl User {
    /// Whether an operator disabled the account.
    #[must_use]
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a users query failed.
#[derive(Debug)]
pub enum UserError {
    /// The email is already registered.
    EmailTaken,
    /// The database failed.
    Database,
}

const CREATE: &str = "CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    email TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT,
    updated_at BIGINT,
    disabled_at BIGINT,
    scopes TEXT
)";

/// Columns added after the first release, for tables created before them.
/// `scopes` NULL means [`DEFAULT_SCOPES`]; otherwise space-separated.
const ADDED: [(&str, &str); 2] = [("disabled_at", "BIGINT"), ("scopes", "TEXT")];

/// Creates the table if it does not exist, and adds the columns a table of
/// an older demo lacks.
///
/// # Errors
///
/// The database failed.
pub async fn migrate(pool: &Pool) -> Result<(), sqlx::Error> {
    match pool {
        Pool::Sqlite(p) => {
            sqlx::query(CREATE).execute(p).await?;
            for (column, kind) in ADDED {
                let present: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pragma_table_info('users') WHERE name = ?1",
                )
                .bind(column)
                .fetch_one(p)
                .await?;
                if present == 0 {
                    // Names from the constant above, never from input.
                    let alter = format!("ALTER TABLE users ADD COLUMN {column} {kind}");
                    let added = sqlx::query(sqlx::AssertSqlSafe(alter)).execute(p).await;
                    // Another process (server or admin command) may have
                    // added it meanwhile.
                    if let Err(err) = added
                        && !err.to_string().contains("duplicate column")
                    {
                        return Err(err);
                    }
                }
            }
            Ok(())
        }
        Pool::Postgres(p) => {
            sqlx::query(CREATE).execute(p).await?;
            for (column, kind) in ADDED {
                let alter = format!("ALTER TABLE users ADD COLUMN IF NOT EXISTS {column} {kind}");
                sqlx::query(sqlx::AssertSqlSafe(alter)).execute(p).await?;
            }
            Ok(())
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn map_insert(err: &sqlx::Error) -> UserError {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => UserError::EmailTaken,
        _ => UserError::Database,
    }
}

/// Inserts `user`.
///
/// # Errors
///
/// [`UserError::EmailTaken`] on a duplicate email.
pub async fn insert(pool: &Pool, user: &User) -> Result<(), UserError> {
    let now = now_ms();
    let result = match pool {
        Pool::Sqlite(p) => {
            sqlx::query(
                "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            )
            .bind(&user.id)
            .bind(&user.email)
            .bind(&user.name)
            .bind(&user.password_hash)
            .bind(now)
            .execute(p)
            .await
        }
        .map(drop),
        Pool::Postgres(p) => {
            sqlx::query(
                "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(&user.id)
            .bind(&user.email)
            .bind(&user.name)
            .bind(&user.password_hash)
            .bind(now)
            .execute(p)
            .await
        }
        .map(drop),
    };
    result.map_err(|e| map_insert(&e))
}

type Row = (String, String, String, String, Option<i64>, Option<String>);

const SELECT: &str = "SELECT id, email, name, password_hash, disabled_at, scopes FROM users";

fn from_row((id, email, name, password_hash, disabled_at, scopes): Row) -> User {
    User {
        id,
        email,
        name,
        password_hash,
        disabled_at,
        scopes: match scopes {
            Some(list) => list.split_whitespace().map(str::to_owned).collect(),
            None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        },
    }
}

async fn fetch(pool: &Pool, column: &str, value: &str) -> Result<Option<User>, UserError> {
    // `column` is one of ours ("email", "id"), never input.
    let row: Option<Row> = match pool {
        Pool::Sqlite(p) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE {column} = ?1")))
                .bind(value)
                .fetch_optional(p)
                .await
        }
        Pool::Postgres(p) => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE {column} = $1")))
                .bind(value)
                .fetch_optional(p)
                .await
        }
    }
    .map_err(|_| UserError::Database)?;
    Ok(row.map(from_row))
}

/// The user with canonical `email`, if any.
///
/// # Errors
///
/// The database failed.
pub async fn by_email(pool: &Pool, email: &str) -> Result<Option<User>, UserError> {
    fetch(pool, "email", email).await
}

/// The user with `id`, if any.
///
/// # Errors
///
/// The database failed.
pub async fn by_id(pool: &Pool, id: &str) -> Result<Option<User>, UserError> {
    fetch(pool, "id", id).await
}

/// Whether the user `id` exists and is disabled (a deleted user's tokens
/// are not this check's business: they are revoked when it is deleted).
///
/// # Errors
///
/// The database failed.
pub async fn is_disabled(pool: &Pool, id: &str) -> Result<bool, UserError> {
    let disabled: Option<Option<i64>> = match pool {
        Pool::Sqlite(p) => {
            sqlx::query_scalar("SELECT disabled_at FROM users WHERE id = ?1")
                .bind(id)
                .fetch_optional(p)
                .await
        }
        Pool::Postgres(p) => {
            sqlx::query_scalar("SELECT disabled_at FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await
        }
    }
    .map_err(|_| UserError::Database)?;
    Ok(matches!(disabled, Some(Some(_))))
}

/// A change an operator makes to a user.
#[derive(Debug, Clone)]
pub enum Change {
    /// Disables (`true`, now) or re-enables the account.
    Disabled(bool),
    /// Replaces the scopes.
    Scopes(Vec<String>),
    /// Replaces the password hash.
    PasswordHash(String),
}

/// Applies `change` to the user `id`; `false` when there is no such user.
///
/// # Errors
///
/// The database failed.
pub async fn update(pool: &Pool, id: &str, change: &Change) -> Result<bool, UserError> {
    let now = now_ms();
    let (column, text, number): (&str, Option<String>, Option<i64>) = match change {
        Change::Disabled(true) => ("disabled_at", None, Some(now)),
        Change::Disabled(false) => ("disabled_at", None, None),
        Change::Scopes(scopes) => ("scopes", Some(scopes.join(" ")), None),
        Change::PasswordHash(hash) => ("password_hash", Some(hash.clone()), None),
    };
    // `column` is one of the three above, never input.
    let result = match pool {
        Pool::Sqlite(p) => {
            let sql = format!("UPDATE users SET {column} = ?1, updated_at = ?2 WHERE id = ?3");
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let query = match text {
                Some(text) => query.bind(text),
                None => query.bind(number),
            };
            query
                .bind(now)
                .bind(id)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        }
        Pool::Postgres(p) => {
            let sql = format!("UPDATE users SET {column} = $1, updated_at = $2 WHERE id = $3");
            let query = sqlx::query(sqlx::AssertSqlSafe(sql));
            let query = match text {
                Some(text) => query.bind(text),
                None => query.bind(number),
            };
            query
                .bind(now)
                .bind(id)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        }
    };
    result.map(|n| n > 0).map_err(|_| UserError::Database)
}
