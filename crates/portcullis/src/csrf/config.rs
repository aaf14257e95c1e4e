//! `CsrfLayerBuilder`: every setting, checked once at build time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, header::AUTHORIZATION};
use portcullis_core::{
    BoxCsrfTokenStore, CsrfTokenStore, SharedClock, SystemClock, TrustedProxies,
};

use super::cookie::{self, CookieSettings, SameSite};
use super::layer::CsrfLayer;
use super::origin::{HostOrigin, MissingOriginPolicy, Origin, OriginPolicy, SameSitePolicy};
use super::session::{NoSession, SessionIdSource};
use super::token::CsrfSecret;
use crate::ConfigError;
use crate::rejection::DefaultRejection;

/// The default header a client echoes the token in.
pub const DEFAULT_HEADER: &str = "x-csrf-token";

/// Default lifetime of a token in a [`CsrfTokenStore`] (and of the cookie
/// when a store is configured): 12 hours.
pub const DEFAULT_STORE_TTL: Duration = Duration::from_secs(12 * 3600);

/// Synchronizer-token settings.
pub(crate) struct StoreSettings {
    pub(crate) store: BoxCsrfTokenStore,
    pub(crate) ttl: Duration,
    pub(crate) single_use: bool,
}

/// Which requests skip the checks because they carry no ambient credential.
#[derive(Clone, Debug, Default)]
pub(crate) struct ExemptPolicy {
    pub(crate) enabled: bool,
    /// Cookies that authenticate (session, JWT cookie): their presence
    /// cancels the exemption.
    pub(crate) ambient_cookies: Vec<Box<str>>,
}

impl ExemptPolicy {
    /// A request is exempt when it carries an explicit credential header
    /// (`Authorization: Bearer …` / `ApiKey …`, `X-API-Key`) **and** no
    /// ambient credential: no session, none of the ambient cookies. A
    /// cross-site page cannot add those headers without a CORS preflight;
    /// a page that can (a permissive CORS policy) could also let the
    /// browser attach the session cookie, which is why a session cancels
    /// the exemption.
    pub(crate) fn applies(&self, headers: &HeaderMap, has_session: bool) -> bool {
        self.enabled
            && !has_session
            && has_explicit_credential(headers)
            && !cookie::any_of(headers, &self.ambient_cookies)
    }
}

static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

fn has_explicit_credential(headers: &HeaderMap) -> bool {
    if headers.contains_key(&X_API_KEY) {
        return true;
    }
    headers.get_all(AUTHORIZATION).iter().any(|v| {
        let v = v.as_bytes();
        let scheme = v.split(|b| *b == b' ').next().unwrap_or_default();
        (scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"apikey"))
            && v.len() > scheme.len() + 1
    })
}

/// Everything the layer, its service and the token handles share.
pub(crate) struct Config {
    pub(crate) secret: CsrfSecret,
    pub(crate) session: Box<dyn SessionIdSource>,
    pub(crate) origins: OriginPolicy,
    pub(crate) cookie: CookieSettings,
    pub(crate) cookie_attributes: Box<str>,
    pub(crate) header: HeaderName,
    pub(crate) exempt: ExemptPolicy,
    pub(crate) json_only: bool,
    pub(crate) store: Option<StoreSettings>,
    pub(crate) clock: SharedClock,
    pub(crate) shadow: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("secret", &self.secret)
            .field("origins", &self.origins)
            .field("cookie", &self.cookie)
            .field("header", &self.header)
            .field("exempt", &self.exempt)
            .field("json_only", &self.json_only)
            .field("store", &self.store.as_ref().map(|s| (s.ttl, s.single_use)))
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

/// Builds a [`CsrfLayer`]; see the [module docs](crate::csrf).
///
/// Required: at least one trusted origin (or
/// [`trust_host_header`](Self::trust_host_header)) and a session source
/// (or an explicit [`without_session_binding`](Self::without_session_binding)).
#[must_use]
pub struct CsrfLayerBuilder {
    secret: CsrfSecret,
    session: Option<Box<dyn SessionIdSource>>,
    trusted: Vec<String>,
    host: Option<HostOrigin>,
    allow_trusted_cross_site: bool,
    same_site: SameSitePolicy,
    missing: MissingOriginPolicy,
    referer_fallback: bool,
    cookie: CookieSettings,
    header: HeaderName,
    exempt: ExemptPolicy,
    json_only: bool,
    store: Option<(BoxCsrfTokenStore, Duration)>,
    single_use: bool,
    clock: SharedClock,
    shadow: bool,
}

impl fmt::Debug for CsrfLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CsrfLayerBuilder")
            .field("secret", &self.secret)
            .field("trusted", &self.trusted)
            .field("cookie", &self.cookie)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

impl CsrfLayerBuilder {
    pub(crate) fn new(secret: CsrfSecret) -> Self {
        Self {
            secret,
            session: None,
            trusted: Vec::new(),
            host: None,
            allow_trusted_cross_site: false,
            same_site: SameSitePolicy::default(),
            missing: MissingOriginPolicy::default(),
            referer_fallback: true,
            cookie: CookieSettings::default(),
            header: HeaderName::from_static(DEFAULT_HEADER),
            exempt: ExemptPolicy::default(),
            json_only: false,
            store: None,
            single_use: false,
            clock: Arc::new(SystemClock),
            shadow: false,
        }
    }

    /// Trusts `origin` (`https://app.example.org`, `http://127.0.0.1:3000`):
    /// a state-changing request whose `Origin` (or `Referer`) is not exactly
    /// a trusted origin — scheme, host and port — is refused.
    pub fn trusted_origin(mut self, origin: impl Into<String>) -> Self {
        self.trusted.push(origin.into());
        self
    }

    /// Trusts every origin in `origins`.
    pub fn trusted_origins<I, T>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.trusted.extend(origins.into_iter().map(Into::into));
        self
    }

    /// Also trusts the origin the request was addressed to: `https` (or
    /// `http`) plus the `Host` header. `X-Forwarded-Host` and
    /// `X-Forwarded-Proto` are read **only** when the TCP peer is one of
    /// `proxies` (the peer comes from a [`PeerAddr`] extension or axum's
    /// `ConnectInfo`); from anyone else they are ignored.
    ///
    /// [`PeerAddr`]: portcullis_core::PeerAddr
    pub fn trust_host_header(mut self, https: bool, proxies: TrustedProxies) -> Self {
        self.host = Some(HostOrigin { https, proxies });
        self
    }

    /// Lets `Sec-Fetch-Site: cross-site` through when the `Origin` is a
    /// trusted origin: for a front end on another site calling this API
    /// with CORS credentials (seed 003's `FRONTEND_ORIGIN`). Off by default:
    /// cross-site state changes are refused whatever the origin.
    pub fn allow_cross_site_from_trusted_origins(mut self) -> Self {
        self.allow_trusted_cross_site = true;
        self
    }

    /// What to do with `Sec-Fetch-Site: same-site` (default: refuse unless
    /// the origin is trusted).
    pub fn same_site_requests(mut self, policy: SameSitePolicy) -> Self {
        self.same_site = policy;
        self
    }

    /// What to do when `Origin`, `Referer` and `Sec-Fetch-Site` are all
    /// missing (default: the token alone decides).
    pub fn missing_origin(mut self, policy: MissingOriginPolicy) -> Self {
        self.missing = policy;
        self
    }

    /// Never derives the request's origin from `Referer` when `Origin` is
    /// absent.
    pub fn without_referer_fallback(mut self) -> Self {
        self.referer_fallback = false;
        self
    }

    /// Where the session id comes from; tokens are bound to it.
    pub fn session(mut self, source: impl SessionIdSource) -> Self {
        self.session = Some(Box::new(source));
        self
    }

    /// Binds tokens to no session (see [`NoSession`]).
    pub fn without_session_binding(mut self) -> Self {
        self.session = Some(Box::new(NoSession));
        self
    }

    /// Names the token cookie (default `__Host-csrf`). The name must keep
    /// the `__Host-` prefix.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into().into_boxed_str();
        self
    }

    /// The cookie's `SameSite` (default `Lax`).
    pub fn cookie_same_site(mut self, same_site: SameSite) -> Self {
        self.cookie.same_site = same_site;
        self
    }

    /// Drops `HttpOnly` so page scripts can read the cookie and copy it into
    /// `X-CSRF-Token` (single-page apps without server-rendered pages). The
    /// token is not a credential on its own, but a script injected into the
    /// page can then read it: keep `HttpOnly` when the server renders the
    /// token into the page (form field or `<meta>`).
    pub fn cookie_readable_by_scripts(mut self) -> Self {
        self.cookie.http_only = false;
        self
    }

    /// Sets `Max-Age` on the cookie (default: none, a browser-session
    /// cookie; with a store: the store's token lifetime).
    pub fn cookie_max_age(mut self, max_age: Duration) -> Self {
        self.cookie.max_age = Some(max_age);
        self
    }

    /// **Insecure, development only**: names the cookie `name` without the
    /// `__Host-` prefix and without `Secure`, for a browser talking plain
    /// HTTP to a host that is not `localhost`. Never use it in production: a
    /// sibling subdomain or a network attacker can then plant the cookie.
    pub fn insecure_cookie_for_http_development(mut self, name: impl Into<String>) -> Self {
        self.cookie.name = name.into().into_boxed_str();
        self.cookie.insecure_dev = true;
        self
    }

    /// Reads the echoed token from `header` instead of `X-CSRF-Token`.
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// Exempts requests authenticated without an ambient credential: they
    /// carry `Authorization: Bearer …`, `Authorization: ApiKey …` or
    /// `X-API-Key`, the session source finds no session, and none of
    /// `ambient_cookies` (the cookies that authenticate: session, JWT
    /// cookie) is present. A request that carries the session cookie too is
    /// checked like any other.
    ///
    /// Safe requests of such clients are not offered a token cookie either
    /// (an API client has no use for one, and minting it costs an HMAC and a
    /// `Set-Cookie` per request); [`CsrfToken::token`](super::CsrfToken::token)
    /// still makes one on demand.
    pub fn exempt_requests_without_ambient_credentials<I, T>(mut self, ambient_cookies: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.exempt.enabled = true;
        self.exempt.ambient_cookies = ambient_cookies
            .into_iter()
            .map(|c| c.into().into_boxed_str())
            .collect();
        self
    }

    /// The routes behind this layer take JSON only: a state-changing
    /// request with a body that is not `application/json` (or `…+json`) —
    /// the `text/plain`, form and multipart bodies a cross-site form or a
    /// no-CORS `fetch` can send without a preflight — is refused with `403
    /// cross_origin`.
    pub fn json_only(mut self) -> Self {
        self.json_only = true;
        self
    }

    /// Also keeps every issued session token in `store` (synchronizer
    /// tokens): a token is accepted only while the store holds it for the
    /// session, for `ttl`. Pre-session tokens (no session yet) are not
    /// stored. A store error refuses the request with 503.
    pub fn store(mut self, store: impl CsrfTokenStore, ttl: Duration) -> Self {
        self.store = Some((BoxCsrfTokenStore::new(store), ttl));
        self
    }

    /// With a store: each token is accepted once, and the response to the
    /// request that used it carries a new one.
    pub fn single_use_tokens(mut self) -> Self {
        self.single_use = true;
        self
    }

    /// Reads time (store expiry) from `clock`.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Shadow mode: decide and report (a `security.csrf_violation` event
    /// marked shadow on the response) but let every request through.
    pub fn shadow_mode(mut self) -> Self {
        self.shadow = true;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// No trusted origin and no [`trust_host_header`](Self::trust_host_header);
    /// an origin that does not parse; no session source; a cookie name
    /// without `__Host-`; single-use tokens without a store; a zero store
    /// lifetime.
    pub fn build(mut self) -> Result<CsrfLayer<DefaultRejection>, ConfigError> {
        let trusted = self
            .trusted
            .iter()
            .map(|o| Origin::parse_config(o))
            .collect::<Result<Vec<_>, _>>()?;
        if trusted.is_empty() && self.host.is_none() {
            return Err(ConfigError::invalid(
                "trusted origins",
                "configure at least one trusted origin, or trust the Host header",
            ));
        }
        let session = self.session.ok_or(ConfigError::invalid(
            "csrf session source",
            "tokens must be bound to a session: set one, or call without_session_binding()",
        ))?;
        self.cookie.validate()?;
        let store = match self.store {
            Some((store, ttl)) => {
                if ttl.is_zero() {
                    return Err(ConfigError::invalid("csrf store ttl", "must be positive"));
                }
                if self.cookie.max_age.is_none() {
                    self.cookie.max_age = Some(ttl);
                }
                Some(StoreSettings {
                    store,
                    ttl,
                    single_use: self.single_use,
                })
            }
            None if self.single_use => {
                return Err(ConfigError::invalid(
                    "csrf single-use tokens",
                    "need a token store",
                ));
            }
            None => None,
        };
        let config = Config {
            secret: self.secret,
            session,
            origins: OriginPolicy {
                trusted,
                host: self.host,
                allow_trusted_cross_site: self.allow_trusted_cross_site,
                same_site: self.same_site,
                missing: self.missing,
                referer_fallback: self.referer_fallback,
            },
            cookie_attributes: self.cookie.attributes().into_boxed_str(),
            cookie: self.cookie,
            header: self.header,
            exempt: self.exempt,
            json_only: self.json_only,
            store,
            clock: self.clock,
            shadow: self.shadow,
        };
        Ok(CsrfLayer::from_config(Arc::new(config)))
    }
}
