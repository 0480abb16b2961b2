//! The three ways one op (a Purple Flea bet with a fresh idempotency key, submitted and
//! waited on until settled) is done: through the embedded engine, through the sidecar
//! over HTTP, and as the bare provider call with no durability at all (the ceiling).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use connectors::http::IDEMPOTENCY_KEY_HEADER;
use connectors::{HttpConnectorConfig, PurpleFleaConnector};
use scheduler::{ConnectorSettings, Engine, EngineConfig, SubmitRequest};
use serde_json::{json, Value};

use super::load::{Op, SUCCEEDED};
use crate::api::{IntentView, StatsView, SubmitBody};

/// The amount of every bet; small so the simulator's balance lasts many millions.
pub const BET_AMOUNT: &str = "1.00";
/// How long the embedded engine's `wait` may take before the op counts as unsettled.
const WAIT_MS: u64 = 30_000;
/// Long-poll per sidecar `wait` request, and how many the client makes before giving up.
const SIDECAR_WAIT_MS: u64 = 10_000;
const SIDECAR_WAITS_MAX: usize = 3;
/// Per-request timeout of the bench's own HTTP clients (longer than one long-poll).
const CLIENT_TIMEOUT_MS: u64 = 20_000;

pub fn bet_params() -> Value {
    json!({"game": "dice", "amount": BET_AMOUNT, "target": 50, "prediction": "over"})
}

/// An HTTP client that keeps a connection per submitter.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(CLIENT_TIMEOUT_MS))
        .build()
        .context("building the HTTP client")
}

/// Opens an engine in `data_dir` with the defaults (sync mode, key retention, connector
/// concurrency) and the Purple Flea connector pointed at the simulator.
pub async fn open_engine(
    data_dir: &std::path::Path,
    purple_flea_url: &str,
    index: bool,
) -> anyhow::Result<Engine> {
    let connector = PurpleFleaConnector::new(HttpConnectorConfig::new(purple_flea_url))
        .context("building the Purple Flea connector")?;
    let mut config = EngineConfig::new(data_dir);
    config.index = index;
    // As `intentctl serve` opens its log (and as a long-running daemon should): segments
    // preallocated with synced zeros. The library's default leaves it off, since every
    // open would write a 64 MiB spare (docs/wal-format.md, "Preallocated segments").
    config.log.preallocate_segments = true;
    let (engine, _) = Engine::open(config, vec![ConnectorSettings::new(Arc::new(connector))])
        .await
        .context("opening the engine")?;
    Ok(engine)
}

/// (a) `Engine::submit`, then `Engine::wait` until settled.
pub fn embedded_op(engine: Engine, key_prefix: String) -> Op {
    Arc::new(move |sequence| {
        let engine = engine.clone();
        let key = format!("{key_prefix}-{sequence}");
        Box::pin(async move {
            let submitted = engine
                .submit(SubmitRequest {
                    connector: connectors::PURPLE_FLEA_NAME.to_string(),
                    operation: "bet".to_string(),
                    params: bet_params(),
                    idempotency_key: Some(key),
                })
                .await?;
            if !submitted.created {
                bail!("the key was not fresh: submit returned an existing intent");
            }
            let id = submitted.intent.spec.id;
            let intent = engine.wait(id, Duration::from_millis(WAIT_MS)).await?;
            Ok(intent.state.name().as_str().to_string())
        })
    })
}

/// True for the states `wait` returns at: terminal, or awaiting payment.
fn settled(state: &str) -> bool {
    scheduler::StateName::parse(state)
        .is_some_and(|name| name.is_terminal() || name == scheduler::StateName::AwaitingPayment)
}

/// (b) `POST /v1/intents`, then `GET /v1/intents/{id}/wait` until settled.
pub fn sidecar_op(client: reqwest::Client, base_url: String, key_prefix: String) -> Op {
    Arc::new(move |sequence| {
        let (client, base_url) = (client.clone(), base_url.clone());
        let key = format!("{key_prefix}-{sequence}");
        Box::pin(async move {
            let body = SubmitBody {
                connector: connectors::PURPLE_FLEA_NAME.to_string(),
                idempotency_key: Some(key),
                operation: "bet".to_string(),
                params: bet_params(),
            };
            let response = client
                .post(format!("{base_url}/v1/intents"))
                .json(&body)
                .send()
                .await?;
            if response.status() != reqwest::StatusCode::CREATED {
                let status = response.status();
                bail!("submit answered {status}: {}", response.text().await?);
            }
            let mut intent: IntentView = response.json().await?;
            for _ in 0..SIDECAR_WAITS_MAX {
                if settled(&intent.state) {
                    break;
                }
                let url = format!(
                    "{base_url}/v1/intents/{}/wait?timeout={SIDECAR_WAIT_MS}",
                    intent.id
                );
                intent = client
                    .get(url)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
            }
            Ok(intent.state)
        })
    })
}

/// (c) The same bet straight to the simulator: fresh key, no log, no state.
pub fn ceiling_op(client: reqwest::Client, purple_flea_url: String, key_prefix: String) -> Op {
    let body = Arc::new(bet_params().to_string());
    Arc::new(move |sequence| {
        let (client, body) = (client.clone(), body.clone());
        let url = format!("{purple_flea_url}/casino/bet");
        let key = format!("{key_prefix}-{sequence}");
        Box::pin(async move {
            let response = client
                .post(url)
                .header(IDEMPOTENCY_KEY_HEADER, key)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.as_str().to_owned())
                .send()
                .await?;
            let status = response.status();
            // Read the whole answer, as the connector does.
            let _ = response.bytes().await?;
            if status.is_success() {
                Ok(SUCCEEDED.to_string())
            } else {
                Ok(format!("http_{}", status.as_u16()))
            }
        })
    })
}

/// The sidecar's log counters, from `GET /v1/stats`.
pub async fn sidecar_stats(client: &reqwest::Client, base_url: &str) -> anyhow::Result<StatsView> {
    let stats = client
        .get(format!("{base_url}/v1/stats"))
        .send()
        .await
        .context("GET /v1/stats")?
        .error_for_status()?
        .json()
        .await
        .context("reading /v1/stats")?;
    Ok(stats)
}
