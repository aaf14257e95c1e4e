//! How the layer learns the current session id, which every token is bound
//! to.
//!
//! The CSRF layer sits in front of authentication, so it cannot read a
//! `Principal`. It asks a [`SessionIdSource`] instead: a session cookie
//! ([`SessionCookie`]), a request extension an outer session layer inserted
//! ([`SessionExtension`]), or any closure. No session (`None` or an empty
//! id) means the token is a **pre-session token**, bound to the empty id:
//! it protects the login form (login CSRF) and is worthless once a session
//! exists, because a session token is bound to a non-empty id.
//!
//! Use an identifier that is stable for the session's life and not known to
//! other users: the session cookie's value, a session id, a refresh-token
//! family id. A short-lived access token that is refreshed every few
//! minutes would invalidate the CSRF token with every refresh.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use http::{Extensions, HeaderMap};

use super::cookie;

/// Reads the current session id from a request.
///
/// Implemented by [`SessionCookie`], [`SessionExtension`] and closures
/// `Fn(&HeaderMap, &Extensions) -> Option<String>`.
pub trait SessionIdSource: Send + Sync + 'static {
    /// The session id of the request, or `None` before login.
    fn session_id<'r>(
        &self,
        headers: &'r HeaderMap,
        extensions: &'r Extensions,
    ) -> Option<Cow<'r, str>>;
}

impl<F> SessionIdSource for F
where
    F: Fn(&HeaderMap, &Extensions) -> Option<String> + Send + Sync + 'static,
{
    fn session_id<'r>(
        &self,
        headers: &'r HeaderMap,
        extensions: &'r Extensions,
    ) -> Option<Cow<'r, str>> {
        self(headers, extensions).map(Cow::Owned)
    }
}

/// The session id is the value of a cookie (the first one of that name, as
/// session middlewares read it).
#[derive(Clone)]
pub struct SessionCookie {
    name: Box<str>,
}

impl SessionCookie {
    /// Reads the cookie `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into().into_boxed_str(),
        }
    }

    /// The cookie name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for SessionCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCookie")
            .field("name", &self.name)
            .finish()
    }
}

impl SessionIdSource for SessionCookie {
    fn session_id<'r>(
        &self,
        headers: &'r HeaderMap,
        _extensions: &'r Extensions,
    ) -> Option<Cow<'r, str>> {
        cookie::first(headers, &self.name).map(Cow::Borrowed)
    }
}

/// The session id is a request extension of type `T` that an outer session
/// layer inserted.
pub struct SessionExtension<T> {
    _type: PhantomData<fn() -> T>,
}

impl<T> SessionExtension<T> {
    /// Reads the extension `T`.
    #[must_use]
    pub const fn new() -> Self {
        Self { _type: PhantomData }
    }
}

impl<T> Default for SessionExtension<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for SessionExtension<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for SessionExtension<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionExtension")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T> SessionIdSource for SessionExtension<T>
where
    T: AsRef<str> + Clone + Send + Sync + 'static,
{
    fn session_id<'r>(
        &self,
        _headers: &'r HeaderMap,
        extensions: &'r Extensions,
    ) -> Option<Cow<'r, str>> {
        extensions.get::<T>().map(|id| Cow::Borrowed(id.as_ref()))
    }
}

/// No sessions at all: every token is a pre-session token, bound only to
/// the secret. This is the plain (still signed, still `__Host-`) double
/// submit; choose it only for an app with no session state.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSession;

impl SessionIdSource for NoSession {
    fn session_id<'r>(&self, _: &'r HeaderMap, _: &'r Extensions) -> Option<Cow<'r, str>> {
        None
    }
}
