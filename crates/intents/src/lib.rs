//! `intents`: what an agent daemon depends on. Every intent is written to a checksummed
//! write-ahead log before it is acknowledged, driven by a per-intent state machine with
//! idempotency keys, status checks after ambiguous failures, backoff and a dead-letter
//! queue, and resumed after a crash without paying twice.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use intents::connectors::{HttpConnectorConfig, PurpleFleaConnector, PURPLE_FLEA_API_KEY_VARIABLE};
//! use intents::{ConnectorSettings, Engine, EngineConfig, RetryPolicy, StateName, SubmitRequest};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // One pooled HTTP client per provider; the API key comes from the environment.
//! let config = HttpConnectorConfig::from_env("https://api.example", PURPLE_FLEA_API_KEY_VARIABLE)?;
//! let purple_flea = PurpleFleaConnector::new(config)?;
//! let mut settings = ConnectorSettings::new(Arc::new(purple_flea));
//! settings.retry = RetryPolicy::conservative();
//!
//! // Opening replays the log: intents caught in flight by a crash are checked, not re-sent.
//! let (engine, report) = Engine::open(EngineConfig::new("/var/lib/agent/intents"), vec![settings]).await?;
//! println!("{} intents recovered, {} were in flight", report.intents, report.recovered_in_flight);
//!
//! // `submit` returns once the intent is on disk (write + fdatasync). The same key with the
//! // same params returns the same intent; with other params it is an error.
//! let submitted = engine
//!     .submit(SubmitRequest {
//!         connector: "purple_flea".into(),
//!         operation: "bet".into(),
//!         params: serde_json::json!({"game": "dice", "amount": "10.00", "target": 50, "prediction": "over"}),
//!         idempotency_key: Some("agent-7-bet-142".into()),
//!     })
//!     .await?;
//! let intent = engine.wait(submitted.intent.spec.id, Duration::from_secs(30)).await?;
//! match intent.state.name() {
//!     StateName::Succeeded | StateName::Reconciled => println!("placed"),
//!     StateName::DeadLettered => println!("needs an operator: {:?}", intent.state),
//!     other => println!("{}", other.as_str()),
//! }
//! engine.shutdown().await;
//! # Ok(()) }
//! ```

pub use connectors;
pub use intent_log;
pub use scheduler::{
    Clock, ConnectorSettings, Engine, EngineConfig, Error, Intent, IntentId, ListFilter,
    OpenReport, Reason, Result, RetryPolicy, SpendingGuard, State, StateName, StatusCheckPolicy,
    SubmitRequest, Submitted,
};
