//! `ApiKey`: the decision and the middleware service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{HeaderMap, Request, Response, Uri};
use portcullis_core::{
    API_KEY_DIGEST_LEN, ApiKeyDigest, ApiKeyInfo, ApiKeyStore, AuthMethod, AuthOutcome,
    FailureReason, Principal, PrincipalKind, Rejection,
};
use subtle::ConstantTimeEq as _;
use tower_service::Service;

use super::cache::Entry;
use super::extract::Extracted;
use super::format::{KeyFormatError, checksum_matches};
use super::layer::Config;
use crate::future::{ResponseFuture, Verdict};
use crate::rejection::RespondToRejection;

/// Middleware that authenticates requests with an API key.
///
/// Accepted requests carry a [`Principal`] of kind
/// [`PrincipalKind::ApiKey`] in their extensions, and their responses an
/// [`AuthOutcome`] success (method `api_key`) unless the handler set one.
/// Rejected requests never reach the inner service: they get the
/// responder's answer with the [`Rejection`] and a failure outcome in the
/// response extensions.
///
/// See the [module docs](crate::api_key) for an example.
pub struct ApiKey<S, St, R> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config<St>>,
    pub(crate) respond: R,
}

impl<S: Clone, St, R: Clone> Clone for ApiKey<S, St, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            respond: self.respond.clone(),
        }
    }
}

impl<S: fmt::Debug, St, R: fmt::Debug> fmt::Debug for ApiKey<S, St, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("respond", &self.respond)
            .finish()
    }
}

crate::macros::define_inner_service_accessors!(ApiKey<S, St, R>);

/// What the synchronous first pass decided.
pub(crate) enum Decision {
    Accept(Principal),
    /// Including `missing_token`, which an authenticator reads as "not
    /// present".
    Reject(Rejection),
    /// A cache miss: one store lookup.
    Pending(Lookup),
}

pub(crate) type Lookup = Pin<Box<dyn Future<Output = Result<Principal, Rejection>> + Send>>;

/// Compared against when the key id is unknown, so an unknown id costs the
/// same comparison as a wrong secret.
const DUMMY_DIGEST: [u8; API_KEY_DIGEST_LEN] = [0x5a; API_KEY_DIGEST_LEN];

const _: () = assert!(API_KEY_DIGEST_LEN.is_multiple_of(8));

/// Constant-time equality of two digests: the differences of the 64-bit
/// words are OR-ed together without an early exit, and the one remaining
/// word is compared with `subtle` (a few instructions where a byte-wise
/// `ct_eq` of 32 bytes takes a few hundred).
fn digests_equal(a: &ApiKeyDigest, b: &ApiKeyDigest) -> bool {
    let (a, _) = a.as_bytes().as_chunks::<8>();
    let (b, _) = b.as_bytes().as_chunks::<8>();
    let diff = a.iter().zip(b).fold(0u64, |diff, (a, b)| {
        diff | (u64::from_ne_bytes(*a) ^ u64::from_ne_bytes(*b))
    });
    bool::from(std::hint::black_box(diff).ct_eq(&0))
}

impl<St: ApiKeyStore> Config<St> {
    /// The whole decision for one request: synchronous for absent, malformed
    /// and cached keys (no allocation beyond the principal's shared
    /// pointer), one boxed store lookup otherwise.
    pub(crate) fn decide(self: &Arc<Self>, headers: &HeaderMap, uri: &Uri) -> Decision {
        let key = match self
            .source
            .extract(headers, uri, self.format.issuer_prefix())
        {
            Extracted::Key(key) => key,
            Extracted::Missing { query_key } => {
                let mut rejection = self.rejection(FailureReason::MissingToken);
                if query_key {
                    // Never read; noted for the audit trail (ASVS 14.2.1).
                    rejection = rejection.with_detail("API key in the query string ignored");
                }
                return Decision::Reject(rejection);
            }
            Extracted::InvalidRequest(why) => {
                return Decision::Reject(
                    self.rejection(FailureReason::InvalidRequest)
                        .with_detail(why),
                );
            }
            Extracted::Unreadable(why) => return Decision::Reject(self.invalid(why)),
        };
        // Offline checks first: a wrong length, character set, prefix or
        // environment never reaches the cache or the store.
        let parsed = match self.format.parse_shape(key) {
            Ok(parsed) => parsed,
            Err(err) => return Decision::Reject(self.invalid(err.detail())),
        };
        let now = self.clock.now();
        let mut digest = None;
        if let Some(entry) = self.cache.get(parsed.id(), now) {
            let presented = self.hasher.digest(parsed.key());
            // Equal digests mean this is exactly the stored, well-formed key:
            // its checksum need not be recomputed.
            if digests_equal(&entry.digest, &presented) {
                self.touch_if_due(&entry, now);
                return Decision::Accept(entry.principal.clone());
            }
            digest = Some(presented);
        }
        // The checksum guards the store: a typo or a random string costs no
        // lookup.
        if !checksum_matches(parsed.key()) {
            return Decision::Reject(self.invalid(KeyFormatError::Checksum.detail()));
        }
        let digest = digest.unwrap_or_else(|| self.hasher.digest(parsed.key()));
        // A miss, or a cached id with another secret: ask the store, so a
        // wrong secret costs exactly what an unknown id costs.
        let config = Arc::clone(self);
        let id: Box<str> = parsed.id().into();
        Decision::Pending(Box::pin(async move { config.lookup(&id, &digest).await }))
    }

    async fn lookup(&self, id: &str, digest: &ApiKeyDigest) -> Result<Principal, Rejection> {
        let record = self.store.lookup(id).await.map_err(|err| {
            self.rejection(FailureReason::UpstreamUnavailable)
                .with_detail("API key store unavailable")
                .with_source(err)
        })?;
        let now = self.clock.now();
        // A store returning another id's record breaks its contract: treat
        // it as unknown.
        let Some(record) = record.filter(|r| r.info.key_id == id) else {
            std::hint::black_box(digests_equal(
                &ApiKeyDigest::from_bytes(DUMMY_DIGEST),
                digest,
            ));
            return Err(self.invalid("unknown API key id"));
        };
        if !digests_equal(&record.digest, digest) {
            return Err(self.invalid("API key secret does not match"));
        }
        // From here the caller holds the real key: the precise reason and the
        // owner may be reported.
        let info = &record.info;
        if info.is_revoked_at(now) {
            return Err(self
                .rejection(FailureReason::ApiKeyRevoked)
                .with_subject(info.owner.as_str())
                .with_detail("API key revoked"));
        }
        if info.is_expired_at(now) {
            return Err(self
                .rejection(FailureReason::ApiKeyExpired)
                .with_subject(info.owner.as_str())
                .with_detail("API key expired"));
        }
        let principal = principal_of(info);
        let entry = Entry::new(principal.clone(), record.digest, info, now);
        if self.cache.is_enabled() {
            let entry = Arc::new(entry);
            self.cache.insert(id, Arc::clone(&entry));
            self.touch_if_due(&entry, now);
        } else {
            self.touch_if_due(&entry, now);
        }
        Ok(principal)
    }

    /// Writes `last_used_at` from a spawned task when due; never waits.
    fn touch_if_due(&self, entry: &Entry, now: SystemTime) {
        let Some((runtime, guard)) = self.touch.claim(entry, now) else {
            return;
        };
        let Some(id) = entry.principal.token_id() else {
            return;
        };
        let id = id.to_owned();
        let store = Arc::clone(&self.store);
        runtime.spawn(async move {
            let _guard = guard;
            if let Err(_err) = store.touch(&id, now).await {
                #[cfg(feature = "tracing")]
                tracing::debug!(target: "portcullis::api_key", error = %_err, "last_used_at not written");
            }
        });
    }
}

impl<St> Config<St> {
    pub(crate) fn rejection(&self, reason: FailureReason) -> Rejection {
        Rejection::new(reason).with_challenge(self.challenge.clone())
    }

    /// `invalid_api_key`: one response for every way a key can be wrong.
    fn invalid(&self, detail: &'static str) -> Rejection {
        self.rejection(FailureReason::InvalidApiKey)
            .with_detail(detail)
    }
}

/// The principal of an accepted key: the owner as subject, the key id as
/// token id, the key's scopes, creation and expiry times.
pub(crate) fn principal_of(info: &ApiKeyInfo) -> Principal {
    let capacity = info.key_id.len() + info.scopes.iter().map(|s| s.len() + 1).sum::<usize>();
    let mut builder =
        Principal::builder_with_capacity(&info.owner, PrincipalKind::ApiKey, capacity)
            .token_id(&info.key_id)
            .scopes(&info.scopes)
            .issued_at(info.created_at);
    if let Some(at) = info.expires_at {
        builder = builder.expires_at(at);
    }
    builder.build()
}

/// The verdict for a key decision: the principal and a success outcome, or
/// the rejection with a failure outcome (shadow mode: passed through with a
/// shadow outcome).
fn verdict(shadow: bool, result: Result<Principal, Rejection>) -> Verdict {
    match result {
        Ok(principal) => {
            let outcome = AuthOutcome::authenticated(AuthMethod::ApiKey, &principal);
            Verdict::Accept(principal, outcome)
        }
        Err(rejection) => {
            let mut outcome = AuthOutcome::failure(AuthMethod::ApiKey, rejection.reason());
            if let Some(subject) = rejection.subject() {
                outcome = outcome.with_subject(subject);
            }
            if shadow {
                Verdict::Pass(Some(outcome.shadow()))
            } else {
                Verdict::reject(rejection, Some(outcome))
            }
        }
    }
}

impl<S, St, R, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKey<S, St, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    St: ApiKeyStore,
    R: RespondToRejection<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shadow = self.config.shadow;
        let result = match self.config.decide(request.headers(), request.uri()) {
            Decision::Accept(principal) => Ok(principal),
            Decision::Reject(rejection) => Err(rejection),
            Decision::Pending(lookup) => {
                let pending = Box::pin(async move { verdict(shadow, lookup.await) });
                return ResponseFuture::pending(pending, request, &mut self.inner, &self.respond);
            }
        };
        ResponseFuture::decided(
            verdict(shadow, result),
            request,
            &mut self.inner,
            &self.respond,
        )
    }
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    #[test]
    fn digests_equal_compares_every_byte() {
        let base = [7u8; API_KEY_DIGEST_LEN];
        let digest = ApiKeyDigest::from_bytes(base);
        assert!(digests_equal(&digest, &ApiKeyDigest::from_bytes(base)));
        for i in 0..API_KEY_DIGEST_LEN {
            let mut other = base;
            other[i] ^= 0x01;
            assert!(
                !digests_equal(&digest, &ApiKeyDigest::from_bytes(other)),
                "byte {i}"
            );
        }
        assert!(!digests_equal(
            &digest,
            &ApiKeyDigest::from_bytes(DUMMY_DIGEST)
        ));
    }
}
