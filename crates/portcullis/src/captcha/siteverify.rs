//! `SiteVerify`: the siteverify protocol shared by Turnstile, hCaptcha and
//! reCAPTCHA — a form-encoded POST of `secret`, `response` and optionally
//! `remoteip` (and hCaptcha's `sitekey`), answered with JSON.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt as _, Full, Limited};
use portcullis_core::{SharedClock, SystemClock};
use serde_json::Value;
use tower::ServiceExt as _;
use tower_service::Service;

use super::provider::{Provider, is_test_secret};
use super::timestamp::parse_rfc3339;
use super::verifier::{CaptchaError, CaptchaToken, CaptchaVerifier};
use crate::ConfigError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type PostFuture = Pin<Box<dyn Future<Output = Result<(StatusCode, Bytes), CaptchaError>> + Send>>;
type Post = Arc<dyn Fn(Request<Full<Bytes>>, usize) -> PostFuture + Send + Sync>;

/// Default time the provider has to answer.
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest siteverify answer read.
const MAX_ANSWER: usize = 16 * 1024;

/// Challenges solved up to this far in the future (clock skew) are accepted.
const FUTURE_SKEW: Duration = Duration::from_secs(60);

/// The secret key; `Debug` never shows it.
#[derive(Clone)]
struct Secret(Arc<str>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Which hostnames a solved challenge may come from.
#[derive(Clone, Debug)]
enum Hostnames {
    Unset,
    Any,
    OneOf(Vec<String>),
}

/// A [`CaptchaVerifier`] calling a provider's siteverify endpoint.
///
/// Every answer is checked, and anything unexpected refuses the token:
///
/// - `success` must be the JSON boolean `true` (a string `"true"`, a
///   missing field, HTML, a non-200 status, a timeout or a transport error
///   are provider failures: `503`, never a pass);
/// - `hostname` must be one of the configured hostnames (unless
///   [`SiteVerifyBuilder::any_hostname`] was chosen explicitly);
/// - `action` must match when one is configured (required for reCAPTCHA
///   v3), and `score` must reach the minimum (v3);
/// - `challenge_ts` must be present and no older than the provider's token
///   lifetime (120 s reCAPTCHA and hCaptcha, 300 s Turnstile);
/// - hCaptcha checks are sent with the site key, so a token solved for
///   another site is refused by the provider (and by us, when the answer
///   names a different `sitekey`).
///
/// ```
/// use portcullis::captcha::SiteVerify;
///
/// let turnstile = SiteVerify::turnstile("0x4AAAAAAA-your-secret")
///     .hostname("login.example.com")
///     .action("login")
///     // Without the `captcha-tls` feature the built-in client speaks plain
///     // HTTP only: give a TLS client for the provider's https endpoint
///     // (or a loopback URL in tests). With it, https works as is.
///     .verify_url("http://127.0.0.1:8080/siteverify")?
///     .build()?;
///
/// // Published test secrets are refused outside test mode.
/// assert!(SiteVerify::turnstile("1x0000000000000000000000000000000AA").any_hostname().build().is_err());
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SiteVerify {
    provider: Provider,
    secret: Secret,
    uri: Uri,
    hostnames: Arc<[String]>,
    any_hostname: bool,
    action: Option<Arc<str>>,
    min_score: Option<f64>,
    sitekey: Option<Arc<str>>,
    max_age: Duration,
    send_remote_ip: bool,
    timeout: Duration,
    post: Post,
    clock: SharedClock,
}

impl fmt::Debug for SiteVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteVerify")
            .field("provider", &self.provider)
            .field("secret", &self.secret)
            .field("uri", &self.uri)
            .field("hostnames", &self.hostnames)
            .field("any_hostname", &self.any_hostname)
            .field("action", &self.action)
            .field("min_score", &self.min_score)
            .field("sitekey", &self.sitekey)
            .field("max_age", &self.max_age)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SiteVerify`]; see its docs.
#[must_use]
pub struct SiteVerifyBuilder {
    provider: Provider,
    secret: Secret,
    uri: Uri,
    hostnames: Hostnames,
    action: Option<String>,
    min_score: Option<f64>,
    sitekey: Option<String>,
    max_age: Duration,
    send_remote_ip: bool,
    timeout: Duration,
    post: Option<Post>,
    clock: SharedClock,
    test_mode: bool,
    plain_http: bool,
    #[cfg(feature = "captcha-tls")]
    tls_roots: Option<super::tls::TlsRoots>,
}

impl fmt::Debug for SiteVerifyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteVerifyBuilder")
            .field("provider", &self.provider)
            .field("secret", &self.secret)
            .field("uri", &self.uri)
            .field("hostnames", &self.hostnames)
            .field("action", &self.action)
            .field("min_score", &self.min_score)
            .field("test_mode", &self.test_mode)
            .finish_non_exhaustive()
    }
}

impl SiteVerify {
    fn builder(provider: Provider, secret: &str) -> SiteVerifyBuilder {
        SiteVerifyBuilder {
            provider,
            secret: Secret(secret.trim().into()),
            uri: Uri::from_static(provider.default_verify_url()),
            hostnames: Hostnames::Unset,
            action: None,
            min_score: None,
            sitekey: None,
            max_age: provider.token_lifetime(),
            send_remote_ip: true,
            timeout: DEFAULT_VERIFY_TIMEOUT,
            post: None,
            clock: Arc::new(SystemClock),
            test_mode: false,
            plain_http: false,
            #[cfg(feature = "captcha-tls")]
            tls_roots: None,
        }
    }

    /// Cloudflare Turnstile with `secret`.
    pub fn turnstile(secret: &str) -> SiteVerifyBuilder {
        Self::builder(Provider::Turnstile, secret)
    }

    /// hCaptcha with `secret`, for the site key `sitekey` (sent with every
    /// check).
    pub fn hcaptcha(secret: &str, sitekey: &str) -> SiteVerifyBuilder {
        let mut builder = Self::builder(Provider::HCaptcha, secret);
        builder.sitekey = Some(sitekey.to_owned());
        builder
    }

    /// reCAPTCHA v2 with `secret`.
    pub fn recaptcha_v2(secret: &str) -> SiteVerifyBuilder {
        Self::builder(Provider::RecaptchaV2, secret)
    }

    /// reCAPTCHA v3 with `secret`, expecting `action` and a score of at
    /// least `min_score` (Google suggests 0.5).
    pub fn recaptcha_v3(secret: &str, action: &str, min_score: f64) -> SiteVerifyBuilder {
        let mut builder = Self::builder(Provider::RecaptchaV3, secret);
        builder.action = Some(action.to_owned());
        builder.min_score = Some(min_score);
        builder
    }

    /// The provider.
    #[must_use]
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// How old a solved challenge may be.
    #[must_use]
    pub fn max_age(&self) -> Duration {
        self.max_age
    }
}

impl SiteVerifyBuilder {
    /// Accepts challenges solved on `hostname` (call again for more).
    pub fn hostname(mut self, hostname: &str) -> Self {
        let hostname = hostname.trim().to_ascii_lowercase();
        match &mut self.hostnames {
            Hostnames::OneOf(list) => list.push(hostname),
            _ => self.hostnames = Hostnames::OneOf(vec![hostname]),
        }
        self
    }

    /// Does not check the hostname (for keys restricted to your domains on
    /// the provider's side). One of `hostname` or this must be chosen.
    pub fn any_hostname(mut self) -> Self {
        self.hostnames = Hostnames::Any;
        self
    }

    /// Requires the answer's `action` to be `action` (Turnstile, reCAPTCHA
    /// v3).
    pub fn action(mut self, action: &str) -> Self {
        self.action = Some(action.to_owned());
        self
    }

    /// Requires a `score` of at least `min_score` (reCAPTCHA v3, hCaptcha
    /// Enterprise).
    pub fn min_score(mut self, min_score: f64) -> Self {
        self.min_score = Some(min_score);
        self
    }

    /// Accepts challenges at most `max_age` old (default: the provider's
    /// token lifetime). It cannot be raised above that lifetime.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age.min(self.provider.token_lifetime());
        self
    }

    /// Does not send the client address as `remoteip`.
    pub fn without_remote_ip(mut self) -> Self {
        self.send_remote_ip = false;
        self
    }

    /// Time the provider has to answer (default 5 s); past it the check
    /// fails closed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Posts to `url` instead of the provider's documented endpoint.
    ///
    /// # Errors
    ///
    /// `url` is not an absolute `http` or `https` URL.
    pub fn verify_url(mut self, url: &str) -> Result<Self, ConfigError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| ConfigError::invalid("verify URL", "not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ConfigError::invalid(
                "verify URL",
                "must be an absolute http or https URL",
            ));
        }
        self.uri = uri;
        Ok(self)
    }

    /// Uses `client` for the POST (a TLS client for the providers' `https`
    /// endpoints, a client behind a
    /// [`CircuitBreakerLayer`](crate::circuit_breaker::CircuitBreakerLayer)…).
    /// An error from it (including an open circuit) fails the check closed.
    pub fn client<S, B>(mut self, client: S) -> Self
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.post = Some(post_with(client));
        self
    }

    /// Reads time (challenge age) from `clock`.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// **Tests only.** Accepts the providers' published test secrets, which
    /// pass (or fail) every token.
    pub fn insecure_test_mode(mut self) -> Self {
        self.test_mode = true;
        self
    }

    /// Trusts `roots` (instead of the operating system's store) for the
    /// built-in https client: a private CA, or a test certificate. Ignored
    /// when a [`client`](Self::client) is given.
    #[cfg(feature = "captcha-tls")]
    pub fn tls_roots(mut self, roots: super::tls::TlsRoots) -> Self {
        self.tls_roots = Some(roots);
        self
    }

    /// Allows a plain-`http` verify URL on a non-loopback host: the secret
    /// then crosses the network in clear.
    pub fn insecure_allow_plain_http(mut self) -> Self {
        self.plain_http = true;
        self
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// An empty secret; a published test secret outside
    /// [`insecure_test_mode`](Self::insecure_test_mode); no hostname choice;
    /// reCAPTCHA v3 without action or score; hCaptcha without a site key;
    /// an `https` URL without a TLS client (without the `captcha-tls`
    /// feature; with it, when the system has no certificate store and no
    /// [`tls_roots`](Self::tls_roots) were given); a plain-`http` URL on a
    /// non-loopback host without
    /// [`insecure_allow_plain_http`](Self::insecure_allow_plain_http).
    pub fn build(self) -> Result<SiteVerify, ConfigError> {
        if self.secret.0.is_empty() {
            return Err(ConfigError::invalid("CAPTCHA secret", "is empty"));
        }
        if is_test_secret(&self.secret.0) && !self.test_mode {
            return Err(ConfigError::invalid(
                "CAPTCHA secret",
                "is a published test secret that accepts every token; use it only with insecure_test_mode()",
            ));
        }
        let (hostnames, any_hostname) = match self.hostnames {
            Hostnames::Unset => {
                return Err(ConfigError::invalid(
                    "CAPTCHA hostname",
                    "name the hostnames challenges may be solved on, or call any_hostname()",
                ));
            }
            Hostnames::Any => (Vec::new(), true),
            Hostnames::OneOf(list) => (list, false),
        };
        if self.provider == Provider::RecaptchaV3
            && (self.action.is_none() || self.min_score.is_none())
        {
            return Err(ConfigError::invalid(
                "reCAPTCHA v3",
                "needs an expected action and a minimum score",
            ));
        }
        if let Some(score) = self.min_score
            && !(0.0..=1.0).contains(&score)
        {
            return Err(ConfigError::invalid(
                "CAPTCHA min_score",
                "must be within 0.0..=1.0",
            ));
        }
        if self.provider == Provider::HCaptcha && self.sitekey.as_deref().is_none_or(str::is_empty)
        {
            return Err(ConfigError::invalid("hCaptcha", "needs the site key"));
        }
        let loopback = self.uri.host().is_some_and(|h| {
            h == "localhost"
                || h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        let https = self.uri.scheme_str() == Some("https");
        if !https && !loopback && !self.plain_http {
            return Err(ConfigError::invalid(
                "verify URL",
                "plain http would send the secret in clear; use https or insecure_allow_plain_http()",
            ));
        }
        let post = match self.post {
            Some(post) => post,
            #[cfg(feature = "captcha-tls")]
            None if https => {
                let roots = match self.tls_roots {
                    Some(roots) => roots,
                    None => super::tls::TlsRoots::native()?,
                };
                post_with(super::tls::HttpsClient::new(&roots)?)
            }
            #[cfg(not(feature = "captcha-tls"))]
            None if https => {
                return Err(ConfigError::invalid(
                    "verify URL",
                    "the built-in client speaks plain HTTP: enable the captcha-tls feature or pass a TLS client with client(..)",
                ));
            }
            None => post_with(
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<Bytes>>(),
            ),
        };
        Ok(SiteVerify {
            provider: self.provider,
            secret: self.secret,
            uri: self.uri,
            hostnames: hostnames.into(),
            any_hostname,
            action: self.action.map(Arc::from),
            min_score: self.min_score,
            sitekey: self.sitekey.map(Arc::from),
            max_age: self.max_age,
            send_remote_ip: self.send_remote_ip,
            timeout: self.timeout,
            post,
            clock: self.clock,
        })
    }
}

/// Turns a tower HTTP client into the post function.
fn post_with<S, B>(client: S) -> Post
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Arc::new(move |request: Request<Full<Bytes>>, max: usize| {
        let client = client.clone();
        Box::pin(async move {
            let response = client
                .oneshot(request)
                .await
                .map_err(|e| CaptchaError::unavailable("siteverify request failed", e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), max)
                .collect()
                .await
                .map_err(|e| CaptchaError::Unavailable("siteverify answer unreadable", Some(e)))?;
            Ok((status, body.to_bytes()))
        }) as PostFuture
    })
}

/// Appends `name=value` form-encoded.
fn push_pair(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str(name);
    out.push('=');
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl SiteVerify {
    fn request(
        &self,
        token: &CaptchaToken,
        remote_ip: Option<IpAddr>,
    ) -> Result<Request<Full<Bytes>>, CaptchaError> {
        let mut form = String::with_capacity(token.as_str().len() + 128);
        push_pair(&mut form, "secret", &self.secret.0);
        push_pair(&mut form, "response", token.as_str());
        if let (true, Some(ip)) = (self.send_remote_ip, remote_ip) {
            push_pair(&mut form, "remoteip", &ip.to_string());
        }
        if let Some(sitekey) = &self.sitekey {
            push_pair(&mut form, "sitekey", sitekey);
        }
        Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| CaptchaError::unavailable("siteverify request not built", e))
    }

    /// Reads a siteverify answer: `Ok` only for a complete, matching yes.
    fn check_answer(&self, status: StatusCode, body: &[u8]) -> Result<(), CaptchaError> {
        if status != StatusCode::OK {
            return Err(CaptchaError::Unavailable(
                "siteverify answered a non-200 status",
                None,
            ));
        }
        let answer: Value = serde_json::from_slice(body)
            .map_err(|e| CaptchaError::unavailable("siteverify answer is not JSON", e))?;
        match answer.get("success") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Err(CaptchaError::Rejected("provider said no")),
            _ => {
                return Err(CaptchaError::Unavailable(
                    "siteverify answer has no boolean success",
                    None,
                ));
            }
        }
        if !self.any_hostname {
            let hostname = answer.get("hostname").and_then(Value::as_str);
            let matches =
                hostname.is_some_and(|h| self.hostnames.iter().any(|e| e.eq_ignore_ascii_case(h)));
            if !matches {
                return Err(CaptchaError::Rejected("hostname does not match"));
            }
        }
        if let Some(action) = &self.action
            && answer.get("action").and_then(Value::as_str) != Some(action)
        {
            return Err(CaptchaError::Rejected("action does not match"));
        }
        if let Some(min) = self.min_score {
            let score = answer.get("score").and_then(Value::as_f64);
            if score.is_none_or(|s| s.is_nan() || s < min) {
                return Err(CaptchaError::Rejected("score below the minimum"));
            }
        }
        if let (Some(expected), Some(got)) = (&self.sitekey, answer.get("sitekey"))
            && got.as_str() != Some(expected)
        {
            return Err(CaptchaError::Rejected("solved for another site key"));
        }
        let solved = answer
            .get("challenge_ts")
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
            .ok_or(CaptchaError::Rejected("challenge_ts missing or malformed"))?;
        let now = self.clock.now();
        if solved > now + FUTURE_SKEW {
            return Err(CaptchaError::Rejected("challenge_ts in the future"));
        }
        if now.duration_since(solved).unwrap_or_default() > self.max_age {
            return Err(CaptchaError::Rejected("challenge too old"));
        }
        Ok(())
    }
}

impl CaptchaVerifier for SiteVerify {
    async fn verify(
        &self,
        token: &CaptchaToken,
        remote_ip: Option<IpAddr>,
    ) -> Result<(), CaptchaError> {
        if !token.is_well_formed() {
            return Err(CaptchaError::Rejected("token malformed or too long"));
        }
        let request = self.request(token, remote_ip)?;
        let post = (self.post)(request, MAX_ANSWER);
        let (status, body) = tokio::time::timeout(self.timeout, post)
            .await
            .map_err(|e| CaptchaError::unavailable("siteverify timed out", e))??;
        self.check_answer(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::FakeClock;
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const NOW: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z
    const FRESH: &str = "2023-11-14T22:13:00Z";

    /// A client double that answers `answer` and records the request body.
    fn fake(
        status: u16,
        answer: &'static str,
        seen: Arc<Mutex<Vec<String>>>,
        calls: Arc<AtomicUsize>,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + Sync
    + 'static {
        tower::service_fn(move |req: Request<Full<Bytes>>| {
            let seen = Arc::clone(&seen);
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let body = req.into_body().collect().await.unwrap().to_bytes();
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8(body.to_vec()).unwrap());
                let mut res = Response::new(Full::new(Bytes::from_static(answer.as_bytes())));
                *res.status_mut() = StatusCode::from_u16(status).unwrap();
                Ok::<_, Infallible>(res)
            }
        })
    }

    fn verifier(
        builder: SiteVerifyBuilder,
        status: u16,
        answer: &'static str,
    ) -> (SiteVerify, Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let v = builder
            .verify_url("http://127.0.0.1:9/siteverify")
            .unwrap()
            .client(fake(status, answer, Arc::clone(&seen), Arc::clone(&calls)))
            .clock(Arc::new(FakeClock::at_unix(NOW)))
            .build()
            .unwrap();
        (v, seen, calls)
    }

    async fn check(
        builder: SiteVerifyBuilder,
        status: u16,
        answer: &'static str,
    ) -> Result<(), CaptchaError> {
        let (v, _, _) = verifier(builder, status, answer);
        v.verify(
            &CaptchaToken::new("tok.en-123"),
            Some("198.51.100.7".parse().unwrap()),
        )
        .await
    }

    fn turnstile() -> SiteVerifyBuilder {
        SiteVerify::turnstile("0x4AAAAAAAreal-secret")
            .hostname("login.example.com")
            .action("login")
    }

    #[tokio::test]
    async fn posts_the_documented_form() {
        let answer = r#"{"success":true,"hostname":"login.example.com","action":"login","challenge_ts":"2023-11-14T22:13:00Z"}"#;
        let (v, seen, _) = verifier(turnstile(), 200, answer);
        v.verify(
            &CaptchaToken::new("a+b/c"),
            Some("198.51.100.7".parse().unwrap()),
        )
        .await
        .unwrap();
        assert_eq!(
            seen.lock().unwrap()[0],
            "secret=0x4AAAAAAAreal-secret&response=a%2Bb%2Fc&remoteip=198.51.100.7"
        );
        let answer = r#"{"success":true,"hostname":"login.example.com","challenge_ts":"2023-11-14T22:13:00Z"}"#;
        let (v, seen, _) = verifier(
            SiteVerify::hcaptcha("0xsecret", "site-key-1").hostname("login.example.com"),
            200,
            answer,
        );
        v.verify(&CaptchaToken::new("t"), None).await.unwrap();
        assert_eq!(
            seen.lock().unwrap()[0],
            "secret=0xsecret&response=t&sitekey=site-key-1"
        );
    }

    #[tokio::test]
    async fn rows_115_to_119_every_field_is_checked() {
        let ok = r#"{"success":true,"hostname":"login.example.com","action":"login","challenge_ts":"2023-11-14T22:13:00Z"}"#;
        assert!(check(turnstile(), 200, ok).await.is_ok());
        let rejected = |r: Result<(), CaptchaError>| matches!(r, Err(CaptchaError::Rejected(_)));
        let unavailable =
            |r: Result<(), CaptchaError>| matches!(r, Err(CaptchaError::Unavailable(..)));
        // 115: hostname.
        assert!(rejected(check(turnstile(), 200, r#"{"success":true,"hostname":"evil.example","action":"login","challenge_ts":"2023-11-14T22:13:00Z"}"#).await));
        assert!(rejected(
            check(
                turnstile(),
                200,
                r#"{"success":true,"action":"login","challenge_ts":"2023-11-14T22:13:00Z"}"#
            )
            .await
        ));
        // 116: action.
        assert!(rejected(check(turnstile(), 200, r#"{"success":true,"hostname":"login.example.com","action":"signup","challenge_ts":"2023-11-14T22:13:00Z"}"#).await));
        // 117: v3 score.
        let v3 =
            || SiteVerify::recaptcha_v3("6Lc-real", "login", 0.5).hostname("login.example.com");
        assert!(check(v3(), 200, r#"{"success":true,"hostname":"login.example.com","action":"login","score":0.9,"challenge_ts":"2023-11-14T22:13:00Z"}"#).await.is_ok());
        assert!(rejected(check(v3(), 200, r#"{"success":true,"hostname":"login.example.com","action":"login","score":0.1,"challenge_ts":"2023-11-14T22:13:00Z"}"#).await));
        assert!(rejected(check(v3(), 200, r#"{"success":true,"hostname":"login.example.com","action":"login","challenge_ts":"2023-11-14T22:13:00Z"}"#).await));
        // 118: age: 121 s for reCAPTCHA, 301 s for Turnstile.
        let v2 = || SiteVerify::recaptcha_v2("6Lc-real").hostname("login.example.com");
        assert!(check(v2(), 200, r#"{"success":true,"hostname":"login.example.com","challenge_ts":"2023-11-14T22:11:20Z"}"#).await.is_ok());
        assert!(rejected(check(v2(), 200, r#"{"success":true,"hostname":"login.example.com","challenge_ts":"2023-11-14T22:11:19Z"}"#).await));
        assert!(check(turnstile(), 200, r#"{"success":true,"hostname":"login.example.com","action":"login","challenge_ts":"2023-11-14T22:08:20Z"}"#).await.is_ok());
        assert!(rejected(check(turnstile(), 200, r#"{"success":true,"hostname":"login.example.com","action":"login","challenge_ts":"2023-11-14T22:08:19Z"}"#).await));
        assert!(rejected(
            check(
                v2(),
                200,
                r#"{"success":true,"hostname":"login.example.com"}"#
            )
            .await
        ));
        assert!(rejected(
            check(
                v2(),
                200,
                r#"{"success":true,"hostname":"login.example.com","challenge_ts":"yesterday"}"#
            )
            .await
        ));
        // 119: provider failures fail closed.
        assert!(unavailable(check(v2(), 500, r#"{"success":true}"#).await));
        assert!(unavailable(check(v2(), 200, "<html>oops</html>").await));
        assert!(unavailable(check(v2(), 200, r#"{"success":"true","hostname":"login.example.com","challenge_ts":"2023-11-14T22:13:00Z"}"#).await));
        assert!(unavailable(
            check(v2(), 200, r#"{"hostname":"login.example.com"}"#).await
        ));
        assert!(rejected(
            check(
                v2(),
                200,
                r#"{"success":false,"error-codes":["timeout-or-duplicate"]}"#
            )
            .await
        ));
        let _ = FRESH;
    }

    #[tokio::test]
    async fn row_123_hcaptcha_answer_for_another_sitekey_is_refused() {
        let b = || SiteVerify::hcaptcha("0xsecret", "site-key-1").hostname("login.example.com");
        assert!(matches!(
            check(b(), 200, r#"{"success":true,"hostname":"login.example.com","sitekey":"other","challenge_ts":"2023-11-14T22:13:00Z"}"#).await,
            Err(CaptchaError::Rejected("solved for another site key"))
        ));
    }

    #[tokio::test]
    async fn row_120_long_token_never_reaches_the_provider() {
        let (v, _, calls) = verifier(turnstile(), 200, "{}");
        let long = "a".repeat(2049);
        assert!(matches!(
            v.verify(&CaptchaToken::new(&long), None).await,
            Err(CaptchaError::Rejected(_))
        ));
        assert!(matches!(
            v.verify(&CaptchaToken::new("bad token"), None).await,
            Err(CaptchaError::Rejected(_))
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn row_121_test_secrets_and_unsafe_configurations_are_refused() {
        let err = SiteVerify::turnstile("1x0000000000000000000000000000000AA")
            .any_hostname()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("test secret"), "{err}");
        assert!(
            !err.to_string().contains("1x000"),
            "secret not echoed: {err}"
        );
        assert!(
            SiteVerify::recaptcha_v2("6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe")
                .any_hostname()
                .build()
                .is_err()
        );
        assert!(
            SiteVerify::hcaptcha("0x0000000000000000000000000000000000000000", "k")
                .any_hostname()
                .build()
                .is_err()
        );
        // Explicit test mode accepts them (on loopback).
        assert!(
            SiteVerify::turnstile("1x0000000000000000000000000000000AA")
                .any_hostname()
                .insecure_test_mode()
                .verify_url("http://127.0.0.1:1/")
                .unwrap()
                .build()
                .is_ok()
        );
        // No hostname decision, plain http off loopback, https without a TLS client.
        assert!(
            SiteVerify::turnstile("0xreal")
                .verify_url("http://127.0.0.1:1/")
                .unwrap()
                .build()
                .is_err()
        );
        assert!(
            SiteVerify::turnstile("0xreal")
                .any_hostname()
                .verify_url("http://captcha.internal/")
                .unwrap()
                .build()
                .is_err()
        );
        // The providers' https URL: refused without a TLS client unless the
        // built-in one exists (feature captcha-tls, tested in tls_tests).
        #[cfg(not(feature = "captcha-tls"))]
        assert!(
            SiteVerify::turnstile("0xreal")
                .any_hostname()
                .build()
                .is_err()
        );
        assert!(
            SiteVerify::recaptcha_v3("6Lc", "login", 1.5)
                .any_hostname()
                .verify_url("http://127.0.0.1:1/")
                .unwrap()
                .build()
                .is_err()
        );
    }

    #[test]
    fn row_122_debug_never_shows_the_secret_or_the_token() {
        let v = SiteVerify::turnstile("0x4AAAAAAA-super-secret")
            .any_hostname()
            .verify_url("http://127.0.0.1:1/")
            .unwrap();
        assert!(!format!("{v:?}").contains("super-secret"));
        let v = v.build().unwrap();
        assert!(!format!("{v:?}").contains("super-secret"));
        assert!(!format!("{:?}", CaptchaToken::new("XXXX.DUMMY.TOKEN.XXXX")).contains("DUMMY"));
    }
}
