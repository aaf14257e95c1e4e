//! [`AttemptStore`] on `login_attempt_state`, with seed 003's
//! `login_attempts` history beside it.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use portcullis_core::attempt::{pair_involves, sort_hottest, sort_locked, sort_pairs};
use portcullis_core::{
    Admission, AttemptKey, AttemptKeyKind, AttemptPolicy, AttemptState, AttemptStatus,
    AttemptStore, FailureRecord, Lock, LockedKey, ResetScope, StoreError, StoreErrorKind,
};

use crate::engine::{Arg, Db, Dialect, Row, Tx, limit, millis, time};
use crate::error::{Result, corrupt};

const INSERT_BLANK: &str = "INSERT INTO login_attempt_state \
     (attempt_key, kind, state, lock_until, keep_until, failures, last_failure_at) \
     VALUES ($1, $2, $3, 0, 0, 0, 0) ON CONFLICT (attempt_key) DO NOTHING";

const SELECT_STATE: &str = "SELECT state FROM login_attempt_state WHERE attempt_key = $1";

#[cfg(feature = "postgres")]
const SELECT_STATE_FOR_UPDATE: &str =
    "SELECT state FROM login_attempt_state WHERE attempt_key = $1 FOR UPDATE";

/// `$6`: the time of the failure just recorded, or NULL. The column keeps
/// the latest failure time even when failures arrive out of order.
const UPDATE_STATE: &str = "UPDATE login_attempt_state \
     SET state = $2, lock_until = $3, keep_until = $4, failures = $5, \
     last_failure_at = CASE WHEN $6 > last_failure_at THEN $6 ELSE last_failure_at END \
     WHERE attempt_key = $1";

const DELETE_STATE: &str = "DELETE FROM login_attempt_state WHERE attempt_key = $1";

const HISTORY: &str = "INSERT INTO login_attempts \
     (email, ip_address, success, attempt_type, created_at) VALUES ($1, $2, $3, $4, $5)";

const LOCKED: &str = "SELECT attempt_key, lock_until FROM login_attempt_state \
     WHERE kind = $1 AND lock_until > $2 \
     ORDER BY lock_until DESC, attempt_key LIMIT $3";

/// One page of `hottest` candidates, most remembered failures first, after
/// the key `($3, $4)`.
const HOT_PAGE: &str = "SELECT attempt_key, state, failures FROM login_attempt_state \
     WHERE kind = $1 AND failures > 0 AND last_failure_at > $2 \
     AND (failures < $3 OR (failures = $3 AND attempt_key > $4)) \
     ORDER BY failures DESC, attempt_key LIMIT $5";

/// One page of an address's account+address keys (`$2 <= key < $3`: the
/// keys that start with `p:<ip>|`), after the key `$1`.
const PAIRS_OF_IP: &str = "SELECT attempt_key, state FROM login_attempt_state \
     WHERE kind = 'account_ip' AND attempt_key > $1 AND attempt_key >= $2 AND attempt_key < $3 \
     ORDER BY attempt_key LIMIT $4";

/// One page of the account+address keys ending in `$3` (`|` and the
/// escaped account, `$2` characters long), after the key `$1`. A longer
/// account ending the same way also matches: the caller filters exactly.
const PAIRS_OF_ACCOUNT: &str = "SELECT attempt_key, state FROM login_attempt_state \
     WHERE kind = 'account_ip' AND attempt_key > $1 \
     AND substr(attempt_key, CAST(length(attempt_key) - $2 + 1 AS INTEGER)) = $3 \
     ORDER BY attempt_key LIMIT $4";

/// Rows read per `pairs_of` page.
const PAIRS_PAGE_SIZE: usize = 256;

const RECENT: &str = "SELECT email, ip_address, success, attempt_type, created_at \
     FROM login_attempts ORDER BY id DESC LIMIT $1";

/// `lock_until` of a key locked until unlocked.
const FOREVER: i64 = i64::MAX;

/// Candidates read per `hottest` page.
const HOT_PAGE_SIZE: usize = 256;

/// Most candidates one `hottest` call reads: beyond this (more keys of one
/// kind with failures in the window than this), the answer is the top of
/// the keys with the most remembered failures.
pub const HOTTEST_SCAN_LIMIT: usize = 20_000;

/// How often a transaction is retried when the row it locked was deleted
/// under it (PostgreSQL, READ COMMITTED).
const RETRIES: usize = 3;

/// An [`AttemptStore`] in the `login_attempt_state` table.
///
/// Every operation is one transaction applying
/// [`AttemptState`]'s method to the key's row: PostgreSQL inserts a blank
/// row if needed (`INSERT … ON CONFLICT DO NOTHING`), locks it with
/// `SELECT … FOR UPDATE`, and writes the new encoded state back (or
/// deletes the row when the state is blank); SQLite does the same inside
/// `BEGIN IMMEDIATE`. Operations that do nothing to an unknown key
/// (`status`, `begin` without a reservation, `record_success`, `release`,
/// `unlock`) never insert one. A stored state that does not decode is
/// [`StoreErrorKind::Corrupt`] for every operation but `unlock`, which
/// replaces it (an operator's way to clear it).
///
/// Each `record_failure` and `record_success` also appends a row to seed
/// 003's `login_attempts` history, in the same transaction; see
/// [`recent_login_attempts`](Self::recent_login_attempts).
#[derive(Clone)]
pub struct SqlAttemptStore {
    db: Db,
}

store_handle!(SqlAttemptStore);

/// One row of the `login_attempts` history.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginAttempt {
    /// The account part of the counter's key, empty for an IP counter.
    pub account: String,
    /// The address part of the counter's key, if any.
    pub ip_address: Option<IpAddr>,
    /// Whether a success (rather than a failure) was recorded.
    pub success: bool,
    /// Which counter it was recorded on.
    pub kind: AttemptKeyKind,
    /// When.
    pub at: SystemTime,
}

impl fmt::Debug for LoginAttempt {
    // Accounts are often email addresses: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("account", &"<redacted>")
            .field("ip_address", &self.ip_address)
            .field("success", &self.success)
            .field("kind", &self.kind)
            .field("at", &self.at)
            .finish()
    }
}

/// Escapes `\` and NUL (which PostgreSQL text cannot hold) so that any
/// submitted identifier can be stored and read back exactly.
fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['\\', '\0']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Reverses [`escape`]; `None` for text `escape` cannot have produced.
fn unescape(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains('\\') {
        return Some(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            '0' => out.push('\0'),
            _ => return None,
        }
    }
    Some(Cow::Owned(out))
}

fn key_from_column(stored: &str) -> Result<AttemptKey> {
    unescape(stored)
        .and_then(|key| AttemptKey::from_storage_key(&key))
        .ok_or_else(|| corrupt("stored attempt key is malformed"))
}

fn kind_from_column(text: &str) -> Result<AttemptKeyKind> {
    [
        AttemptKeyKind::Account,
        AttemptKeyKind::Ip,
        AttemptKeyKind::AccountIp,
    ]
    .into_iter()
    .find(|k| k.as_str() == text)
    .ok_or_else(|| corrupt("stored attempt kind is unknown"))
}

fn lock_column(state: &AttemptState) -> i64 {
    match state.lock_until_secs() {
        u32::MAX => FOREVER,
        secs => i64::from(secs) * 1000,
    }
}

fn lock_from_column(value: i64) -> Lock {
    if value == FOREVER {
        Lock::UntilUnlocked
    } else {
        Lock::Until(time(value))
    }
}

fn decode(row: &Row, index: usize) -> Result<AttemptState> {
    Ok(AttemptState::decode(&row.text(index)?)?)
}

/// What one write does besides applying the state method.
#[derive(Clone, Copy)]
struct Write {
    /// Insert a blank state for an unknown key first.
    insert: bool,
    /// Append a history row: `Some(success)`.
    history: Option<bool>,
    /// Apply the method to a blank state when the stored one is corrupt
    /// (`unlock` only), instead of failing.
    reset_corrupt: bool,
}

impl SqlAttemptStore {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    /// The latest `limit` rows of the `login_attempts` history, newest first
    /// (seed 003's "View recent login attempts").
    ///
    /// # Errors
    ///
    /// When the database cannot be read, or a row does not decode
    /// ([`StoreErrorKind::Corrupt`]).
    pub async fn recent_login_attempts(
        &self,
        limit: usize,
    ) -> Result<Vec<LoginAttempt>, StoreError> {
        let args = [Arg::Int(crate::engine::limit(limit))];
        self.db
            .run("could not read the login history", async {
                let mut out = Vec::new();
                for row in self.db.read(RECENT, &args).await? {
                    let account = row.text(0)?;
                    let ip = row.text(1)?;
                    out.push(LoginAttempt {
                        account: unescape(&account)
                            .ok_or_else(|| corrupt("stored account is malformed"))?
                            .into_owned(),
                        ip_address: match ip.as_str() {
                            "" => None,
                            ip => Some(
                                ip.parse()
                                    .map_err(|_| corrupt("stored address is malformed"))?,
                            ),
                        },
                        success: row.boolean(2)?,
                        kind: kind_from_column(&row.text(3)?)?,
                        at: time(row.int(4)?),
                    });
                }
                Ok(out)
            })
            .await
    }

    /// The stored state of `key`, read without a transaction.
    async fn load(&self, key: &AttemptKey) -> Result<Option<AttemptState>> {
        let stored = key.storage_key();
        let rows = self
            .db
            .read(SELECT_STATE, &[Arg::Text(&escape(&stored))])
            .await?;
        rows.first().map(|row| decode(row, 0)).transpose()
    }

    /// Opens a transaction holding `key`'s row (inserting a blank one first
    /// when `insert`) and returns its encoded state, `None` for an unknown
    /// key.
    async fn lock_row(
        &self,
        stored: &str,
        kind: &str,
        insert: bool,
    ) -> Result<(Tx, Option<String>)> {
        let select = match self.db.dialect() {
            #[cfg(feature = "postgres")]
            Dialect::Postgres => SELECT_STATE_FOR_UPDATE,
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => SELECT_STATE,
        };
        let blank = AttemptState::default().encode();
        for _ in 0..RETRIES {
            let mut tx = self.db.begin().await?;
            if insert {
                tx.execute(
                    INSERT_BLANK,
                    &[Arg::Text(stored), Arg::Text(kind), Arg::Text(&blank)],
                )
                .await?;
            }
            let rows = tx.fetch(select, &[Arg::Text(stored)]).await?;
            match rows.first() {
                Some(row) => return Ok((tx, Some(row.text(0)?))),
                // The row we saw was deleted by a writer we waited for:
                // start again, inserting afresh.
                None if insert => {}
                None => return Ok((tx, None)),
            }
        }
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "attempt state kept vanishing under contention",
        )
        .into())
    }

    /// Applies `op` to `key`'s state in one transaction and stores the
    /// result (deleting the row when it is blank). `None` when the key is
    /// unknown and `write.insert` is off.
    async fn apply<R: Send>(
        &self,
        key: &AttemptKey,
        now: SystemTime,
        write: Write,
        op: impl FnOnce(&mut AttemptState) -> R + Send,
    ) -> Result<Option<R>> {
        let storage_key = key.storage_key();
        let stored = escape(&storage_key);
        let kind = key.kind().as_str();
        let (mut tx, encoded) = self.lock_row(&stored, kind, write.insert).await?;
        let state = match encoded.as_deref().map(AttemptState::decode) {
            None => None,
            Some(Ok(state)) => Some(state),
            // Unlocking forgets the state anyway: it is how an operator
            // clears a row that no longer decodes.
            Some(Err(_)) if write.reset_corrupt => Some(AttemptState::default()),
            Some(Err(e)) => return Err(e.into()),
        };
        if let Some(success) = write.history {
            let account = key.account().map(escape).unwrap_or_default();
            let ip = key.ip().map(|ip| ip.to_string()).unwrap_or_default();
            tx.execute(
                HISTORY,
                &[
                    Arg::Text(&account),
                    Arg::Text(&ip),
                    Arg::Bool(success),
                    Arg::Text(kind),
                    Arg::Int(millis(now)),
                ],
            )
            .await?;
        }
        let Some(mut state) = state else {
            tx.commit().await?;
            return Ok(None);
        };
        let out = op(&mut state);
        if state.is_blank(now) {
            tx.execute(DELETE_STATE, &[Arg::Text(&stored)]).await?;
        } else {
            let encoded = state.encode();
            let failed_at = (write.history == Some(false)).then(|| millis(now));
            tx.execute(
                UPDATE_STATE,
                &[
                    Arg::Text(&stored),
                    Arg::Text(&encoded),
                    Arg::Int(lock_column(&state)),
                    Arg::OptInt(state.keep_until().map(millis)),
                    Arg::Int(i64::try_from(state.weight().0).unwrap_or(i64::MAX)),
                    Arg::OptInt(failed_at),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(out))
    }

    /// [`apply`](Self::apply) for operations that insert, so always have a
    /// state to apply to.
    async fn apply_inserting<R: Send>(
        &self,
        key: &AttemptKey,
        now: SystemTime,
        history: Option<bool>,
        op: impl FnOnce(&mut AttemptState) -> R + Send,
    ) -> Result<R> {
        let write = Write {
            insert: true,
            history,
            reset_corrupt: false,
        };
        self.apply(key, now, write, op)
            .await?
            .ok_or_else(|| corrupt("attempt state missing after insert"))
    }
}

const EXISTING: Write = Write {
    insert: false,
    history: None,
    reset_corrupt: false,
};

impl AttemptStore for SqlAttemptStore {
    async fn begin(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserve: bool,
        now: SystemTime,
    ) -> Result<Admission, StoreError> {
        self.db
            .run("could not check the attempt counter", async {
                if !reserve {
                    // A read: never inserts, never writes.
                    let state = self.load(key).await?;
                    return Ok(state.map_or(
                        Admission::Admitted {
                            failures: 0,
                            consecutive: 0,
                        },
                        |mut s| s.begin(policy, false, now),
                    ));
                }
                self.apply_inserting(key, now, None, |s| s.begin(policy, true, now))
                    .await
            })
            .await
    }

    async fn record_failure(
        &self,
        key: &AttemptKey,
        policy: &AttemptPolicy,
        reserved: bool,
        now: SystemTime,
    ) -> Result<FailureRecord, StoreError> {
        self.db
            .run(
                "could not record the failed attempt",
                self.apply_inserting(key, now, Some(false), |s| {
                    s.record_failure(policy, reserved, now)
                }),
            )
            .await
    }

    async fn record_success(
        &self,
        key: &AttemptKey,
        scope: ResetScope,
        reserved: bool,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let write = Write {
            insert: false,
            history: Some(true),
            reset_corrupt: false,
        };
        self.db
            .run("could not record the successful attempt", async {
                self.apply(key, now, write, |s| s.record_success(scope, reserved, now))
                    .await?;
                Ok(())
            })
            .await
    }

    async fn release(&self, key: &AttemptKey, now: SystemTime) -> Result<(), StoreError> {
        self.db
            .run("could not release the attempt", async {
                self.apply(key, now, EXISTING, |s| s.release(now)).await?;
                Ok(())
            })
            .await
    }

    async fn status(
        &self,
        key: &AttemptKey,
        window: Duration,
        now: SystemTime,
    ) -> Result<Option<AttemptStatus>, StoreError> {
        self.db
            .run("could not read the attempt counter", async {
                Ok(self.load(key).await?.map(|s| s.status(window, now)))
            })
            .await
    }

    async fn lock(&self, key: &AttemptKey, lock: Lock, now: SystemTime) -> Result<(), StoreError> {
        self.db
            .run(
                "could not lock the key",
                self.apply_inserting(key, now, None, |s| s.lock(lock, now)),
            )
            .await
    }

    async fn unlock(&self, key: &AttemptKey, now: SystemTime) -> Result<Option<Lock>, StoreError> {
        self.db
            .run("could not unlock the key", async {
                let write = Write {
                    reset_corrupt: true,
                    ..EXISTING
                };
                Ok(self
                    .apply(key, now, write, |s| s.unlock(now))
                    .await?
                    .flatten())
            })
            .await
    }

    async fn locked(
        &self,
        kind: AttemptKeyKind,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<LockedKey>, StoreError> {
        let args = [
            Arg::Text(kind.as_str()),
            Arg::Int(millis(now)),
            Arg::Int(crate::engine::limit(limit)),
        ];
        self.db
            .run("could not list locked keys", async {
                let mut out = Vec::new();
                for row in self.db.read(LOCKED, &args).await? {
                    out.push(LockedKey {
                        key: key_from_column(&row.text(0)?)?,
                        lock: lock_from_column(row.int(1)?),
                    });
                }
                sort_locked(&mut out);
                out.truncate(limit);
                Ok(out)
            })
            .await
    }

    async fn hottest(
        &self,
        kind: AttemptKeyKind,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(AttemptKey, u32)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.db
            .run(
                "could not list the hottest keys",
                self.scan_hottest(kind, window, now, limit),
            )
            .await
    }

    async fn pairs_of(
        &self,
        of: &AttemptKey,
        window: Duration,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<(AttemptKey, AttemptStatus)>, StoreError> {
        self.db
            .run(
                "could not list account+address keys",
                self.scan_pairs(of, window, now, limit),
            )
            .await
    }
}

impl SqlAttemptStore {
    /// Pages through the candidate rows of [`AttemptStore::pairs_of`] in
    /// key order, keeping the exact matches, until `want` are found.
    async fn scan_pairs(
        &self,
        of: &AttemptKey,
        window: Duration,
        now: SystemTime,
        want: usize,
    ) -> Result<Vec<(AttemptKey, AttemptStatus)>> {
        let mut out = Vec::new();
        if want == 0 {
            return Ok(out);
        }
        if let AttemptKey::AccountIp(..) = of {
            if let Some(state) = self.load(of).await? {
                out.push((of.clone(), state.status(window, now)));
            }
            return Ok(out);
        }
        // Addresses print without `\\` or NUL: nothing to escape there.
        let (low, high) = match of {
            AttemptKey::Ip(ip) => (format!("p:{ip}|"), format!("p:{ip}}}")),
            _ => (String::new(), String::new()),
        };
        let suffix = format!("|{}", escape(of.account().unwrap_or_default()));
        let suffix_chars = i64::try_from(suffix.chars().count()).unwrap_or(i64::MAX);
        let mut after = String::new();
        loop {
            let page = Arg::Int(limit(PAIRS_PAGE_SIZE));
            let rows = if let AttemptKey::Ip(_) = of {
                let args = [Arg::Text(&after), Arg::Text(&low), Arg::Text(&high), page];
                self.db.read(PAIRS_OF_IP, &args).await?
            } else {
                let args = [
                    Arg::Text(&after),
                    Arg::Int(suffix_chars),
                    Arg::Text(&suffix),
                    page,
                ];
                self.db.read(PAIRS_OF_ACCOUNT, &args).await?
            };
            for row in &rows {
                let stored = row.text(0)?;
                let key = key_from_column(&stored)?;
                if pair_involves(&key, of) {
                    out.push((key, decode(row, 1)?.status(window, now)));
                }
                after = stored;
            }
            if rows.len() < PAIRS_PAGE_SIZE || out.len() >= want {
                sort_pairs(&mut out);
                out.truncate(want);
                return Ok(out);
            }
        }
    }

    /// Pages through the keys of `kind` with a failure near the window,
    /// most remembered failures first. The count in the window is at most
    /// the number remembered, so once a page's remembered count falls below
    /// the `limit`-th best exact count, no later key can enter the top.
    async fn scan_hottest(
        &self,
        kind: AttemptKeyKind,
        window: Duration,
        now: SystemTime,
        want: usize,
    ) -> Result<Vec<(AttemptKey, u32)>> {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        // One second of slack: the state counts whole seconds.
        let since = millis(now).saturating_sub(window_ms).saturating_sub(1000);
        let mut best: Vec<(AttemptKey, u32)> = Vec::new();
        let mut after = (i64::MAX, String::new());
        let mut scanned = 0;
        loop {
            let rows = self
                .db
                .read(
                    HOT_PAGE,
                    &[
                        Arg::Text(kind.as_str()),
                        Arg::Int(since),
                        Arg::Int(after.0),
                        Arg::Text(&after.1),
                        Arg::Int(limit(HOT_PAGE_SIZE)),
                    ],
                )
                .await?;
            let floor = (best.len() >= want).then(|| best.last().map_or(0, |(_, n)| *n));
            let mut done = rows.len() < HOT_PAGE_SIZE;
            for row in &rows {
                let remembered = row.int(2)?;
                if floor.is_some_and(|floor| remembered < i64::from(floor)) {
                    done = true;
                    break;
                }
                let stored = row.text(0)?;
                let count = decode(row, 1)?.failures(window, now);
                if count > 0 {
                    best.push((key_from_column(&stored)?, count));
                }
                after = (remembered, stored);
            }
            sort_hottest(&mut best);
            best.truncate(want);
            scanned += rows.len();
            if done || scanned >= HOTTEST_SCAN_LIMIT {
                return Ok(best);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_every_identifier() {
        for text in ["alice", "", "a\\b", "\0", "x\\0y\0\\", "ünï\\\\"] {
            let escaped = escape(text);
            assert!(!escaped.contains('\0'));
            assert_eq!(unescape(&escaped).unwrap(), text);
        }
        assert!(unescape("bad\\x").is_none());
        assert!(unescape("trailing\\").is_none());
    }

    #[test]
    fn lock_columns_round_trip() {
        assert_eq!(lock_from_column(FOREVER), Lock::UntilUnlocked);
        let t = time(1_700_000_000_000);
        assert_eq!(lock_from_column(millis(t)), Lock::Until(t));
        assert!(kind_from_column("account_ip").is_ok());
        assert!(kind_from_column("nope").is_err());
    }
}
