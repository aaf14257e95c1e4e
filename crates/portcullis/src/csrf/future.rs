//! The response future: carries out a verdict, then adds `Vary`, the token
//! cookie and the security event to the response.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::{ClientIp, EventKind, FailureReason, Rejection, SecurityEvent};
use tower_service::Service;

use super::config::Config;
use super::handle::{CsrfToken, State as HandleState};
use crate::rejection::RespondToRejection;

/// What the layer decided about one request.
pub(crate) enum Verdict {
    /// Call the inner service with a [`CsrfToken`] in this state.
    Pass(HandleState),
    /// Refuse (unless in shadow mode). The session is kept so that a shadow
    /// pass can still hand out a correct token handle.
    Reject(Rejection, Option<Box<str>>),
}

/// A decision that needs the token store.
pub(crate) enum Pending {
    Safe {
        session: Option<Box<str>>,
        token: Option<String>,
    },
    Unsafe {
        session: Option<Box<str>>,
        token: String,
    },
}

type Waiting<B> = Pin<Box<dyn Future<Output = (Request<B>, Verdict)> + Send>>;

struct Slow<S, B, R> {
    waiting: Waiting<B>,
    inner: S,
    respond: R,
    config: Arc<Config>,
}

/// Added to the inner service's response.
struct Finish {
    handle: CsrfToken,
    event: Option<SecurityEvent>,
}

pin_project! {
    /// Response future of [`Csrf`](super::Csrf).
    pub struct ResponseFuture<S, B, R>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: StateMachine<S, B, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum StateMachine<S, B, R>
    where
        S: Service<Request<B>>,
    {
        Waiting { slow: Box<Slow<S, B, R>> },
        Calling { #[pin] future: S::Future, finish: Option<Finish> },
        Responded { response: Option<S::Response> },
    }
}

fn is_csrf_reason(reason: FailureReason) -> bool {
    matches!(
        reason,
        FailureReason::CsrfMissing | FailureReason::CsrfMismatch | FailureReason::CrossOrigin
    )
}

fn violation<B>(request: &Request<B>, rejection: &Rejection, shadow: bool) -> SecurityEvent {
    let mut event = SecurityEvent::new(EventKind::CsrfViolation).with_reason(rejection.reason());
    if let Some(detail) = rejection.detail() {
        event = event.with_detail(detail);
    }
    if let Some(ClientIp(ip)) = request.extensions().get::<ClientIp>() {
        event = event.with_ip(*ip);
    }
    if shadow { event.shadow() } else { event }
}

fn carry_out<S, B, R, ResBody>(
    verdict: Verdict,
    mut request: Request<B>,
    inner: &mut S,
    respond: &R,
    config: &Arc<Config>,
) -> StateMachine<S, B, R>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    R: RespondToRejection<ResBody>,
{
    let (state, event) = match verdict {
        Verdict::Pass(state) => (state, None),
        Verdict::Reject(rejection, session) if config.shadow => {
            let event =
                is_csrf_reason(rejection.reason()).then(|| violation(&request, &rejection, true));
            let state = HandleState {
                session,
                token: None,
                issue: false,
            };
            (state, event)
        }
        Verdict::Reject(rejection, _) => {
            #[cfg(feature = "tracing")]
            tracing::trace!(target: "portcullis::rejection", reason = rejection.reason().as_str(), detail = rejection.detail(), "request rejected");
            let mut response = respond.respond(request.headers(), &rejection);
            add_vary(response.headers_mut());
            if is_csrf_reason(rejection.reason()) {
                violation(&request, &rejection, false).attach(&mut response);
            }
            response.extensions_mut().insert(rejection);
            return StateMachine::Responded {
                response: Some(response),
            };
        }
    };
    let handle = CsrfToken::new(Arc::clone(config), state);
    request.extensions_mut().insert(handle.clone());
    StateMachine::Calling {
        future: inner.call(request),
        finish: Some(Finish { handle, event }),
    }
}

impl<S, B, R, ResBody> ResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    R: RespondToRejection<ResBody>,
{
    pub(crate) fn decided(
        verdict: Verdict,
        request: Request<B>,
        inner: &mut S,
        respond: &R,
        config: &Arc<Config>,
    ) -> Self {
        Self {
            state: carry_out(verdict, request, inner, respond, config),
        }
    }

    pub(crate) fn pending(
        waiting: Waiting<B>,
        inner: &mut S,
        respond: &R,
        config: &Arc<Config>,
    ) -> Self
    where
        S: Clone,
    {
        // Hand the service driven to readiness to the future and keep a
        // fresh clone (tower's "be careful when cloning inner services").
        let clone = inner.clone();
        let inner = std::mem::replace(inner, clone);
        Self {
            state: StateMachine::Waiting {
                slow: Box::new(Slow {
                    waiting,
                    inner,
                    respond: respond.clone(),
                    config: Arc::clone(config),
                }),
            },
        }
    }
}

impl<S, B, R> fmt::Debug for ResponseFuture<S, B, R>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B, R, ResBody> Future for ResponseFuture<S, B, R>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    R: RespondToRejection<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Waiting { slow } => {
                    let Slow {
                        waiting,
                        inner,
                        respond,
                        config,
                    } = &mut **slow;
                    let (request, verdict) = ready!(waiting.as_mut().poll(cx));
                    carry_out(verdict, request, inner, respond, config)
                }
                StateProj::Calling { future, finish } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(finish) = finish.take() {
                        finish.apply(&mut response);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Responded { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            };
            this.state.set(next);
        }
    }
}

impl Finish {
    fn apply<B>(self, response: &mut Response<B>) {
        add_vary(response.headers_mut());
        {
            let state = self.handle.lock();
            if state.issue
                && let Some(token) = &state.token
            {
                let config = self.handle.config();
                let (name, attributes) = (&config.cookie.name, &config.cookie_attributes);
                let cookie = format!("{name}={token}{attributes}");
                if let Ok(value) = HeaderValue::try_from(cookie) {
                    response.headers_mut().append(SET_COOKIE, value);
                }
            }
        }
        if let Some(event) = self.event {
            event.attach(response);
        }
    }
}

const VARY_NAMES: [&str; 2] = ["Sec-Fetch-Site", "Origin"];

/// Adds `Sec-Fetch-Site` and `Origin` to `Vary`, keeping what is there
/// (`Vary: *` already covers everything).
pub(crate) fn add_vary(headers: &mut HeaderMap) {
    if !headers.contains_key(VARY) {
        headers.insert(VARY, HeaderValue::from_static("Sec-Fetch-Site, Origin"));
        return;
    }
    let mut has = [false; 2];
    for value in headers.get_all(VARY) {
        for name in value.to_str().unwrap_or_default().split(',') {
            let name = name.trim();
            if name == "*" {
                return;
            }
            for (i, wanted) in VARY_NAMES.iter().enumerate() {
                has[i] |= name.eq_ignore_ascii_case(wanted);
            }
        }
    }
    let missing: Vec<&str> = VARY_NAMES
        .iter()
        .zip(has)
        .filter(|(_, h)| !h)
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty()
        && let Ok(value) = HeaderValue::try_from(missing.join(", "))
    {
        headers.append(VARY, value);
    }
}
