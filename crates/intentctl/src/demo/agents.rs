//! The demo's agents: each takes jobs from a shared counter and drives one intent (or a
//! short chain) through the sidecar over HTTP, retrying across the sidecar's restarts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{AGENTS, INTENT_DEADLINE_MS, RECONNECT_PAUSE_MS, WAIT_POLL_MS};

/// What the agents share: where the sidecar is now, and what was acknowledged.
pub struct Shared {
    pub base_url: RwLock<String>,
    pub client: reqwest::Client,
    pub aeeron_url: String,
    /// (idempotency key, intent id) of every intent the sidecar acknowledged.
    pub acknowledged: Mutex<Vec<(String, String)>>,
    pub submitted: AtomicUsize,
    pub payments_attached: AtomicUsize,
    pub gave_up: AtomicUsize,
}

impl Shared {
    fn base(&self) -> String {
        self.base_url
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends until the sidecar answers (it may be down between a kill and a restart).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        deadline: Instant,
    ) -> anyhow::Result<(u16, Value)> {
        loop {
            let url = format!("{}{path}", self.base());
            let mut request = self.client.request(method.clone(), &url);
            if let Some(body) = body {
                request = request.json(body);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.json::<Value>().await {
                        Ok(value) => return Ok((status, value)),
                        Err(error) => tracing::debug!(%error, "body cut by a crash"),
                    }
                }
                Err(error) => tracing::debug!(%error, "sidecar not answering"),
            }
            if Instant::now() > deadline {
                bail!("{method} {path}: no answer before the deadline");
            }
            tokio::time::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)).await;
        }
    }

    /// Submits (retrying with the same key until acknowledged) and returns the intent id.
    async fn submit(&self, body: Value, deadline: Instant) -> anyhow::Result<String> {
        let key = body["idempotency_key"].as_str().unwrap_or("").to_string();
        let (status, intent) = self
            .call(reqwest::Method::POST, "/v1/intents", Some(&body), deadline)
            .await?;
        if status != 200 && status != 201 {
            bail!("submit {key}: {status} {intent}");
        }
        let id = intent["id"].as_str().context("intent id")?.to_string();
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.acknowledged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((key, id.clone()));
        Ok(id)
    }

    /// Long-polls until the intent is terminal or awaiting payment.
    async fn settle(&self, id: &str, deadline: Instant) -> anyhow::Result<Value> {
        loop {
            let path = format!("/v1/intents/{id}/wait?timeout={WAIT_POLL_MS}");
            let (status, intent) = self
                .call(reqwest::Method::GET, &path, None, deadline)
                .await?;
            if status == 200 {
                let state = intent["state"].as_str().unwrap_or("");
                if !matches!(state, "pending" | "sent" | "ambiguous") {
                    return Ok(intent);
                }
            } else if status != 404 {
                // 404 right after a restart cannot happen for an acknowledged intent; it
                // is counted as lost by the final check, not here.
                bail!("wait {id}: {status} {intent}");
            }
            if Instant::now() > deadline {
                return Ok(intent);
            }
        }
    }

    /// Authorises a payment on Aeeron directly (a payment is funding, not an intent).
    async fn create_payment(&self, amount: &str, key: &str) -> anyhow::Result<String> {
        for _ in 0..10 {
            let response = self
                .client
                .post(format!("{}/v1/payments", self.aeeron_url))
                .header("Idempotency-Key", key)
                .json(&json!({"amount": amount, "currency": "USDC"}))
                .send()
                .await;
            if let Ok(response) = response {
                if let Ok(body) = response.json::<Value>().await {
                    if let Some(id) = body["payment_id"].as_str() {
                        return Ok(id.to_string());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(RECONNECT_PAUSE_MS)).await;
        }
        bail!("could not authorise a payment of {amount}")
    }
}

fn submit_body(connector: &str, operation: &str, params: Value, key: &str) -> Value {
    json!({"connector": connector, "operation": operation, "params": params, "idempotency_key": key})
}

/// Submits one intent and long-polls it until it is settled.
async fn submit_and_settle(
    shared: &Shared,
    (connector, operation): (&str, &str),
    params: Value,
    key: &str,
    deadline: Instant,
) -> anyhow::Result<Value> {
    let id = shared
        .submit(submit_body(connector, operation, params, key), deadline)
        .await?;
    shared.settle(&id, deadline).await
}

/// Creates an escrow and, once it exists, funds it.
async fn escrow_chain(
    shared: &Shared,
    index: usize,
    key: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    let params = json!({"buyer":format!("agent-{index}"),"seller":"shop","amount":"2.00"});
    let created = submit_and_settle(
        shared,
        ("purple_flea", "escrow_create"),
        params,
        key,
        deadline,
    )
    .await?;
    if let Some(escrow_id) = created["result"]["id"].as_str() {
        let params = json!({"escrow_id": escrow_id});
        let fund_key = format!("{key}-fund");
        submit_and_settle(
            shared,
            ("purple_flea", "escrow_fund"),
            params,
            &fund_key,
            deadline,
        )
        .await?;
    }
    Ok(())
}

/// Budget 10.00, quote 8.40: payment_required, then paid and executed.
async fn paid_execution(shared: &Shared, key: &str, deadline: Instant) -> anyhow::Result<()> {
    let params = json!({"action":"compute.gpu_hours","params":{"gpu":"a100","hours":2},"budget":{"amount":"10.00","currency":"USDC"}});
    let id = shared
        .submit(submit_body("aeeron", "execute", params, key), deadline)
        .await?;
    let intent = shared.settle(&id, deadline).await?;
    if intent["state"] != "awaiting_payment" {
        return Ok(());
    }
    let amount = intent["reason"]["details"]["amount"]
        .as_str()
        .unwrap_or("8.40")
        .to_string();
    let payment_id = shared
        .create_payment(&amount, &format!("{key}-payment"))
        .await?;
    let (status, answer) = shared
        .call(
            reqwest::Method::POST,
            &format!("/v1/intents/{id}/payment"),
            Some(&json!({"payment_id": payment_id})),
            deadline,
        )
        .await?;
    // 409 wrong_state: a payment attached before a crash already moved it on.
    if status != 200 && status != 409 {
        bail!("attach payment {id}: {status} {answer}");
    }
    shared.payments_attached.fetch_add(1, Ordering::Relaxed);
    shared.settle(&id, deadline).await?;
    Ok(())
}

/// One agent's unit of work: one intent, or a short chain (escrow create → fund, execute →
/// payment → execute).
async fn run_job(shared: &Shared, seed: u64, index: usize, choice: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(INTENT_DEADLINE_MS);
    let key = format!("demo-{seed}-{index}");
    match choice {
        0..=39 => {
            let params = json!({"game":"dice","amount":"1.00","target":50,"prediction": if index.is_multiple_of(2) {"over"} else {"under"}});
            submit_and_settle(shared, ("purple_flea", "bet"), params, &key, deadline).await?;
        }
        40..=54 => escrow_chain(shared, index, &key, deadline).await?,
        55..=74 => {
            let params =
                json!({"to":format!("payee-{}", index % 5),"amount":"0.50","currency":"USDC"});
            let operation = ("purple_flea", "wallet_transfer");
            submit_and_settle(shared, operation, params, &key, deadline).await?;
        }
        75..=89 => paid_execution(shared, &key, deadline).await?,
        _ => {
            // Budget 10.00, quote 16.80: budget_exceeded, a clean failure.
            let params = json!({"action":"compute.gpu_hours","params":{"gpu":"a100","hours":4},"budget":{"amount":"10.00","currency":"USDC"}});
            submit_and_settle(shared, ("aeeron", "execute"), params, &key, deadline).await?;
        }
    }
    Ok(())
}

/// Starts [`AGENTS`] agents on `jobs` seeded job choices; they take jobs from `next_job`
/// until none is left.
pub fn spawn_agents(
    shared: &Arc<Shared>,
    seed: u64,
    jobs: usize,
    next_job: &Arc<AtomicUsize>,
    progress: &indicatif::ProgressBar,
) -> tokio::task::JoinSet<()> {
    let mut choices = SmallRng::seed_from_u64(seed);
    let plan_of_jobs: Arc<Vec<u32>> =
        Arc::new((0..jobs).map(|_| choices.gen_range(0..100)).collect());
    let mut agents = tokio::task::JoinSet::new();
    for _ in 0..AGENTS {
        let shared = shared.clone();
        let next_job = next_job.clone();
        let jobs = plan_of_jobs.clone();
        let progress = progress.clone();
        agents.spawn(async move {
            loop {
                let index = next_job.fetch_add(1, Ordering::Relaxed);
                let Some(choice) = jobs.get(index).copied() else {
                    break;
                };
                if let Err(error) = run_job(&shared, seed, index, choice).await {
                    tracing::warn!(%error, "agent gave up on a job");
                    shared.gave_up.fetch_add(1, Ordering::Relaxed);
                }
                progress.inc(1);
            }
        });
    }
    agents
}
