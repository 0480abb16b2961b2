//! The connectors' wire tests, one binary: raw TCP misbehaviour, the simulators, the fuzz corpus.

// Test helpers outside #[test] functions: a failed unwrap is a failed test, which is the point.
#![allow(clippy::unwrap_used)]

mod logs;
mod raw_tcp;
mod simulator_aeeron;
mod simulator_purple_flea;
mod support;
