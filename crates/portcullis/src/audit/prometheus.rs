//! A Prometheus recorder for the audit metrics, and `/metrics` for axum.

use std::time::Duration;

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use super::metrics::names;
use crate::ConfigError;

/// Buckets for `portcullis_auth_duration_seconds`: 50 µs to 2.5 s, dense
/// where auth layers live (sub-millisecond) and wide enough for a remote
/// identity provider.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5,
];

/// Installs a Prometheus recorder as the global `metrics` recorder, with
/// histogram buckets for the audit duration, and returns the handle that
/// renders the exposition text.
///
/// Call it before building an [`Auditor`](super::Auditor): the auditor
/// registers its handles with the recorder installed at that moment. Inside
/// a Tokio runtime it also spawns the periodic upkeep the exporter needs
/// (histogram maintenance) every five seconds.
///
/// # Errors
///
/// [`ConfigError::Invalid`] when a global recorder is already installed.
pub fn install() -> Result<PrometheusHandle, ConfigError> {
    let handle = builder()
        .install_recorder()
        .map_err(|_| ConfigError::Invalid {
            setting: "metrics recorder",
            reason: "a global metrics recorder is already installed",
        })?;
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let upkeep = handle.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
    }
    Ok(handle)
}

/// The builder [`install`] uses, for callers that want a local recorder
/// (tests) or to add their own settings.
#[must_use]
pub fn builder() -> PrometheusBuilder {
    // Only an empty bucket list is refused; ours is a non-empty constant.
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::AUTH_DURATION.into()),
            &DURATION_BUCKETS,
        )
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

/// An axum route serving the exposition text:
/// `Router::new().route("/metrics", metrics_route(handle))`.
#[cfg(feature = "axum")]
pub fn metrics_route<S>(handle: PrometheusHandle) -> axum::routing::MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    axum::routing::get(move || {
        let handle = handle.clone();
        async move {
            (
                [(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                )],
                handle.render(),
            )
        }
    })
}
