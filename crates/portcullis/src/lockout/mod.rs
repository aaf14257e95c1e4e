//! `LockoutLayer`: brute-force defence (work in progress).
