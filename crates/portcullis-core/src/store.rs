//! Errors from the stores layers keep their state in.

use std::error::Error;
use std::fmt;

/// What went wrong in a store, in terms a layer can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend could not be reached or refused the operation.
    Unavailable,
    /// The backend did not answer in time.
    Timeout,
    /// The backend answered with data that cannot be read.
    Corrupt,
    /// A bounded store is full of live entries and cannot take another.
    CapacityExceeded,
    /// An entry with the same identifier already exists.
    Conflict,
    /// Anything else.
    Other,
}

impl StoreErrorKind {
    /// Stable lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Corrupt => "corrupt",
            Self::CapacityExceeded => "capacity_exceeded",
            Self::Conflict => "conflict",
            Self::Other => "other",
        }
    }
}

/// A store could not answer.
///
/// Layers fail closed on it: the request is refused with
/// `upstream_unavailable` (503) and this error travels as the rejection's
/// source. The source error is kept, not flattened into a string.
pub struct StoreError {
    kind: StoreErrorKind,
    message: &'static str,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl StoreError {
    /// An error of `kind` with a fixed message (no secrets, no user data).
    #[must_use]
    pub const fn new(kind: StoreErrorKind, message: &'static str) -> Self {
        Self {
            kind,
            message,
            source: None,
        }
    }

    /// Keeps the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind.
    #[must_use]
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store {}: {}", self.kind.as_str(), self.message)
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}
