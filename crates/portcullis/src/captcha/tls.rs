//! An https client for siteverify (feature `captcha-tls`): rustls over the
//! aws-lc-rs provider, TLS 1.2 and 1.3, trusting the operating system's
//! certificate store ([`TlsRoots::native`]) or the authorities you give
//! ([`TlsRoots::empty`] then [`TlsRoots::with_pem`]).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tower_service::Service;

use crate::ConfigError;

/// The certificate authorities the https siteverify client trusts.
#[derive(Clone)]
pub struct TlsRoots {
    store: Arc<RootCertStore>,
}

impl fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsRoots")
            .field("authorities", &self.store.len())
            .finish()
    }
}

impl TlsRoots {
    /// The operating system's trust store (`rustls-native-certs`: on Linux
    /// the `ca-certificates` bundle, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    /// Certificates the store holds but rustls cannot parse are skipped.
    ///
    /// # Errors
    ///
    /// When no certificate could be loaded.
    pub fn native() -> Result<Self, ConfigError> {
        let found = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        let (_added, _skipped) = store.add_parsable_certificates(found.certs);
        if store.is_empty() {
            return Err(ConfigError::invalid(
                "CAPTCHA TLS roots",
                "no certificate authority found in the system store (install ca-certificates, set SSL_CERT_FILE, or give your own roots)",
            ));
        }
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// No authority at all: add yours with [`with_pem`](Self::with_pem) or
    /// [`with_der`](Self::with_der) (a private CA, a test certificate).
    #[must_use]
    pub fn empty() -> Self {
        Self {
            store: Arc::new(RootCertStore::empty()),
        }
    }

    /// Adds every `CERTIFICATE` block of `pem` as a trusted authority.
    ///
    /// # Errors
    ///
    /// When `pem` holds no certificate or one that does not parse.
    pub fn with_pem(self, pem: &[u8]) -> Result<Self, ConfigError> {
        let mut certs = Vec::new();
        for cert in CertificateDer::pem_slice_iter(pem) {
            certs.push(cert.map_err(|_| {
                ConfigError::invalid("CAPTCHA TLS roots", "a PEM certificate does not parse")
            })?);
        }
        if certs.is_empty() {
            return Err(ConfigError::invalid(
                "CAPTCHA TLS roots",
                "no PEM certificate found",
            ));
        }
        let mut this = self;
        for cert in certs {
            this = this.with_der(&cert)?;
        }
        Ok(this)
    }

    /// Adds one DER-encoded certificate as a trusted authority.
    ///
    /// # Errors
    ///
    /// When the certificate does not parse.
    pub fn with_der(mut self, der: &[u8]) -> Result<Self, ConfigError> {
        Arc::make_mut(&mut self.store)
            .add(CertificateDer::from(der.to_vec()))
            .map_err(|_| {
                ConfigError::invalid(
                    "CAPTCHA TLS roots",
                    "not a certificate usable as an authority",
                )
            })?;
        Ok(self)
    }

    /// How many authorities are trusted.
    #[must_use]
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether no authority is trusted (every https check then fails).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

/// An HTTP client that speaks https (rustls, certificates checked against
/// [`TlsRoots`], hostname included) and plain http, for
/// [`SiteVerifyBuilder::client`](super::SiteVerifyBuilder::client) — for
/// instance behind a circuit breaker. [`SiteVerifyBuilder::build`](super::SiteVerifyBuilder::build)
/// makes one itself for an https URL when no client is given.
///
/// Whether plain http may be used is decided by the verify URL rules of
/// [`SiteVerifyBuilder`](super::SiteVerifyBuilder) (loopback only unless
/// explicitly allowed), not by this client.
#[derive(Clone)]
pub struct HttpsClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    authorities: usize,
}

impl fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsClient")
            .field("authorities", &self.authorities)
            .finish_non_exhaustive()
    }
}

impl HttpsClient {
    /// A client trusting `roots`.
    ///
    /// # Errors
    ///
    /// When the TLS configuration cannot be built (no usable protocol
    /// version in the crypto provider).
    pub fn new(roots: &TlsRoots) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| ConfigError::invalid("CAPTCHA TLS", "no TLS protocol version available"))?
            .with_root_certificates(Arc::clone(&roots.store))
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        let inner = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(Self {
            inner,
            authorities: roots.len(),
        })
    }
}

impl Service<Request<Full<Bytes>>> for HttpsClient {
    type Response = Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        Service::call(&mut self.inner, request)
    }
}
