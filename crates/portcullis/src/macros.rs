//! Small macros shared by the layers.

/// `get_ref`, `get_mut` and `into_inner` for a middleware service whose
/// inner service is the field `inner`.
#[cfg_attr(
    not(any(
        feature = "jwt",
        feature = "authorize",
        feature = "client-ip",
        feature = "circuit-breaker"
    )),
    allow(unused_macros)
)]
macro_rules! define_inner_service_accessors {
    ($name:ident < S $(, $param:ident)* >) => {
        impl<S $(, $param)*> $name<S $(, $param)*> {
            /// Gets a reference to the inner service.
            pub fn get_ref(&self) -> &S {
                &self.inner
            }

            /// Gets a mutable reference to the inner service.
            pub fn get_mut(&mut self) -> &mut S {
                &mut self.inner
            }

            /// Consumes `self`, returning the inner service.
            pub fn into_inner(self) -> S {
                self.inner
            }
        }
    };
}

#[cfg_attr(
    not(any(
        feature = "jwt",
        feature = "authorize",
        feature = "client-ip",
        feature = "circuit-breaker"
    )),
    allow(unused_imports)
)]
pub(crate) use define_inner_service_accessors;
