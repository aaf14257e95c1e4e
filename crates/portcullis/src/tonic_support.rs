//! tonic integration: layered services keep their gRPC service name.

#[cfg(feature = "jwt")]
impl<S: tonic::server::NamedService, R> tonic::server::NamedService for crate::jwt::Jwt<S, R> {
    const NAME: &'static str = S::NAME;
}

#[cfg(feature = "authorize")]
impl<S: tonic::server::NamedService, R> tonic::server::NamedService
    for crate::authorize::Require<S, R>
{
    const NAME: &'static str = S::NAME;
}
