//! The Portcullis operator CLI (being built).

fn main() {}
