//! Tests beside the engine: the pure machine against a reference model, and a
//! deterministic-seed simulation of the whole engine with a simulated provider and the
//! intent-log's simulated file system.

mod compaction_tests;
mod engine_faults;
mod fast_path;
mod fixture_log;
mod guards_engine;
mod index_tests;
mod key_lifetime;
mod machine_actions;
mod machine_props;
mod memory_bench;
mod retire_tests;
mod scripted;
mod sim_provider;
mod simulation;
mod state_machine_doc;
