//! What differs between Turnstile, hCaptcha and reCAPTCHA: endpoints, token
//! lifetimes, which fields to check, and their documented test secrets.

use std::time::Duration;

/// A siteverify provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Provider {
    /// Cloudflare Turnstile: tokens valid 300 s, `action` and `hostname`
    /// returned and checked.
    Turnstile,
    /// hCaptcha: the site key is sent with every check so a token solved
    /// for another site is refused; tokens valid 120 s.
    HCaptcha,
    /// Google reCAPTCHA v2 (checkbox / invisible): tokens valid 120 s.
    RecaptchaV2,
    /// Google reCAPTCHA v3 (score): `action` and a minimum `score` are
    /// required; tokens valid 120 s.
    RecaptchaV3,
}

impl Provider {
    /// The documented siteverify endpoint.
    #[must_use]
    pub const fn default_verify_url(self) -> &'static str {
        match self {
            Self::Turnstile => "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            Self::HCaptcha => "https://api.hcaptcha.com/siteverify",
            Self::RecaptchaV2 | Self::RecaptchaV3 => {
                "https://www.google.com/recaptcha/api/siteverify"
            }
        }
    }

    /// How old a solved challenge may be (`challenge_ts`): 300 s for
    /// Turnstile, 120 s for reCAPTCHA ("valid for two minutes") and hCaptcha.
    #[must_use]
    pub const fn token_lifetime(self) -> Duration {
        match self {
            Self::Turnstile => Duration::from_secs(300),
            Self::HCaptcha | Self::RecaptchaV2 | Self::RecaptchaV3 => Duration::from_secs(120),
        }
    }

    /// Stable lowercase name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Turnstile => "turnstile",
            Self::HCaptcha => "hcaptcha",
            Self::RecaptchaV2 => "recaptcha_v2",
            Self::RecaptchaV3 => "recaptcha_v3",
        }
    }

    /// The form field the provider's widget writes its token into.
    #[must_use]
    pub const fn widget_field(self) -> &'static str {
        match self {
            Self::Turnstile => "cf-turnstile-response",
            Self::HCaptcha => "h-captcha-response",
            Self::RecaptchaV2 | Self::RecaptchaV3 => "g-recaptcha-response",
        }
    }
}

/// Whether `secret` is one of the providers' published test secrets, which
/// accept (or reject) every token and must never reach production:
/// Turnstile's dummy secrets `1x…AA`, `2x…AA`, `3x…AA` (any digit, zeros
/// in between), reCAPTCHA's `6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe`,
/// hCaptcha's `0x` followed by forty zeros.
#[must_use]
pub fn is_test_secret(secret: &str) -> bool {
    const RECAPTCHA_TEST: &str = "6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe";
    let b = secret.trim().as_bytes();
    let turnstile = b.len() > 4
        && b[0].is_ascii_digit()
        && b[1] == b'x'
        && b.ends_with(b"AA")
        && b[2..b.len() - 2].iter().all(|&c| c == b'0');
    let hcaptcha = b.len() > 2 && b.starts_with(b"0x") && b[2..].iter().all(|&c| c == b'0');
    turnstile || hcaptcha || secret.trim() == RECAPTCHA_TEST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_test_secrets_are_recognised() {
        for secret in [
            "1x0000000000000000000000000000000AA",
            "2x0000000000000000000000000000000AA",
            "3x0000000000000000000000000000000AA",
            "6LeIxAcTAAAAAGG-vFI1TnRWxMZNFuojJ4WifJWe",
            "0x0000000000000000000000000000000000000000",
        ] {
            assert!(is_test_secret(secret), "{secret}");
        }
        for secret in [
            "0x4AAAAAAAAbcdEFGhijkl",
            "6Lc_real_secret_value",
            "1x00000000000000000000000000000000",
        ] {
            assert!(!is_test_secret(secret), "{secret}");
        }
    }
}
