//! Reference Purple Flea and Aeeron HTTP servers with a seeded fault plan and an exactly-once audit.
//!
//! This crate is the far side of the wire: it shares no code with the engine or the
//! connectors. Each server is a real axum/hyper server on a TCP socket that follows the
//! wire contract in `docs/simulator.md` and `docs/connectors.md`:
//!
//! - an idempotency cache: a finished key replays its stored response and never executes
//!   twice; the same key with a different body is refused;
//! - status look-ups by idempotency key;
//! - a [`FaultPlan`] (latency, 429, 503 before commit, 500/504/held response/dropped
//!   connection after commit, and Aeeron's provider failures), decided from a hash of
//!   `(seed, rule, route, key, attempt)` so the same requests give the same faults;
//! - `GET /_sim/audit`: how many times each key's side effect ran (the oracle).
//!
//! ```no_run
//! # async fn demo() -> simulator::Result<()> {
//! let plan = simulator::FaultPlan::from_toml_str(
//!     "seed = 7\n[[rules]]\nroute = \"POST /casino/bet\"\nkind = \"drop_after_commit\"\nprobability = 0.1\n",
//! )?;
//! let server = simulator::PurpleFlea::start("127.0.0.1:0".parse().expect("address"), plan).await?;
//! println!("{}", server.base_url());
//! let audit = server.audit();
//! assert_eq!(audit.duplicates, 0);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod aeeron;
mod audit;
mod error;
mod fault;
mod idempotency;
mod money;
mod purple_flea;
mod server;
mod time;

pub use aeeron::{Aeeron, AeeronOptions};
pub use audit::{AuditKey, AuditReport};
pub use error::{Error, Result};
pub use fault::{FaultKind, FaultPlan, FaultRule, ServiceName};
pub use idempotency::IDEMPOTENCY_KEY_CHARS_MAX;
pub use purple_flea::{PurpleFlea, PurpleFleaOptions};
pub use server::RunningServer;
