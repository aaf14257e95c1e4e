//! Mapping driver errors to [`StoreError`] without leaking bound values.

use std::error::Error as StdError;
use std::fmt;

use portcullis_core::{StoreError, StoreErrorKind};

/// What a store operation can fail with before it is turned into a
/// [`StoreError`]: a driver error (mapped by kind, with the operation's
/// fixed message) or an error the store built itself (decoding, …).
#[derive(Debug)]
pub(crate) enum Failure {
    Sql(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Failure {
    /// The [`StoreError`], with `message` for driver errors.
    pub(crate) fn into_store_error(self, message: &'static str) -> StoreError {
        match self {
            Self::Store(e) => e,
            Self::Sql(e) => from_sqlx(e, message),
        }
    }
}

pub(crate) type Result<T, E = Failure> = std::result::Result<T, E>;

/// A value read from the database did not decode.
pub(crate) fn corrupt(message: &'static str) -> Failure {
    Failure::Store(StoreError::new(StoreErrorKind::Corrupt, message))
}

/// Maps a driver error to a [`StoreError`] of the matching kind with a fixed
/// `message`; the driver error is kept as the source, redacted.
pub(crate) fn from_sqlx(e: sqlx::Error, message: &'static str) -> StoreError {
    StoreError::new(kind_of(&e), message).with_source(Redacted(e))
}

/// The kind of failure a driver error stands for.
pub(crate) fn kind_of(e: &sqlx::Error) -> StoreErrorKind {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut => StoreErrorKind::Timeout,
        E::Io(_) | E::Tls(_) | E::PoolClosed | E::WorkerCrashed | E::BeginFailed => {
            StoreErrorKind::Unavailable
        }
        E::Database(db) => database_kind(db.as_ref()),
        E::RowNotFound
        | E::TypeNotFound { .. }
        | E::ColumnIndexOutOfBounds { .. }
        | E::ColumnNotFound(_)
        | E::ColumnDecode { .. }
        | E::Decode(_)
        | E::Protocol(_) => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Other,
    }
}

fn database_kind(db: &dyn sqlx::error::DatabaseError) -> StoreErrorKind {
    if db.is_unique_violation() {
        return StoreErrorKind::Conflict;
    }
    let Some(code) = db.code() else {
        return StoreErrorKind::Other;
    };
    // SQLite reports its (extended) result code as a number, PostgreSQL a
    // five-character SQLSTATE.
    match code.parse::<u32>() {
        Ok(n) => sqlite_kind(n & 0xff),
        Err(_) => postgres_kind(&code),
    }
}

fn sqlite_kind(primary: u32) -> StoreErrorKind {
    match primary {
        // SQLITE_BUSY, SQLITE_LOCKED: busy_timeout ran out.
        5 | 6 => StoreErrorKind::Timeout,
        // SQLITE_FULL.
        13 => StoreErrorKind::CapacityExceeded,
        // SQLITE_CORRUPT, SQLITE_NOTADB.
        11 | 26 => StoreErrorKind::Corrupt,
        // SQLITE_PERM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN,
        // SQLITE_PROTOCOL, SQLITE_AUTH.
        3 | 8 | 10 | 14 | 15 | 23 => StoreErrorKind::Unavailable,
        _ => StoreErrorKind::Other,
    }
}

fn postgres_kind(code: &str) -> StoreErrorKind {
    match code {
        // query_canceled (statement_timeout), lock_not_available (lock_timeout).
        "57014" | "55P03" => StoreErrorKind::Timeout,
        // data_corrupted, index_corrupted.
        "XX001" | "XX002" => StoreErrorKind::Corrupt,
        // disk_full.
        "53100" => StoreErrorKind::CapacityExceeded,
        _ => match code.get(..2) {
            // connection exception, insufficient resources, operator
            // intervention (shutdown), serialization failure / deadlock
            // (transient: the request fails closed and may be retried).
            Some("08" | "53" | "57" | "40") => StoreErrorKind::Unavailable,
            _ => StoreErrorKind::Other,
        },
    }
}

/// A driver error shown without anything a query bound or a server echoed
/// back: PostgreSQL's error detail (`Key (id)=(…) already exists`), protocol
/// and configuration text (which may quote a connection URL) are left out.
pub(crate) struct Redacted(pub(crate) sqlx::Error);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use sqlx::Error as E;
        match &self.0 {
            E::Database(db) => {
                f.write_str("database error")?;
                if let Some(code) = db.code() {
                    write!(f, " {code}")?;
                }
                if let Some(constraint) = db.constraint() {
                    write!(f, " on constraint {constraint}")?;
                }
                Ok(())
            }
            E::Io(io) => write!(f, "i/o error: {io}"),
            E::Configuration(_) => f.write_str("invalid configuration"),
            E::InvalidArgument(_) => f.write_str("invalid argument"),
            E::Protocol(_) => f.write_str("unexpected data from the database"),
            E::Tls(_) => f.write_str("TLS error"),
            E::ColumnDecode { index, .. } => write!(f, "could not decode column {index}"),
            E::Decode(_) => f.write_str("could not decode a value"),
            E::Encode(_) => f.write_str("could not encode a value"),
            E::ColumnNotFound(name) => write!(f, "no column {name}"),
            other => fmt::Display::fmt(other, f),
        }
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlError({self})")
    }
}

impl StdError for Redacted {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.0 {
            sqlx::Error::Io(io) => Some(io),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_map_to_store_kinds() {
        assert_eq!(kind_of(&sqlx::Error::PoolTimedOut), StoreErrorKind::Timeout);
        assert_eq!(
            kind_of(&sqlx::Error::PoolClosed),
            StoreErrorKind::Unavailable
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            kind_of(&sqlx::Error::Io(refused)),
            StoreErrorKind::Unavailable
        );
        assert_eq!(
            kind_of(&sqlx::Error::Decode("bad".into())),
            StoreErrorKind::Corrupt
        );
        assert_eq!(sqlite_kind(5), StoreErrorKind::Timeout);
        assert_eq!(sqlite_kind(2067 & 0xff), StoreErrorKind::Other);
        assert_eq!(postgres_kind("08006"), StoreErrorKind::Unavailable);
        assert_eq!(postgres_kind("57014"), StoreErrorKind::Timeout);
        assert_eq!(postgres_kind("57P01"), StoreErrorKind::Unavailable);
        assert_eq!(postgres_kind("42P01"), StoreErrorKind::Other);
    }

    #[test]
    fn redacted_errors_hide_configuration_text() {
        let e = sqlx::Error::Configuration("postgres://u:secret@h/db".into());
        let shown = format!("{:?} {}", Redacted(e), "");
        assert!(!shown.contains("secret"), "{shown}");
        let store = from_sqlx(sqlx::Error::PoolTimedOut, "could not do it");
        assert_eq!(store.kind(), StoreErrorKind::Timeout);
        assert!(StdError::source(&store).is_some());
    }
}
