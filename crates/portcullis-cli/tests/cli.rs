//! The real `portcullis` binary against a temporary SQLite database, and
//! against PostgreSQL + Redis when `PORTCULLIS_TEST_POSTGRES_URL` and
//! `PORTCULLIS_TEST_REDIS_URL` are set. State the CLI changes is checked
//! through `Backends`, the way the server opens it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::core::{
    AttemptKey, AttemptPolicy, AttemptStore as _, BlockEntry, BlockListStore as _,
    RevocationStore as _, TokenRef,
};
use portcullis::core::{FailureReason, Principal, PrincipalKind};
use portcullis::jwt::{Algorithm, SigningKey, TokenIssuer};
use portcullis_cli::backends::{Backends, Pool};
use portcullis_sqlx::sqlx;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Variables that would make the binary look elsewhere than the test says.
const ENV: [&str; 10] = [
    "PORTCULLIS_DATABASE_URL",
    "PORTCULLIS_TOKEN_LIFETIME_SECONDS",
    "PORTCULLIS_JWT_SECRET",
    "PORTCULLIS_REDIS_URL",
    "PORTCULLIS_REDIS_PREFIX",
    "PORTCULLIS_API_KEY_PEPPER",
    "PORTCULLIS_REFRESH_TOKEN_LIFETIME_SECONDS",
    "PORTCULLIS_LOCKOUT_MAX_ATTEMPTS",
    "PORTCULLIS_LOCKOUT_WINDOW_SECONDS",
    "PORTCULLIS_LOCKOUT_DURATION_SECONDS",
];

/// A private directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(portcullis_test::unique_name("pccli"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One deployment's state, as the CLI is told about it.
struct Deployment {
    database_url: String,
    redis_url: Option<String>,
    prefix: String,
    /// The PostgreSQL schema, if any.
    schema: Option<String>,
    dir: TempDir,
}

impl Deployment {
    fn sqlite() -> Self {
        let dir = TempDir::new();
        let database_url = format!("sqlite://{}", dir.0.join("state.db").display());
        Self {
            database_url,
            redis_url: None,
            prefix: portcullis_test::unique_name("pccli"),
            schema: None,
            dir,
        }
    }

    /// A fresh schema on the test server, named in the URL's `search_path`
    /// (the form an operator would use), and a fresh Redis prefix.
    async fn postgres_redis(pg: &str, redis: &str) -> Self {
        let schema = portcullis_test::unique_name("pccli");
        let pool = sqlx::PgPool::connect(pg).await.unwrap();
        // `schema` is letters, digits and `_` only (unique_name).
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let sep = if pg.contains('?') { '&' } else { '?' };
        Self {
            database_url: format!("{pg}{sep}options=-csearch_path%3D{schema}"),
            redis_url: Some(redis.to_owned()),
            prefix: portcullis_test::unique_name("pccli"),
            schema: Some(schema),
            dir: TempDir::new(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        for var in ENV {
            cmd.env_remove(var);
        }
        cmd.current_dir(&self.dir.0)
            .arg("--database-url")
            .arg(&self.database_url)
            .arg("--redis-prefix")
            .arg(&self.prefix);
        if let Some(redis) = &self.redis_url {
            cmd.arg("--redis-url").arg(redis);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs `args` and expects success.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `--json args`, expects success and a JSON document.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }

    /// Runs `args`, expects exit code `code`; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    async fn backends(&self) -> Backends {
        Backends::open(&self.database_url, self.redis_url.as_deref(), &self.prefix)
            .await
            .unwrap()
    }
}

fn exit_code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// The `users` table as the server creates it (seed 003 columns).
async fn add_user(backends: &Backends, id: &str, email: &str) {
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, email TEXT UNIQUE NOT NULL, name TEXT NOT NULL, password_hash TEXT NOT NULL, created_at BIGINT, updated_at BIGINT)";
    match backends.database.any_pool() {
        Pool::Sqlite(pool) => {
            sqlx::query(CREATE).execute(&pool).await.unwrap();
            sqlx::query("INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES (?1, ?2, 'Alice', 'x', 0, 0)")
                .bind(id)
                .bind(email)
                .execute(&pool)
                .await
                .unwrap();
        }
        Pool::Postgres(pool) => {
            sqlx::query(CREATE).execute(&pool).await.unwrap();
            sqlx::query("INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES ($1, $2, 'Alice', 'x', 0, 0)")
                .bind(id)
                .bind(email)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
}

async fn is_revoked(
    backends: &Backends,
    subject: &str,
    jti: Option<&str>,
    iat: SystemTime,
) -> bool {
    backends
        .revocations
        .is_revoked(&TokenRef {
            token_id: jti,
            family: None,
            subject,
            issued_at: Some(iat),
        })
        .await
        .unwrap()
}

/// `(action, details)` of every audit record.
async fn audit_rows(backends: &Backends) -> Vec<(String, String)> {
    const SELECT: &str = "SELECT action, details FROM audit_logs ORDER BY id";
    match backends.database.any_pool() {
        Pool::Sqlite(pool) => sqlx::query_as(SELECT).fetch_all(&pool).await.unwrap(),
        Pool::Postgres(pool) => sqlx::query_as(SELECT).fetch_all(&pool).await.unwrap(),
    }
}

/// Everything that touches state, on one deployment.
async fn full_flow(d: &Deployment) {
    let backends = d.backends().await;

    // --- keys: create prints the key once; list never shows it.
    let created = d.json(&[
        "keys",
        "create",
        "--owner",
        "usr_cafe01",
        "--name",
        "ci-deploy",
        "--scope",
        "workflows:read",
        "--scope",
        "workflows:execute",
        "--expires-in",
        "30d",
    ]);
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["key_id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("pc_live_"), "{key}");
    assert!(key.contains(&id));
    assert_eq!(
        created["scopes"],
        json!(["workflows:read", "workflows:execute"])
    );
    assert_eq!(created["status"], "active");
    assert!(created["expires_at"].as_str().unwrap().ends_with('Z'));

    let listed = d.json(&["keys", "list"]);
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == id.as_str())
        .expect("the new key is listed");
    assert!(entry.get("key").is_none(), "list must not carry the key");
    assert_eq!(entry["owner"], "usr_cafe01");
    let table = d.ok(&["keys", "list"]);
    assert!(
        table.contains(&id) && table.contains("ci-deploy"),
        "{table}"
    );
    let secret_part = key.rsplit('_').next().unwrap();
    assert!(!table.contains(secret_part), "the table shows the secret");

    // --- revoke (by id), then it is only in --include-inactive, revoked.
    let revoked = d.json(&["keys", "revoke", &id]);
    assert_eq!(revoked["status"], "revoked");
    let active = d.json(&["keys", "list", "--owner", "usr_cafe01"]);
    assert!(
        active
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["key_id"] != id.as_str())
    );
    let all = d.json(&[
        "keys",
        "list",
        "--include-inactive",
        "--owner",
        "usr_cafe01",
    ]);
    let entry = all
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == id.as_str())
        .expect("listed with --include-inactive");
    assert_eq!(entry["status"], "revoked");
    assert!(entry["revoked_at"].is_string());
    let stderr = d.fails(&["keys", "revoke", "nosuchkey000"], 1);
    assert!(stderr.contains("no API key"), "{stderr}");

    // --- rotate: a new key; the old one ends at once with --grace 0s.
    let second = d.json(&[
        "keys",
        "create",
        "--owner",
        "usr_cafe01",
        "--name",
        "rotating",
    ]);
    let second_key = second["key"].as_str().unwrap();
    let rotated = d.json(&["keys", "rotate", second_key, "--grace", "0s"]);
    let new_key = rotated["new"]["key"].as_str().unwrap();
    assert!(new_key.starts_with("pc_live_") && new_key != second_key);
    assert_eq!(rotated["previous"]["key_id"], second["key_id"]);
    assert_eq!(rotated["new"]["name"], "rotating");
    let active = d.json(&["keys", "list", "--owner", "usr_cafe01"]);
    let ids: Vec<&str> = active
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [rotated["new"]["key_id"].as_str().unwrap()]);
    let human = d.ok(&["keys", "create", "--owner", "usr_cafe02", "--name", "human"]);
    assert!(
        human.contains("pc_live_") && human.contains("only this once"),
        "{human}"
    );
    // A leaked key is revoked by the key itself; the output does not repeat it.
    let leaked = d.json(&[
        "keys",
        "create",
        "--owner",
        "usr_cafe02",
        "--name",
        "leaked",
    ]);
    let leaked_key = leaked["key"].as_str().unwrap();
    let out = d.ok(&["keys", "revoke", leaked_key]);
    assert!(
        out.contains("Revoked") && !out.contains(leaked_key),
        "{out}"
    );
    let all = d.json(&[
        "keys",
        "list",
        "--include-inactive",
        "--owner",
        "usr_cafe02",
    ]);
    let entry = all
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == leaked["key_id"])
        .unwrap();
    assert_eq!(entry["status"], "revoked");

    // --- blocklist add / list / remove.
    let added = d.json(&[
        "blocklist",
        "add",
        "203.0.113.0/24",
        "--duration",
        "24h",
        "--reason",
        "credential stuffing",
    ]);
    assert_eq!(added["network"], "203.0.113.0/24");
    d.ok(&[
        "blocklist",
        "add",
        "198.51.100.7",
        "--permanent",
        "--reason",
        "abuse",
    ]);
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    assert!(
        backends
            .block_list
            .find(ip, SystemTime::now())
            .await
            .unwrap()
            .is_some(),
        "the server's block list sees the entry"
    );
    let list = d.json(&["blocklist", "list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let stuffing = list
        .iter()
        .find(|e| e["network"] == "203.0.113.0/24")
        .unwrap();
    assert_eq!(stuffing["reason"], "credential stuffing");
    assert!(stuffing["until"].is_string());
    let permanent = list
        .iter()
        .find(|e| e["network"] == "198.51.100.7/32")
        .unwrap();
    assert!(permanent["until"].is_null());
    let table = d.ok(&["blocklist", "list"]);
    assert!(
        table.contains("credential stuffing") && table.contains("until removed"),
        "{table}"
    );
    d.ok(&["blocklist", "remove", "203.0.113.0/24"]);
    d.ok(&["blocklist", "remove", "198.51.100.7"]);
    assert_eq!(d.json(&["blocklist", "list"]), json!([]));
    d.fails(&["blocklist", "remove", "203.0.113.0/24"], 1);
    d.fails(
        &[
            "blocklist",
            "add",
            "not-an-ip",
            "--duration",
            "1h",
            "--reason",
            "x",
        ],
        1,
    );

    // --- lockout: five failures lock alice; the CLI lists and unlocks.
    let now = SystemTime::now();
    let policy = AttemptPolicy::default();
    let alice = AttemptKey::Account("alice@example.com".into());
    for _ in 0..policy.limit {
        backends
            .attempts
            .record_failure(&alice, &policy, false, now)
            .await
            .unwrap();
    }
    let locked = d.json(&["lockout", "list"]);
    assert_eq!(
        locked["accounts"][0]["account"], "alice@example.com",
        "{locked}"
    );
    assert!(locked["accounts"][0]["remaining_seconds"].as_u64().unwrap() > 1000);
    let status = d.json(&["lockout", "status", "  Alice@Example.COM "]);
    assert_eq!(status["locked"], true, "{status}");
    assert_eq!(status["locks"], 1);
    let unlocked = d.json(&["lockout", "unlock", "ALICE@example.com"]);
    assert_eq!(unlocked["unlocked"], true);
    let state = backends
        .attempts
        .status(&alice, policy.window, SystemTime::now())
        .await
        .unwrap();
    assert!(
        state.is_none_or(|s| s.lock.is_none() && s.failures == 0),
        "{state:?}"
    );
    assert_eq!(d.json(&["lockout", "list"])["accounts"], json!([]));
    assert_eq!(
        d.json(&["lockout", "unlock", "alice@example.com"])["unlocked"],
        false
    );
    d.ok(&["lockout", "lock", "mallory@example.com", "--duration", "1h"]);
    let table = d.ok(&["lockout", "list"]);
    assert!(table.contains("mallory@example.com"), "{table}");
    d.ok(&["lockout", "unlock", "mallory@example.com"]);

    // --- lockout: the server also locks the account from the guessing
    // address (the account+address counter); list and status show it,
    // unlock lifts it with the account's own lock, unlock-ip lifts the
    // address's.
    let now = SystemTime::now();
    let guesser: IpAddr = "127.0.0.3".parse().unwrap();
    let other: IpAddr = "2001:db8:1:2::".parse().unwrap();
    let pair = |account: &str, ip: IpAddr| AttemptKey::AccountIp(account.into(), ip);
    for key in [alice.clone(), pair("alice@example.com", guesser)] {
        for _ in 0..policy.limit {
            backends
                .attempts
                .record_failure(&key, &policy, false, now)
                .await
                .unwrap();
        }
    }
    backends
        .attempts
        .record_failure(&pair("alice@example.com", other), &policy, false, now)
        .await
        .unwrap();
    let locked = d.json(&["lockout", "list"]);
    assert_eq!(
        locked["account_ips"][0]["account"], "alice@example.com",
        "{locked}"
    );
    assert_eq!(locked["account_ips"][0]["ip"], "127.0.0.3");
    assert_eq!(locked["account_ips"].as_array().unwrap().len(), 1);
    let table = d.ok(&["lockout", "list"]);
    assert!(
        table.contains("account+ip") && table.contains("alice@example.com from 127.0.0.3"),
        "{table}"
    );
    let status = d.json(&["lockout", "status", "alice@example.com"]);
    let from = status["from_addresses"].as_array().unwrap();
    assert_eq!(from.len(), 2, "{status}");
    assert_eq!(from[0]["ip"], "127.0.0.3");
    assert_eq!(from[0]["locked"], true);
    assert_eq!(from[1]["ip"], "2001:db8:1:2::");
    assert_eq!(from[1]["locked"], false);
    assert_eq!(from[1]["failures"], 1);
    let text = d.ok(&["lockout", "status", "alice@example.com"]);
    assert!(text.contains("From single addresses (1 locked"), "{text}");
    let unlocked = d.json(&["lockout", "unlock", "alice@example.com"]);
    assert_eq!(
        unlocked,
        json!({ "unlocked": true, "account_lock": true, "address_locks": 1 })
    );
    let later = SystemTime::now();
    for key in [
        alice.clone(),
        pair("alice@example.com", guesser),
        pair("alice@example.com", other),
    ] {
        let state = backends
            .attempts
            .status(&key, policy.window, later)
            .await
            .unwrap();
        assert!(
            state.is_none_or(|s| s.lock.is_none() && s.failures == 0),
            "{key:?}: {state:?}"
        );
    }
    assert_eq!(d.json(&["lockout", "list"])["account_ips"], json!([]));
    // unlock-ip: the address's own lock and the accounts locked from it.
    let ip_policy = AttemptPolicy::new(2, Duration::from_secs(300), Duration::from_secs(900));
    for key in [
        AttemptKey::Ip(guesser),
        pair("bob", guesser),
        pair("carol", guesser),
        pair("carol", other),
    ] {
        for _ in 0..ip_policy.limit {
            backends
                .attempts
                .record_failure(&key, &ip_policy, false, now)
                .await
                .unwrap();
        }
    }
    let unlocked = d.json(&["lockout", "unlock-ip", "127.0.0.3"]);
    assert_eq!(unlocked["address_lock"], true, "{unlocked}");
    assert_eq!(unlocked["account_locks"], 2);
    let left = d.json(&["lockout", "list"]);
    assert_eq!(left["ips"], json!([]));
    assert_eq!(left["account_ips"].as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left["account_ips"][0]["ip"], "2001:db8:1:2::");
    d.ok(&["lockout", "unlock", "carol"]);

    // --- attempts top: ordered by failures, per kind, limited.
    let now = SystemTime::now();
    let fail = |key: AttemptKey, n: u32| {
        let attempts = backends.attempts.clone();
        let policy = policy.clone();
        async move {
            for _ in 0..n {
                attempts
                    .record_failure(&key, &policy, false, now)
                    .await
                    .unwrap();
            }
        }
    };
    fail(AttemptKey::Ip("192.0.2.1".parse().unwrap()), 4).await;
    fail(AttemptKey::Ip("192.0.2.2".parse().unwrap()), 1).await;
    fail(AttemptKey::Ip("192.0.2.3".parse().unwrap()), 2).await;
    fail(AttemptKey::Account("bob".into()), 3).await;
    fail(AttemptKey::Account("carol".into()), 1).await;
    let top = d.json(&["attempts", "top", "--window", "1h"]);
    let ips: Vec<(&str, u64)> = top["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["ip"].as_str().unwrap(), e["failures"].as_u64().unwrap()))
        .collect();
    assert_eq!(ips, [("192.0.2.1", 4), ("192.0.2.3", 2), ("192.0.2.2", 1)]);
    let accounts: Vec<&str> = top["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["account"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, ["bob", "carol"]);
    let top1 = d.json(&["attempts", "top", "--limit", "1"]);
    assert_eq!(top1["ips"].as_array().unwrap().len(), 1);
    assert_eq!(top1["accounts"][0]["account"], "bob");
    let table = d.ok(&["attempts", "top"]);
    let first_ip = table.find("192.0.2.1").unwrap();
    assert!(first_ip < table.find("192.0.2.3").unwrap(), "{table}");

    // --- tokens revoke --jti / --user (by id and by email).
    d.json(&["tokens", "revoke", "--jti", "jti-cli-1"]);
    let earlier = SystemTime::now() - Duration::from_secs(5);
    assert!(is_revoked(&backends, "usr_any", Some("jti-cli-1"), earlier).await);
    assert!(!is_revoked(&backends, "usr_any", Some("jti-cli-2"), earlier).await);
    let again = d.json(&["tokens", "revoke", "--jti", "jti-cli-1"]);
    assert_eq!(again["already_revoked"], true);

    // --- tokens revoke --jti … --family …: the session of a leaked access
    // token, checked with a real issuer on the deployment's store.
    let issuer = TokenIssuer::builder(
        SigningKey::hmac(Algorithm::HS256, "a-test-secret-of-at-least-32-bytes!!").unwrap(),
        "cli-test",
    )
    .build(backends.revocations.clone())
    .unwrap();
    let principal = Principal::new("usr_family", PrincipalKind::User);
    let kept = issuer.issue(&principal).unwrap();
    let leaked = issuer.issue(&principal).unwrap();
    let claims = |token: &str| -> Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let access = claims(&leaked.access_token);
    let (jti, fam) = (
        access["jti"].as_str().unwrap(),
        access["fam"].as_str().unwrap(),
    );
    // Without --family: the token only; the session keeps refreshing.
    let out = d.json(&["tokens", "revoke", "--jti", jti]);
    assert_eq!(out["revoked"], "token", "{out}");
    let text = d.ok(&["tokens", "revoke", "--jti", jti]);
    assert!(text.contains("add --family"), "{text}");
    let leaked = issuer.refresh(&leaked.refresh_token).await.unwrap();
    // With --family: the refresh token and every access token of the family.
    let fam_of_new = claims(&leaked.access_token)["fam"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(fam_of_new, fam, "a refresh stays in the family");
    let out = d.json(&["tokens", "revoke", "--jti", jti, "--family", fam]);
    assert_eq!(out["revoked"], "family", "{out}");
    assert_eq!(out["family"], fam);
    assert_eq!(out["already_revoked"], true);
    assert!(out["family_retained_until"].is_string());
    let refused = issuer.refresh(&leaked.refresh_token).await.unwrap_err();
    assert_eq!(refused.reason(), FailureReason::TokenRevoked, "{refused}");
    let new_access = claims(&leaked.access_token);
    assert!(
        backends
            .revocations
            .is_revoked(&TokenRef {
                token_id: new_access["jti"].as_str(),
                family: new_access["fam"].as_str(),
                subject: "usr_family",
                issued_at: Some(SystemTime::now()),
            })
            .await
            .unwrap(),
        "the family's later access token is refused"
    );
    // The user's other session is untouched.
    issuer.refresh(&kept.refresh_token).await.unwrap();
    d.json(&["tokens", "revoke", "--family", "another-family"]);
    assert!(
        backends
            .revocations
            .is_revoked(&TokenRef {
                token_id: None,
                family: Some("another-family"),
                subject: "usr_x",
                issued_at: None,
            })
            .await
            .unwrap()
    );
    d.fails(&["tokens", "revoke", "--family", " "], 1);
    d.fails(&["tokens", "revoke", "--user", "usr_x", "--family", "f"], 2);

    let out = d.json(&["tokens", "revoke", "--user", "usr_direct"]);
    assert_eq!(out["user_id"], "usr_direct");
    assert!(is_revoked(&backends, "usr_direct", None, earlier).await);
    let later = SystemTime::now() + Duration::from_secs(60);
    assert!(
        !is_revoked(&backends, "usr_direct", None, later).await,
        "tokens issued later stay valid"
    );

    add_user(&backends, "usr_a11ce", "alice@example.com").await;
    let out = d.json(&["tokens", "revoke", "--user", "Alice@Example.com"]);
    assert_eq!(out["user_id"], "usr_a11ce");
    assert!(is_revoked(&backends, "usr_a11ce", None, earlier).await);
    let stderr = d.fails(&["tokens", "revoke", "--user", "nobody@example.org"], 1);
    assert!(
        !stderr.contains("nobody@example.org"),
        "echoes the email: {stderr}"
    );

    // --- cleanup: an ended block goes, the report says so.
    let past = SystemTime::now() - Duration::from_secs(7200);
    let ended = BlockEntry::new(
        "192.0.2.200".parse::<IpAddr>().unwrap(),
        Some(past + Duration::from_secs(60)),
        "old",
        past,
    );
    backends.block_list.block(ended).await.unwrap();
    let report = d.json(&["cleanup"]);
    assert!(report["ip_blocks"].as_u64().unwrap() >= 1, "{report}");
    for field in [
        "revoked_tokens",
        "login_attempts",
        "csrf_tokens",
        "login_attempt_state",
        "total",
    ] {
        assert!(report[field].is_u64(), "{field} in {report}");
    }
    let table = d.ok(&["cleanup"]);
    assert!(
        table.contains("ip_blocks") && table.contains("total"),
        "{table}"
    );

    // --- every change is in the deployment's audit log, without emails.
    let rows = audit_rows(&backends).await;
    let actions: Vec<&str> = rows.iter().map(|(a, _)| a.as_str()).collect();
    for action in [
        "security.api_key_created",
        "security.api_key_revoked",
        "security.ip_blocked",
        "security.account_unlocked",
        "security.account_locked",
        "security.token_revoked",
    ] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    for (_, details) in &rows {
        assert!(
            !details.contains("@example.com"),
            "an email in the audit log: {details}"
        );
        assert!(!details.contains(&key), "a key in the audit log");
        assert!(details.contains("\"layer\":\"cli\""), "{details}");
    }
}

#[tokio::test]
async fn the_full_flow_on_sqlite() {
    let d = Deployment::sqlite();
    full_flow(&d).await;
}

#[tokio::test]
async fn the_full_flow_on_postgres_and_redis() {
    let Some(pg) = portcullis_test::backend_url(
        "PORTCULLIS_TEST_POSTGRES_URL",
        "portcullis-cli the_full_flow_on_postgres_and_redis",
    ) else {
        return;
    };
    let Some(redis) = portcullis_test::backend_url(
        "PORTCULLIS_TEST_REDIS_URL",
        "portcullis-cli the_full_flow_on_postgres_and_redis",
    ) else {
        return;
    };
    let d = Deployment::postgres_redis(&pg, &redis).await;
    let backends = d.backends().await;
    assert_eq!(backends.database.engine(), "postgres");
    assert!(backends.redis.is_some());
    full_flow(&d).await;
    // Passed: drop the schema (a failed run leaves it for a look).
    if let Pool::Postgres(pool) = backends.database.any_pool() {
        let schema = d.schema.as_deref().unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn the_environment_names_the_state_when_flags_do_not() {
    let d = Deployment::sqlite();
    let mut cmd = Command::new(BIN);
    for var in ENV {
        cmd.env_remove(var);
    }
    let out = cmd
        .current_dir(&d.dir.0)
        .env("PORTCULLIS_DATABASE_URL", &d.database_url)
        .args([
            "--json",
            "blocklist",
            "add",
            "192.0.2.9",
            "--duration",
            "1h",
            "--reason",
            "env",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backends = d.backends().await;
    let listed = backends.block_list.list(SystemTime::now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        !d.dir.0.join("portcullis-demo.db").exists(),
        "the default database was used"
    );
}

#[test]
fn empty_variables_count_as_unset_like_backends_from_env() {
    let d = Deployment::sqlite();
    let mut cmd = Command::new(BIN);
    for var in ENV {
        cmd.env_remove(var);
    }
    let out = cmd
        .current_dir(&d.dir.0)
        .env("PORTCULLIS_DATABASE_URL", "")
        .env("PORTCULLIS_REDIS_URL", "")
        .env("PORTCULLIS_REDIS_PREFIX", "")
        .args(["--json", "keys", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.dir.0.join("portcullis-demo.db").exists(),
        "the default database in the working directory"
    );
    let warning = String::from_utf8(out.stderr).unwrap();
    assert!(warning.contains("did not exist"), "{warning}");
    let again = d.ok(&["keys", "list"]);
    assert!(again.contains("No API keys"), "{again}");
}

#[test]
fn a_pepper_from_the_environment_changes_the_digest_not_the_commands() {
    let d = Deployment::sqlite();
    let out = d
        .command()
        .env(
            "PORTCULLIS_API_KEY_PEPPER",
            "pepper-for-the-test-0123456789abcdef",
        )
        .args([
            "--json", "keys", "create", "--owner", "usr_p", "--name", "peppered",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = d.json(&["keys", "list", "--owner", "usr_p"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // A short pepper is refused with the reason, never echoed.
    let out = d
        .command()
        .env("PORTCULLIS_API_KEY_PEPPER", "short-pepper-xyz")
        .args(["keys", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("PORTCULLIS_API_KEY_PEPPER"), "{error}");
    assert!(error.contains("32"), "{error}");
    assert!(!error.contains("short-pepper-xyz"), "{error}");
}

#[test]
fn token_ids_starting_with_a_dash_are_values_not_flags() {
    // Random base64url ids start with `-` one time in 64.
    let d = Deployment::sqlite();
    let out = d.json(&[
        "tokens",
        "revoke",
        "--jti",
        "-nXb44fs4d2FZLqNr85NGQ",
        "--family",
        "-Jq8IM3VTBWuOogHquEyx",
    ]);
    assert_eq!(out["jti"], "-nXb44fs4d2FZLqNr85NGQ", "{out}");
    assert_eq!(out["family"], "-Jq8IM3VTBWuOogHquEyx", "{out}");
}

#[test]
fn secret_generate_gives_base64url_of_the_requested_length() {
    let d = Deployment::sqlite();
    let secret = d.ok(&["secret", "generate"]);
    let secret = secret.trim();
    assert_eq!(secret.len(), 43, "32 bytes, unpadded base64url");
    let charset = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    assert!(charset(secret), "{secret}");
    assert_ne!(secret, d.ok(&["secret", "generate"]).trim(), "random");
    let long = d.json(&["secret", "generate", "--bytes", "64"]);
    let long = long["secret"].as_str().unwrap();
    assert_eq!(long.len(), 86);
    assert!(charset(long));
    d.fails(&["secret", "generate", "--bytes", "8"], 2);
    d.fails(&["secret", "generate", "--bytes", "100000"], 2);
    assert!(
        !d.dir.0.join("state.db").exists(),
        "offline commands open no state"
    );
}

fn mint(exp_in: i64) -> String {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let key = SigningKey::hmac(Algorithm::HS256, b"k7Qp2xVb9Lm4Rt8Wz1Nc6Hd3Fg5Js0Ya")
        .unwrap()
        .with_kid("k1");
    key.sign(
        "JWT",
        &json!({
            "sub": "usr_5d1c0a", "iss": "portcullis-demo", "jti": "j-123",
            "iat": now, "exp": now + exp_in, "scope": "workflows:read",
        }),
    )
    .unwrap()
}

#[test]
fn jwt_inspect_decodes_without_verifying_and_redacts_the_signature() {
    let d = Deployment::sqlite();
    let token = mint(900);
    let signature = token.rsplit('.').next().unwrap().to_owned();

    let out = d.run(&["jwt", "inspect", &token]);
    assert_eq!(exit_code(&out), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    let warning = String::from_utf8(out.stderr).unwrap();
    assert!(warning.contains("UNVERIFIED"), "{warning}");
    assert!(
        text.contains("UNVERIFIED") && text.contains("usr_5d1c0a") && text.contains("HS256"),
        "{text}"
    );
    assert!(text.contains("<redacted, 32 bytes>"), "{text}");
    assert!(text.contains("in 14m") || text.contains("in 15m"), "{text}");
    assert!(!text.contains(&signature), "the signature is printed");

    let doc = d.json(&["jwt", "inspect", &token]);
    assert_eq!(doc["verified"], false);
    assert_eq!(doc["header"]["kid"], "k1");
    assert_eq!(doc["claims"]["jti"], "j-123");
    assert_eq!(doc["signature"], "<redacted>");
    assert_eq!(doc["expired"], false);
    assert!(
        doc["times"]["exp"]["rfc3339"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(doc["times"]["iat"]["relative"].is_string());

    // From stdin (keeps it out of shell history), and an expired one.
    let mut child = d
        .command()
        .args(["--json", "jwt", "inspect"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let expired = mint(-60);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{expired}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["expired"], true);
    assert!(
        doc["times"]["exp"]["relative"]
            .as_str()
            .unwrap()
            .ends_with("ago")
    );
}

#[test]
fn jwt_inspect_refuses_garbage_and_oversized_input_with_exit_1() {
    let d = Deployment::sqlite();
    for garbage in [
        "garbage-SECRET",
        "SECRET.SECRET.SECRET",
        "eyJhbGciOiJIUzI1NiJ9.SECRET!.x",
    ] {
        let stderr = d.fails(&["jwt", "inspect", garbage], 1);
        assert!(stderr.contains("not a JWT"), "{stderr}");
        assert!(!stderr.contains("SECRET"), "echoes the input: {stderr}");
    }
    let big = format!("{}.{}.{}", "a".repeat(10_000), "b".repeat(10_000), "c");
    let stderr = d.fails(&["jwt", "inspect", &big], 1);
    assert!(stderr.contains("larger than"), "{stderr}");

    // The same bound on stdin: the CLI stops reading past it.
    let mut child = d
        .command()
        .args(["jwt", "inspect", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // The CLI may close its end before everything is written.
        let _ = stdin.write_all(&vec![b'a'; 1 << 20]);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(exit_code(&out), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("larger than"));
}

#[test]
fn bad_usage_exits_2_and_help_has_examples() {
    let d = Deployment::sqlite();
    d.fails(&["no-such-command"], 2);
    d.fails(&["tokens", "revoke"], 2);
    d.fails(&["tokens", "revoke", "--user", "u", "--jti", "j"], 2);
    d.fails(
        &["blocklist", "add", "192.0.2.1", "--reason", "no duration"],
        2,
    );
    let stderr = d.fails(
        &[
            "blocklist",
            "add",
            "192.0.2.1",
            "--duration",
            "5x",
            "--reason",
            "r",
        ],
        2,
    );
    assert!(stderr.contains("duration"), "{stderr}");
    d.fails(&["keys", "create", "--name", "no-owner"], 2);
    d.fails(&["attempts", "top", "--window", "soon"], 2);

    let help = d.ok(&["--help"]);
    assert!(
        help.contains("Examples:") && help.contains("portcullis keys create"),
        "{help}"
    );
    let sub = d.ok(&["blocklist", "add", "--help"]);
    assert!(sub.contains("--duration 24h"), "{sub}");
}

#[test]
fn backend_failures_exit_1_without_echoing_the_url() {
    let d = Deployment::sqlite();
    let out = Command::new(BIN)
        .current_dir(&d.dir.0)
        .args([
            "--database-url",
            "postgres://operator:hunter2-secret@127.0.0.1:1/portcullis",
            "keys",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("hunter2"), "echoes the password: {stderr}");
    let out = Command::new(BIN)
        .current_dir(&d.dir.0)
        .args(["--database-url", "mysql://x/y", "keys", "list"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("sqlite://"), "{stderr}");
}

#[tokio::test]
async fn the_table_output_escapes_terminal_control_characters() {
    let d = Deployment::sqlite();
    let backends = d.backends().await;
    let key = AttemptKey::Account("evil\u{1b}[2Jname".into());
    backends
        .attempts
        .record_failure(&key, &AttemptPolicy::default(), false, SystemTime::now())
        .await
        .unwrap();
    let table = d.ok(&["attempts", "top"]);
    assert!(!table.contains('\u{1b}'), "{table:?}");
    assert!(table.contains("evil\\u{1b}[2Jname"), "{table}");
}

/// Runs the binary with `env` set and `stdin` piped in; returns (status, stdout, stderr).
fn run_with(
    d: &Deployment,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: &str,
) -> (bool, String, String) {
    let mut cmd = d.command();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn secret_kid_prints_the_servers_kid_never_the_secret() {
    let d = Deployment::sqlite();
    let secret = "a-test-secret-of-at-least-32-bytes!!";
    let old = "an-older-secret-of-at-least-32-bytes";
    // Computed independently: printf kid | openssl dgst -sha256 -hmac "$secret"
    let expected = "253e84dea9365b80";
    assert_eq!(portcullis_cli::secret::key_id(secret.as_bytes()), expected);
    let (ok, out, err) = run_with(
        &d,
        &[("PORTCULLIS_JWT_SECRET", secret)],
        &["secret", "kid"],
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(out, format!("{expected}\n"));
    let (ok, out, _) = run_with(&d, &[], &["secret", "kid"], &format!("{secret}\n"));
    assert!(ok);
    assert_eq!(out, format!("{expected}\n"), "from stdin, newline dropped");
    let (ok, out, _) = run_with(
        &d,
        &[
            ("PORTCULLIS_JWT_SECRET", secret),
            ("PORTCULLIS_JWT_SECRET_OLD", old),
        ],
        &["--json", "secret", "kid"],
        "",
    );
    assert!(ok);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["kid"], expected);
    assert_eq!(doc["source"], "PORTCULLIS_JWT_SECRET");
    assert_eq!(
        doc["old_kids"],
        json!([portcullis_cli::secret::key_id(old.as_bytes())])
    );
    assert!(!out.contains(secret) && !out.contains(old), "{out}");
    let (ok, _, err) = run_with(&d, &[], &["secret", "kid"], "short");
    assert!(ok);
    assert!(err.contains("fewer than 32"), "{err}");
    let (ok, _, err) = run_with(&d, &[], &["secret", "kid"], "");
    assert!(!ok);
    assert!(err.contains("no secret"), "{err}");
}

#[test]
fn jwt_inspect_says_whether_the_kid_is_the_configured_secrets() {
    let d = Deployment::sqlite();
    let secret = "a-test-secret-of-at-least-32-bytes!!";
    let old = "an-older-secret-of-at-least-32-bytes";
    let token = |signing: &str| {
        let kid = portcullis_cli::secret::key_id(signing.as_bytes());
        SigningKey::hmac(Algorithm::HS256, signing.as_bytes())
            .unwrap()
            .with_kid(kid)
            .sign(
                "at+jwt",
                &json!({ "sub": "usr_1", "exp": 4_000_000_000_i64 }),
            )
            .unwrap()
    };
    let both = [
        ("PORTCULLIS_JWT_SECRET", secret),
        ("PORTCULLIS_JWT_SECRET_OLD", old),
    ];
    let inspect = |env: &[(&str, &str)], token: &str| {
        let (ok, out, err) = run_with(&d, env, &["--json", "jwt", "inspect"], token);
        assert!(ok, "{err}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        let (_, text, _) = run_with(&d, env, &["jwt", "inspect"], token);
        (doc, text)
    };
    let (doc, text) = inspect(&both, &token(secret));
    assert_eq!(doc["kid"], "253e84dea9365b80");
    assert_eq!(doc["kid_match"], "current");
    assert!(text.contains("kid: 253e84dea9365b80"), "{text}");
    assert!(
        text.contains("kid matches PORTCULLIS_JWT_SECRET "),
        "{text}"
    );
    let (doc, text) = inspect(&both, &token(old));
    assert_eq!(doc["kid_match"], "old");
    assert!(text.contains("PORTCULLIS_JWT_SECRET_OLD #1"), "{text}");
    let (doc, text) = inspect(&both, &token("some-other-secret-of-32-bytes-or-more"));
    assert_eq!(doc["kid_match"], "none");
    assert_eq!(doc["server_kid"], "253e84dea9365b80");
    assert!(
        text.contains("matches none of the configured secrets"),
        "{text}"
    );
    assert!(!text.contains(secret) && !text.contains(old));
    // No secret configured: the kid alone.
    let (doc, text) = inspect(&[], &token(secret));
    assert_eq!(doc["kid"], "253e84dea9365b80");
    assert!(doc["kid_match"].is_null());
    assert!(!text.contains("matches"), "{text}");
}
