//! The server's configuration, read from the environment (names as in the
//! seeds). Every value is checked at start: an invalid one is a clear
//! message and a non-zero exit, never a silent default.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use portcullis::core::TrustedProxies;

/// The default listen address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8000";
/// The shortest JWT secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Which CAPTCHA provider checks tokens, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptchaProvider {
    /// Cloudflare Turnstile.
    Turnstile,
    /// hCaptcha (needs `PORTCULLIS_CAPTCHA_SITEKEY`).
    HCaptcha,
    /// Google reCAPTCHA v2.
    Recaptcha,
}

/// A configured CAPTCHA.
#[derive(Clone)]
pub struct CaptchaConfig {
    /// The provider.
    pub provider: CaptchaProvider,
    /// The provider's secret.
    pub secret: String,
    /// The site key (hCaptcha).
    pub sitekey: Option<String>,
    /// Where tokens are verified (the provider's siteverify URL by default).
    pub verify_url: Option<String>,
    /// `PORTCULLIS_CAPTCHA_CA_FILE`: PEM certificate authorities trusted for
    /// the verify URL instead of the system's store (a private CA, a test
    /// double's certificate).
    pub ca_file: Option<std::path::PathBuf>,
}

impl fmt::Debug for CaptchaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptchaConfig")
            .field("provider", &self.provider)
            .field("secret", &"<redacted>")
            .field("verify_url", &self.verify_url)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// An external identity provider whose access tokens the server accepts
/// besides its own: `PORTCULLIS_JWKS_URL` with its issuer and audience.
#[derive(Clone, Debug)]
pub struct JwksConfig {
    /// `PORTCULLIS_JWKS_URL`: the provider's JWKS (`https://`, or `http://`
    /// on loopback for a test double).
    pub url: String,
    /// `PORTCULLIS_JWKS_ISSUER`: the `iss` of the provider's tokens (not
    /// the server's own issuer).
    pub issuer: String,
    /// `PORTCULLIS_JWKS_AUDIENCE`: the `aud` the provider's tokens must
    /// name for this server.
    pub audience: String,
    /// `PORTCULLIS_JWKS_REFRESH_SECONDS` (300): scheduled refresh interval.
    pub refresh_interval: Duration,
    /// `PORTCULLIS_JWKS_COOLDOWN_SECONDS` (30): at most one fetch per this
    /// long for tokens naming an unknown `kid`.
    pub cooldown: Duration,
    /// `PORTCULLIS_JWKS_BREAKER_OPEN_SECONDS` (30): how long the `jwks`
    /// circuit breaker stays open after 3 failed fetches in a row.
    pub breaker_open: Duration,
}

/// Everything the server reads from its environment (the state's location
/// is read by [`Backends::from_env`](portcullis_cli::backends::Backends::from_env)).
#[derive(Clone)]
pub struct Config {
    /// `PORTCULLIS_DEMO_ADDR` (default `127.0.0.1:8000`).
    pub addr: SocketAddr,
    /// `PORTCULLIS_JWT_SECRET`; `None` means an ephemeral secret.
    pub jwt_secret: Option<Vec<u8>>,
    /// `PORTCULLIS_JWT_SECRET_OLD`: comma-separated previous secrets, still
    /// accepted for verification during a rotation.
    pub jwt_secret_old: Vec<Vec<u8>>,
    /// `PORTCULLIS_TOKEN_LIFETIME_SECONDS` (900).
    pub token_lifetime: Duration,
    /// `PORTCULLIS_REFRESH_TOKEN_LIFETIME_SECONDS` (604800).
    pub refresh_lifetime: Duration,
    /// `PORTCULLIS_TOKEN_LEEWAY_SECONDS` (30, at most 300): clock skew
    /// allowed on `exp`, `nbf` and `iat`.
    pub token_leeway: Duration,
    /// `PORTCULLIS_TOKEN_EXPIRY_GRACE_SECONDS` (0, at most 3600): access
    /// tokens still accepted this long past `exp` (after the leeway).
    pub token_expiry_grace: Duration,
    /// `PORTCULLIS_LOCKOUT_MAX_ATTEMPTS` (5).
    pub lockout_max_attempts: u32,
    /// `PORTCULLIS_LOCKOUT_WINDOW_SECONDS` (300).
    pub lockout_window: Duration,
    /// `PORTCULLIS_LOCKOUT_DURATION_SECONDS` (1800).
    pub lockout_duration: Duration,
    /// `PORTCULLIS_CAPTCHA_AFTER_FAILURES` (3).
    pub captcha_after_failures: u32,
    /// `PORTCULLIS_CAPTCHA_PROVIDER` (`none`) with `PORTCULLIS_CAPTCHA_SECRET`,
    /// `PORTCULLIS_CAPTCHA_SITEKEY` and `PORTCULLIS_CAPTCHA_VERIFY_URL`.
    pub captcha: Option<CaptchaConfig>,
    /// `PORTCULLIS_TRUSTED_PROXIES`: comma-separated addresses or CIDRs.
    pub trusted_proxies: TrustedProxies,
    /// `PORTCULLIS_FRONTEND_ORIGIN`: the browser origin trusted for CSRF
    /// (default: this server's own `http://` origin).
    pub frontend_origin: String,
    /// `PORTCULLIS_RATE_LIMIT_RPS` (50 per client address).
    pub rate_limit_rps: u32,
    /// `PORTCULLIS_RATE_LIMIT_BURST` (100).
    pub rate_limit_burst: u32,
    /// `PORTCULLIS_API_KEY_PEPPER` (HMAC digests when set).
    pub api_key_pepper: Option<Vec<u8>>,
    /// `PORTCULLIS_JWKS_URL` and friends: an external identity provider.
    pub jwks: Option<JwksConfig>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field("jwt_secret_old", &self.jwt_secret_old.len())
            .field("token_lifetime", &self.token_lifetime)
            .field("refresh_lifetime", &self.refresh_lifetime)
            .field("token_leeway", &self.token_leeway)
            .field("token_expiry_grace", &self.token_expiry_grace)
            .field("lockout_max_attempts", &self.lockout_max_attempts)
            .field("lockout_window", &self.lockout_window)
            .field("lockout_duration", &self.lockout_duration)
            .field("captcha_after_failures", &self.captcha_after_failures)
            .field("captcha", &self.captcha)
            .field("frontend_origin", &self.frontend_origin)
            .field("rate_limit_rps", &self.rate_limit_rps)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field(
                "api_key_pepper",
                &self.api_key_pepper.as_ref().map(|_| "<set>"),
            )
            .field("jwks", &self.jwks)
            .finish_non_exhaustive()
    }
}

/// An invalid setting: which variable, and what is wrong (never its value,
/// which may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    ///
    /// The first invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
    }

    /// Reads variables through `get` (tests pass a map).
    ///
    /// # Errors
    ///
    /// The first invalid variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let addr: SocketAddr = match get("PORTCULLIS_DEMO_ADDR") {
            Some(v) => v.trim().parse().map_err(|_| {
                invalid(
                    "PORTCULLIS_DEMO_ADDR",
                    "must be an address and port such as 127.0.0.1:8000",
                )
            })?,
            None => DEFAULT_ADDR
                .parse()
                .map_err(|_| invalid("PORTCULLIS_DEMO_ADDR", "the built-in default is invalid"))?,
        };
        let jwt_secret = match get("PORTCULLIS_JWT_SECRET") {
            Some(s) => Some(secret("PORTCULLIS_JWT_SECRET", &s)?),
            None => None,
        };
        let jwt_secret_old = match get("PORTCULLIS_JWT_SECRET_OLD") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| secret("PORTCULLIS_JWT_SECRET_OLD", s))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let seconds = |var: &'static str, default: u64| -> Result<Duration, ConfigError> {
            let n = number(var, get(var), default)?;
            if n == 0 {
                return Err(invalid(var, "must be at least 1"));
            }
            Ok(Duration::from_secs(n))
        };
        let count = |var: &'static str, default: u32, min: u32| -> Result<u32, ConfigError> {
            let n = number(var, get(var), u64::from(default))?;
            let n = u32::try_from(n).map_err(|_| invalid(var, "is too large"))?;
            if n < min {
                return Err(invalid(var, format!("must be at least {min}")));
            }
            Ok(n)
        };
        let token_lifetime = seconds("PORTCULLIS_TOKEN_LIFETIME_SECONDS", 900)?;
        let refresh_lifetime = seconds("PORTCULLIS_REFRESH_TOKEN_LIFETIME_SECONDS", 604_800)?;
        if refresh_lifetime < token_lifetime {
            return Err(invalid(
                "PORTCULLIS_REFRESH_TOKEN_LIFETIME_SECONDS",
                "must not be shorter than PORTCULLIS_TOKEN_LIFETIME_SECONDS",
            ));
        }
        let bounded =
            |var: &'static str, default: u64, max: u64| -> Result<Duration, ConfigError> {
                let n = number(var, get(var), default)?;
                if n > max {
                    return Err(invalid(var, format!("must be at most {max}")));
                }
                Ok(Duration::from_secs(n))
            };
        let token_leeway = bounded("PORTCULLIS_TOKEN_LEEWAY_SECONDS", 30, 300)?;
        let token_expiry_grace = bounded("PORTCULLIS_TOKEN_EXPIRY_GRACE_SECONDS", 0, 3600)?;
        let lockout_max_attempts = count("PORTCULLIS_LOCKOUT_MAX_ATTEMPTS", 5, 1)?;
        let lockout_window = seconds("PORTCULLIS_LOCKOUT_WINDOW_SECONDS", 300)?;
        let lockout_duration = seconds("PORTCULLIS_LOCKOUT_DURATION_SECONDS", 1800)?;
        let captcha_after_failures = count("PORTCULLIS_CAPTCHA_AFTER_FAILURES", 3, 0)?;
        let captcha = captcha(&get)?;
        let trusted_proxies = match get("PORTCULLIS_TRUSTED_PROXIES") {
            Some(list) => {
                TrustedProxies::new(list.split(',').map(str::trim).filter(|s| !s.is_empty()))
                    .map_err(|e| invalid("PORTCULLIS_TRUSTED_PROXIES", e.to_string()))?
            }
            None => TrustedProxies::none(),
        };
        let frontend_origin = match get("PORTCULLIS_FRONTEND_ORIGIN") {
            Some(origin) => origin_of("PORTCULLIS_FRONTEND_ORIGIN", &origin)?,
            None => format!("http://{addr}"),
        };
        let rate_limit_rps = count("PORTCULLIS_RATE_LIMIT_RPS", 50, 1)?;
        let rate_limit_burst = count("PORTCULLIS_RATE_LIMIT_BURST", 100, 1)?;
        let api_key_pepper = match get("PORTCULLIS_API_KEY_PEPPER") {
            // The library's minimum (ApiKeyLayer::with_pepper), checked
            // here so the message names the variable.
            Some(p) if p.len() < 32 => {
                return Err(invalid(
                    "PORTCULLIS_API_KEY_PEPPER",
                    "must be at least 32 bytes (generate one with `portcullis secret generate`)",
                ));
            }
            Some(p) => Some(p.into_bytes()),
            None => None,
        };
        let jwks = match jwks(&get)? {
            Some(mut jwks) => {
                jwks.refresh_interval = seconds("PORTCULLIS_JWKS_REFRESH_SECONDS", 300)?;
                jwks.cooldown = bounded("PORTCULLIS_JWKS_COOLDOWN_SECONDS", 30, 3600)?;
                jwks.breaker_open = seconds("PORTCULLIS_JWKS_BREAKER_OPEN_SECONDS", 30)?;
                Some(jwks)
            }
            None => None,
        };
        Ok(Self {
            addr,
            jwt_secret,
            jwt_secret_old,
            token_lifetime,
            refresh_lifetime,
            token_leeway,
            token_expiry_grace,
            lockout_max_attempts,
            lockout_window,
            lockout_duration,
            captcha_after_failures,
            captcha,
            trusted_proxies,
            frontend_origin,
            rate_limit_rps,
            rate_limit_burst,
            api_key_pepper,
            jwks,
        })
    }

    /// Whether cookies need `Secure` (the frontend is served over https).
    #[must_use]
    pub fn secure_cookies(&self) -> bool {
        self.frontend_origin.starts_with("https://")
    }
}

fn secret(var: &'static str, value: &str) -> Result<Vec<u8>, ConfigError> {
    if value.len() < MIN_SECRET_BYTES {
        return Err(invalid(
            var,
            format!(
                "is {} bytes; at least {MIN_SECRET_BYTES} are required (generate one with `portcullis secret generate`)",
                value.len()
            ),
        ));
    }
    Ok(value.as_bytes().to_vec())
}

fn number(var: &'static str, value: Option<String>, default: u64) -> Result<u64, ConfigError> {
    match value {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| invalid(var, "must be a whole number")),
        None => Ok(default),
    }
}

fn origin_of(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim().trim_end_matches('/');
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| invalid(var, "must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(invalid(
            var,
            "must be an origin (scheme, host and optional port), such as https://app.example.org",
        ));
    }
    Ok(value.to_owned())
}

fn captcha(get: &impl Fn(&str) -> Option<String>) -> Result<Option<CaptchaConfig>, ConfigError> {
    const VAR: &str = "PORTCULLIS_CAPTCHA_PROVIDER";
    let provider = match get(VAR).as_deref().map(str::trim) {
        None | Some("none") => return Ok(None),
        Some("turnstile") => CaptchaProvider::Turnstile,
        Some("hcaptcha") => CaptchaProvider::HCaptcha,
        Some("recaptcha") => CaptchaProvider::Recaptcha,
        Some(_) => {
            return Err(invalid(
                VAR,
                "must be one of none, turnstile, hcaptcha, recaptcha",
            ));
        }
    };
    let secret = get("PORTCULLIS_CAPTCHA_SECRET").ok_or_else(|| {
        invalid(
            "PORTCULLIS_CAPTCHA_SECRET",
            "is required when a CAPTCHA provider is set",
        )
    })?;
    let sitekey = get("PORTCULLIS_CAPTCHA_SITEKEY");
    if provider == CaptchaProvider::HCaptcha && sitekey.is_none() {
        return Err(invalid(
            "PORTCULLIS_CAPTCHA_SITEKEY",
            "is required with hcaptcha",
        ));
    }
    // https (the providers' endpoints by default), or plain http to a
    // loopback test double: checked when the verifier is built.
    let verify_url = get("PORTCULLIS_CAPTCHA_VERIFY_URL").map(|u| u.trim().to_owned());
    if let Some(url) = &verify_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(invalid(
            "PORTCULLIS_CAPTCHA_VERIFY_URL",
            "must be an https:// URL (or http:// on loopback, for a test double)",
        ));
    }
    let ca_file = get("PORTCULLIS_CAPTCHA_CA_FILE").map(std::path::PathBuf::from);
    Ok(Some(CaptchaConfig {
        provider,
        secret,
        sitekey,
        verify_url,
        ca_file,
    }))
}

fn jwks(get: &impl Fn(&str) -> Option<String>) -> Result<Option<JwksConfig>, ConfigError> {
    const URL: &str = "PORTCULLIS_JWKS_URL";
    let issuer = get("PORTCULLIS_JWKS_ISSUER").map(|v| v.trim().to_owned());
    let audience = get("PORTCULLIS_JWKS_AUDIENCE").map(|v| v.trim().to_owned());
    let Some(url) = get(URL).map(|v| v.trim().to_owned()) else {
        if issuer.is_some() || audience.is_some() {
            return Err(invalid(
                URL,
                "is required with PORTCULLIS_JWKS_ISSUER and PORTCULLIS_JWKS_AUDIENCE",
            ));
        }
        return Ok(None);
    };
    let host = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        // Plain http only to a test double on this machine.
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name);
        if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
            return Err(invalid(
                URL,
                "must be an https:// URL (http:// only on loopback, for a test double)",
            ));
        }
        rest
    } else {
        return Err(invalid(
            URL,
            "must be an https:// URL (http:// only on loopback, for a test double)",
        ));
    };
    if host.is_empty() || host.starts_with('/') || url.parse::<axum::http::Uri>().is_err() {
        return Err(invalid(URL, "is not a valid URL"));
    }
    let issuer = issuer.filter(|i| !i.is_empty()).ok_or_else(|| {
        invalid(
            "PORTCULLIS_JWKS_ISSUER",
            "is required with PORTCULLIS_JWKS_URL (the provider's `iss`)",
        )
    })?;
    if issuer == crate::ISSUER {
        return Err(invalid(
            "PORTCULLIS_JWKS_ISSUER",
            "must differ from the server's own issuer (portcullis-demo)",
        ));
    }
    let audience = audience.filter(|a| !a.is_empty()).ok_or_else(|| {
        invalid(
            "PORTCULLIS_JWKS_AUDIENCE",
            "is required with PORTCULLIS_JWKS_URL (the `aud` the provider's tokens name)",
        )
    })?;
    Ok(Some(JwksConfig {
        url,
        issuer,
        audience,
        refresh_interval: Duration::from_secs(300),
        cooldown: Duration::from_secs(30),
        breaker_open: Duration::from_secs(30),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_nothing() {
        let config = with(&[]).expect("defaults");
        assert_eq!(config.addr.to_string(), DEFAULT_ADDR);
        assert!(config.jwt_secret.is_none());
        assert_eq!(config.token_lifetime, Duration::from_secs(900));
        assert_eq!(config.lockout_max_attempts, 5);
        assert_eq!(config.token_leeway, Duration::from_secs(30));
        assert_eq!(config.token_expiry_grace, Duration::ZERO);
        assert_eq!(config.frontend_origin, "http://127.0.0.1:8000");
        assert!(config.captcha.is_none());
    }

    #[test]
    fn short_secret_is_refused_without_echoing_it() {
        let err = with(&[("PORTCULLIS_JWT_SECRET", "hunter2hunter2")]).expect_err("short");
        assert_eq!(err.var, "PORTCULLIS_JWT_SECRET");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("PORTCULLIS_DEMO_ADDR", "nowhere"),
            ("PORTCULLIS_TOKEN_LIFETIME_SECONDS", "0"),
            ("PORTCULLIS_LOCKOUT_MAX_ATTEMPTS", "five"),
            ("PORTCULLIS_CAPTCHA_PROVIDER", "clippy"),
            ("PORTCULLIS_TRUSTED_PROXIES", "10.0.0.0/99"),
            ("PORTCULLIS_FRONTEND_ORIGIN", "app.example.org"),
            ("PORTCULLIS_RATE_LIMIT_RPS", "0"),
            ("PORTCULLIS_TOKEN_LEEWAY_SECONDS", "301"),
            ("PORTCULLIS_TOKEN_EXPIRY_GRACE_SECONDS", "3601"),
            ("PORTCULLIS_API_KEY_PEPPER", "sixteen-bytes-pepper"),
        ] {
            assert_eq!(with(&[(var, value)]).expect_err(var).var, var);
        }
        let err = with(&[("PORTCULLIS_CAPTCHA_PROVIDER", "turnstile")]).expect_err("no secret");
        assert_eq!(err.var, "PORTCULLIS_CAPTCHA_SECRET");
        let err = with(&[
            ("PORTCULLIS_CAPTCHA_PROVIDER", "turnstile"),
            ("PORTCULLIS_CAPTCHA_SECRET", "0x4AAAAAAA-secret"),
            (
                "PORTCULLIS_CAPTCHA_VERIFY_URL",
                "ftp://example.com/siteverify",
            ),
        ])
        .expect_err("not http(s)");
        assert_eq!(err.var, "PORTCULLIS_CAPTCHA_VERIFY_URL");
        // The provider's own https endpoint is the default.
        let config = with(&[
            ("PORTCULLIS_CAPTCHA_PROVIDER", "turnstile"),
            ("PORTCULLIS_CAPTCHA_SECRET", "0x4AAAAAAA-secret"),
        ])
        .expect("https by default");
        assert!(config.captcha.expect("configured").verify_url.is_none());
    }

    #[test]
    fn an_identity_provider_needs_url_issuer_and_audience() {
        let url = ("PORTCULLIS_JWKS_URL", "https://idp.example.org/jwks.json");
        let issuer = ("PORTCULLIS_JWKS_ISSUER", "https://idp.example.org/");
        let audience = ("PORTCULLIS_JWKS_AUDIENCE", "portcullis-demo-api");
        assert!(with(&[]).expect("none").jwks.is_none());
        for (vars, var) in [
            (vec![url], "PORTCULLIS_JWKS_ISSUER"),
            (vec![url, issuer], "PORTCULLIS_JWKS_AUDIENCE"),
            (vec![issuer, audience], "PORTCULLIS_JWKS_URL"),
            (
                vec![
                    ("PORTCULLIS_JWKS_URL", "http://idp.example.org/jwks.json"),
                    issuer,
                    audience,
                ],
                "PORTCULLIS_JWKS_URL",
            ),
            (
                vec![
                    ("PORTCULLIS_JWKS_URL", "ftp://127.0.0.1/jwks.json"),
                    issuer,
                    audience,
                ],
                "PORTCULLIS_JWKS_URL",
            ),
            (
                vec![url, ("PORTCULLIS_JWKS_ISSUER", "portcullis-demo"), audience],
                "PORTCULLIS_JWKS_ISSUER",
            ),
            (
                vec![
                    url,
                    issuer,
                    audience,
                    ("PORTCULLIS_JWKS_REFRESH_SECONDS", "0"),
                ],
                "PORTCULLIS_JWKS_REFRESH_SECONDS",
            ),
        ] {
            assert_eq!(with(&vars).expect_err(var).var, var, "{vars:?}");
        }
        let jwks = with(&[url, issuer, audience])
            .expect("valid")
            .jwks
            .expect("configured");
        assert_eq!(jwks.refresh_interval, Duration::from_secs(300));
        assert_eq!(jwks.cooldown, Duration::from_secs(30));
        let local = with(&[
            ("PORTCULLIS_JWKS_URL", "http://127.0.0.1:9000/jwks.json"),
            issuer,
            audience,
            ("PORTCULLIS_JWKS_COOLDOWN_SECONDS", "0"),
        ])
        .expect("loopback http")
        .jwks
        .expect("configured");
        assert_eq!(local.cooldown, Duration::ZERO);
    }
}
