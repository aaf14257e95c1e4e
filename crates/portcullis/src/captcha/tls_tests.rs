//! The built-in https siteverify client (feature `captcha-tls`) against a
//! fake provider over real TLS on 127.0.0.1, with self-signed certificates
//! trusted (or not) through `TlsRoots`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::*;

const SECRET: &str = "0x4AAAAAAA-tls-test-secret";

/// A self-signed certificate (PEM) and its key, for `names`.
fn certificate(names: &[&str]) -> (String, PrivateKeyDer<'static>) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let key =
        PrivateKeyDer::from_pem_slice(certified.signing_key.serialize_pem().as_bytes()).unwrap();
    (certified.cert.pem(), key)
}

/// A siteverify endpoint over https on 127.0.0.1 with `cert`: tokens
/// starting `good` pass when the secret is right. Counts the requests it
/// answered.
async fn fake_provider(
    cert_pem: &str,
    key: PrivateKeyDer<'static>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&answered);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                // A client that does not trust us aborts the handshake.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| {
                        let count = Arc::clone(&count);
                        async move {
                            let form = req.into_body().collect().await?.to_bytes();
                            let form = String::from_utf8_lossy(&form).into_owned();
                            count.fetch_add(1, Ordering::SeqCst);
                            let good = form.contains(&format!("secret={SECRET}"))
                                && form.contains("response=good");
                            let answer = if good {
                                serde_json::json!({
                                    "success": true,
                                    "challenge_ts": portcullis_core::audit::rfc3339(std::time::SystemTime::now()),
                                    "hostname": "login.example.com",
                                })
                            } else {
                                serde_json::json!({"success": false, "error-codes": ["invalid-input-response"]})
                            };
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, answered)
}

fn verifier(url: &str, roots: TlsRoots) -> SiteVerify {
    SiteVerify::turnstile(SECRET)
        .hostname("login.example.com")
        .verify_url(url)
        .unwrap()
        .tls_roots(roots)
        .build()
        .unwrap()
}

#[tokio::test]
async fn verifies_over_https_with_a_trusted_self_signed_certificate() {
    let (pem, key) = certificate(&["localhost", "127.0.0.1"]);
    let (addr, answered) = fake_provider(&pem, key).await;
    let roots = TlsRoots::empty().with_pem(pem.as_bytes()).unwrap();
    assert_eq!(roots.len(), 1);
    for host in ["127.0.0.1".to_owned(), "localhost".to_owned()] {
        let url = format!("https://{host}:{}/siteverify", addr.port());
        let verify = verifier(&url, roots.clone());
        verify
            .verify(&CaptchaToken::new("good-token-over-tls"), None)
            .await
            .expect("a good token passes over https");
        let bad = verify
            .verify(&CaptchaToken::new("bad-token-over-tls"), None)
            .await
            .expect_err("a bad token fails");
        assert!(matches!(bad, CaptchaError::Rejected(_)), "{bad:?}");
    }
    assert_eq!(answered.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn an_untrusted_or_misnamed_certificate_fails_closed_before_any_request() {
    let (pem, key) = certificate(&["localhost"]);
    let (addr, answered) = fake_provider(&pem, key).await;
    let (other, _) = certificate(&["localhost", "127.0.0.1"]);
    let trusted = TlsRoots::empty().with_pem(pem.as_bytes()).unwrap();
    let cases = [
        // Nothing trusted.
        (
            format!("https://localhost:{}/siteverify", addr.port()),
            TlsRoots::empty(),
        ),
        // Another certificate trusted.
        (
            format!("https://localhost:{}/siteverify", addr.port()),
            TlsRoots::empty().with_pem(other.as_bytes()).unwrap(),
        ),
        // The trusted certificate, but not for this name.
        (
            format!("https://127.0.0.1:{}/siteverify", addr.port()),
            trusted,
        ),
    ];
    for (url, roots) in cases {
        let err = verifier(&url, roots)
            .verify(&CaptchaToken::new("good-token-over-tls"), None)
            .await
            .expect_err("the handshake must fail");
        assert!(
            matches!(err, CaptchaError::Unavailable(..)),
            "{url}: {err:?}"
        );
    }
    assert_eq!(
        answered.load(Ordering::SeqCst),
        0,
        "the secret was never sent"
    );
}

#[test]
fn https_builds_without_a_client_and_plain_http_stays_loopback_only() {
    let roots = || TlsRoots::empty();
    assert!(
        SiteVerify::turnstile(SECRET)
            .any_hostname()
            .tls_roots(roots())
            .build()
            .is_ok(),
        "the provider's https URL needs no client of ours"
    );
    let remote_http = SiteVerify::turnstile(SECRET)
        .any_hostname()
        .verify_url("http://siteverify.example.com/siteverify")
        .unwrap()
        .tls_roots(roots())
        .build();
    assert!(remote_http.is_err(), "plain http to a remote host");
    assert!(
        SiteVerify::turnstile(SECRET)
            .any_hostname()
            .verify_url("http://127.0.0.1:9/siteverify")
            .unwrap()
            .build()
            .is_ok()
    );
}

#[test]
fn roots_refuse_what_is_not_a_certificate() {
    assert!(TlsRoots::empty().with_pem(b"no certificate here").is_err());
    assert!(
        TlsRoots::empty()
            .with_pem(b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
            .is_err()
    );
    assert!(TlsRoots::empty().is_empty());
    let debug = format!("{:?}", TlsRoots::empty());
    assert!(debug.contains("authorities"), "{debug}");
}
