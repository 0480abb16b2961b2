//! Connectors: the boundary where HTTP and two error models become the engine's vocabulary.
//!
//! A [`Connector`] dispatches one intent ([`DispatchRequest`]) and answers with an
//! [`Outcome`], a closed taxonomy the scheduler acts on without ever looking at an HTTP
//! status code; after an ambiguous outcome, [`Connector::check_status`] answers with a
//! [`StatusCheck`]. Classification is a pure function of what came back over the wire
//! (a [`RawResponse`] or a [`TransportFault`]), kept apart from the HTTP plumbing so the
//! tables in `docs/connectors.md` can be tested one line per row without a network.
//!
//! Two adapters are provided: [`PurpleFleaConnector`] (HTTP-status error model) and
//! [`AeeronConnector`] (JSON error codes, payment failures kept apart from execution
//! failures).
//!
//! ```no_run
//! use connectors::{Connector, DispatchRequest, IdempotencyKey, Outcome, PurpleFleaConfig, PurpleFleaConnector, StatusCheck};
//! use serde_json::json;
//!
//! # async fn demo() -> connectors::Result<()> {
//! let connector = PurpleFleaConnector::new(PurpleFleaConfig::from_env("http://127.0.0.1:8080")?)?;
//! let params = json!({"game": "dice", "amount": "10.00", "target": 50, "prediction": "over"});
//! connector.validate("bet", &params)?; // before the intent is logged
//! let key = IdempotencyKey::derived("bet", &params, "agent-7/seq-142");
//! let request = DispatchRequest::new("bet", params, key);
//! match connector.dispatch(&request).await {
//!     Outcome::Success { result } => println!("placed {}", result["id"]),
//!     Outcome::Ambiguous { .. } => match connector.check_status(&request).await {
//!         StatusCheck::Found { result, .. } => println!("it did run: {}", result["id"]),
//!         StatusCheck::NotFound => println!("safe to re-send with the same key"),
//!         _ => println!("check again later"),
//!     },
//!     other => println!("{}: {:?}", other.kind(), other.detail()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Invariant: this crate knows HTTP and the two error models; it knows nothing of the
//! intent log or the scheduler.

pub mod aeeron;
pub mod amount;
pub mod classify;
pub mod config;
pub mod connector;
pub mod error;
/// Entry points for the fuzz targets (`fuzz/`): only with the `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
pub mod http;
pub mod keys;
pub mod outcome;
mod params;
pub mod purple_flea;
pub mod retry_after;
pub mod secret;

pub use aeeron::AeeronConnector;
pub use classify::{ErrorModel, Exchange, RawResponse, TransportFault};
pub use config::{AeeronConfig, PurpleFleaConfig};
pub use connector::{Connector, DispatchRequest};
pub use error::{Error, Result};
pub use keys::{canonical_json, IdempotencyKey, IDEMPOTENCY_KEY_CHARS_MAX};
pub use outcome::{ErrorDetail, Outcome, RemoteStatus, RetryScope, StatusCheck};
pub use purple_flea::PurpleFleaConnector;
pub use secret::{api_key_from_env, Secret};
