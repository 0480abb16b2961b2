//! Placeholder library target so the test crate has a package root.
