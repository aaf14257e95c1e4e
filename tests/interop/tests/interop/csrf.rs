//! `CsrfLayer` in an axum 0.8 app over real loopback HTTP: a server-rendered
//! page that hands out the token (form field and `<meta>` tag), a
//! state-changing `POST /transfer` counted server-side, a login that rotates
//! the token to a new session, and an outer layer that records every
//! response's status and rejection reason. The browser test
//! (`csrf_browser`) drives the same app from headless Chromium.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use portcullis::csrf::{CsrfLayer, CsrfSecret, CsrfToken, SessionCookie};
use portcullis::{EventKind, Rejection, SecurityEvents};

use crate::common::{HttpClient, Reply, client, http_get, listener, request, send};

/// The CSRF secret of the test app.
pub(crate) const SECRET: &[u8] = b"interop-csrf-secret-5b1e0c9a-77d2-4f3e";
/// The session cookie of the test app (its own session management).
pub(crate) const SESSION_COOKIE: &str = "sid";

/// What the app did, for assertions.
#[derive(Clone, Default)]
pub(crate) struct Observed {
    /// Successful `POST /transfer` calls: the server-side effect.
    pub(crate) transfers: Arc<AtomicUsize>,
    /// `(method path, status, rejection reason)` of every response.
    pub(crate) responses: Arc<Mutex<Vec<(String, u16, Option<String>)>>>,
    /// `security.csrf_violation` events seen on responses.
    pub(crate) violations: Arc<AtomicUsize>,
}

impl Observed {
    pub(crate) fn transfers(&self) -> usize {
        self.transfers.load(Ordering::SeqCst)
    }

    /// The recorded responses to `POST /transfer`.
    pub(crate) fn transfer_responses(&self) -> Vec<(u16, Option<String>)> {
        self.responses
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(what, _, _)| what == "POST /transfer")
            .map(|(_, status, reason)| (*status, reason.clone()))
            .collect()
    }
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn with_session_cookie(mut response: Response, session: &str) -> Response {
    let cookie = format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax");
    response
        .headers_mut()
        .append("set-cookie", cookie.parse().expect("cookie"));
    response
}

/// `GET /`: the app's page. A first visit gets a session, and the CSRF
/// token is rotated to it; the token goes into the form and a `<meta>` tag.
async fn page(headers: HeaderMap, csrf: CsrfToken) -> Response {
    let (token, new_session) = match session_of(&headers) {
        Some(_) => (csrf.token().await.expect("token"), None),
        None => {
            let session = new_session_id();
            (csrf.rotate(&session).await.expect("token"), Some(session))
        }
    };
    let html = Html(format!(
        r#"<!doctype html>
<html><head><meta name="csrf-token" content="{token}"><title>bank</title></head>
<body>
<form id="transfer" method="post" action="/transfer">
  <input type="hidden" name="csrf_token" value="{token}">
  <input name="amount" value="10">
  <button type="submit">Send</button>
</form>
</body></html>"#
    ))
    .into_response();
    match new_session {
        Some(session) => with_session_cookie(html, &session),
        None => html,
    }
}

/// `POST /transfer`: the state change.
async fn transfer(State(observed): State<Observed>) -> &'static str {
    observed.transfers.fetch_add(1, Ordering::SeqCst);
    "transferred"
}

/// `POST /login`: credentials would be checked here; then a new session id
/// (never the one the client came with) and a CSRF token bound to it.
async fn login(csrf: CsrfToken) -> Response {
    let session = new_session_id();
    let token = csrf.rotate(&session).await.expect("rotate");
    with_session_cookie(token.into_response(), &session)
}

/// The app's CSRF layer: `origin` is the app's own origin.
pub(crate) fn csrf_layer(origin: &str) -> CsrfLayer {
    CsrfLayer::builder(CsrfSecret::new(SECRET).expect("secret"))
        .trusted_origin(origin)
        .session(SessionCookie::new(SESSION_COOKIE))
        .build()
        .expect("csrf layer")
}

/// Records `(method path, status, rejection reason)` of every response,
/// outside the CSRF layer.
async fn record(
    State(observed): State<Observed>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let what = format!("{} {}", request.method(), request.uri().path());
    let response = next.run(request).await;
    let reason = response
        .extensions()
        .get::<Rejection>()
        .map(|r| r.reason().as_str().to_owned());
    let violations = SecurityEvents::of(&response)
        .iter()
        .filter(|e| e.kind() == EventKind::CsrfViolation)
        .count();
    observed.violations.fetch_add(violations, Ordering::SeqCst);
    observed.responses.lock().expect("not poisoned").push((
        what,
        response.status().as_u16(),
        reason,
    ));
    response
}

/// Serves the app on `127.0.0.1:<ephemeral>`; returns its address.
pub(crate) async fn spawn_app(observed: Observed) -> SocketAddr {
    let (listener, addr) = listener().await;
    let origin = format!("http://{addr}");
    let router = Router::new()
        .route("/", get(page))
        .route("/transfer", post(transfer))
        .route("/login", post(login))
        .with_state(observed.clone())
        .layer(csrf_layer(&origin).with_form_field("csrf_token", 16 * 1024))
        .layer(from_fn_with_state(observed, record));
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("axum server");
    });
    addr
}

/// The cookies a response sets, as `name=value` pairs.
fn set_cookies(reply: &Reply) -> Vec<(String, String)> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ASCII").to_owned())
        .map(|c| {
            let pair = c.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').expect("name=value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// A browser-like visitor: keeps cookies, sends the page's `Origin`.
struct Visitor {
    client: HttpClient,
    addr: SocketAddr,
    cookies: Vec<(String, String)>,
}

impl Visitor {
    fn new(addr: SocketAddr) -> Self {
        Self {
            client: client(),
            addr,
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn keep(&mut self, reply: &Reply) {
        for (name, value) in set_cookies(reply) {
            self.cookies.retain(|(n, _)| *n != name);
            self.cookies.push((name, value));
        }
    }

    /// `GET /`; returns the token rendered into the page.
    async fn open_page(&mut self) -> String {
        let cookie = self.cookie_header();
        let mut headers = vec![("sec-fetch-site", "none")];
        if !cookie.is_empty() {
            headers.push(("cookie", cookie.as_str()));
        }
        let reply = send(&self.client, http_get(self.addr, "/", &headers)).await;
        assert_eq!(reply.status, StatusCode::OK);
        self.keep(&reply);
        let body = String::from_utf8(reply.body.to_vec()).expect("UTF-8");
        let start = body.find("content=\"").expect("meta tag") + 9;
        body[start..start + 193].to_owned()
    }

    async fn post(&mut self, path: &str, extra: &[(&str, &str)], body: &str) -> Reply {
        let cookie = self.cookie_header();
        let origin = format!("http://{}", self.addr);
        let mut headers = vec![("cookie", cookie.as_str()), ("origin", origin.as_str())];
        headers.extend_from_slice(extra);
        let reply = send(
            &self.client,
            request("POST", self.addr, path, &headers, body.to_owned()),
        )
        .await;
        self.keep(&reply);
        reply
    }
}

fn assert_csrf_refusal(reply: &Reply, reason: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.json()["error"], reason);
    let vary = reply.header("vary");
    assert!(
        vary.contains("Sec-Fetch-Site") && vary.contains("Origin"),
        "{vary}"
    );
}

#[tokio::test]
async fn page_then_header_and_form_posts_succeed_over_http() {
    let observed = Observed::default();
    let addr = spawn_app(observed.clone()).await;
    let mut visitor = Visitor::new(addr);
    let token = visitor.open_page().await;
    let session = visitor
        .cookie(SESSION_COOKIE)
        .expect("a session")
        .to_owned();
    assert_eq!(visitor.cookie("__Host-csrf"), Some(token.as_str()));
    assert!(CsrfSecret::new(SECRET).unwrap().verify(&session, &token));

    // fetch() with the header.
    let reply = visitor
        .post(
            "/transfer",
            &[
                ("x-csrf-token", &token),
                ("sec-fetch-site", "same-origin"),
                ("content-type", "application/json"),
            ],
            "{}",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(&reply.body[..], b"transferred");
    // A plain HTML form with the hidden field.
    let reply = visitor
        .post(
            "/transfer",
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("csrf_token={token}&amount=10"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(observed.transfers(), 2);
    assert_eq!(observed.transfer_responses(), [(200, None), (200, None)]);
}

#[tokio::test]
async fn forged_posts_are_refused_over_http_and_change_nothing() {
    let observed = Observed::default();
    let addr = spawn_app(observed.clone()).await;
    let mut visitor = Visitor::new(addr);
    let token = visitor.open_page().await;

    let cross_site = visitor
        .post(
            "/transfer",
            &[("x-csrf-token", &token), ("sec-fetch-site", "cross-site")],
            "",
        )
        .await;
    assert_csrf_refusal(&cross_site, "cross_origin");
    let look_alike = format!("http://{addr}.attacker.test");
    let client = client();
    let cookie = visitor.cookie_header();
    let reply = send(
        &client,
        request(
            "POST",
            addr,
            "/transfer",
            &[
                ("cookie", &cookie),
                ("origin", &look_alike),
                ("x-csrf-token", &token),
            ],
            "",
        ),
    )
    .await;
    assert_csrf_refusal(&reply, "cross_origin");
    let missing = visitor.post("/transfer", &[], "amount=10").await;
    assert_csrf_refusal(&missing, "csrf_missing");
    let other = CsrfSecret::new(SECRET)
        .unwrap()
        .mint("someone-else")
        .unwrap();
    let mismatch = visitor
        .post("/transfer", &[("x-csrf-token", &other)], "")
        .await;
    assert_csrf_refusal(&mismatch, "csrf_mismatch");

    assert_eq!(observed.transfers(), 0);
    assert_eq!(observed.violations.load(Ordering::SeqCst), 4);
    assert_eq!(
        observed.transfer_responses(),
        [
            (403, Some("cross_origin".to_owned())),
            (403, Some("cross_origin".to_owned())),
            (403, Some("csrf_missing".to_owned())),
            (403, Some("csrf_mismatch".to_owned())),
        ]
    );
}

#[tokio::test]
async fn login_rotates_the_token_to_a_new_session_over_http() {
    let observed = Observed::default();
    let addr = spawn_app(observed.clone()).await;
    // The login page before any session: drop the session the page made to
    // act as a visitor whose first request is the login form.
    let mut visitor = Visitor::new(addr);
    let first = visitor.open_page().await;
    let before = visitor.cookie(SESSION_COOKIE).unwrap().to_owned();

    let refused = visitor.post("/login", &[], "").await;
    assert_csrf_refusal(&refused, "csrf_missing");

    let reply = visitor
        .post("/login", &[("x-csrf-token", &first)], "")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let after = visitor.cookie(SESSION_COOKIE).unwrap().to_owned();
    let rotated = String::from_utf8(reply.body.to_vec()).unwrap();
    assert_ne!(after, before, "a new session id after login");
    assert_eq!(visitor.cookie("__Host-csrf"), Some(rotated.as_str()));
    assert_ne!(rotated, first);

    // The old token is dead in the new session; the new one works.
    let stale = visitor
        .post("/transfer", &[("x-csrf-token", &first)], "")
        .await;
    assert_csrf_refusal(&stale, "csrf_mismatch");
    let fresh = visitor
        .post("/transfer", &[("x-csrf-token", &rotated)], "")
        .await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(observed.transfers(), 1);
}
