-- portcullis-sqlx schema version 1 for PostgreSQL: seed 003's tables adapted
-- to the Portcullis store traits. Every time is a BIGINT of milliseconds
-- since the Unix epoch (UTC). Columns that listings order by are COLLATE "C"
-- so that PostgreSQL sorts them byte-wise, as every other backend does.

-- Revocations: one row per revoked token id, refresh family or subject
-- watermark. `id` is `token_type || ':' || value`.
CREATE TABLE revoked_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,          -- the token id or family ('' for 'all' rows)
    user_id TEXT NOT NULL,             -- the subject of an 'all' row ('' otherwise)
    token_type TEXT NOT NULL,          -- 'token', 'family' or 'all'
    reason TEXT,
    revoked_by TEXT,                   -- 'system' when written by the store
    ip_address TEXT,
    user_agent TEXT,
    issued_before BIGINT,              -- 'all' rows: tokens issued at or before this are revoked
    expires_at BIGINT NOT NULL,        -- the row is needed until then
    revoked_at BIGINT NOT NULL
);
CREATE INDEX idx_revoked_tokens_hash ON revoked_tokens (token_hash);
CREATE INDEX idx_revoked_tokens_user ON revoked_tokens (user_id);
CREATE INDEX idx_revoked_tokens_expires ON revoked_tokens (expires_at);

-- API keys: a digest, never the key.
CREATE TABLE api_keys (
    key_id TEXT COLLATE "C" PRIMARY KEY,
    owner TEXT COLLATE "C" NOT NULL,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,              -- JSON array of strings
    digest BYTEA NOT NULL,             -- SHA-256 / HMAC-SHA256 of the key, 32 bytes
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT
);
CREATE INDEX idx_api_keys_owner ON api_keys (owner, created_at, key_id);
CREATE INDEX idx_api_keys_created ON api_keys (created_at, key_id);

-- Synchronizer CSRF tokens: the seed's `id` is the token digest itself.
CREATE TABLE csrf_tokens (
    token TEXT PRIMARY KEY,            -- lowercase hex SHA-256 of the token
    user_id TEXT NOT NULL,             -- the session the token is bound to
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_csrf_tokens_user ON csrf_tokens (user_id);
CREATE INDEX idx_csrf_tokens_expires ON csrf_tokens (expires_at);

-- Login history: one row per recorded failure or success and counter.
CREATE TABLE login_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email TEXT NOT NULL,               -- the account part of the key, or ''
    ip_address TEXT NOT NULL,          -- the address part of the key, or ''
    success BOOLEAN NOT NULL,
    attempt_type TEXT NOT NULL,        -- 'account', 'ip' or 'account_ip'
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_login_attempts_email ON login_attempts (email);
CREATE INDEX idx_login_attempts_created ON login_attempts (created_at);

-- Lockout counters: one AttemptState per key, in its stable text encoding.
CREATE TABLE login_attempt_state (
    attempt_key TEXT COLLATE "C" PRIMARY KEY,  -- AttemptKey::storage_key, escaped
    kind TEXT NOT NULL,                -- 'account', 'ip' or 'account_ip'
    state TEXT NOT NULL,               -- AttemptState::encode
    lock_until BIGINT NOT NULL,        -- 0: none; 9223372036854775807: until unlocked
    keep_until BIGINT,                 -- NULL while locked until unlocked
    failures BIGINT NOT NULL,          -- failure times remembered
    last_failure_at BIGINT NOT NULL    -- 0: none
);
CREATE INDEX idx_login_attempt_state_locked ON login_attempt_state (kind, lock_until);
CREATE INDEX idx_login_attempt_state_hot ON login_attempt_state (kind, failures, attempt_key);
CREATE INDEX idx_login_attempt_state_keep ON login_attempt_state (keep_until);

-- Audit log: `action` is the event name, `details` the record's JSON.
CREATE TABLE audit_logs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id TEXT,
    action TEXT NOT NULL,
    details TEXT NOT NULL,
    ip_address TEXT,
    user_agent TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_audit_logs_created ON audit_logs (created_at);
CREATE INDEX idx_audit_logs_action ON audit_logs (action, created_at);

-- IP block list: canonical network text (`IpNet::trunc`), e.g. 203.0.113.7/32.
CREATE TABLE ip_blocks (
    network TEXT PRIMARY KEY,
    blocked_until BIGINT,              -- NULL: until removed
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_ip_blocks_until ON ip_blocks (blocked_until);
