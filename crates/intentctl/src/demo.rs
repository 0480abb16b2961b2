//! `intentctl demo`: both simulators in-process with a seeded fault plan, `intentctl serve`
//! as a child process that is SIGKILLed and restarted while agents drive it over HTTP, and
//! an audit at the end: every key executed at most once, every acknowledged intent known.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use simulator::{Aeeron, FaultKind, FaultPlan, FaultRule, PurpleFlea, RunningServer};
use tokio::io::AsyncBufReadExt;

/// Agents submitting at once.
const AGENTS: usize = 8;
/// Long-poll per `wait` call, in milliseconds.
const WAIT_POLL_MS: u64 = 5_000;
/// How long one agent keeps trying to settle one intent before giving up on it.
const INTENT_DEADLINE_MS: u64 = 45_000;
/// Pause before an agent retries a request the sidecar did not answer (it is restarting).
const RECONNECT_PAUSE_MS: u64 = 100;
/// Time allowed for the child to print its address.
const CHILD_START_MS: u64 = 15_000;
/// Per-request HTTP timeout of the agents (longer than one long-poll).
const AGENT_REQUEST_TIMEOUT_MS: u64 = 15_000;
/// Faults fire only on the first attempts of a key, so retries get through.
const FAULT_ATTEMPTS_PER_KEY: u64 = 3;

/// Arguments of `intentctl demo`.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Intents the agents submit (escrow chains add a fund intent each).
    #[arg(long, default_value_t = 500)]
    intents: usize,
    /// Times the sidecar is killed with SIGKILL and restarted during the run.
    #[arg(long, default_value_t = 4)]
    crashes: usize,
    /// Chance that a mutation meets a fault (split among the fault kinds).
    #[arg(long, default_value_t = 0.2)]
    fault_rate: f64,
    /// Seed of the fault plan, the agents' choices and the crash moments.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print the audit as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// The sidecar child process and where it listens.
struct Sidecar {
    child: tokio::process::Child,
    base_url: String,
}

async fn start_sidecar(data: &Path, config: &Path) -> anyhow::Result<Sidecar> {
    let exe = std::env::current_exe().context("finding the intentctl binary")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting intentctl serve")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_millis(CHILD_START_MS), lines.next_line())
        .await
        .context("intentctl serve did not print its address in time")??
        .context("intentctl serve exited before listening")?;
    let base_url = line
        .strip_prefix("listening ")
        .with_context(|| format!("unexpected first line from intentctl serve: {line:?}"))?
        .to_string();
    Ok(Sidecar { child, base_url })
}

/// What the agents share: where the sidecar is now, and what was acknowledged.
struct Shared {
    base_url: RwLock<String>,
    client: reqwest::Client,
    aeeron_url: String,
    /// (idempotency key, intent id) of every intent the sidecar acknowledged.
    acknowledged: Mutex<Vec<(String, String)>>,
    submitted: AtomicUsize,
    payments_attached: AtomicUsize,
    gave_up: AtomicUsize,
}

impl Shared {
    fn base(&self) -> String {
        self.base_url
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends until the sidecar answers (it may be down between a kill and a restart).
    async fn call(
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

/// One agent's unit of work: one intent, or a short chain (escrow create → fund, execute →
/// payment → execute).
async fn run_job(shared: &Shared, seed: u64, index: usize, choice: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(INTENT_DEADLINE_MS);
    let key = format!("demo-{seed}-{index}");
    match choice {
        0..=39 => {
            let params = json!({"game":"dice","amount":"1.00","target":50,"prediction": if index.is_multiple_of(2) {"over"} else {"under"}});
            let id = shared
                .submit(submit_body("purple_flea", "bet", params, &key), deadline)
                .await?;
            shared.settle(&id, deadline).await?;
        }
        40..=54 => {
            let params = json!({"buyer":format!("agent-{index}"),"seller":"shop","amount":"2.00"});
            let id = shared
                .submit(
                    submit_body("purple_flea", "escrow_create", params, &key),
                    deadline,
                )
                .await?;
            let created = shared.settle(&id, deadline).await?;
            if let Some(escrow_id) = created["result"]["id"].as_str() {
                let id = shared
                    .submit(
                        submit_body(
                            "purple_flea",
                            "escrow_fund",
                            json!({"escrow_id": escrow_id}),
                            &format!("{key}-fund"),
                        ),
                        deadline,
                    )
                    .await?;
                shared.settle(&id, deadline).await?;
            }
        }
        55..=74 => {
            let params =
                json!({"to":format!("payee-{}", index % 5),"amount":"0.50","currency":"USDC"});
            let id = shared
                .submit(
                    submit_body("purple_flea", "wallet_transfer", params, &key),
                    deadline,
                )
                .await?;
            shared.settle(&id, deadline).await?;
        }
        75..=89 => {
            // Budget 10.00, quote 8.40: payment_required, then paid and executed.
            let params = json!({"action":"compute.gpu_hours","params":{"gpu":"a100","hours":2},"budget":{"amount":"10.00","currency":"USDC"}});
            let id = shared
                .submit(submit_body("aeeron", "execute", params, &key), deadline)
                .await?;
            let intent = shared.settle(&id, deadline).await?;
            if intent["state"] == "awaiting_payment" {
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
            }
        }
        _ => {
            // Budget 10.00, quote 16.80: budget_exceeded, a clean failure.
            let params = json!({"action":"compute.gpu_hours","params":{"gpu":"a100","hours":4},"budget":{"amount":"10.00","currency":"USDC"}});
            let id = shared
                .submit(submit_body("aeeron", "execute", params, &key), deadline)
                .await?;
            shared.settle(&id, deadline).await?;
        }
    }
    Ok(())
}

fn fault_plan(seed: u64, fault_rate: f64) -> FaultPlan {
    let rate = fault_rate.clamp(0.0, 1.0);
    let rule = |route: &str, kind: FaultKind, share: f64| {
        let mut rule = FaultRule::new(route, kind, (rate * share).min(1.0));
        rule.attempts_max_per_key = Some(FAULT_ATTEMPTS_PER_KEY);
        if kind == FaultKind::HoldAfterCommit {
            rule.hold_ms = Some(3_000);
        }
        rule
    };
    let mut rules = Vec::new();
    for route in [
        "POST /casino/bet",
        "POST /escrow/create",
        "POST /escrow/{id}/fund",
        "POST /wallet/transfer",
    ] {
        rules.push(rule(route, FaultKind::Unavailable, 0.3));
        rules.push(rule(route, FaultKind::DropAfterCommit, 0.3));
        rules.push(rule(route, FaultKind::TimeoutAfterCommit, 0.2));
        rules.push(rule(route, FaultKind::HoldAfterCommit, 0.2));
    }
    rules.push(rule(
        "POST /v1/executions",
        FaultKind::ProviderUnavailableBeforeProvider,
        0.4,
    ));
    rules.push(rule(
        "POST /v1/executions",
        FaultKind::ProviderUnavailableAfterProvider,
        0.3,
    ));
    rules.push(rule("POST /v1/executions", FaultKind::DropAfterCommit, 0.3));
    FaultPlan { seed, rules }
}

const SIDECAR_CONFIG: &str = r#"# Written by intentctl demo: short timeouts and delays so faults resolve in seconds.
sync = "data"
key_retention_hours = 24
status_check_delay_base_ms = 100

[[connectors]]
kind = "purple_flea"
base_url = "PURPLE_FLEA_URL"
request_timeout_ms = 1500
connect_timeout_ms = 1000
retry = "aggressive"
retry_delay_base_ms = 100
concurrency = 16

[[connectors]]
kind = "aeeron"
base_url = "AEERON_URL"
request_timeout_ms = 1500
connect_timeout_ms = 1000
retry = "aggressive"
retry_delay_base_ms = 100
concurrency = 16
"#;

async fn audit(client: &reqwest::Client, server: &RunningServer) -> anyhow::Result<Value> {
    let url = format!("{}/_sim/audit", server.base_url());
    Ok(client.get(&url).send().await?.json::<Value>().await?)
}

/// Every intent the sidecar knows, page by page.
async fn all_intents(shared: &Shared) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_millis(INTENT_DEADLINE_MS);
    let mut intents = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/intents?limit=1000&cursor={cursor}");
        let (status, page) = shared
            .call(reqwest::Method::GET, &path, None, deadline)
            .await?;
        if status != 200 {
            bail!("listing intents: {status} {page}");
        }
        intents.extend(page["intents"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => return Ok(intents),
        }
    }
}

async fn kill_and_restart(
    sidecar: &mut Sidecar,
    data: &Path,
    config: &Path,
    shared: &Shared,
) -> anyhow::Result<()> {
    // tokio's Child::kill sends SIGKILL on Unix: no drain, no flush, no goodbye.
    sidecar.child.kill().await.context("killing the sidecar")?;
    *sidecar = start_sidecar(data, config).await?;
    *shared
        .base_url
        .write()
        .unwrap_or_else(PoisonError::into_inner) = sidecar.base_url.clone();
    Ok(())
}

/// Runs the demo; the exit code is 1 when any key executed twice or any acknowledged
/// intent was lost.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let directory = tempfile::tempdir().context("temporary directory")?;
    let data = directory.path().join("data");
    let plan = fault_plan(args.seed, args.fault_rate);
    let localhost = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let purple_flea = PurpleFlea::start(localhost, plan.clone()).await?;
    let aeeron = Aeeron::start(localhost, plan).await?;
    let config_path: PathBuf = directory.path().join("intents.toml");
    std::fs::write(
        &config_path,
        SIDECAR_CONFIG
            .replace("PURPLE_FLEA_URL", &purple_flea.base_url())
            .replace("AEERON_URL", &aeeron.base_url()),
    )?;
    let mut sidecar = start_sidecar(&data, &config_path).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(AGENT_REQUEST_TIMEOUT_MS))
        .build()?;
    let shared = Arc::new(Shared {
        base_url: RwLock::new(sidecar.base_url.clone()),
        client: client.clone(),
        aeeron_url: aeeron.base_url(),
        acknowledged: Mutex::new(Vec::new()),
        submitted: AtomicUsize::new(0),
        payments_attached: AtomicUsize::new(0),
        gave_up: AtomicUsize::new(0),
    });
    let progress = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(args.intents as u64)
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} jobs {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // Agents take jobs from a shared counter.
    let next_job = Arc::new(AtomicUsize::new(0));
    let done_jobs = Arc::new(AtomicUsize::new(0));
    let mut choices = SmallRng::seed_from_u64(args.seed);
    let plan_of_jobs: Arc<Vec<u32>> = Arc::new(
        (0..args.intents)
            .map(|_| choices.gen_range(0..100))
            .collect(),
    );
    let mut agents = tokio::task::JoinSet::new();
    for _ in 0..AGENTS {
        let shared = shared.clone();
        let next_job = next_job.clone();
        let done_jobs = done_jobs.clone();
        let jobs = plan_of_jobs.clone();
        let progress = progress.clone();
        let seed = args.seed;
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
                done_jobs.fetch_add(1, Ordering::Relaxed);
                progress.inc(1);
            }
        });
    }
    // Chaos: crash k comes once a share of the jobs has started, plus a random delay.
    let mut chaos = SmallRng::seed_from_u64(args.seed ^ 0x5eed_c4a5);
    let mut crashes = 0usize;
    while crashes < args.crashes {
        let threshold = (crashes + 1) * args.intents / (args.crashes + 1);
        while next_job.load(Ordering::Relaxed) < threshold && !agents.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            while agents.try_join_next().is_some() {}
        }
        tokio::time::sleep(Duration::from_millis(chaos.gen_range(0..300))).await;
        kill_and_restart(&mut sidecar, &data, &config_path, &shared).await?;
        crashes += 1;
        progress.set_message(format!("{crashes} crashes survived"));
    }
    while agents.join_next().await.is_some() {}
    // One more kill -9 after the work: the audit reads what a restarted engine knows.
    kill_and_restart(&mut sidecar, &data, &config_path, &shared).await?;
    let crashes_survived = crashes + 1;
    progress.finish_and_clear();
    let elapsed = started.elapsed();

    let acknowledged = shared
        .acknowledged
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let intents = all_intents(&shared).await?;
    let known: HashMap<&str, &Value> = intents
        .iter()
        .filter_map(|intent| Some((intent["id"].as_str()?, intent)))
        .collect();
    let mut lost = 0usize;
    let mut lost_examples = Vec::new();
    let mut acknowledged_ids: Vec<&str> = acknowledged.iter().map(|(_, id)| id.as_str()).collect();
    acknowledged_ids.sort_unstable();
    acknowledged_ids.dedup();
    for id in &acknowledged_ids {
        if !known.contains_key(id) {
            lost += 1;
            if lost_examples.len() < 5 {
                lost_examples.push(id.to_string());
            }
        }
    }
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut dead_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for intent in &intents {
        let state = intent["state"].as_str().unwrap_or("?").to_string();
        let reason = intent["reason"]["code"].as_str().unwrap_or("?").to_string();
        match state.as_str() {
            "failed" => *failed_by_reason.entry(reason).or_insert(0) += 1,
            "dead_lettered" => *dead_by_reason.entry(reason).or_insert(0) += 1,
            _ => {}
        }
        *by_state.entry(state).or_insert(0) += 1;
    }
    let audit_purple_flea = audit(&client, &purple_flea).await?;
    let audit_aeeron = audit(&client, &aeeron).await?;
    let duplicates = audit_purple_flea["duplicates"].as_u64().unwrap_or(u64::MAX)
        + audit_aeeron["duplicates"].as_u64().unwrap_or(u64::MAX);
    let count = |name: &str| by_state.get(name).copied().unwrap_or(0);
    let unsettled = count("pending") + count("sent") + count("ambiguous");
    let submitted = acknowledged_ids.len();
    let report = json!({
        "seed": args.seed,
        "fault_rate": args.fault_rate,
        "jobs": args.intents,
        "submitted": submitted,
        "known_to_engine": intents.len(),
        "succeeded": count("succeeded"),
        "reconciled": count("reconciled"),
        "awaiting_payment": count("awaiting_payment"),
        "unsettled": unsettled,
        "failed": failed_by_reason,
        "dead_lettered": dead_by_reason,
        "payments_attached": shared.payments_attached.load(Ordering::Relaxed),
        "agent_jobs_given_up": shared.gave_up.load(Ordering::Relaxed),
        "executed_twice": duplicates,
        "lost": lost,
        "lost_examples": lost_examples,
        "crashes_survived": crashes_survived,
        "elapsed_ms": elapsed.as_millis() as u64,
        "throughput_intents_per_s": (submitted as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "simulators": {
            "purple_flea": {"total_keys": audit_purple_flea["total_keys"], "total_executions": audit_purple_flea["total_executions"], "duplicates": audit_purple_flea["duplicates"]},
            "aeeron": {"total_keys": audit_aeeron["total_keys"], "total_executions": audit_aeeron["total_executions"], "duplicates": audit_aeeron["duplicates"]},
        },
    });
    // A clean stop for the last sidecar: SIGTERM would drain; the temp dir goes anyway.
    let _ = sidecar.child.kill().await;
    tokio::join!(purple_flea.shutdown(), aeeron.shutdown());
    if args.json {
        println!("{report}");
    } else {
        print_report(&report);
    }
    let healthy = duplicates == 0 && lost == 0;
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(report: &Value) {
    let line = |label: &str, value: &Value| println!("{label:<28} {value}");
    println!("intents demo audit (seed {})", report["seed"]);
    for (label, key) in [
        ("submitted (acknowledged)", "submitted"),
        ("known to restarted engine", "known_to_engine"),
        ("succeeded", "succeeded"),
        ("reconciled", "reconciled"),
        ("awaiting payment", "awaiting_payment"),
        ("unsettled", "unsettled"),
        ("failed by reason", "failed"),
        ("dead-lettered by reason", "dead_lettered"),
        ("payments attached", "payments_attached"),
        ("agent jobs given up", "agent_jobs_given_up"),
        ("executed twice", "executed_twice"),
        ("lost", "lost"),
        ("crashes survived", "crashes_survived"),
        ("elapsed ms", "elapsed_ms"),
        ("throughput intents/s", "throughput_intents_per_s"),
        ("simulator audit", "simulators"),
    ] {
        line(label, &report[key]);
    }
    let verdict = if report["executed_twice"] == 0 && report["lost"] == 0 {
        "OK: nothing executed twice, nothing acknowledged was lost"
    } else {
        "FAILED: duplicates or losses"
    };
    println!("{verdict}");
}
