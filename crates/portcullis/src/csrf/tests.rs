//! `CsrfLayer` behaviour. Tests named `row<N>_…` cover SECURITY.md §3.I
//! row N.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode};
use portcullis_core::{
    ClientIp, CsrfTokenDigest, CsrfTokenRecord, CsrfTokenStore, EventKind, FailureReason,
    FakeClock, MemoryCsrfTokenStore, PeerAddr, Rejection, SecurityEvents, StoreError,
    StoreErrorKind, TrustedProxies,
};
use tower::{Layer as _, ServiceExt as _, service_fn};

use super::*;

const SECRET: &[u8] = b"unit-test-csrf-secret-0123456789abcdef";
const APP: &str = "https://app.example.org";
const COOKIE: &str = "__Host-csrf";

fn secret() -> CsrfSecret {
    CsrfSecret::new(SECRET).unwrap()
}

fn builder() -> CsrfLayerBuilder {
    CsrfLayer::builder(secret())
        .trusted_origin(APP)
        .session(SessionCookie::new("session"))
}

fn layer() -> CsrfLayer {
    builder().build().unwrap()
}

/// A token for `session` signed with the test secret.
fn token(session: &str) -> String {
    secret().mint(session).unwrap()
}

/// The inner service: counts calls, answers 200 with the request body, and
/// reports what it saw in headers.
#[derive(Clone, Default)]
struct Inner {
    calls: Arc<AtomicUsize>,
}

impl Inner {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl tower::Service<
        Request<String>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        let calls = Arc::clone(&self.calls);
        service_fn(move |req: Request<String>| {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let mut res = Response::new(req.body().clone());
                res.headers_mut()
                    .insert("x-seen-method", req.method().as_str().parse().unwrap());
                res.headers_mut()
                    .insert("x-seen-uri", req.uri().to_string().parse().unwrap());
                if req.headers().contains_key("x-http-method-override") {
                    res.headers_mut()
                        .insert("x-seen-override", "yes".parse().unwrap());
                }
                if req.extensions().get::<CsrfToken>().is_some() {
                    res.headers_mut()
                        .insert("x-seen-handle", "yes".parse().unwrap());
                }
                Ok::<_, Infallible>(res)
            }
        })
    }
}

/// Sends `req` through `layer` around a fresh `Inner`; returns the response
/// and how many times the inner service ran.
async fn send(layer: &CsrfLayer, req: Request<String>) -> (Response<String>, usize) {
    let inner = Inner::default();
    let res = layer.layer(inner.service()).oneshot(req).await.unwrap();
    (res, inner.calls())
}

async fn send_form(
    layer: &CsrfLayer<crate::rejection::DefaultRejection, FormField>,
    req: Request<String>,
) -> (Response<String>, usize) {
    let inner = Inner::default();
    let res = layer.layer(inner.service()).oneshot(req).await.unwrap();
    (res, inner.calls())
}

struct Post {
    method: Method,
    headers: Vec<(String, String)>,
    body: String,
}

/// A state-changing request from the app's own origin in session `s1`
/// with a matching cookie and header, to be spoiled by each test.
fn post(session: &str, token: &str) -> Post {
    Post {
        method: Method::POST,
        headers: vec![
            ("origin".into(), APP.into()),
            ("sec-fetch-site".into(), "same-origin".into()),
            (
                "cookie".into(),
                format!("session={session}; {COOKIE}={token}"),
            ),
            ("x-csrf-token".into(), token.into()),
        ],
        body: String::new(),
    }
}

impl Post {
    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
    fn set(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.into(), value.into()));
        self
    }
    fn add(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| n != name);
        self
    }
    fn body(mut self, body: &str) -> Self {
        self.body = body.into();
        self
    }
    fn build(self) -> Request<String> {
        let mut b = Request::builder().method(self.method).uri("/transfer");
        for (n, v) in &self.headers {
            b = b.header(n.as_str(), v.as_str());
        }
        b.body(self.body).unwrap()
    }
}

fn get(headers: &[(&str, &str)]) -> Request<String> {
    let mut b = Request::get("/page");
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(String::new()).unwrap()
}

/// Asserts a 403 JSON rejection for `reason` that never reached the inner
/// service and carries the rejection, one CSRF event and `Vary`.
fn assert_refused(res: &Response<String>, calls: usize, reason: FailureReason) {
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "{}", res.body());
    assert_eq!(calls, 0, "the inner service must not run");
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["error"], reason.as_str(), "{body}");
    assert_eq!(
        body["error_description"],
        "the request failed cross-site request forgery checks"
    );
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().reason(),
        reason
    );
    let events = SecurityEvents::of(res);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind(), EventKind::CsrfViolation);
    assert_eq!(events[0].reason(), Some(reason));
    assert!(!events[0].is_shadow());
    assert_vary(res.headers());
    assert!(
        res.headers().get("set-cookie").is_none(),
        "refusals never hand out tokens"
    );
}

fn assert_passed(res: &Response<String>, calls: usize) {
    assert_eq!(res.status(), StatusCode::OK, "{}", res.body());
    assert_eq!(calls, 1);
    assert!(res.extensions().get::<Rejection>().is_none());
    assert!(SecurityEvents::of(res).is_empty());
    assert_vary(res.headers());
}

fn assert_vary(headers: &HeaderMap) {
    let vary: Vec<String> = headers
        .get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    assert!(vary.contains(&"sec-fetch-site".to_owned()), "{vary:?}");
    assert!(vary.contains(&"origin".to_owned()), "{vary:?}");
}

fn set_cookie(res: &Response<String>) -> Option<String> {
    let all: Vec<_> = res.headers().get_all("set-cookie").iter().collect();
    assert!(all.len() <= 1, "{all:?}");
    all.first().map(|v| v.to_str().unwrap().to_owned())
}

fn cookie_token(set_cookie: &str) -> String {
    set_cookie
        .strip_prefix("__Host-csrf=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

// ------------------------------------------------------------ SECURITY.md §3.I

#[tokio::test]
async fn row88_cookie_session_post_without_csrf_header_is_403_csrf_missing() {
    let t = token("s1");
    let (res, calls) = send(&layer(), post("s1", &t).without("x-csrf-token").build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
    // No cookie at all, no header: the same.
    let (res, calls) = send(
        &layer(),
        post("s1", &t)
            .without("x-csrf-token")
            .set("cookie", "session=s1")
            .build(),
    )
    .await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
}

#[tokio::test]
async fn row89_header_token_different_from_cookie_token_is_403_csrf_mismatch() {
    // Both are valid tokens of the same session: only equality fails.
    let (cookie, header) = (token("s1"), token("s1"));
    let (res, calls) = send(
        &layer(),
        post("s1", &cookie).set("x-csrf-token", &header).build(),
    )
    .await;
    assert_refused(&res, calls, FailureReason::CsrfMismatch);
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().detail(),
        Some("CSRF token does not match the cookie")
    );
}

#[tokio::test]
async fn row91_valid_token_of_session_s1_used_in_session_s2_is_403_csrf_mismatch() {
    let t = token("s1");
    let (res, calls) = send(&layer(), post("s2", &t).build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMismatch);
    assert_eq!(
        res.extensions().get::<Rejection>().unwrap().detail(),
        Some("CSRF token not signed for this session")
    );
    // And a token signed with another secret, for the right session.
    let foreign = CsrfSecret::new(b"another-secret-another-secret-012345")
        .unwrap()
        .mint("s1")
        .unwrap();
    let (res, calls) = send(&layer(), post("s1", &foreign).build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMismatch);
}

#[tokio::test]
async fn row92_malformed_tokens_are_403_csrf_mismatch() {
    let good = token("s1");
    let (mac, rand) = good.split_once('.').unwrap();
    let malformed = [
        ("no dot", format!("{mac}{rand}")),
        ("short hmac", format!("{}.{rand}", &mac[..63])),
        ("long hmac", format!("{mac}a.{rand}")),
        ("short random", format!("{mac}.{}", &rand[..127])),
        ("long random", format!("{mac}.{rand}a")),
        ("uppercase hmac", format!("{}.{rand}", mac.to_uppercase())),
        ("uppercase random", format!("{mac}.{}", rand.to_uppercase())),
        ("extra part", format!("{mac}.{rand}.{rand}")),
        (
            "three parts",
            format!("{mac}.{}.{}", &rand[..64], &rand[64..]),
        ),
        ("not hex", format!("{}z.{rand}", &mac[..63])),
        ("empty", String::new()),
    ];
    for (what, bad) in &malformed {
        // The same malformed value in cookie and header: equality alone
        // must not be enough.
        let (res, calls) = send(&layer(), post("s1", bad).build()).await;
        assert_refused(&res, calls, FailureReason::CsrfMismatch);
        let detail = res.extensions().get::<Rejection>().unwrap().detail();
        assert_eq!(detail, Some("malformed CSRF token"), "{what}");
        // A malformed header against a good cookie.
        let (res, calls) = send(&layer(), post("s1", &good).set("x-csrf-token", bad).build()).await;
        assert_refused(&res, calls, FailureReason::CsrfMismatch);
    }
}

#[tokio::test]
async fn row93_token_only_in_cookie_is_403_csrf_missing() {
    let t = token("s1");
    let req = post("s1", &t).without("x-csrf-token").body("a=1").build();
    let (res, calls) = send(&layer(), req).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
    // A token in the query string is never read either.
    let mut req = post("s1", &t).without("x-csrf-token").build();
    *req.uri_mut() = format!("/transfer?csrf_token={t}&x-csrf-token={t}")
        .parse()
        .unwrap();
    let (res, calls) = send(&layer(), req).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
}

#[tokio::test]
async fn row94_valid_token_with_sec_fetch_site_cross_site_is_403_on_every_unsafe_method() {
    let t = token("s1");
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        // With the attacker's origin, with the app's own origin claimed
        // (a non-browser forger), and with no origin at all.
        for origin in [Some("https://evil.example"), Some(APP), None] {
            let mut req = post("s1", &t)
                .method(method.clone())
                .set("sec-fetch-site", "cross-site");
            req = match origin {
                Some(o) => req.set("origin", o),
                None => req.without("origin"),
            };
            let (res, calls) = send(&layer(), req.build()).await;
            assert_refused(&res, calls, FailureReason::CrossOrigin);
        }
    }
    // The control: the same request without the cross-site marker passes.
    let (res, calls) = send(&layer(), post("s1", &t).build()).await;
    assert_passed(&res, calls);
}

#[tokio::test]
async fn row98_json_only_route_refuses_simple_content_types_with_403() {
    let layer = builder().json_only().build().unwrap();
    let t = token("s1");
    for content_type in [
        "text/plain",
        "text/plain; charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/json-seq-ish",
    ] {
        let req = post("s1", &t)
            .set("content-type", content_type)
            .body("{\"a\":1}")
            .build();
        let (res, calls) = send(&layer, req).await;
        assert_refused(&res, calls, FailureReason::CrossOrigin);
        assert_eq!(
            res.extensions().get::<Rejection>().unwrap().detail(),
            Some("simple content type on a JSON-only route"),
            "{content_type}"
        );
    }
    // A body without any content type (a no-CORS `fetch` of a Blob).
    let req = post("s1", &t)
        .set("content-length", "7")
        .body("{\"a\":1}")
        .build();
    let (res, calls) = send(&layer, req).await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    // JSON passes, and so does a bodiless DELETE.
    for content_type in [
        "application/json",
        "application/merge-patch+json",
        "Application/JSON; charset=utf-8",
    ] {
        let req = post("s1", &t)
            .set("content-type", content_type)
            .body("{}")
            .build();
        let (res, calls) = send(&layer, req).await;
        assert_passed(&res, calls);
    }
    let (res, calls) = send(&layer, post("s1", &t).method(Method::DELETE).build()).await;
    assert_passed(&res, calls);
    // The JSON check does not replace the token check.
    let req = post("s1", &t)
        .without("x-csrf-token")
        .set("content-type", "application/json")
        .build();
    let (res, calls) = send(&layer, req).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
}

#[tokio::test]
async fn row100_set_cookie_is_host_prefixed_secure_root_path_without_domain_with_samesite() {
    let (res, calls) = send(&layer(), get(&[("cookie", "session=s1")])).await;
    assert_passed(&res, calls);
    let cookie = set_cookie(&res).expect("a token cookie on the first page");
    let mut attrs = cookie.split("; ");
    let pair = attrs.next().unwrap();
    assert!(pair.starts_with("__Host-csrf="), "{cookie}");
    let attrs: Vec<&str> = attrs.collect();
    assert!(attrs.contains(&"Secure"), "{cookie}");
    assert!(attrs.contains(&"Path=/"), "{cookie}");
    assert!(attrs.contains(&"SameSite=Lax"), "{cookie}");
    assert!(attrs.contains(&"HttpOnly"), "{cookie}");
    assert!(
        !attrs
            .iter()
            .any(|a| a.to_ascii_lowercase().starts_with("domain")),
        "{cookie}"
    );
    assert!(secret().verify("s1", &cookie_token(&cookie)));
    // Configured variants keep the invariant attributes.
    let strict = builder()
        .cookie_same_site(SameSite::Strict)
        .cookie_readable_by_scripts()
        .cookie_name("__Host-xsrf")
        .build()
        .unwrap();
    let (res, _) = send(&strict, get(&[])).await;
    assert_eq!(
        set_cookie(&res).unwrap().split_once("; ").unwrap().1,
        "Path=/; Secure; SameSite=Strict"
    );
    // A name without __Host- is a configuration error.
    assert!(builder().cookie_name("csrf").build().is_err());
    assert!(builder().cookie_name("__Secure-csrf").build().is_err());
}

/// The login flow of row 101: `GET /login` hands out a pre-session token;
/// `POST /login` checks it, then creates a **new** session and rotates the
/// CSRF token to it.
fn login_app(
    layer: &CsrfLayer,
    sessions: Arc<AtomicUsize>,
) -> impl tower::Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone {
    layer.layer(service_fn(move |req: Request<String>| {
        let sessions = Arc::clone(&sessions);
        async move {
            let csrf = req.extensions().get::<CsrfToken>().unwrap().clone();
            let mut res = Response::new(String::new());
            if req.method() == Method::POST && req.uri().path() == "/login" {
                // The app's own session management: a fresh id on login.
                let n = sessions.fetch_add(1, Ordering::SeqCst);
                let new_session = format!("sess-{n}-{}", &token("x")[..16]);
                let new_token = csrf.rotate(&new_session).await.unwrap();
                res.headers_mut().append(
                    "set-cookie",
                    format!("session={new_session}; Path=/; Secure; HttpOnly")
                        .parse()
                        .unwrap(),
                );
                *res.body_mut() = new_token;
            } else {
                *res.body_mut() = csrf.token().await.unwrap();
            }
            Ok(res)
        }
    }))
}

#[tokio::test]
async fn row101_login_without_pre_session_token_is_403_and_login_binds_a_new_session() {
    let layer = layer();
    let sessions = Arc::new(AtomicUsize::new(0));
    let app = login_app(&layer, Arc::clone(&sessions));
    let login = |cookie: &str, token: Option<&str>| {
        let mut b = Request::post("/login")
            .header("origin", APP)
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/json");
        if !cookie.is_empty() {
            b = b.header("cookie", cookie);
        }
        if let Some(t) = token {
            b = b.header("x-csrf-token", t);
        }
        b.body("{\"email\":\"a@example.org\"}".to_owned()).unwrap()
    };

    // 1. A login POST without any token: refused, no session created.
    let res = app.clone().oneshot(login("", None)).await.unwrap();
    assert_refused(
        &res,
        sessions.load(Ordering::SeqCst),
        FailureReason::CsrfMissing,
    );

    // 2. The login page issues a pre-session token (bound to no session).
    let page = app.clone().oneshot(get(&[])).await.unwrap();
    let pre = cookie_token(&set_cookie(&page).unwrap());
    assert_eq!(page.body(), &pre);
    assert!(secret().verify("", &pre));

    // 3. The attacker's own pre-session token does not match the victim's
    //    cookie (login CSRF needs both halves).
    let attacker = token("");
    let res = app
        .clone()
        .oneshot(login(&format!("{COOKIE}={pre}"), Some(&attacker)))
        .await
        .unwrap();
    assert_refused(
        &res,
        sessions.load(Ordering::SeqCst),
        FailureReason::CsrfMismatch,
    );

    // 4. With the pre-session token: logged in, with a new session id and
    //    a new token bound to it.
    let res = app
        .clone()
        .oneshot(login(&format!("{COOKIE}={pre}"), Some(&pre)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{}", res.body());
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies
        .iter()
        .find_map(|c| c.strip_prefix("session="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let rotated = cookies
        .iter()
        .find(|c| c.starts_with("__Host-csrf="))
        .map(|c| cookie_token(c))
        .unwrap();
    assert_eq!(res.body(), &rotated);
    assert!(!session.is_empty());
    assert_ne!(rotated, pre);
    assert!(secret().verify(&session, &rotated));

    // 5. The pre-session token is worthless in the new session; the
    //    rotated one works.
    let res = app
        .clone()
        .oneshot(post(&session, &pre).build())
        .await
        .unwrap();
    assert_refused(&res, 0, FailureReason::CsrfMismatch);
    let res = app
        .clone()
        .oneshot(post(&session, &rotated).build())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // 6. A second login gets yet another session id (no fixation).
    let res = app
        .clone()
        .oneshot(login(
            &format!("session={session}; {COOKIE}={rotated}"),
            Some(&rotated),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let again = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|v| {
            v.to_str()
                .unwrap()
                .strip_prefix("session=")
                .map(str::to_owned)
        })
        .unwrap();
    assert!(!again.starts_with(&session));
}

// ------------------------------------------------------------ methods

#[tokio::test]
async fn safe_methods_pass_without_a_token_and_trace_does_not() {
    for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
        let req = Request::builder()
            .method(method.clone())
            .uri("/")
            .header("sec-fetch-site", "cross-site")
            .header("origin", "null")
            .body(String::new())
            .unwrap();
        let (res, calls) = send(&layer(), req).await;
        assert_passed(&res, calls);
    }
    let req = Request::builder()
        .method(Method::TRACE)
        .uri("/")
        .body(String::new())
        .unwrap();
    let (res, calls) = send(&layer(), req).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
}

#[tokio::test]
async fn get_with_method_override_is_treated_as_get_and_the_override_never_reaches_the_app() {
    let req = Request::get("/page?x=1&_method=DELETE")
        .header("x-http-method-override", "POST")
        .header("x-method-override", "DELETE")
        .header("x-http-method", "PUT")
        .body(String::new())
        .unwrap();
    let (res, calls) = send(&layer(), req).await;
    assert_passed(&res, calls);
    assert_eq!(res.headers()["x-seen-method"], "GET");
    assert_eq!(res.headers()["x-seen-uri"], "/page?x=1");
    assert!(res.headers().get("x-seen-override").is_none());
}

#[tokio::test]
async fn post_with_method_override_to_get_is_still_checked_as_post() {
    let t = token("s1");
    let req = post("s1", &t)
        .without("x-csrf-token")
        .add("x-http-method-override", "GET")
        .build();
    let (res, calls) = send(&layer(), req).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
    let mut req = post("s1", &t).without("x-csrf-token").build();
    *req.uri_mut() = "/transfer?_method=GET".parse().unwrap();
    let (res, calls) = send(&layer(), req).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
}

// ------------------------------------------------------------ first line

#[tokio::test]
async fn origin_must_match_exactly() {
    let t = token("s1");
    for origin in [
        "null",
        "https://app.example.org.attacker.com",
        "https://attacker.com",
        "http://app.example.org",
        "https://app.example.org:8443",
        "https://sub.app.example.org",
        "https://app.example.org/",
        "https://app.example.org@attacker.com",
        "not an origin",
    ] {
        let (res, calls) = send(&layer(), post("s1", &t).set("origin", origin).build()).await;
        assert_refused(&res, calls, FailureReason::CrossOrigin);
    }
    // Two Origin headers are ambiguous.
    let (res, calls) = send(
        &layer(),
        post("s1", &t).add("origin", "https://attacker.com").build(),
    )
    .await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    // Case and an explicit default port do not matter.
    for origin in ["https://APP.example.org", "https://app.example.org:443"] {
        let (res, calls) = send(&layer(), post("s1", &t).set("origin", origin).build()).await;
        assert_passed(&res, calls);
    }
}

#[tokio::test]
async fn without_origin_the_referer_origin_is_checked() {
    let t = token("s1");
    let base = || post("s1", &t).without("origin").without("sec-fetch-site");
    let (res, calls) = send(
        &layer(),
        base()
            .set("referer", "https://app.example.org/form?x=1")
            .build(),
    )
    .await;
    assert_passed(&res, calls);
    let (res, calls) = send(
        &layer(),
        base()
            .set(
                "referer",
                "https://app.example.org.attacker.com/app.example.org",
            )
            .build(),
    )
    .await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    // `Origin: null` never falls back to a trusted-looking Referer.
    let (res, calls) = send(
        &layer(),
        base()
            .set("origin", "null")
            .set("referer", "https://app.example.org/")
            .build(),
    )
    .await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    // With the fallback off, an untrusted Referer is not read at all.
    let layer = builder().without_referer_fallback().build().unwrap();
    let (res, calls) = send(
        &layer,
        base().set("referer", "https://attacker.com/").build(),
    )
    .await;
    assert_passed(&res, calls);
}

#[tokio::test]
async fn missing_headers_are_not_evidence_of_same_origin() {
    let t = token("s1");
    let bare = || post("s1", &t).without("origin").without("sec-fetch-site");
    // Default: the token alone decides — a valid one passes, none fails.
    let (res, calls) = send(&layer(), bare().build()).await;
    assert_passed(&res, calls);
    let (res, calls) = send(&layer(), bare().without("x-csrf-token").build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
    // Strict: refused even with a valid token.
    let strict = builder()
        .missing_origin(MissingOriginPolicy::Refuse)
        .build()
        .unwrap();
    let (res, calls) = send(&strict, bare().build()).await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    let (res, calls) = send(&strict, post("s1", &t).build()).await;
    assert_passed(&res, calls);
}

#[tokio::test]
async fn same_site_is_refused_unless_the_origin_is_trusted() {
    let t = token("s1");
    let same_site = || post("s1", &t).set("sec-fetch-site", "same-site");
    let (res, calls) = send(
        &layer(),
        same_site()
            .set("origin", "https://blog.example.org")
            .build(),
    )
    .await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    let (res, calls) = send(&layer(), same_site().without("origin").build()).await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    let layer2 = builder()
        .trusted_origin("https://admin.example.org")
        .build()
        .unwrap();
    let (res, calls) = send(
        &layer2,
        same_site()
            .set("origin", "https://admin.example.org")
            .build(),
    )
    .await;
    assert_passed(&res, calls);
    let lenient = builder()
        .same_site_requests(SameSitePolicy::Allow)
        .build()
        .unwrap();
    let (res, calls) = send(&lenient, same_site().without("origin").build()).await;
    assert_passed(&res, calls);
}

#[tokio::test]
async fn cross_site_from_a_trusted_front_end_only_when_allowed() {
    let t = token("s1");
    let front = "https://frontend.example.net";
    let req = || {
        post("s1", &t)
            .set("sec-fetch-site", "cross-site")
            .set("origin", front)
    };
    let layer1 = builder().trusted_origin(front).build().unwrap();
    let (res, calls) = send(&layer1, req().build()).await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    let layer2 = builder()
        .trusted_origin(front)
        .allow_cross_site_from_trusted_origins()
        .build()
        .unwrap();
    let (res, calls) = send(&layer2, req().build()).await;
    assert_passed(&res, calls);
    let (res, calls) = send(&layer2, req().set("origin", "https://evil.example").build()).await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
}

#[tokio::test]
async fn unknown_or_repeated_fetch_site_reads_as_cross_site() {
    let t = token("s1");
    for value in ["Same-Origin", "bogus", ""] {
        let (res, calls) = send(
            &layer(),
            post("s1", &t).set("sec-fetch-site", value).build(),
        )
        .await;
        assert_refused(&res, calls, FailureReason::CrossOrigin);
    }
    let (res, calls) = send(
        &layer(),
        post("s1", &t).add("sec-fetch-site", "same-origin").build(),
    )
    .await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    let (res, calls) = send(
        &layer(),
        post("s1", &t).set("sec-fetch-site", "none").build(),
    )
    .await;
    assert_passed(&res, calls);
}

#[tokio::test]
async fn forwarded_host_counts_only_from_trusted_proxies() {
    let layer = CsrfLayer::builder(secret())
        .trust_host_header(true, TrustedProxies::new(["10.0.0.0/8"]).unwrap())
        .session(SessionCookie::new("session"))
        .build()
        .unwrap();
    let t = token("s1");
    let from = |peer: &str, origin: &str, host: &str, forwarded: Option<&str>| {
        let mut b = post("s1", &t).set("origin", origin).set("host", host);
        if let Some(f) = forwarded {
            b = b
                .set("x-forwarded-host", f)
                .set("x-forwarded-proto", "https");
        }
        let mut req = b.build();
        req.extensions_mut()
            .insert(PeerAddr(format!("{peer}:4000").parse().unwrap()));
        req
    };
    // Direct: the Host header is the target.
    let (res, calls) = send(
        &layer,
        from("203.0.113.9", "https://shop.example", "shop.example", None),
    )
    .await;
    assert_passed(&res, calls);
    // A client cannot make its own origin the target with X-Forwarded-Host.
    let (res, calls) = send(
        &layer,
        from(
            "203.0.113.9",
            "https://evil.example",
            "shop.example",
            Some("evil.example"),
        ),
    )
    .await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    // Behind the trusted proxy, the forwarded host is the target.
    let (res, calls) = send(
        &layer,
        from(
            "10.1.2.3",
            "https://shop.example",
            "backend:8080",
            Some("shop.example"),
        ),
    )
    .await;
    assert_passed(&res, calls);
    let (res, calls) = send(
        &layer,
        from(
            "10.1.2.3",
            "https://backend:8080",
            "backend:8080",
            Some("shop.example"),
        ),
    )
    .await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
}

#[tokio::test]
async fn vary_is_merged_with_the_responses_own() {
    let t = token("s1");
    let vary_of = |existing: Option<&'static str>| {
        let layer = layer();
        async move {
            let svc = layer.layer(service_fn(move |_: Request<String>| async move {
                let mut res = Response::new(String::new());
                if let Some(v) = existing {
                    res.headers_mut().insert("vary", v.parse().unwrap());
                }
                Ok::<_, Infallible>(res)
            }));
            let res = svc.oneshot(get(&[])).await.unwrap();
            res.headers()
                .get_all("vary")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(vary_of(None).await, ["Sec-Fetch-Site, Origin"]);
    assert_eq!(
        vary_of(Some("Accept-Encoding")).await,
        ["Accept-Encoding", "Sec-Fetch-Site, Origin"]
    );
    assert_eq!(vary_of(Some("origin")).await, ["origin", "Sec-Fetch-Site"]);
    assert_eq!(vary_of(Some("*")).await, ["*"]);
    // Refusals vary too.
    let (res, _) = send(&layer(), post("s1", &t).set("origin", "null").build()).await;
    assert_vary(res.headers());
}

// ------------------------------------------------------------ token planting

#[tokio::test]
async fn a_token_planted_by_a_sibling_subdomain_fails() {
    let t = token("s1");
    // A sibling can set `csrf=…` (no prefix) for the parent domain, but not
    // `__Host-csrf`: the planted cookie is not the token cookie.
    let planted = post("s1", &t).set("cookie", &format!("session=s1; csrf={t}"));
    let (res, calls) = send(&layer(), planted.build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
    // A planted token for the attacker's own session, in both places.
    let attackers = token("attacker-session");
    let (res, calls) = send(&layer(), post("s1", &attackers).build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMismatch);
    // Two token cookies (a planted one beside the real one): ambiguous.
    let twice = post("s1", &t).set(
        "cookie",
        &format!("session=s1; {COOKIE}={attackers}; {COOKIE}={t}"),
    );
    let (res, calls) = send(&layer(), twice.build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMismatch);
    // Two header values: ambiguous.
    let (res, calls) = send(&layer(), post("s1", &t).add("x-csrf-token", &t).build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMismatch);
}

#[tokio::test]
async fn safe_requests_reissue_a_cookie_that_is_not_valid_for_the_session() {
    // Valid for the session: kept, no Set-Cookie.
    let t = token("s1");
    let (res, _) = send(
        &layer(),
        get(&[("cookie", &format!("session=s1; {COOKIE}={t}"))]),
    )
    .await;
    assert!(set_cookie(&res).is_none());
    // Another session's, a malformed one, or none: a fresh one for s1.
    for cookie in [
        format!("session=s1; {COOKIE}={}", token("s0")),
        format!("session=s1; {COOKIE}=garbage"),
        "session=s1".to_owned(),
    ] {
        let (res, _) = send(&layer(), get(&[("cookie", &cookie)])).await;
        let fresh = cookie_token(&set_cookie(&res).unwrap());
        assert!(secret().verify("s1", &fresh), "{cookie}");
    }
}

// ------------------------------------------------------------ exemptions

#[tokio::test]
async fn bearer_and_api_key_requests_without_ambient_credentials_can_be_exempted() {
    let layer = builder()
        .exempt_requests_without_ambient_credentials(["session", "access_token"])
        .build()
        .unwrap();
    let api = |auth: (&str, &str)| {
        Request::post("/api")
            .header(auth.0, auth.1)
            .header("sec-fetch-site", "cross-site")
            .body(String::new())
            .unwrap()
    };
    for auth in [
        ("authorization", "Bearer eyJ.e30.sig"),
        ("authorization", "bearer abc"),
        ("authorization", "ApiKey pc_live_x"),
        ("x-api-key", "pc_live_x"),
    ] {
        let (res, calls) = send(&layer, api(auth)).await;
        assert_passed(&res, calls);
    }
    // Basic auth is ambient (browsers replay it): never exempt.
    let (res, calls) = send(&layer, api(("authorization", "Basic YTpi"))).await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    // An empty bearer is no credential.
    let (res, calls) = send(&layer, api(("authorization", "Bearer"))).await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
    // A bearer token next to the session cookie or a JWT cookie is checked.
    for cookie in ["session=s1", "access_token=eyJ"] {
        let mut req = api(("authorization", "Bearer abc"));
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        let (res, calls) = send(&layer, req).await;
        assert_refused(&res, calls, FailureReason::CrossOrigin);
    }
    // Unrelated cookies (analytics) do not cancel the exemption.
    let mut req = api(("authorization", "Bearer abc"));
    req.headers_mut().insert("cookie", "_ga=1".parse().unwrap());
    let (res, calls) = send(&layer, req).await;
    assert_passed(&res, calls);
    // Off by default.
    let (res, calls) = send(&self::layer(), api(("authorization", "Bearer abc"))).await;
    assert_refused(&res, calls, FailureReason::CrossOrigin);
}

#[tokio::test]
async fn safe_requests_without_ambient_credentials_get_no_cookie_when_exempted() {
    let layer = builder()
        .exempt_requests_without_ambient_credentials(["session"])
        .build()
        .unwrap();
    // An API client: no HMAC, no Set-Cookie on every response.
    let (res, calls) = send(&layer, get(&[("authorization", "Bearer eyJ.e30.sig")])).await;
    assert_passed(&res, calls);
    assert!(set_cookie(&res).is_none());
    // A browser (no explicit credential, or the session cookie beside
    // one) still gets its token.
    for headers in [
        vec![],
        vec![("cookie", "session=s1"), ("authorization", "Bearer abc")],
    ] {
        let (res, calls) = send(&layer, get(&headers)).await;
        assert_passed(&res, calls);
        assert!(set_cookie(&res).is_some(), "{headers:?}");
    }
    // Without the exemption every safe request is offered one.
    let (res, _) = send(&self::layer(), get(&[("authorization", "Bearer abc")])).await;
    assert!(set_cookie(&res).is_some());
}

#[tokio::test]
async fn an_outer_layer_can_exempt_with_the_extension_marker() {
    let mut req = post("s1", "x").without("x-csrf-token").build();
    req.extensions_mut().insert(CsrfExempt);
    let (res, calls) = send(&layer(), req).await;
    assert_passed(&res, calls);
}

// ------------------------------------------------------------ forms

fn form_layer(max: usize) -> CsrfLayer<crate::rejection::DefaultRejection, FormField> {
    layer().with_form_field("csrf_token", max)
}

#[tokio::test]
async fn the_token_can_come_from_a_urlencoded_form_field() {
    let t = token("s1");
    let body = format!("amount=10&csrf_token={t}&to=bob");
    let req = post("s1", &t)
        .without("x-csrf-token")
        .set("content-type", "application/x-www-form-urlencoded")
        .body(&body)
        .build();
    let (res, calls) = send_form(&form_layer(DEFAULT_MAX_FORM_BODY), req).await;
    assert_passed(&res, calls);
    assert_eq!(
        res.body(),
        &body,
        "the inner service gets the whole body back"
    );

    // A wrong field value, a missing field, a repeated field.
    for body in [
        format!("amount=10&csrf_token={}", token("s1")),
        "amount=10".to_owned(),
        format!("csrf_token={t}&csrf_token={t}"),
    ] {
        let req = post("s1", &t)
            .without("x-csrf-token")
            .set("content-type", "application/x-www-form-urlencoded")
            .body(&body)
            .build();
        let (res, calls) = send_form(&form_layer(DEFAULT_MAX_FORM_BODY), req).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{body}");
        assert_eq!(calls, 0);
    }
}

#[tokio::test]
async fn form_bodies_over_the_cap_are_refused_without_reading_them() {
    let t = token("s1");
    let body = format!("csrf_token={t}&pad={}", "x".repeat(2000));
    // Declared too long.
    let req = post("s1", &t)
        .without("x-csrf-token")
        .set("content-type", "application/x-www-form-urlencoded")
        .set("content-length", &body.len().to_string())
        .body(&body)
        .build();
    let (res, calls) = send_form(&form_layer(1024), req).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
    // Not declared, but longer than the cap.
    let req = post("s1", &t)
        .without("x-csrf-token")
        .set("content-type", "application/x-www-form-urlencoded")
        .body(&body)
        .build();
    let (res, calls) = send_form(&form_layer(1024), req).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
    // The header-only layer never reads the form.
    let req = post("s1", &t)
        .without("x-csrf-token")
        .set("content-type", "application/x-www-form-urlencoded")
        .body(&format!("csrf_token={t}"))
        .build();
    let (res, calls) = send(&layer(), req).await;
    assert_refused(&res, calls, FailureReason::CsrfMissing);
}

// ------------------------------------------------------------ store

#[tokio::test]
async fn synchronizer_tokens_live_in_the_store() {
    let clock = FakeClock::at_unix(1_700_000_000);
    let store = Arc::new(MemoryCsrfTokenStore::with_clock(
        100,
        Arc::new(clock.clone()),
    ));
    let layer = builder()
        .store(Arc::clone(&store), Duration::from_secs(3600))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    // The page issues a token and records its digest.
    let (res, _) = send(&layer, get(&[("cookie", "session=s1")])).await;
    let cookie = set_cookie(&res).unwrap();
    assert!(cookie.ends_with("; Max-Age=3600"), "{cookie}");
    let t = cookie_token(&cookie);
    assert_eq!(store.len(), 1);
    assert!(
        store
            .validate("s1", &super::token::digest_of(&t))
            .await
            .unwrap()
    );
    // It is accepted, repeatedly.
    for _ in 0..2 {
        let (res, calls) = send(&layer, post("s1", &t).build()).await;
        assert_passed(&res, calls);
    }
    // A correctly signed token the store never issued is refused.
    let unknown = token("s1");
    let (res, calls) = send(&layer, post("s1", &unknown).build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMismatch);
    // Revoking the session (logout) kills its tokens; the next page
    // issues a new one.
    store.revoke_session("s1").await.unwrap();
    let (res, calls) = send(&layer, post("s1", &t).build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMismatch);
    let (res, _) = send(
        &layer,
        get(&[("cookie", &format!("session=s1; {COOKIE}={t}"))]),
    )
    .await;
    let t2 = cookie_token(&set_cookie(&res).expect("reissued"));
    // Expiry.
    clock.advance(Duration::from_secs(3601));
    let (res, calls) = send(&layer, post("s1", &t2).build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMismatch);
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    assert!(store.is_empty());
    // Pre-session tokens are not stored.
    let (res, _) = send(&layer, get(&[])).await;
    assert!(set_cookie(&res).is_some());
    assert!(store.is_empty());
}

#[tokio::test]
async fn single_use_tokens_are_replaced_on_use() {
    let store = Arc::new(MemoryCsrfTokenStore::new(100));
    let layer = builder()
        .store(Arc::clone(&store), Duration::from_secs(600))
        .single_use_tokens()
        .build()
        .unwrap();
    let (res, _) = send(&layer, get(&[("cookie", "session=s1")])).await;
    let t = cookie_token(&set_cookie(&res).unwrap());
    let (res, calls) = send(&layer, post("s1", &t).build()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls, 1);
    let next = cookie_token(&set_cookie(&res).expect("a new token for the next request"));
    assert_ne!(next, t);
    let (res, calls) = send(&layer, post("s1", &t).build()).await;
    assert_refused(&res, calls, FailureReason::CsrfMismatch);
    let (res, calls) = send(&layer, post("s1", &next).build()).await;
    assert_eq!((res.status(), calls), (StatusCode::OK, 1));
    assert!(
        builder().single_use_tokens().build().is_err(),
        "needs a store"
    );
}

struct DownStore;

impl CsrfTokenStore for DownStore {
    async fn issue(&self, _: CsrfTokenRecord) -> Result<(), StoreError> {
        Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
    }
    async fn validate(&self, _: &str, _: &CsrfTokenDigest) -> Result<bool, StoreError> {
        Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
    }
    async fn consume(&self, _: &str, _: &CsrfTokenDigest) -> Result<bool, StoreError> {
        Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
    }
    async fn revoke_session(&self, _: &str) -> Result<u64, StoreError> {
        Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        Err(StoreError::new(StoreErrorKind::Unavailable, "down"))
    }
}

#[tokio::test]
async fn a_store_that_cannot_answer_fails_closed_with_503() {
    let layer = builder()
        .store(DownStore, Duration::from_secs(60))
        .build()
        .unwrap();
    let t = token("s1");
    for req in [post("s1", &t).build(), get(&[("cookie", "session=s1")])] {
        let (res, calls) = send(&layer, req).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(calls, 0);
        let rejection = res.extensions().get::<Rejection>().unwrap();
        assert_eq!(rejection.reason(), FailureReason::UpstreamUnavailable);
        assert!(
            SecurityEvents::of(&res).is_empty(),
            "an outage is not a CSRF violation"
        );
    }
}

// ------------------------------------------------------------ shadow, rendering

#[tokio::test]
async fn shadow_mode_reports_without_rejecting() {
    let layer = builder().shadow_mode().build().unwrap();
    let mut req = post("s1", "x")
        .without("x-csrf-token")
        .set("origin", "https://evil.example")
        .build();
    req.extensions_mut()
        .insert(ClientIp("198.51.100.7".parse().unwrap()));
    let (res, calls) = send(&layer, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls, 1);
    assert!(res.extensions().get::<Rejection>().is_none());
    let events = SecurityEvents::of(&res);
    assert_eq!(events.len(), 1);
    assert!(events[0].is_shadow());
    assert_eq!(events[0].reason(), Some(FailureReason::CrossOrigin));
    assert_eq!(events[0].ip(), Some("198.51.100.7".parse().unwrap()));
    // A good request in shadow mode reports nothing.
    let t = token("s1");
    let (res, calls) = send(&layer, post("s1", &t).build()).await;
    assert_passed(&res, calls);
}

#[tokio::test]
async fn refusals_render_as_problem_details_and_grpc() {
    let req = post("s1", "x")
        .without("x-csrf-token")
        .add("accept", "application/problem+json")
        .build();
    let (res, _) = send(&layer(), req).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["error"], "csrf_missing");
    assert_eq!(body["status"], 403);

    let req = post("s1", "x")
        .without("x-csrf-token")
        .add("content-type", "application/grpc")
        .build();
    let (res, calls) = send(&layer(), req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "7");
    assert_eq!(calls, 0);
    // A custom responder still gets the rejection into the extensions.
    let custom = layer().with_rejection_response(|_: &HeaderMap, r: &Rejection| {
        let mut res = Response::new(format!("nope: {}", r.reason()));
        *res.status_mut() = r.status();
        res
    });
    let inner = Inner::default();
    let res = custom
        .layer(inner.service())
        .oneshot(post("s1", "x").without("x-csrf-token").build())
        .await
        .unwrap();
    assert_eq!(res.body(), "nope: csrf_missing");
    assert!(res.extensions().get::<Rejection>().is_some());
}

// ------------------------------------------------------------ handle, secrets

#[tokio::test]
async fn the_handle_mints_lazily_on_exempt_requests_and_rotates() {
    let layer = builder()
        .exempt_requests_without_ambient_credentials(["session"])
        .build()
        .unwrap();
    let svc = layer.layer(service_fn(|req: Request<String>| async move {
        let csrf = req.extensions().get::<CsrfToken>().unwrap().clone();
        let first = csrf.token().await.unwrap();
        assert_eq!(csrf.token().await.unwrap(), first, "one token per request");
        assert_eq!(csrf.header_name(), "x-csrf-token");
        assert_eq!(csrf.cookie_name(), "__Host-csrf");
        let debug = format!("{csrf:?}");
        assert!(!debug.contains(&first[..20]), "{debug}");
        Ok::<_, Infallible>(Response::new(first))
    }));
    let req = Request::post("/api")
        .header("authorization", "Bearer abc")
        .body(String::new())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let issued = cookie_token(&set_cookie(&res).unwrap());
    assert_eq!(&issued, res.body());
    assert!(secret().verify("", &issued));
}

#[tokio::test]
async fn secrets_and_tokens_never_show_in_debug_bodies_or_rejections() {
    let t = token("s1");
    let layer = layer();
    let debug = format!("{layer:?}");
    assert!(!debug.contains("unit-test-csrf-secret"), "{debug}");
    assert!(!format!("{:?}", secret()).contains("unit-test"));
    let (res, _) = send(&layer, post("s2", &t).build()).await;
    let rejection = res.extensions().get::<Rejection>().unwrap();
    for shown in [
        res.body().clone(),
        format!("{rejection:?}"),
        rejection.to_string(),
        format!("{:?}", SecurityEvents::of(&res)),
    ] {
        assert!(!shown.contains(&t[..32]), "{shown}");
        assert!(!shown.contains(&t[65..97]), "{shown}");
        assert!(!shown.contains("s2"), "{shown}");
    }
}

#[test]
fn builder_refuses_unsafe_or_incomplete_configurations() {
    let err = |b: CsrfLayerBuilder| b.build().unwrap_err().to_string();
    assert!(err(CsrfLayer::builder(secret()).session(NoSession)).contains("trusted origin"));
    assert!(err(CsrfLayer::builder(secret()).trusted_origin(APP)).contains("session"));
    assert!(err(builder().trusted_origin("https://x.example/path")).contains("trusted origin"));
    assert!(err(builder().trusted_origin("null")).contains("trusted origin"));
    assert!(err(builder().cookie_name("bad name")).contains("cookie name"));
    assert!(err(builder().store(MemoryCsrfTokenStore::new(1), Duration::ZERO)).contains("ttl"));
    assert!(CsrfSecret::new(b"short").is_err());
    // The development escape hatch is explicit and drops Secure.
    let dev = builder()
        .insecure_cookie_for_http_development("csrf")
        .build()
        .unwrap();
    assert_eq!(dev.cookie_name(), "csrf");
}

#[tokio::test]
async fn insecure_development_cookie_has_no_secure_flag() {
    let dev = builder()
        .insecure_cookie_for_http_development("csrf_dev")
        .build()
        .unwrap();
    let (res, _) = send(&dev, get(&[])).await;
    let cookie = set_cookie(&res).unwrap();
    assert!(cookie.starts_with("csrf_dev="));
    assert!(!cookie.contains("Secure"));
    let t = cookie
        .strip_prefix("csrf_dev=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let req = post("s1", t)
        .set("cookie", &format!("csrf_dev={t}"))
        .build();
    let (res, calls) = send(&dev, req).await;
    assert_passed(&res, calls);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever arrives in the header and cookie, the layer answers
        /// (no panic) and never lets an unsigned token through.
        #[test]
        fn arbitrary_tokens_never_pass(header in "[ -~]{0,300}", cookie in "[!#-+--:<-~]{0,300}") {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (res, calls) = rt.block_on(send(&layer(), post("s1", &cookie).set("x-csrf-token", &header).build()));
            prop_assert_eq!(res.status(), StatusCode::FORBIDDEN);
            prop_assert_eq!(calls, 0);
        }

        #[test]
        fn arbitrary_origins_never_panic(origin in "[ -~]{0,200}", referer in "[ -~]{0,200}") {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let t = token("s1");
            let (res, _) = rt.block_on(send(&layer(), post("s1", &t).set("origin", &origin).set("referer", &referer).build()));
            prop_assert!(res.status() == StatusCode::OK || res.status() == StatusCode::FORBIDDEN);
            if res.status() == StatusCode::OK {
                prop_assert!(origin.eq_ignore_ascii_case(APP) || origin.eq_ignore_ascii_case("https://app.example.org:443"));
            }
        }
    }
}
