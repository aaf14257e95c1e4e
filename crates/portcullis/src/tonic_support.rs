//! tonic integration: layered services keep their gRPC service name; an
//! open circuit is `UNAVAILABLE`.

#[cfg(feature = "jwt")]
impl<S: tonic::server::NamedService, R> tonic::server::NamedService for crate::jwt::Jwt<S, R> {
    const NAME: &'static str = S::NAME;
}

#[cfg(feature = "api-key")]
impl<S: tonic::server::NamedService, St, R> tonic::server::NamedService
    for crate::api_key::ApiKey<S, St, R>
{
    const NAME: &'static str = S::NAME;
}

#[cfg(feature = "authenticate")]
impl<S: tonic::server::NamedService, A, R> tonic::server::NamedService
    for crate::authenticate::Authenticated<S, A, R>
{
    const NAME: &'static str = S::NAME;
}

#[cfg(feature = "authorize")]
impl<S: tonic::server::NamedService, R> tonic::server::NamedService
    for crate::authorize::Require<S, R>
{
    const NAME: &'static str = S::NAME;
}

#[cfg(feature = "circuit-breaker")]
impl<S: tonic::server::NamedService, C> tonic::server::NamedService
    for crate::circuit_breaker::CircuitBreaker<S, C>
{
    const NAME: &'static str = S::NAME;
}

/// `UNAVAILABLE`, with a fixed message (no breaker name: the status may
/// reach remote clients) and the [`Open`] error as the status's source.
///
/// [`Open`]: crate::circuit_breaker::error::Open
#[cfg(feature = "circuit-breaker")]
impl From<crate::circuit_breaker::error::Open> for tonic::Status {
    fn from(open: crate::circuit_breaker::error::Open) -> Self {
        let mut status = Self::unavailable("circuit open: try again later");
        status.set_source(std::sync::Arc::new(open));
        status
    }
}
