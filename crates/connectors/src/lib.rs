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
//! use connectors::{Connector, HttpConnectorConfig, DispatchRequest, IdempotencyKey, Outcome, PurpleFleaConnector, StatusCheck, PURPLE_FLEA_API_KEY_VARIABLE};
//! use serde_json::json;
//!
//! # async fn demo() -> connectors::Result<()> {
//! let config = HttpConnectorConfig::from_env("http://127.0.0.1:8080", PURPLE_FLEA_API_KEY_VARIABLE)?;
//! let connector = PurpleFleaConnector::new(config)?;
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

mod aeeron;
pub mod amount;
mod classify;
mod config;
mod connector;
mod error;
/// Entry points for the fuzz targets (`fuzz/`): only with the `testing` feature.
#[cfg(any(test, feature = "testing"))]
pub mod fuzzing;
pub mod http;
mod keys;
mod outcome;
mod params;
mod purple_flea;
pub mod retry_after;
mod secret;

// One path per public type: the modules above are private and their public items are
// named here, at the crate root; `amount`, `http` and `retry_after` are public namespaces
// whose items are not repeated here.
pub use aeeron::{AeeronConnector, ExecuteParams, AEERON_EXECUTE, AEERON_NAME};
pub use classify::{ErrorModel, Exchange, RawResponse, TransportFault};
pub use config::{
    HttpConnectorConfig, AEERON_API_KEY_VARIABLE, CONNECT_TIMEOUT_DEFAULT, KEY_LIFETIME_DEFAULT,
    PURPLE_FLEA_API_KEY_VARIABLE, REQUEST_TIMEOUT_DEFAULT,
};
pub use connector::{amount_micros_field, resource_id_field, Connector, DispatchRequest};
pub use error::{Error, Result, ECHOED_TEXT_CHARS_MAX};
pub use keys::{
    canonical_json, IdempotencyKey, DERIVED_KEY_DIGEST_HEX_CHARS, DERIVED_KEY_PREFIX_CHARS_MAX,
    IDEMPOTENCY_KEY_CHARS_MAX,
};
pub use outcome::{
    ErrorDetail, Outcome, RemoteStatus, RetryScope, StatusCheck, RAW_BODY_BYTES_MAX,
};
pub use params::{PARAM_TEXT_CHARS_MAX, RESOURCE_ID_CHARS_MAX};
pub use purple_flea::{
    BetParams, EscrowCreateParams, PurpleFleaConnector, PurpleFleaOperation, TransferParams,
    BET_TARGET_MAX, PURPLE_FLEA_NAME, PURPLE_FLEA_OPERATIONS,
};
pub use secret::{api_key_from_env, Secret};
