//! End-to-end tests for `intents`: real processes, real files. One binary, one module per
//! scenario (matklad, "Delete Cargo Integration Tests").
#![allow(clippy::unwrap_used)]

mod bench_engine;
mod compaction_restart;
mod demo_e2e;
mod disk_full;
mod engine_http;
mod operator_cli;
mod serve_signals;
mod sidecar_api;
mod support;
mod wal_cli;
mod wal_fsync_failure;
mod wal_salvage;
