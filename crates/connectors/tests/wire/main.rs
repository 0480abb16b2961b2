//! The connectors' wire tests, one binary: raw TCP misbehaviour, the simulators, the fuzz corpus.

mod fuzz_corpus;
mod raw_tcp;
mod simulator_aeeron;
mod simulator_purple_flea;
mod support;
