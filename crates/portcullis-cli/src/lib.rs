//! The Portcullis operator CLI, as a library: how a deployment's state is
//! opened ([`backends`]), shared with the reference server so that the CLI
//! acts on what a running server sees.

pub mod backends;
