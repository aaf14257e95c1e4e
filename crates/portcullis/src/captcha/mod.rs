//! `CaptchaLayer`: CAPTCHA after repeated failures (work in progress).
