//! `CsrfLayer`: cross-site request forgery protection (work in progress).
