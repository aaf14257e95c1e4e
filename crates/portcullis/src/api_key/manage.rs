//! `ApiKeys`: the management API (create, list, revoke, rotate) the CLI and
//! admin handlers use.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_core::{
    ApiKeyFilter, ApiKeyInfo, ApiKeyRecord, ApiKeyStore, SharedClock, StoreErrorKind,
};

use super::ApiKeyError;
use super::format::{KeyFormat, KeyFormatError, KeyHasher};
use super::layer::Config;
use crate::ConfigError;

/// Longest owner and name accepted, in bytes.
const MAX_LABEL_BYTES: usize = 256;
/// Most scopes per key.
const MAX_SCOPES: usize = 64;
/// Longest scope, in bytes.
const MAX_SCOPE_BYTES: usize = 128;
/// Attempts at a fresh key id when the store reports a collision (with
/// 71-bit random ids, a second attempt is already astronomically rare).
const CREATE_ATTEMPTS: usize = 3;

/// Creates, lists, revokes and rotates API keys in an [`ApiKeyStore`].
///
/// Take it from the layer ([`ApiKeyLayer::keys`](super::ApiKeyLayer::keys))
/// so it issues keys in the format and with the pepper the layer checks, or
/// build one with [`new`](Self::new) (an operator tool with no layer).
///
/// The full key is returned exactly once, by [`create`](Self::create) and
/// [`rotate`](Self::rotate); only its digest is stored, so it can never be
/// shown again.
///
/// ```
/// use portcullis::api_key::{ApiKeyLayer, NewApiKey};
/// use portcullis_core::{ApiKeyFilter, MemoryApiKeyStore};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let layer = ApiKeyLayer::new(MemoryApiKeyStore::default());
/// let keys = layer.keys();
///
/// let created = keys.create(NewApiKey::new("user123", "recovery-key").with_scopes(["workflows:run"])).await?;
/// assert!(created.key().starts_with("pc_live_"));
/// let listed = keys.list(&ApiKeyFilter::active().owner("user123")).await?;
/// assert_eq!(listed[0].key_id, created.info().key_id);
///
/// // Rotate: a new key now, the old one valid for one more hour.
/// let rotated = keys.rotate(&created.info().key_id, Duration::from_secs(3600)).await?;
/// assert!(rotated.previous.expires_at.is_some());
///
/// keys.revoke(&rotated.created.info().key_id).await?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct ApiKeys<St> {
    config: Config<St>,
}

impl<St> Clone for ApiKeys<St> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<St> fmt::Debug for ApiKeys<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("config", &self.config)
            .finish()
    }
}

impl<St: ApiKeyStore> ApiKeys<St> {
    /// Manages `pc_live_` keys digested with plain SHA-256 in `store`.
    pub fn new(store: St) -> Self {
        Self::from_config(Config::new(Arc::new(store)))
    }
}

impl<St> ApiKeys<St> {
    pub(crate) fn from_config(config: Config<St>) -> Self {
        Self { config }
    }

    /// Issues keys of `format`.
    #[must_use]
    pub fn with_format(mut self, format: KeyFormat) -> Self {
        self.config.format = format;
        self
    }

    /// Digests keys with HMAC-SHA256 under `pepper` (see
    /// [`ApiKeyLayer::with_pepper`](super::ApiKeyLayer::with_pepper)).
    ///
    /// # Errors
    ///
    /// The pepper must be at least 32 bytes.
    pub fn with_pepper(mut self, pepper: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        self.config.hasher = KeyHasher::pepper(pepper.as_ref())?;
        Ok(self)
    }

    /// Reads time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.config.clock = clock;
        self
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &St {
        &self.config.store
    }

    /// The key id of `key`, checked offline (format and checksum): what an
    /// operator holding a leaked key needs to revoke it.
    ///
    /// # Errors
    ///
    /// When `key` is not a well-formed key of this format.
    pub fn identify<'a>(&self, key: &'a str) -> Result<&'a str, KeyFormatError> {
        self.config.format.parse(key).map(|parsed| parsed.id())
    }
}

impl<St: ApiKeyStore> ApiKeys<St> {
    /// Creates a key. The returned [`CreatedApiKey`] holds the only copy of
    /// the full key.
    ///
    /// # Errors
    ///
    /// [`ApiKeyError::Invalid`] for an empty or oversized owner, name or
    /// scope; [`ApiKeyError::Store`] when the store fails (or is full).
    pub async fn create(&self, new: NewApiKey) -> Result<CreatedApiKey, ApiKeyError> {
        new.validate()?;
        let now = self.config.clock.now();
        let expires_at = match new.expiry {
            Some(Expiry::At(at)) => Some(at),
            Some(Expiry::In(after)) => Some(now + after),
            None => None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (key, key_id) = self.config.format.generate().map_err(ApiKeyError::Random)?;
            let mut info = ApiKeyInfo::new(key_id, new.owner.as_str(), new.name.as_str(), now)
                .with_scopes(new.scopes.iter().map(String::as_str));
            info.expires_at = expires_at;
            let record = ApiKeyRecord::new(info.clone(), self.config.hasher.digest(&key));
            match self.config.store.create(record).await {
                Ok(()) => return Ok(CreatedApiKey { key, info }),
                Err(err) if err.kind() == StoreErrorKind::Conflict && attempt < CREATE_ATTEMPTS => {
                }
                Err(err) => return Err(ApiKeyError::Store(err)),
            }
        }
    }

    /// What is known about key `key_id` (never its secret), if it exists.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn get(&self, key_id: &str) -> Result<Option<ApiKeyInfo>, ApiKeyError> {
        let record = self.config.store.lookup(key_id).await?;
        Ok(record.map(|r| r.info))
    }

    /// The keys matching `filter`, without secrets or digests.
    ///
    /// # Errors
    ///
    /// When the store fails.
    pub async fn list(&self, filter: &ApiKeyFilter) -> Result<Vec<ApiKeyInfo>, ApiKeyError> {
        Ok(self.config.store.list(filter).await?)
    }

    /// Revokes key `key_id` now. Requests with it are refused at once by
    /// this process and, on other instances, within their cache TTL.
    /// Revoking a revoked key keeps the first revocation time.
    ///
    /// # Errors
    ///
    /// [`ApiKeyError::NotFound`] for an unknown id; [`ApiKeyError::Store`]
    /// when the store fails.
    pub async fn revoke(&self, key_id: &str) -> Result<ApiKeyInfo, ApiKeyError> {
        let now = self.config.clock.now();
        let info = self.config.store.revoke(key_id, now).await?;
        self.config.cache.remove(key_id);
        info.ok_or(ApiKeyError::NotFound)
    }

    /// Replaces key `key_id` with a new one of the same owner, name, scopes
    /// and expiry; the old key stays valid for `grace` more (so clients can
    /// switch over) and then expires (`api_key_expired`). A zero `grace`
    /// ends it at once.
    ///
    /// The new key is created first: if the store then fails to shorten the
    /// old key's life, both stay valid and the error says so; retrying
    /// creates another key.
    ///
    /// # Errors
    ///
    /// [`ApiKeyError::NotFound`] for an unknown id, [`ApiKeyError::Inactive`]
    /// for a revoked or expired key, [`ApiKeyError::Store`] when the store
    /// fails.
    pub async fn rotate(
        &self,
        key_id: &str,
        grace: Duration,
    ) -> Result<RotatedApiKey, ApiKeyError> {
        let now = self.config.clock.now();
        let old = self
            .config
            .store
            .lookup(key_id)
            .await?
            .ok_or(ApiKeyError::NotFound)?
            .info;
        if !old.is_active_at(now) {
            return Err(ApiKeyError::Inactive);
        }
        let mut new = NewApiKey::new(old.owner.as_str(), old.name.as_str())
            .with_scopes(old.scopes.iter().map(String::as_str));
        new.expiry = old.expires_at.map(Expiry::At);
        let created = self.create(new).await?;
        let previous = self
            .config
            .store
            .expire(key_id, now + grace)
            .await?
            .ok_or(ApiKeyError::NotFound)?;
        self.config.cache.remove(key_id);
        Ok(RotatedApiKey { created, previous })
    }
}

/// What a new key is for.
#[derive(Clone)]
#[must_use]
pub struct NewApiKey {
    owner: String,
    name: String,
    scopes: Vec<String>,
    expiry: Option<Expiry>,
}

// Hand-written: owners are often email addresses.
impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let owner: &dyn fmt::Debug = if self.owner.contains('@') {
            &"<redacted email>"
        } else {
            &self.owner
        };
        f.debug_struct("NewApiKey")
            .field("owner", owner)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("expiry", &self.expiry)
            .finish()
    }
}

#[derive(Clone, Copy, Debug)]
enum Expiry {
    At(SystemTime),
    In(Duration),
}

impl NewApiKey {
    /// A key acting for `owner` (the principal's subject), labelled `name`,
    /// with no scopes and no expiry.
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            name: name.into(),
            scopes: Vec::new(),
            expiry: None,
        }
    }

    /// Grants `scopes`.
    pub fn with_scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Expires at `at`.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expiry = Some(Expiry::At(at));
        self
    }

    /// Expires `after` creation.
    pub fn expires_in(mut self, after: Duration) -> Self {
        self.expiry = Some(Expiry::In(after));
        self
    }

    fn validate(&self) -> Result<(), ApiKeyError> {
        let printable = |s: &str| !s.chars().any(char::is_control);
        if self.owner.is_empty() || self.owner.len() > MAX_LABEL_BYTES || !printable(&self.owner) {
            return Err(ApiKeyError::Invalid {
                field: "owner",
                reason: "must be 1 to 256 bytes without control characters",
            });
        }
        if self.name.len() > MAX_LABEL_BYTES || !printable(&self.name) {
            return Err(ApiKeyError::Invalid {
                field: "name",
                reason: "must be at most 256 bytes without control characters",
            });
        }
        if self.scopes.len() > MAX_SCOPES {
            return Err(ApiKeyError::Invalid {
                field: "scopes",
                reason: "at most 64 scopes",
            });
        }
        let scope_ok = |s: &String| {
            !s.is_empty()
                && s.len() <= MAX_SCOPE_BYTES
                && !s.chars().any(|c| c.is_control() || c.is_whitespace())
        };
        if !self.scopes.iter().all(scope_ok) {
            return Err(ApiKeyError::Invalid {
                field: "scopes",
                reason: "each scope must be 1 to 128 bytes without spaces or control characters",
            });
        }
        Ok(())
    }
}

/// A key just created: the only time the full key exists outside the
/// client. `Debug` hides the key.
pub struct CreatedApiKey {
    key: String,
    info: ApiKeyInfo,
}

impl CreatedApiKey {
    /// The full key, to hand to the client once.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The full key, moved out.
    #[must_use]
    pub fn into_key(self) -> String {
        self.key
    }

    /// What was stored about it.
    #[must_use]
    pub fn info(&self) -> &ApiKeyInfo {
        &self.info
    }
}

impl fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("key", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

/// The result of [`ApiKeys::rotate`].
#[derive(Debug)]
#[non_exhaustive]
pub struct RotatedApiKey {
    /// The new key.
    pub created: CreatedApiKey,
    /// The old key, now expiring at the end of the grace period.
    pub previous: ApiKeyInfo,
}
