//! The reference server, served on loopback and exercised over real HTTP.
#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

struct Server {
    base: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Server {
    async fn start() -> Self {
        let app = demo::app(demo::generate_secret().as_bytes()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, hyper::HeaderMap, Value) {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let res = self.client.request(req.body(body).unwrap()).await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, value)
    }

    async fn login(&self, user: &str, password: &str) -> (u16, Value) {
        let (status, _, body) = self
            .call(
                "POST",
                "/auth/login",
                None,
                Some(json!({"username": user, "password": password})),
            )
            .await;
        (status, body)
    }
}

#[tokio::test]
async fn login_call_refresh_and_logout() {
    let server = Server::start().await;
    assert_eq!(server.call("GET", "/health", None, None).await.0, 200);

    let (status, headers, body) = server.call("GET", "/api/me", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer realm="portcullis-demo""#
    );
    assert_eq!(body["error"], "missing_token");

    let (status, body) = server.login("alice", "wrong").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_credentials");

    let (status, pair) = server.login("alice", "wonderland").await;
    assert_eq!(status, 200);
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();

    let (status, _, me) = server.call("GET", "/api/me", Some(&access), None).await;
    assert_eq!(status, 200);
    assert_eq!(me["subject"], "alice");
    assert_eq!(
        server
            .call("GET", "/api/orders", Some(&access), None)
            .await
            .0,
        200
    );
    let (status, headers, body) = server.call("GET", "/api/admin", Some(&access), None).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "insufficient_permissions");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );

    // The refresh token is not an access token.
    assert_eq!(
        server.call("GET", "/api/me", Some(&refresh), None).await.0,
        401
    );

    // Rotation, then reuse of the old refresh token revokes the family.
    let (status, _, next) = server
        .call(
            "POST",
            "/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(status, 200);
    let next_access = next["access_token"].as_str().unwrap().to_owned();
    let (status, _, body) = server
        .call(
            "POST",
            "/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_revoked"))
    );
    // Allow the revocation cache (2 s) to expire: the documented bound.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, _, body) = server
        .call("GET", "/api/me", Some(&next_access), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_revoked"))
    );

    // A fresh session for the admin: logout-all ends it.
    let (_, pair) = server.login("admin", "portcullis").await;
    let access = pair["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        server
            .call("GET", "/api/admin", Some(&access), None)
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call("POST", "/auth/logout-all", Some(&access), None)
            .await
            .0,
        204
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        server
            .call("GET", "/api/admin", Some(&access), None)
            .await
            .0,
        401
    );
}

impl Server {
    async fn get_text(&self, path: &str) -> (u16, String) {
        let req = hyper::Request::get(format!("{}{path}", self.base))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = self.client.request(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

/// Runs `promtool check metrics` on `text`; `None` when promtool is absent.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), report))
}

#[tokio::test]
async fn metrics_are_served_with_bounded_labels_and_pass_promtool() {
    let server = Server::start().await;
    let (status, _, _) = server.call("GET", "/api/me", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = server.login("alice", "wrong").await;
    assert_eq!(status, 401);
    let (status, pair) = server.login("alice", "wonderland").await;
    assert_eq!(status, 200);
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let (status, _, _) = server.call("GET", "/api/admin", Some(&token), None).await;
    assert_eq!(status, 403);

    let (status, text) = server.get_text("/metrics").await;
    assert_eq!(status, 200);
    // Counters are process-wide and other tests share the recorder: check
    // the series exist, not exact values.
    for series in [
        r#"portcullis_auth_failures_total{reason="missing_token",method="jwt"}"#,
        r#"portcullis_auth_failures_total{reason="invalid_credentials",method="password"}"#,
        r#"portcullis_auth_failures_total{reason="insufficient_permissions",method="jwt"}"#,
        r#"portcullis_auth_success_total{method="password"}"#,
        "portcullis_requests_total",
        "portcullis_auth_duration_seconds_bucket",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    assert!(!text.contains("alice"), "no user in a label");

    match promtool_check(&text) {
        Some((ok, report)) => assert!(ok, "promtool check metrics failed:\n{report}"),
        None if std::env::var_os("CI").is_some() => {
            panic!("promtool is required in CI (Debian package prometheus)")
        }
        #[allow(clippy::print_stderr)] // the visible skip message
        None => eprintln!(
            "SKIPPED promtool check metrics: promtool not installed (apt-get install prometheus)"
        ),
    }
}
