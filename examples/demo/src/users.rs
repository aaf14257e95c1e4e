//! The application's `users` table (seed 003's columns), in the same
//! database as the Portcullis stores, on SQLite or PostgreSQL.
//! Parameterised queries only.

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_cli::backends::Pool;
use portcullis_sqlx::sqlx;

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
    updated_at BIGINT
)";

/// Creates the table if it does not exist.
///
/// # Errors
///
/// The database failed.
pub async fn migrate(pool: &Pool) -> Result<(), sqlx::Error> {
    match pool {
        Pool::Sqlite(p) => sqlx::query(CREATE).execute(p).await.map(drop),
        Pool::Postgres(p) => sqlx::query(CREATE).execute(p).await.map(drop),
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

/// The user with canonical `email`, if any.
///
/// # Errors
///
/// The database failed.
pub async fn by_email(pool: &Pool, email: &str) -> Result<Option<User>, UserError> {
    let row: Option<(String, String, String, String)> = match pool {
        Pool::Sqlite(p) => {
            sqlx::query_as("SELECT id, email, name, password_hash FROM users WHERE email = ?1")
                .bind(email)
                .fetch_optional(p)
                .await
        }
        Pool::Postgres(p) => {
            sqlx::query_as("SELECT id, email, name, password_hash FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(p)
                .await
        }
    }
    .map_err(|_| UserError::Database)?;
    Ok(row.map(|(id, email, name, password_hash)| User {
        id,
        email,
        name,
        password_hash,
    }))
}
