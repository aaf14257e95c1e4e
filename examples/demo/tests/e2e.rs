//! End to end: the real `portcullis-demo` binary on a free loopback port,
//! driven over HTTP through its whole contract — on a temporary SQLite
//! database, then on PostgreSQL + Redis when `PORTCULLIS_TEST_POSTGRES_URL`
//! and `PORTCULLIS_TEST_REDIS_URL` are set. When the operator CLI has been
//! built (`target/debug/portcullis`), it unlocks an account and revokes a
//! user's tokens while the server runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)] // test code: a failure is a test failure

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::Form;
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const JWT_SECRET: &str = "e2e-secret-of-at-least-thirty-two-bytes!!";
const PASSWORD: &str = "correct horse battery";
/// The JWT layer caches revocation answers this long (its default).
const REVOCATION_CACHE: Duration = Duration::from_millis(2100);

/// Where a server keeps its state.
#[derive(Clone, Debug)]
struct State {
    database_url: String,
    redis: Option<(String, String)>,
}

struct Server {
    base: String,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    state: State,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

/// Sends `req` and reads the whole answer.
async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> Reply {
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Asserts the status and the `error` of an error body.
#[track_caller]
fn expect_error(reply: &Reply, status: u16, error: &str) {
    assert_eq!(
        (reply.status, reply.error().as_str()),
        (status, error),
        "{reply:?}"
    );
}

/// `program` with none of this process's `PORTCULLIS_*` variables.
fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

impl State {
    /// `program`, clean, pointed at this state (database, Redis).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = clean_command(program);
        cmd.env("PORTCULLIS_DATABASE_URL", &self.database_url);
        if let Some((url, prefix)) = &self.redis {
            cmd.env("PORTCULLIS_REDIS_URL", url)
                .env("PORTCULLIS_REDIS_PREFIX", prefix);
        }
        cmd
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl Server {
    async fn start(state: &State, env: &[(&str, &str)]) -> Self {
        let addr = free_port();
        let mut cmd = state.command(env!("CARGO_BIN_EXE_portcullis-demo"));
        cmd.env("PORTCULLIS_DEMO_ADDR", addr.to_string())
            .env("PORTCULLIS_JWT_SECRET", JWT_SECRET);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&stdout);
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let server = Self {
            base: format!("http://{addr}"),
            child,
            stdout,
            state: state.clone(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let req = hyper::Request::get(format!("{}/health", server.base))
                .body(Full::new(Bytes::new()))
                .unwrap();
            if let Ok(res) = server.http.request(req).await
                && res.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "the demo did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        send(&self.http, req.body(body).unwrap()).await
    }

    /// A client whose connections come from `ip` (another loopback address).
    fn client_bound_to(ip: &str) -> Client<HttpConnector, Full<Bytes>> {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(ip.parse().unwrap()));
        Client::builder(TokioExecutor::new()).build(connector)
    }

    async fn login_via(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        email: &str,
        password: &str,
    ) -> Reply {
        let body = json!({"email": email, "password": password}).to_string();
        let req = hyper::Request::post(format!("{}/api/auth/login", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        send(client, req).await
    }

    async fn bearer(&self, method: &str, path: &str, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.call(method, path, &[("authorization", &auth)], None)
            .await
    }

    async fn signup(&self, email: &str) -> String {
        let reply = self
            .call(
                "POST",
                "/api/auth/signup",
                &[],
                Some(json!({"email": email, "name": "E2E", "password": PASSWORD})),
            )
            .await;
        assert_eq!(reply.status, 201, "{reply:?}");
        let body = reply.json();
        assert_eq!(body["email"], email);
        body["id"].as_str().unwrap().to_owned()
    }

    async fn login(&self, email: &str, password: &str, captcha: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = captcha
            .map(|t| vec![("x-captcha-token", t)])
            .unwrap_or_default();
        self.call(
            "POST",
            "/api/auth/login",
            &headers,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    async fn tokens(&self, email: &str) -> (String, String) {
        let reply = self.login(email, PASSWORD, None).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let pair = reply.json();
        (
            pair["access_token"].as_str().unwrap().to_owned(),
            pair["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    async fn refresh(&self, refresh_token: &str) -> Reply {
        self.call(
            "POST",
            "/api/auth/refresh",
            &[],
            Some(json!({"refresh_token": refresh_token})),
        )
        .await
    }

    fn events(&self) -> Vec<Value> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Runs the operator CLI on this server's state, if it has been built.
    fn cli(&self, args: &[&str]) -> Option<std::process::Output> {
        Some(self.state.command(cli_path()?).args(args).output().unwrap())
    }
}

impl Server {
    /// Runs `portcullis-demo users <args>` on this server's state, with
    /// `stdin` piped in.
    fn users(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write as _;
        let mut child = self
            .state
            .command(env!("CARGO_BIN_EXE_portcullis-demo"))
            .arg("users")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// `users <args> --json`, which must succeed: its JSON answer.
    fn users_json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.users(&args, None);
        assert!(out.status.success(), "users {args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    async fn scopes_of(&self, headers: &[(&str, &str)]) -> Value {
        let me = self.call("GET", "/api/me", headers, None).await;
        assert_eq!(me.status, 200, "{me:?}");
        me.json()["scopes"].clone()
    }
}

/// `target/debug/portcullis`, next to this test's demo binary.
fn cli_path() -> Option<PathBuf> {
    let demo = PathBuf::from(env!("CARGO_BIN_EXE_portcullis-demo"));
    let cli = demo.parent()?.join("portcullis");
    if cli.exists() {
        return Some(cli);
    }
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED the CLI steps: build it first (cargo build -p portcullis-cli)"
    );
    None
}

fn cookie_pair(set_cookie: &[String], name: &str) -> String {
    set_cookie
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {set_cookie:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Signup, login, /api/me, workflows, refresh, reuse, logout, API keys,
/// CSRF in cookie mode, metrics, health.
async fn contract(state: &State) {
    let server = Server::start(state, &[]).await;
    let email = format!("{}@example.com", portcullis_test::unique_name("alice"));

    // Signup.
    let id = server.signup(&email).await;
    assert!(id.starts_with("usr_"), "{id}");
    let again = server
        .call(
            "POST",
            "/api/auth/signup",
            &[],
            Some(json!({"email": email.to_uppercase(), "name": "Again", "password": PASSWORD})),
        )
        .await;
    expect_error(&again, 409, "email_taken");
    for body in [
        json!({"email": "not-an-email", "name": "X", "password": PASSWORD}),
        json!({"email": "short@example.com", "name": "X", "password": "seven77"}),
        json!({"email": "x@example.com"}),
    ] {
        let reply = server
            .call("POST", "/api/auth/signup", &[], Some(body))
            .await;
        expect_error(&reply, 400, "invalid_request");
        assert!(reply.json()["error_description"].is_string());
    }

    // JSON only: a cross-site form cannot post to signup or login.
    let form = server
        .call(
            "POST",
            "/api/auth/login",
            &[("content-type", "text/plain")],
            None,
        )
        .await;
    expect_error(&form, 400, "invalid_request");

    // Wrong password and unknown email: the same answer.
    let wrong = server.login(&email, "wrong password", None).await;
    let unknown = server
        .login("nobody@example.com", "wrong password", None)
        .await;
    expect_error(&wrong, 401, "invalid_credentials");
    assert_eq!((wrong.status, &wrong.text), (unknown.status, &unknown.text));

    // Login: a pair and the browser cookies.
    let reply = server.login(&email, PASSWORD, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let pair = reply.json();
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["token_type"], "bearer", "issue 9 spells it lowercase");
    let cookies = reply.cookies();
    let session = cookie_pair(&cookies, "portcullis_session");
    let csrf = cookie_pair(&cookies, "portcullis_csrf");
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("portcullis_session=") && c.contains("HttpOnly"))
    );
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();

    // The API with the bearer token.
    let me = server.bearer("GET", "/api/me", &access).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(
        me.json(),
        json!({"id": id, "kind": "user", "scopes": ["workflows:read", "workflows:execute"]})
    );
    let anonymous = server.call("GET", "/api/me", &[], None).await;
    expect_error(&anonymous, 401, "missing_token");
    assert_eq!(
        server.bearer("GET", "/api/workflows", &access).await.status,
        200
    );
    assert_eq!(
        server
            .bearer("POST", "/api/workflows", &access)
            .await
            .status,
        202
    );
    // The refresh token is not an access token.
    assert_eq!(server.bearer("GET", "/api/me", &refresh).await.status, 401);

    // Cookie mode: CSRF on unsafe requests.
    let cookie = format!("{session}; {csrf}");
    let token = csrf.split_once('=').unwrap().1.to_owned();
    let reply = server
        .call("GET", "/api/me", &[("cookie", &cookie)], None)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = server
        .call("POST", "/api/workflows", &[("cookie", &cookie)], None)
        .await;
    expect_error(&reply, 403, "csrf_missing");
    let reply = server
        .call(
            "POST",
            "/api/workflows",
            &[
                ("cookie", &cookie),
                ("x-csrf-token", "0".repeat(64).as_str()),
            ],
            None,
        )
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = server
        .call(
            "POST",
            "/api/workflows",
            &[("cookie", &cookie), ("x-csrf-token", &token)],
            None,
        )
        .await;
    assert_eq!(reply.status, 202, "{reply:?}");

    // Refresh: rotation, then reuse revokes the whole family.
    let rotated = server.refresh(&refresh).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let next_access = rotated.json()["access_token"].as_str().unwrap().to_owned();
    let next_refresh = rotated.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        server.bearer("GET", "/api/me", &next_access).await.status,
        200
    );
    let reuse = server.refresh(&refresh).await;
    expect_error(&reuse, 401, "token_revoked");
    let family = server.refresh(&next_refresh).await;
    expect_error(&family, 401, "token_revoked");
    tokio::time::sleep(REVOCATION_CACHE).await;
    for token in [&access, &next_access] {
        let reply = server.bearer("GET", "/api/me", token).await;
        expect_error(&reply, 401, "token_revoked");
    }

    // Logout: the access token and its refresh family.
    let (access, refresh) = server.tokens(&email).await;
    assert_eq!(
        server
            .bearer("POST", "/api/auth/logout", &access)
            .await
            .status,
        204
    );
    tokio::time::sleep(REVOCATION_CACHE).await;
    let reply = server.bearer("GET", "/api/me", &access).await;
    expect_error(&reply, 401, "token_revoked");
    let reply = server.refresh(&refresh).await;
    expect_error(&reply, 401, "token_revoked");

    // Logout in cookie mode: with the CSRF token, and the cookies cleared.
    let reply = server.login(&email, PASSWORD, None).await;
    let cookies = reply.cookies();
    let session = cookie_pair(&cookies, "portcullis_session");
    let csrf = cookie_pair(&cookies, "portcullis_csrf");
    let cookie = format!("{session}; {csrf}");
    let token = csrf.split_once('=').unwrap().1.to_owned();
    let reply = server
        .call("POST", "/api/auth/logout", &[("cookie", &cookie)], None)
        .await;
    expect_error(&reply, 403, "csrf_missing");
    let reply = server
        .call(
            "POST",
            "/api/auth/logout",
            &[("cookie", &cookie), ("x-csrf-token", &token)],
            None,
        )
        .await;
    assert_eq!(reply.status, 204, "{reply:?}");
    assert!(
        reply
            .cookies()
            .iter()
            .any(|c| c.starts_with("portcullis_session=;") && c.contains("Max-Age=0"))
    );
    tokio::time::sleep(REVOCATION_CACHE).await;
    let reply = server
        .call("GET", "/api/me", &[("cookie", &cookie)], None)
        .await;
    expect_error(&reply, 401, "token_revoked");

    // API keys.
    let (access, _) = server.tokens(&email).await;
    let auth = format!("Bearer {access}");
    let created = server
        .call(
            "POST",
            "/api/api-keys",
            &[("authorization", &auth)],
            Some(json!({"name": "ci", "scopes": ["workflows:read"], "expires_in_seconds": 3600})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let created = created.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "ci");
    assert_eq!(created["scopes"], json!(["workflows:read"]));
    let too_much = server
        .call(
            "POST",
            "/api/api-keys",
            &[("authorization", &auth)],
            Some(json!({"name": "root", "scopes": ["admin"]})),
        )
        .await;
    expect_error(&too_much, 403, "insufficient_permissions");
    let listed = server
        .call("GET", "/api/api-keys", &[("authorization", &auth)], None)
        .await;
    assert_eq!(listed.status, 200);
    assert!(!listed.text.contains(&key), "the list shows no secret");
    let keys = listed.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0]["id"], key_id.as_str());
    assert!(keys[0].get("key").is_none());

    let with_key = [("x-api-key", key.as_str())];
    let me = server.call("GET", "/api/me", &with_key, None).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.json()["id"], id.as_str());
    assert_eq!(me.json()["scopes"], json!(["workflows:read"]));
    assert_ne!(me.json()["kind"], "user");
    assert_eq!(
        server
            .call("GET", "/api/workflows", &with_key, None)
            .await
            .status,
        200
    );
    let denied = server.call("POST", "/api/workflows", &with_key, None).await;
    expect_error(&denied, 403, "insufficient_permissions");
    let denied = server.call("GET", "/api/api-keys", &with_key, None).await;
    assert_eq!(denied.status, 403, "a key does not manage keys");
    let deleted = server
        .call(
            "DELETE",
            &format!("/api/api-keys/{key_id}"),
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(deleted.status, 204, "{deleted:?}");
    let gone = server.call("GET", "/api/me", &with_key, None).await;
    assert_eq!(gone.status, 401, "{gone:?}");
    let again = server
        .call(
            "DELETE",
            &format!("/api/api-keys/{key_id}"),
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert!(again.status == 204 || again.status == 404, "{again:?}");

    // The CLI revokes every token of the user while the server runs.
    if let Some(out) = server.cli(&["tokens", "revoke", "--user", &id]) {
        assert!(out.status.success(), "{out:?}");
        tokio::time::sleep(REVOCATION_CACHE).await;
        let reply = server.bearer("GET", "/api/me", &access).await;
        expect_error(&reply, 401, "token_revoked");
    }

    // CORS: the frontend origin only.
    let origin = server.base.clone();
    let preflight = server
        .call(
            "OPTIONS",
            "/api/me",
            &[
                ("origin", &origin),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization"),
            ],
            None,
        )
        .await;
    assert_eq!(preflight.status, 204, "{preflight:?}");
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        origin.as_str()
    );
    let other = server
        .call(
            "OPTIONS",
            "/api/me",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            None,
        )
        .await;
    assert!(other.headers.get("access-control-allow-origin").is_none());

    // Metrics, health, audit.
    let metrics = server.call("GET", "/metrics", &[], None).await;
    assert_eq!(metrics.status, 200);
    for series in [
        r#"portcullis_auth_failures_total{reason="invalid_credentials",method="password"}"#,
        r#"portcullis_auth_success_total{method="password"}"#,
        "portcullis_requests_total",
    ] {
        assert!(metrics.text.contains(series), "missing {series}");
    }
    assert!(!metrics.text.contains(&email), "no email in a label");
    promtool_check(&metrics.text);
    let health = server.call("GET", "/health", &[], None).await;
    assert_eq!(health.json(), json!({"status": "ok"}));
    let detailed = server.call("GET", "/health/detailed", &[], None).await;
    assert_eq!(detailed.status, 200, "{detailed:?}");
    let detailed = detailed.json();
    assert_eq!(detailed["status"], "ok");
    assert_eq!(detailed["database"]["status"], "ok");
    if state.redis.is_some() {
        assert_eq!(detailed["redis"]["status"], "ok");
    } else {
        assert!(detailed.get("redis").is_none());
    }
    assert!(detailed["circuit_breakers"].is_array());

    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = server.events();
    assert!(
        events.iter().any(|e| e["event"] == "security.auth_failure"
            && e["context"]["failure_reason"] == "invalid_credentials"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e["event"] == "security.auth_success"));
    // The same events in the database's audit_logs.
    let db = portcullis_cli::backends::Database::open(&state.database_url)
        .await
        .unwrap();
    let rows: i64 = match db.any_pool() {
        portcullis_cli::backends::Pool::Sqlite(pool) => {
            portcullis_sqlx::sqlx::query_scalar("SELECT COUNT(*) FROM audit_logs")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
        portcullis_cli::backends::Pool::Postgres(pool) => {
            portcullis_sqlx::sqlx::query_scalar("SELECT COUNT(*) FROM audit_logs")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(rows > 0, "no audit rows in the database");
    let stdout = server.stdout.lock().unwrap().join("\n");
    for secret in [email.as_str(), PASSWORD, key.as_str(), access.as_str()] {
        assert!(!stdout.contains(secret), "a secret or email on stdout");
    }
}

/// Lockout after the configured failures; the CLI unlocks.
async fn lockout(state: &State) {
    let server = Server::start(state, &[("PORTCULLIS_LOCKOUT_MAX_ATTEMPTS", "3")]).await;
    let email = format!("{}@example.com", portcullis_test::unique_name("bob"));
    server.signup(&email).await;
    for _ in 0..3 {
        let reply = server.login(&email, "wrong password", None).await;
        assert_eq!(reply.status, 401, "{reply:?}");
    }
    let locked = server.login(&email, PASSWORD, None).await;
    expect_error(&locked, 429, "account_locked");
    let retry: u64 = locked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1800).contains(&retry), "{retry}");
    // The same answer for a wrong password while locked.
    let wrong = server.login(&email, "wrong password", None).await;
    expect_error(&wrong, 429, "account_locked");

    // From another address the account is locked too (the account lock),
    // until an operator unlocks it: then from every address, the one that
    // was guessing included (unlock lifts the account+address lock too).
    let elsewhere = Server::client_bound_to("127.0.0.2");
    let reply = server.login_via(&elsewhere, &email, PASSWORD).await;
    expect_error(&reply, 429, "account_locked");
    if let Some(out) = server.cli(&["lockout", "unlock", &email]) {
        assert!(out.status.success(), "{out:?}");
        let reply = server.login_via(&elsewhere, &email, PASSWORD).await;
        assert_eq!(reply.status, 200, "after unlock: {reply:?}");
        let reply = server.login(&email, PASSWORD, None).await;
        assert_eq!(reply.status, 200, "the guessing address: {reply:?}");
    }
}

/// CAPTCHA after the configured failures, against a fake siteverify.
async fn captcha(state: &State) {
    let fake = fake_siteverify().await;
    let server = Server::start(
        state,
        &[
            ("PORTCULLIS_CAPTCHA_PROVIDER", "turnstile"),
            ("PORTCULLIS_CAPTCHA_SECRET", "0x4AAAAAAAe2e-demo-secret"),
            ("PORTCULLIS_CAPTCHA_VERIFY_URL", &fake),
            ("PORTCULLIS_CAPTCHA_AFTER_FAILURES", "2"),
            ("PORTCULLIS_LOCKOUT_MAX_ATTEMPTS", "10"),
        ],
    )
    .await;
    let email = format!("{}@example.com", portcullis_test::unique_name("carol"));
    server.signup(&email).await;
    for _ in 0..2 {
        assert_eq!(
            server.login(&email, "wrong password", None).await.status,
            401
        );
    }
    let reply = server.login(&email, PASSWORD, None).await;
    expect_error(&reply, 403, "captcha_required");
    let reply = server
        .login(&email, PASSWORD, Some("bad-token-0123456789"))
        .await;
    expect_error(&reply, 403, "captcha_invalid");
    let reply = server
        .login(&email, PASSWORD, Some("good-token-0123456789"))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");

    let detailed = server
        .call("GET", "/health/detailed", &[], None)
        .await
        .json();
    assert_eq!(
        detailed["circuit_breakers"],
        json!([{"name": "captcha_siteverify", "state": "closed"}])
    );
}

/// A siteverify endpoint on loopback: tokens starting `good` pass.
async fn fake_siteverify() -> String {
    async fn verify(Form(form): Form<std::collections::HashMap<String, String>>) -> Json<Value> {
        let token = form.get("response").cloned().unwrap_or_default();
        if token.starts_with("good") {
            Json(json!({
                "success": true,
                "challenge_ts": portcullis::core::audit::rfc3339(SystemTime::now()),
                "hostname": "localhost",
                "action": "",
                "cdata": "",
            }))
        } else {
            Json(json!({"success": false, "error-codes": ["invalid-input-response"]}))
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/siteverify", post(verify));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/siteverify")
}

/// The same siteverify over https on 127.0.0.1, with a self-signed
/// certificate for `localhost` and `127.0.0.1`: its URL and the
/// certificate's PEM.
async fn fake_siteverify_https() -> (String, String) {
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let pem = certified.cert.pem();
    let key =
        PrivateKeyDer::from_pem_slice(certified.signing_key.serialize_pem().as_bytes()).unwrap();
    let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return; // an untrusting client
                };
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let form = req.into_body().collect().await?.to_bytes();
                        let good = String::from_utf8_lossy(&form).contains("response=good");
                        let answer = if good {
                            json!({
                                "success": true,
                                "challenge_ts": portcullis::core::audit::rfc3339(SystemTime::now()),
                                "hostname": "localhost",
                            })
                        } else {
                            json!({"success": false, "error-codes": ["invalid-input-response"]})
                        };
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer.to_string())))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://127.0.0.1:{}/siteverify", addr.port()), pem)
}

/// CAPTCHA against an https provider: trusted through
/// `PORTCULLIS_CAPTCHA_CA_FILE`, it works; with the system's roots only,
/// the self-signed provider is refused and CAPTCHAs fail closed (503).
async fn captcha_over_https(state: &State, dir: &std::path::Path) {
    let (url, pem) = fake_siteverify_https().await;
    let ca_file = dir.join(format!(
        "{}.pem",
        portcullis_test::unique_name("captcha-ca")
    ));
    std::fs::write(&ca_file, &pem).unwrap();
    let ca_file = ca_file.display().to_string();
    let env = |ca: Option<&str>| {
        let mut env = vec![
            ("PORTCULLIS_CAPTCHA_PROVIDER", "turnstile".to_owned()),
            (
                "PORTCULLIS_CAPTCHA_SECRET",
                "0x4AAAAAAAe2e-demo-secret".to_owned(),
            ),
            ("PORTCULLIS_CAPTCHA_VERIFY_URL", url.clone()),
            ("PORTCULLIS_CAPTCHA_AFTER_FAILURES", "0".to_owned()),
        ];
        if let Some(ca) = ca {
            env.push(("PORTCULLIS_CAPTCHA_CA_FILE", ca.to_owned()));
        }
        env
    };
    let email = format!("{}@example.com", portcullis_test::unique_name("grace"));
    {
        let env = env(Some(&ca_file));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Server::start(state, &env).await;
        server.signup(&email).await;
        expect_error(
            &server.login(&email, PASSWORD, None).await,
            403,
            "captcha_required",
        );
        expect_error(
            &server
                .login(&email, PASSWORD, Some("bad-token-0123456789"))
                .await,
            403,
            "captcha_invalid",
        );
        let reply = server
            .login(&email, PASSWORD, Some("good-token-0123456789"))
            .await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let env = env(None);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(state, &env).await;
    // Five failed calls open the siteverify breaker: health and metrics
    // show it.
    for _ in 0..5 {
        let reply = server
            .login(&email, PASSWORD, Some("good-token-0123456789"))
            .await;
        expect_error(&reply, 503, "upstream_unavailable");
    }
    let detailed = server.call("GET", "/health/detailed", &[], None).await;
    assert_eq!(
        detailed.json()["circuit_breakers"],
        json!([{"name": "captcha_siteverify", "state": "open"}]),
        "{detailed:?}"
    );
    // Degraded, still in rotation: the database is up.
    assert_eq!(detailed.status, 200, "{detailed:?}");
    assert_eq!(detailed.json()["status"], "degraded", "{detailed:?}");
    let metrics = server.call("GET", "/metrics", &[], None).await;
    assert!(
        metrics
            .text
            .contains(r#"portcullis_circuit_state{breaker="captcha_siteverify"} 1"#),
        "{}",
        metrics.text
    );

    // An unreadable CA file stops the server at start, naming the variable.
    let out = state
        .command(env!("CARGO_BIN_EXE_portcullis-demo"))
        .env("PORTCULLIS_DEMO_ADDR", free_port().to_string())
        .envs(env.iter().copied())
        .env("PORTCULLIS_CAPTCHA_CA_FILE", dir.join("missing.pem"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("PORTCULLIS_CAPTCHA_CA_FILE"), "{stderr}");
}

/// `promtool check metrics`, when promtool is installed (required in CI).
fn promtool_check(text: &str) {
    use std::io::Write as _;
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI (Debian package prometheus)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED promtool check metrics: promtool not installed"
        );
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a fresh, isolated state for each scenario (counters per address
/// would otherwise carry over from one scenario to the next).
enum Backend {
    Sqlite(PathBuf),
    Postgres {
        url: String,
        pool: portcullis_sqlx::sqlx::PgPool,
        redis: String,
        schemas: Mutex<Vec<String>>,
    },
}

impl Backend {
    async fn state(&self, scenario: &str) -> State {
        use portcullis_sqlx::sqlx;
        match self {
            Self::Sqlite(dir) => State {
                database_url: format!("sqlite://{}", dir.join(format!("{scenario}.db")).display()),
                redis: None,
            },
            Self::Postgres {
                url,
                pool,
                redis,
                schemas,
            } => {
                let schema = portcullis_test::unique_name("demo_e2e");
                // `schema` is ours: letters, digits and `_` from unique_name.
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(pool)
                    .await
                    .unwrap();
                schemas.lock().unwrap().push(schema.clone());
                let separator = if url.contains('?') { '&' } else { '?' };
                State {
                    database_url: format!("{url}{separator}options=-csearch_path%3D{schema}"),
                    redis: Some((redis.clone(), portcullis_test::unique_name("demo-e2e"))),
                }
            }
        }
    }

    async fn clean_up(&self) {
        use portcullis_sqlx::sqlx;
        match self {
            Self::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Self::Postgres { pool, schemas, .. } => {
                let schemas = std::mem::take(&mut *schemas.lock().unwrap());
                for schema in schemas {
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                            .execute(pool)
                            .await;
                }
            }
        }
    }
}

/// Invalid configuration: a message naming the variable (never its value)
/// and a non-zero exit, before anything listens.
fn refuses_bad_configuration(state: &State) {
    for (var, value) in [
        ("PORTCULLIS_JWT_SECRET", "too-short-secret"),
        ("PORTCULLIS_LOCKOUT_MAX_ATTEMPTS", "many"),
        ("PORTCULLIS_CAPTCHA_PROVIDER", "recaptcha-v9"),
        ("PORTCULLIS_DATABASE_URL", "mysql://nowhere"),
    ] {
        let out = clean_command(env!("CARGO_BIN_EXE_portcullis-demo"))
            .env("PORTCULLIS_DEMO_ADDR", free_port().to_string())
            .env("PORTCULLIS_DATABASE_URL", &state.database_url)
            .env(var, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}: {stderr}");
        assert!(stderr.contains("portcullis-demo:"), "{var}: {stderr}");
        if var != "PORTCULLIS_DATABASE_URL" {
            assert!(stderr.contains(var), "{var}: {stderr}");
        }
        assert!(
            !stderr.contains(value) || var == "PORTCULLIS_CAPTCHA_PROVIDER",
            "{var}: {stderr}"
        );
    }
}

/// The per-address rate limit; an operator blocks an address with the CLI.
async fn rate_limit_and_block_list(state: &State) {
    let server = Server::start(
        state,
        &[
            ("PORTCULLIS_RATE_LIMIT_RPS", "1"),
            ("PORTCULLIS_RATE_LIMIT_BURST", "3"),
        ],
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let reply = server.call("GET", "/api/me", &[], None).await;
        if reply.status == 429 {
            expect_error(&reply, 429, "rate_limited");
            assert!(reply.headers.contains_key("retry-after"));
        }
        statuses.push(reply.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // Health and metrics are outside the rate limit: a monitor polling them
    // never uses up, nor is refused by, the address's allowance.
    for path in ["/health", "/health/detailed", "/metrics", "/health"] {
        let reply = server.call("GET", path, &[], None).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
    }
    // Another address has its own allowance.
    let elsewhere = Server::client_bound_to("127.0.0.3");
    let reply = server
        .login_via(&elsewhere, "x@example.com", "wrong password")
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");

    if let Some(out) = server.cli(&[
        "blocklist",
        "add",
        "127.0.0.3",
        "--duration",
        "1h",
        "--reason",
        "e2e",
    ]) {
        assert!(out.status.success(), "{out:?}");
        let reply = server
            .login_via(&elsewhere, "x@example.com", "wrong password")
            .await;
        expect_error(&reply, 403, "ip_blocked");
    }
}

/// Key rotation: a token signed with the previous secret still verifies
/// when that secret is in `PORTCULLIS_JWT_SECRET_OLD`, and not otherwise.
async fn secret_rotation(state: &State) {
    const NEW_SECRET: &str = "the-next-secret-of-at-least-thirty-two-bytes";
    let email = format!("{}@example.com", portcullis_test::unique_name("dave"));
    let access = {
        let server = Server::start(state, &[]).await;
        server.signup(&email).await;
        server.tokens(&email).await.0
    };
    {
        let server = Server::start(
            state,
            &[
                ("PORTCULLIS_JWT_SECRET", NEW_SECRET),
                ("PORTCULLIS_JWT_SECRET_OLD", JWT_SECRET),
            ],
        )
        .await;
        assert_eq!(server.bearer("GET", "/api/me", &access).await.status, 200);
        let (fresh, _) = server.tokens(&email).await;
        assert_eq!(server.bearer("GET", "/api/me", &fresh).await.status, 200);
    }
    let server = Server::start(state, &[("PORTCULLIS_JWT_SECRET", NEW_SECRET)]).await;
    let reply = server.bearer("GET", "/api/me", &access).await;
    assert_eq!(reply.status, 401, "{reply:?}");
}

/// A TCP relay to Redis that the test can cut and restore: Redis "goes
/// down" for the demo while the real one keeps serving the other tests.
struct Relay {
    addr: SocketAddr,
    upstream: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Self {
            addr: listener.local_addr().unwrap(),
            upstream: upstream.to_owned(),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let upstream = self.upstream.clone();
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes the listener and every relayed connection.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    async fn restore(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(err) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot rebind {}: {err}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        self.serve(listener);
    }
}

/// `redis://[user@]host:port[/db]` with `host:port` replaced by `addr`, and
/// the original `host:port`.
fn redirect_redis_url(url: &str, addr: SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .map_or(("", authority), |(u, h)| (u, h));
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:6379")
    };
    let at = if userinfo.is_empty() { "" } else { "@" };
    let slash = if path.is_empty() { "" } else { "/" };
    (
        format!("{scheme}://{userinfo}{at}{addr}{slash}{path}"),
        hostport,
    )
}

/// Redis dies under a running demo: health and metrics keep answering and
/// say what is down; guarded routes fail closed with 503; Redis back, the
/// demo recovers without a restart.
async fn redis_down(state: &State) {
    let Some((redis_url, prefix)) = &state.redis else {
        return;
    };
    let upstream = redirect_redis_url(redis_url, free_port()).1;
    let relay = Relay::start(&upstream).await;
    let state = State {
        database_url: state.database_url.clone(),
        redis: Some((redirect_redis_url(redis_url, relay.addr).0, prefix.clone())),
    };
    let server = Server::start(&state, &[]).await;
    let email = format!("{}@example.com", portcullis_test::unique_name("erin"));
    server.signup(&email).await;
    let (access, _) = server.tokens(&email).await;
    assert_eq!(server.bearer("GET", "/api/me", &access).await.status, 200);

    relay.cut();
    let health = server.call("GET", "/health", &[], None).await;
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    let detailed = server.call("GET", "/health/detailed", &[], None).await;
    assert_eq!(detailed.status, 503, "{detailed:?}");
    let body = detailed.json();
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["redis"]["status"], "down", "{body}");
    assert_eq!(body["database"]["status"], "ok", "{body}");
    let metrics = server.call("GET", "/metrics", &[], None).await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(metrics.text.contains("portcullis_requests_total"));
    // What needs Redis fails closed, never open.
    let me = server.bearer("GET", "/api/me", &access).await;
    expect_error(&me, 503, "upstream_unavailable");
    let login = server.login(&email, PASSWORD, None).await;
    expect_error(&login, 503, "upstream_unavailable");

    relay.restore().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let detailed = server.call("GET", "/health/detailed", &[], None).await;
        if detailed.status == 200 {
            assert_eq!(detailed.json()["redis"]["status"], "ok");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis did not come back: {detailed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.bearer("GET", "/api/me", &access).await.status, 200);
}

/// The operator's account actions (`portcullis-demo users …`) while the
/// server runs: scopes revoked and granted, the account disabled and
/// enabled, a forced password reset.
async fn accounts(state: &State) {
    let server = Server::start(state, &[]).await;
    let email = format!("{}@example.com", portcullis_test::unique_name("frank"));
    let id = server.signup(&email).await;
    let (access, refresh) = server.tokens(&email).await;
    let bearer = format!("Bearer {access}");
    let created = server
        .call(
            "POST",
            "/api/api-keys",
            &[("authorization", &bearer)],
            Some(json!({"name": "ci", "scopes": ["workflows:read", "workflows:execute"]})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let key = created.json()["key"].as_str().unwrap().to_owned();
    let with_token = [("authorization", bearer.as_str())];
    let with_key = [("x-api-key", key.as_str())];

    let shown = server.users_json(&["show", &email]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["disabled"], false);
    assert_eq!(
        shown["scopes"],
        json!(["workflows:read", "workflows:execute"])
    );

    // A revoked scope is refused at once, for tokens and API keys.
    let revoked = server.users_json(&["revoke", &email, "workflows:execute"]);
    assert_eq!(revoked["scopes"], json!(["workflows:read"]));
    for headers in [&with_token[..], &with_key[..]] {
        let run = server.call("POST", "/api/workflows", headers, None).await;
        expect_error(&run, 403, "insufficient_permissions");
        assert_eq!(server.scopes_of(headers).await, json!(["workflows:read"]));
    }
    // A granted scope applies at once to the user's sessions, and is in the
    // next login's token; an API key never gains one beyond its own.
    let granted = server.users_json(&["grant", &email, "workflows:execute", "reports:read"]);
    assert_eq!(
        granted["scopes"],
        json!(["workflows:read", "workflows:execute", "reports:read"])
    );
    assert_eq!(
        server.scopes_of(&with_token).await,
        json!(["workflows:read", "workflows:execute", "reports:read"])
    );
    assert_eq!(
        server
            .call("POST", "/api/workflows", &with_token, None)
            .await
            .status,
        202
    );
    assert_eq!(
        server.scopes_of(&with_key).await,
        json!(["workflows:read", "workflows:execute"])
    );
    let (fresh, _) = server.tokens(&email).await;
    let fresh_bearer = format!("Bearer {fresh}");
    assert_eq!(
        server.scopes_of(&[("authorization", &fresh_bearer)]).await,
        json!(["workflows:read", "workflows:execute", "reports:read"])
    );
    let bad = server.users(&["grant", &email, "has space"], None);
    assert!(!bad.status.success(), "{bad:?}");

    // Disabled: the right password, tokens, refresh and API keys all get
    // user_disabled; a wrong password still gets invalid_credentials.
    let disabled = server.users_json(&["disable", &email]);
    assert_eq!(disabled["disabled"], true);
    assert_eq!(disabled["tokens_revoked"], true);
    expect_error(
        &server.login(&email, PASSWORD, None).await,
        401,
        "user_disabled",
    );
    expect_error(
        &server.login(&email, "wrong password", None).await,
        401,
        "invalid_credentials",
    );
    expect_error(&server.refresh(&refresh).await, 401, "user_disabled");
    expect_error(
        &server.call("GET", "/api/me", &with_key, None).await,
        401,
        "user_disabled",
    );
    // At once (the account check), and after the revocation cache.
    for wait in [Duration::ZERO, REVOCATION_CACHE] {
        tokio::time::sleep(wait).await;
        let me = server.call("GET", "/api/me", &with_token, None).await;
        expect_error(&me, 401, "user_disabled");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        server
            .events()
            .iter()
            .any(|e| e["event"] == "security.auth_failure"
                && e["context"]["failure_reason"] == "user_disabled"
                && e["context"]["user_id"] == id.as_str()),
        "no user_disabled event"
    );

    // Enabled: a new login works; the tokens revoked by disable stay so.
    let enabled = server.users_json(&["enable", &email]);
    assert_eq!(enabled["disabled"], false);
    let (after, _) = server.tokens(&email).await;
    expect_error(
        &server.call("GET", "/api/me", &with_token, None).await,
        401,
        "token_revoked",
    );
    // Tokens from the second of a revocation are revoked too (iat has
    // one-second resolution): log in again a moment later.
    tokio::time::sleep(REVOCATION_CACHE).await;
    let (after_enable, _) = server.tokens(&email).await;
    assert_eq!(
        server.bearer("GET", "/api/me", &after_enable).await.status,
        200
    );
    let _ = after;

    // Forced password reset: a generated password, printed once.
    let reset = server.users_json(&["reset-password", &email]);
    let temporary = reset["temporary_password"].as_str().unwrap().to_owned();
    assert!(temporary.len() >= 32, "{reset}");
    assert_eq!(reset["tokens_revoked"], true);
    expect_error(
        &server.login(&email, PASSWORD, None).await,
        401,
        "invalid_credentials",
    );
    tokio::time::sleep(REVOCATION_CACHE).await;
    expect_error(
        &server.bearer("GET", "/api/me", &after_enable).await,
        401,
        "token_revoked",
    );
    assert_eq!(server.login(&email, &temporary, None).await.status, 200);
    // The operator sets the password instead (stdin, never argv).
    let out = server.users(
        &["reset-password", &email, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(PASSWORD),
        "the password is not echoed: {text}"
    );
    assert_eq!(server.login(&email, PASSWORD, None).await.status, 200);
    expect_error(
        &server.login(&email, &temporary, None).await,
        401,
        "invalid_credentials",
    );
    let short = server.users(
        &["reset-password", &email, "--password-stdin"],
        Some("short"),
    );
    assert!(!short.status.success(), "{short:?}");

    // Unknown account: a message and a non-zero exit.
    let out = server.users(&["disable", "nobody@example.com"], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no account"),
        "{out:?}"
    );
}

/// Expiry with `PORTCULLIS_TOKEN_LEEWAY_SECONDS` and
/// `PORTCULLIS_TOKEN_EXPIRY_GRACE_SECONDS`: a token past `exp` is accepted
/// within the grace, refused as `token_expired` after it.
async fn expiry_grace(state: &State) {
    let server = Server::start(
        state,
        &[
            ("PORTCULLIS_TOKEN_LIFETIME_SECONDS", "1"),
            ("PORTCULLIS_TOKEN_LEEWAY_SECONDS", "0"),
            ("PORTCULLIS_TOKEN_EXPIRY_GRACE_SECONDS", "3"),
        ],
    )
    .await;
    let email = format!("{}@example.com", portcullis_test::unique_name("heidi"));
    server.signup(&email).await;
    let (access, _) = server.tokens(&email).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let me = server.bearer("GET", "/api/me", &access).await;
    assert_eq!(me.status, 200, "within the grace: {me:?}");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let me = server.bearer("GET", "/api/me", &access).await;
    expect_error(&me, 401, "token_expired");
}

/// An identity provider on loopback: serves `/jwks.json` from its keys,
/// counts requests, and answers 500 while failing.
#[derive(Clone, Default)]
struct FakeProvider {
    keys: Arc<Mutex<Vec<Value>>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    hits: Arc<std::sync::atomic::AtomicU64>,
}

const PROVIDER_ISSUER: &str = "https://idp.e2e.test/";

impl FakeProvider {
    /// Serves on a free port: the JWKS URL.
    async fn spawn(&self) -> String {
        use std::sync::atomic::Ordering;
        let provider = self.clone();
        let app = Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let provider = provider.clone();
                async move {
                    provider.hits.fetch_add(1, Ordering::SeqCst);
                    if provider.failing.load(Ordering::SeqCst) {
                        return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                    }
                    Ok(Json(json!({"keys": *provider.keys.lock().unwrap()})))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/jwks.json")
    }

    fn publish(&self, keys: &[&ProviderKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A P-256 key of the provider: its signing key (from a PKCS#8 PEM) and
/// public JWK.
struct ProviderKey {
    signing: portcullis::jwt::SigningKey,
    jwk: Value,
}

impl ProviderKey {
    fn generate(kid: &str) -> Self {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = STANDARD.encode(pair.to_pkcs8v1().unwrap().as_ref());
        let body: Vec<&str> = der
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            body.join("\n")
        );
        let signing = portcullis::jwt::SigningKey::from_pem(portcullis::jwt::Algorithm::ES256, pem)
            .unwrap()
            .with_kid(kid);
        // Uncompressed SEC1 point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        Self { signing, jwk }
    }

    /// An access token of the provider for `sub` with `scope`, for `aud`.
    fn token_for(&self, sub: &str, scope: &str, aud: &str) -> String {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "iss": PROVIDER_ISSUER, "aud": aud, "sub": sub, "scope": scope,
            "iat": now, "exp": now + 300, "jti": portcullis_test::unique_name("jti"),
        });
        self.signing.sign("at+jwt", &claims).unwrap()
    }

    fn token(&self, sub: &str, scope: &str) -> String {
        self.token_for(sub, scope, "portcullis-demo-api")
    }
}

/// An external identity provider (`PORTCULLIS_JWKS_URL`): its tokens
/// authenticate as its subjects with their scopes, without a local
/// account; a rotated key is fetched on its first token; with the provider
/// down the cached keys keep working, unknown keys fail closed (503), the
/// `jwks` breaker opens and shows in health and metrics; the server's own
/// tokens work throughout.
async fn identity_provider(state: &State) {
    let provider = FakeProvider::default();
    let (k1, k2, k3) = (
        ProviderKey::generate("k1"),
        ProviderKey::generate("k2"),
        ProviderKey::generate("k3"),
    );
    provider.publish(&[&k1]);
    let url = provider.spawn().await;
    let jwks_env = [
        ("PORTCULLIS_JWKS_URL", url.as_str()),
        ("PORTCULLIS_JWKS_ISSUER", PROVIDER_ISSUER),
        ("PORTCULLIS_JWKS_AUDIENCE", "portcullis-demo-api"),
    ];

    // Half a configuration, or a provider that cannot be reached, stops
    // the server at start, naming the variable.
    for (env, var) in [
        (&jwks_env[..1], "PORTCULLIS_JWKS_ISSUER"),
        (&jwks_env[1..], "PORTCULLIS_JWKS_URL"),
    ] {
        let out = state
            .command(env!("CARGO_BIN_EXE_portcullis-demo"))
            .env("PORTCULLIS_DEMO_ADDR", free_port().to_string())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
    }
    let unreachable = format!("http://{}/jwks.json", free_port());
    let out = state
        .command(env!("CARGO_BIN_EXE_portcullis-demo"))
        .env("PORTCULLIS_DEMO_ADDR", free_port().to_string())
        .envs(jwks_env.iter().copied())
        .env("PORTCULLIS_JWKS_URL", &unreachable)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("PORTCULLIS_JWKS_URL: the first fetch failed"),
        "{stderr}"
    );

    let mut env = jwks_env.to_vec();
    env.extend([
        ("PORTCULLIS_JWKS_REFRESH_SECONDS", "1"),
        ("PORTCULLIS_JWKS_COOLDOWN_SECONDS", "0"),
        ("PORTCULLIS_JWKS_BREAKER_OPEN_SECONDS", "60"),
    ]);
    let server = Server::start(state, &env).await;
    let detailed = server.call("GET", "/health/detailed", &[], None).await;
    assert_eq!(
        detailed.json()["circuit_breakers"],
        json!([{"name": "jwks", "state": "closed"}]),
        "{detailed:?}"
    );
    let email = format!("{}@example.com", portcullis_test::unique_name("ivan"));
    server.signup(&email).await;
    let (local, _) = server.tokens(&email).await;

    // A provider token: its subject and scopes, no local account needed.
    let alice = k1.token("idp|alice", "workflows:read");
    let me = server.bearer("GET", "/api/me", &alice).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(
        me.json(),
        json!({"id": "idp|alice", "kind": "user", "scopes": ["workflows:read"]})
    );
    let list = server.bearer("GET", "/api/workflows", &alice).await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.json()["owner"], "idp|alice");
    expect_error(
        &server.bearer("POST", "/api/workflows", &alice).await,
        403,
        "insufficient_permissions",
    );
    // No API keys or logout for a principal without an account here.
    expect_error(
        &server.bearer("GET", "/api/api-keys", &alice).await,
        403,
        "insufficient_permissions",
    );
    expect_error(
        &server.bearer("POST", "/api/auth/logout", &alice).await,
        400,
        "invalid_request",
    );
    // Another audience, or a key the provider never published (with the
    // provider up: fetched, still unknown), is refused.
    let other = k1.token_for("idp|alice", "workflows:read", "another-api");
    assert_eq!(server.bearer("GET", "/api/me", &other).await.status, 401);
    let forged = k3.token("idp|mallory", "workflows:read");
    assert_eq!(server.bearer("GET", "/api/me", &forged).await.status, 401);

    // The provider rotates to k2: its first token triggers a fetch.
    provider.publish(&[&k1, &k2]);
    let bob = k2.token("idp|bob", "workflows:read workflows:execute");
    let me = server.bearer("GET", "/api/me", &bob).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(
        me.json()["scopes"],
        json!(["workflows:read", "workflows:execute"])
    );
    assert_eq!(
        server.bearer("POST", "/api/workflows", &bob).await.status,
        202
    );

    // The provider goes down: scheduled refreshes (every second) fail, and
    // three in a row open the breaker.
    provider.set_failing(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    let detailed = loop {
        let detailed = server.call("GET", "/health/detailed", &[], None).await;
        if detailed.json()["circuit_breakers"][0]["state"] == "open" {
            break detailed;
        }
        assert!(
            Instant::now() < deadline,
            "the breaker did not open: {detailed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Degraded, still in rotation.
    assert_eq!(detailed.status, 200, "{detailed:?}");
    assert_eq!(detailed.json()["status"], "degraded", "{detailed:?}");
    let hits = provider.hits();
    // Cached keys keep verifying; the server's own tokens are unaffected.
    for token in [&alice, &bob, &local] {
        let me = server.bearer("GET", "/api/me", token).await;
        assert_eq!(me.status, 200, "{me:?}");
    }
    // A key that would need a fetch: 503, without calling the provider.
    let carol = k3.token("idp|carol", "workflows:read");
    expect_error(
        &server.bearer("GET", "/api/me", &carol).await,
        503,
        "upstream_unavailable",
    );
    assert_eq!(
        provider.hits(),
        hits,
        "the open breaker kept the provider out"
    );
    let metrics = server.call("GET", "/metrics", &[], None).await;
    assert!(
        metrics
            .text
            .contains(r#"portcullis_circuit_state{breaker="jwks"} 1"#),
        "{}",
        metrics.text
    );
    let opened = server.events().into_iter().any(|e| {
        e["event"] == "security.circuit_state_changed"
            && e.to_string().contains("jwks: closed -> open")
    });
    assert!(opened, "{:?}", server.events());
}

async fn run_all(backend: &Backend) {
    refuses_bad_configuration(&backend.state("config").await);
    contract(&backend.state("contract").await).await;
    lockout(&backend.state("lockout").await).await;
    captcha(&backend.state("captcha").await).await;
    let dir = std::env::temp_dir().join(portcullis_test::unique_name("portcullis-demo-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    captcha_over_https(&backend.state("captcha-https").await, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    rate_limit_and_block_list(&backend.state("rate").await).await;
    secret_rotation(&backend.state("rotation").await).await;
    accounts(&backend.state("accounts").await).await;
    expiry_grace(&backend.state("expiry").await).await;
    identity_provider(&backend.state("jwks").await).await;
    redis_down(&backend.state("redis-down").await).await;
    backend.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_on_sqlite() {
    let dir = std::env::temp_dir().join(portcullis_test::unique_name("portcullis-demo-e2e"));
    std::fs::create_dir_all(&dir).unwrap();
    run_all(&Backend::Sqlite(dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_on_postgres_and_redis() {
    let case = "portcullis-demo e2e on PostgreSQL + Redis";
    let Some(url) = portcullis_test::backend_url("PORTCULLIS_TEST_POSTGRES_URL", case) else {
        return;
    };
    let Some(redis) = portcullis_test::backend_url("PORTCULLIS_TEST_REDIS_URL", case) else {
        return;
    };
    let pool = portcullis_sqlx::sqlx::PgPool::connect(&url).await.unwrap();
    run_all(&Backend::Postgres {
        url,
        pool,
        redis,
        schemas: Mutex::new(Vec::new()),
    })
    .await;
}
