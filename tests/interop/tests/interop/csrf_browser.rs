//! `CsrfLayer` in a real browser: headless Chromium driven over WebDriver
//! (chromedriver, started here on a free loopback port) with fantoccini.
//!
//! - The app (`csrf::spawn_app`) runs on `http://127.0.0.1:<a>`. Its page
//!   submits an HTML form with the hidden token field and a `fetch()` with
//!   `X-CSRF-Token`: both succeed and the server-side counter moves.
//! - Attacker pages are served from a second server on another port, once
//!   as `http://127.0.0.1:<b>` (another origin on the **same site**: the
//!   browser sends the app's `SameSite=Lax` cookies) and once as
//!   `http://localhost:<b>` (another **site**). Each posts a form and a
//!   no-CORS `fetch()` to the app, and tries a CORS `fetch()` with the
//!   token header. The counter must not move; the server must have refused
//!   every POST with `403 cross_origin`.
//!
//! The `__Host-` cookie needs `Secure`. Chromium treats `http://127.0.0.1`
//! and `http://localhost` as potentially trustworthy origins and accepts
//! `Secure` (and `__Host-`) cookies from them over plain HTTP, so no TLS is
//! needed; the test asserts the browser really stored the cookie.
//!
//! Without `chromedriver`/`chromium` the test prints why and passes, unless
//! `CI` is set: then it fails. Binaries: `$CHROMEDRIVER` / `$CHROME_BIN`,
//! else `/usr/bin/chromedriver` / `/usr/bin/chromium`. Debian packages:
//! `chromium chromium-driver`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::common::listener;
use crate::csrf::{Observed, SECRET, spawn_app};

/// Locates a binary from an environment variable or a default path.
fn binary(var: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    path.is_file().then_some(path)
}

/// Kills chromedriver (and with it the browser) when the test ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

async fn start_driver(chromedriver: &PathBuf) -> (Driver, String) {
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    // Readiness of an external process: poll its port, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (driver, format!("http://127.0.0.1:{port}"))
}

async fn browser(webdriver: &str, chromium: &PathBuf) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
            ],
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("WebDriver session")
}

/// The attacker's page: a form and two `fetch()`es aimed at the app. The
/// form carries a token the attacker got by visiting the app themselves.
fn attacker_page(app: SocketAddr, token: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><title>cute cats</title></head>
<body>
<form id="evil" method="post" action="http://{app}/transfer">
  <input type="hidden" name="csrf_token" value="{token}">
  <input type="hidden" name="amount" value="1000000">
</form>
<script>
  window.noCors = () => fetch("http://{app}/transfer", {{
      method: "POST", mode: "no-cors", credentials: "include",
      headers: {{"Content-Type": "application/x-www-form-urlencoded"}},
      body: "amount=1000000&csrf_token={token}"
    }}).then(r => "opaque:" + r.type + ":" + r.status, e => "error:" + e.name);
  window.withHeader = () => fetch("http://{app}/transfer", {{
      method: "POST", credentials: "include",
      headers: {{"X-CSRF-Token": "{token}", "Content-Type": "application/json"}},
      body: "{{}}"
    }}).then(r => "status:" + r.status, e => "error:" + e.name);
</script>
</body></html>"#
    )
}

async fn spawn_attacker(app: SocketAddr, token: String) -> u16 {
    let (listener, addr) = listener().await;
    let html = attacker_page(app, &token);
    let router = Router::new().route("/", get(move || async move { Html(html) }));
    tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("attacker server");
    });
    addr.port()
}

/// Runs `script` (which returns a promise) and returns what it resolved to.
async fn run(client: &Client, script: &str) -> Value {
    let wrapped = format!(
        "const done = arguments[arguments.length - 1]; Promise.resolve().then(() => {script}).then(done, e => done('threw:' + e));"
    );
    client
        .execute_async(&wrapped, Vec::new())
        .await
        .expect("script")
}

/// Waits until the browser's URL satisfies `done`.
async fn wait_for_url(client: &Client, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = client.current_url().await.expect("url").to_string();
        if done(&url) {
            return url;
        }
        assert!(
            Instant::now() < deadline,
            "navigation did not finish: {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the server has recorded `n` responses to `POST /transfer`
/// (a navigation's request may land after the URL changes).
async fn wait_for_transfers(observed: &Observed, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while observed.transfer_responses().len() < n {
        assert!(
            Instant::now() < deadline,
            "server saw {:?}",
            observed.transfer_responses()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // the skip message is the point
async fn real_browser_accepts_the_apps_own_requests_and_refuses_other_origins() {
    let (Some(chromedriver), Some(chromium)) = (
        binary("CHROMEDRIVER", "/usr/bin/chromedriver"),
        binary("CHROME_BIN", "/usr/bin/chromium"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromedriver/chromium are missing: install the Debian packages `chromium chromium-driver`"
        );
        eprintln!(
            "SKIPPED real_browser_…: chromedriver or chromium not found \
             (set CHROMEDRIVER / CHROME_BIN or install `chromium chromium-driver`)"
        );
        return;
    };
    let (_driver, webdriver) = start_driver(&chromedriver).await;
    let client = browser(&webdriver, &chromium).await;
    // Run in a task so that the browser is closed even when an assertion
    // fails, then re-raise the failure.
    let outcome = tokio::spawn(scenario(client.clone())).await;
    client.close().await.expect("close browser");
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

async fn scenario(client: Client) {
    let client = &client;
    let observed = Observed::default();
    let app = spawn_app(observed.clone()).await;
    let app_url = format!("http://{app}/");

    // ---- the app's own page: form and fetch() succeed.
    client.goto(&app_url).await.expect("open app");
    let cookies = client.get_all_cookies().await.expect("cookies");
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.name() == "__Host-csrf")
        .expect("Chromium stored the __Host- cookie over http://127.0.0.1");
    assert_eq!(csrf_cookie.secure(), Some(true));
    assert_eq!(csrf_cookie.http_only(), Some(true));
    assert_eq!(csrf_cookie.path(), Some("/"));
    let token = csrf_cookie.value().to_owned();

    let fetched = run(
        client,
        "fetch('/transfer', {method: 'POST', headers: {'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content, 'Content-Type': 'application/json'}, body: '{}'}).then(r => r.status)",
    )
    .await;
    assert_eq!(fetched, json!(200));
    assert_eq!(observed.transfers(), 1);

    // A fetch() without the header, from the page itself, is refused.
    let tokenless = run(
        client,
        "fetch('/transfer', {method: 'POST', body: 'amount=1'}).then(r => r.status)",
    )
    .await;
    assert_eq!(tokenless, json!(403));

    let form = client.form(Locator::Css("#transfer")).await.expect("form");
    form.submit_direct().await.expect("submit");
    wait_for_url(client, |u| u.ends_with("/transfer")).await;
    let body = client
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text");
    assert_eq!(body, "transferred");
    assert_eq!(observed.transfers(), 2);
    assert_eq!(
        observed.transfer_responses(),
        [
            (200, None),
            (403, Some("csrf_missing".to_owned())),
            (200, None)
        ]
    );

    // ---- attackers: same site (127.0.0.1, other port) and cross site
    // (localhost). The form carries a token the attacker minted for
    // themselves; it is as good as any guess.
    let attacker_token = portcullis::csrf::CsrfSecret::new(SECRET)
        .expect("secret")
        .mint("attacker-session")
        .expect("token");
    assert_ne!(attacker_token, token);
    let port = spawn_attacker(app, attacker_token).await;
    let mut expected = observed.transfer_responses();
    for host in ["127.0.0.1", "localhost"] {
        let evil = format!("http://{host}:{port}/");

        client.goto(&evil).await.expect("open attacker page");
        let no_cors = run(client, "window.noCors()").await;
        // The browser hides the answer from the attacker (opaque), but the
        // request was sent: the server refused it.
        assert_eq!(no_cors, json!("opaque:opaque:0"), "{host}");
        wait_for_transfers(&observed, expected.len() + 1).await;
        expected.push((403, Some("cross_origin".to_owned())));

        // A custom header needs a CORS preflight the app never grants: the
        // POST is never sent.
        let with_header = run(client, "window.withHeader()").await;
        assert_eq!(with_header, json!("error:TypeError"), "{host}");

        let form = client.form(Locator::Css("#evil")).await.expect("form");
        form.submit_direct().await.expect("submit");
        let landed = wait_for_url(client, |u| u.starts_with(&app_url)).await;
        assert!(landed.ends_with("/transfer"), "{landed}");
        let body = client
            .find(Locator::Css("body"))
            .await
            .expect("body")
            .text()
            .await
            .expect("text");
        assert!(
            body.contains("\"error\":\"cross_origin\""),
            "{host}: {body}"
        );
        wait_for_transfers(&observed, expected.len() + 1).await;
        expected.push((403, Some("cross_origin".to_owned())));
    }
    assert_eq!(observed.transfers(), 2, "no forged transfer went through");
    assert_eq!(observed.transfer_responses(), expected);
}
