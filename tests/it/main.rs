//! End-to-end tests for `intents` (one binary, one module per scenario).
