//! Issue 9, defect 1, as an operator meets it: `intentctl serve` as a child process with
//! small segments and a low compaction threshold, agents betting on Purple Flea and paying
//! for Aeeron executions over HTTP (payments attached only after the log rotated), and
//! SIGKILLs at random moments, some right after a compaction deleted a segment. Every
//! restart must open; at the end every acknowledged intent is found and finished, and the
//! simulators' audits show no key executed twice.
//!
//! The default run soaks for `SOAK_SECONDS_DEFAULT`; `SOAK_SECONDS=600` runs longer and
//! `SOAK_SEED=N` replays the kill moments and agent choices of a printed seed.
//!
//! One file past 600 lines: the agents, the chaos loop and the final checks share one
//! `Shared` state and one scenario; split, they would only import each other.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use simulator::{Aeeron, FaultPlan, PurpleFlea, PurpleFleaOptions, RunningServer};
use tokio::io::AsyncBufReadExt;

use crate::support;

/// Just above the smallest segment serve accepts (`SEGMENT_BYTES_MIN`, 1 MiB + 84 bytes),
/// so the log rotates every few seconds under the agents' load.
const SEGMENT_BYTES: u64 = 1_049_600;
/// Compaction starts once the log is past half a segment (and doubled since the last one).
const COMPACT_LOG_BYTES: u64 = 512 * 1024;
const SOAK_SECONDS_DEFAULT: u64 = 30;
/// On a loaded machine the agents write less: the soak goes on past its time, by at most
/// this much, until compactions have deleted segments and a kill followed one.
const SOAK_EXTENSION_MS_MAX: u64 = 90_000;
const BET_AGENTS: usize = 4;
const PAYING_AGENTS: usize = 2;
/// Aeeron executes one paying agent holds in awaiting_payment across a rotation.
const EXECUTES_PER_ROUND: usize = 4;
/// Time allowed for a (re)started sidecar to print its address and answer `/healthz`.
const START_MS_MAX: u64 = 20_000;
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Pause before an agent retries a request the sidecar did not answer (it is restarting).
const RETRY_PAUSE_MS: u64 = 50;
/// After the soak: time for every acknowledged intent to finish.
const SETTLE_MS_MAX: u64 = 30_000;
/// Agents get this long past the soak to notice the stop and return.
const AGENT_STOP_MS_MAX: u64 = 15_000;
const KILL_DELAY_MS_MAX: u64 = 1_500;
/// How long a "kill after compaction" round watches for a segment to be deleted.
const COMPACTION_WATCH_MS_MAX: u64 = 4_000;
const COMPACTION_WATCH_POLL_MS: u64 = 2;

const SIDECAR_CONFIG: &str = r#"# Written by the compaction_restart soak: small segments, low threshold.
sync = "data"
segment_bytes = SEGMENT_BYTES
compact_log_bytes = COMPACT_LOG_BYTES
status_check_delay_base_ms = 100

[[connectors]]
kind = "purple_flea"
base_url = "PURPLE_FLEA_URL"
request_timeout_ms = 2000
retry_delay_base_ms = 100
concurrency = 16

[[connectors]]
kind = "aeeron"
base_url = "AEERON_URL"
request_timeout_ms = 2000
retry_delay_base_ms = 100
concurrency = 16
"#;

/// A small xorshift generator: the test prints its seed so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|text| {
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
    })
}

/// `intentctl serve` as a child process; SIGKILLed on drop.
struct Sidecar {
    child: tokio::process::Child,
    base_url: String,
}

/// Where each run of the sidecar writes, and how it is started.
struct Launch {
    data: PathBuf,
    config: PathBuf,
    logs: PathBuf,
    runs: usize,
}

impl Launch {
    fn stderr_path(&self, run: usize) -> PathBuf {
        self.logs.join(format!("serve-{run}.stderr"))
    }

    /// Starts the next run; a sidecar that does not open is a test failure with its stderr.
    async fn start(&mut self, client: &reqwest::Client) -> Sidecar {
        let run = self.runs;
        self.runs += 1;
        let stderr_path = self.stderr_path(run);
        let mut child = tokio::process::Command::new(support::intentctl())
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn,scheduler=info")
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_millis(START_MS_MAX), lines.next_line())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let Some(base_url) = first
            .as_deref()
            .and_then(|line| line.strip_prefix("listening "))
        else {
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!(
                "run {run} of intentctl serve did not open (first line {first:?}, exit {status:?}); \
                 its stderr:\n{stderr}"
            );
        };
        let sidecar = Sidecar {
            child,
            base_url: base_url.to_string(),
        };
        sidecar.assert_healthy(client, run).await;
        sidecar
    }
}

impl Sidecar {
    async fn assert_healthy(&self, client: &reqwest::Client, run: usize) {
        let deadline = Instant::now() + Duration::from_millis(START_MS_MAX);
        loop {
            let response = client
                .get(format!("{}/healthz", self.base_url))
                .send()
                .await;
            if let Ok(response) = response {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                assert_eq!(status, 200, "run {run}: /healthz answered {body}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "run {run}: /healthz never answered"
            );
            tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
        }
    }

    /// SIGKILL (tokio's `kill` on Unix): no drain, no flush.
    async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}

/// What the sidecar acknowledged (201, or 200 for a key it already had).
#[derive(Clone, Debug)]
struct Acknowledged {
    key: String,
    id: String,
    aeeron: bool,
}

/// What the agents and the chaos loop share.
struct Shared {
    base_url: RwLock<String>,
    client: reqwest::Client,
    aeeron_url: String,
    wal: PathBuf,
    acknowledged: Mutex<Vec<Acknowledged>>,
    stop: AtomicBool,
    /// Agents give up on a request the sidecar does not answer by then.
    deadline: Instant,
    /// Payments attached to executes that waited in awaiting_payment across a rotation.
    paid_after_rotation: AtomicUsize,
    /// Every segment the test has seen in the log directory.
    seen_segments: Mutex<BTreeSet<PathBuf>>,
}

impl Shared {
    /// Notes the segments there now; returns how many seen so far are gone. Only
    /// compaction deletes segments, so this counts its deletions as the test observes
    /// them on disk (a segment created and deleted between two looks is missed: never
    /// more than happened). The sidecar's "compacted the log" line cannot be counted on:
    /// it is written after the deletion and the index pruning, and a kill that strikes
    /// right after a deletion (the point of this test) usually comes before it.
    fn observe_deletions(&self) -> usize {
        let now: BTreeSet<PathBuf> = support::segments(&self.wal).into_iter().collect();
        let mut seen = self.seen_segments.lock().unwrap();
        seen.extend(now.iter().cloned());
        seen.difference(&now).count()
    }

    fn base(&self) -> String {
        self.base_url.read().unwrap().clone()
    }

    /// Sends until the sidecar answers: it is down between a kill and the restart.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        loop {
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base()));
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Ok(response) = request.send().await {
                let status = response.status().as_u16();
                // A body cut by a kill is sent again; the same key makes that safe.
                if let Ok(value) = response.json::<Value>().await {
                    return (status, value);
                }
            }
            assert!(
                Instant::now() < self.deadline,
                "{method} {path}: the sidecar did not answer before the deadline"
            );
            tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
        }
    }

    /// Submits with `key` until acknowledged; returns the intent id.
    async fn submit(&self, body: Value, aeeron: bool) -> String {
        let key = body["idempotency_key"].as_str().unwrap().to_string();
        loop {
            let (status, answer) = self
                .call(reqwest::Method::POST, "/v1/intents", Some(&body))
                .await;
            match status {
                200 | 201 => {
                    let id = answer["id"].as_str().unwrap().to_string();
                    self.acknowledged.lock().unwrap().push(Acknowledged {
                        key,
                        id: id.clone(),
                        aeeron,
                    });
                    return id;
                }
                // Refused while the log is unavailable: nothing was recorded, send again.
                503 => tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await,
                other => panic!("submit {key}: {other} {answer}"),
            }
        }
    }

    /// Long-polls until the intent leaves pending/sent/ambiguous.
    async fn settle(&self, id: &str) -> Value {
        loop {
            let path = format!("/v1/intents/{id}/wait?timeout=2000");
            let (status, intent) = self.call(reqwest::Method::GET, &path, None).await;
            assert_eq!(
                status, 200,
                "wait {id}: an acknowledged intent is unknown: {intent}"
            );
            let state = intent["state"].as_str().unwrap();
            if !matches!(state, "pending" | "sent" | "ambiguous") {
                return intent;
            }
            assert!(
                Instant::now() < self.deadline,
                "{id} did not settle: {intent}"
            );
        }
    }

    /// Authorises a payment on Aeeron (same key, same payment) and attaches it.
    async fn pay(&self, intent: &Value) {
        let id = intent["id"].as_str().unwrap();
        let key = intent["idempotency_key"].as_str().unwrap();
        let amount = intent["reason"]["details"]["amount"].as_str().unwrap();
        let payment: Value = self
            .client
            .post(format!("{}/v1/payments", self.aeeron_url))
            .header("Idempotency-Key", format!("{key}-payment"))
            .json(&json!({"amount": amount, "currency": "USDC"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let payment_id = payment["payment_id"].as_str().unwrap();
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/intents/{id}/payment"),
                Some(&json!({"payment_id": payment_id})),
            )
            .await;
        // 409: the payment was attached before a kill cut the answer.
        assert!(
            status == 200 || status == 409,
            "attach payment {id}: {status} {answer}"
        );
    }
}

fn newest_segment(wal: &Path) -> Option<PathBuf> {
    support::segments(wal).pop()
}

fn oldest_segment(wal: &Path) -> Option<PathBuf> {
    support::segments(wal).into_iter().next()
}

fn bet(key: &str, over: bool) -> Value {
    json!({"connector": "purple_flea", "operation": "bet", "idempotency_key": key,
           "params": {"game": "dice", "amount": "1.00", "target": 50,
                      "prediction": if over {"over"} else {"under"}}})
}

/// Budget 10.00, quote 8.40: the intent stops in awaiting_payment.
fn execute(key: &str) -> Value {
    json!({"connector": "aeeron", "operation": "execute", "idempotency_key": key,
           "params": {"action": "compute.gpu_hours", "params": {"gpu": "a100", "hours": 2},
                      "budget": {"amount": "10.00", "currency": "USDC"}}})
}

/// Bets as fast as the sidecar acknowledges them (without waiting for the outcome).
async fn bet_agent(shared: Arc<Shared>, agent: usize, seed: u64) {
    let mut index = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let key = format!("soak-{seed}-bet-{agent}-{index}");
        shared.submit(bet(&key, index % 2 == 0), false).await;
        index += 1;
    }
}

/// Rounds of executes: all wait in awaiting_payment until the log rotated, then are paid.
async fn paying_agent(shared: Arc<Shared>, agent: usize, seed: u64) {
    let mut round = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let mut waiting = Vec::new();
        for slot in 0..EXECUTES_PER_ROUND {
            let key = format!("soak-{seed}-exec-{agent}-{round}-{slot}");
            let id = shared.submit(execute(&key), true).await;
            let intent = shared.settle(&id).await;
            assert_eq!(intent["state"], "awaiting_payment", "{intent}");
            waiting.push(intent);
        }
        let before = newest_segment(&shared.wal);
        while newest_segment(&shared.wal) == before && !shared.stop.load(Ordering::Relaxed) {
            shared.observe_deletions();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if newest_segment(&shared.wal) != before {
            shared
                .paid_after_rotation
                .fetch_add(waiting.len(), Ordering::Relaxed);
        }
        for intent in &waiting {
            shared.pay(intent).await;
        }
        round += 1;
    }
}

/// Kills so far, by kind.
#[derive(Debug, Default)]
struct Kills {
    on_timer: usize,
    after_segment_deleted: usize,
}

/// Waits (bounded) until compaction deletes the oldest segment; true if it did.
async fn segment_deleted(shared: &Shared) -> bool {
    shared.observe_deletions();
    let oldest = oldest_segment(&shared.wal);
    let deadline = Instant::now() + Duration::from_millis(COMPACTION_WATCH_MS_MAX);
    while Instant::now() < deadline {
        if oldest_segment(&shared.wal) != oldest {
            shared.observe_deletions();
            return true;
        }
        tokio::time::sleep(Duration::from_millis(COMPACTION_WATCH_POLL_MS)).await;
    }
    false
}

/// Kills and restarts the sidecar until `soak_end`: every other kill waits for a segment
/// deletion and strikes at once, so some land while a compaction is still running.
async fn chaos(
    shared: &Shared,
    launch: &mut Launch,
    sidecar: &mut Sidecar,
    rng: &mut Rng,
    soak_end: Instant,
) -> Kills {
    let mut kills = Kills::default();
    let extended_end = soak_end + Duration::from_millis(SOAK_EXTENSION_MS_MAX);
    loop {
        let now = Instant::now();
        let exercised = kills.after_segment_deleted >= 1 && shared.observe_deletions() >= 2;
        if now >= extended_end || (now >= soak_end && exercised) {
            break;
        }
        let after_compaction = rng.below(2) == 0 && segment_deleted(shared).await;
        if !after_compaction {
            tokio::time::sleep(Duration::from_millis(rng.below(KILL_DELAY_MS_MAX))).await;
        }
        shared.observe_deletions();
        sidecar.kill().await;
        if after_compaction {
            kills.after_segment_deleted += 1;
        } else {
            kills.on_timer += 1;
        }
        *sidecar = launch.start(&shared.client).await;
        *shared.base_url.write().unwrap() = sidecar.base_url.clone();
    }
    kills
}

/// (compactions, segments they deleted, compaction errors) from every run's stderr: only
/// the compactions that finished before a kill are logged.
fn compactions(launch: &Launch) -> (usize, usize, Vec<String>) {
    let (mut runs, mut deleted, mut errors) = (0, 0, Vec::new());
    for run in 0..launch.runs {
        let stderr = std::fs::read_to_string(launch.stderr_path(run)).unwrap();
        for line in stderr.lines() {
            if line.contains("compacted the log") {
                runs += 1;
                let count = line
                    .split("deleted_segments=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|number| number.parse::<usize>().ok())
                    .unwrap_or_else(|| panic!("no deleted_segments in {line:?}"));
                deleted += count;
            }
            if line.contains("compaction failed") {
                errors.push(format!("run {run}: {line}"));
            }
        }
    }
    (runs, deleted, errors)
}

/// After the last restart: every acknowledged intent is known and finishes (awaiting
/// payment ones are paid first); returns the count by final state.
async fn settle_all(shared: &Shared) -> std::collections::BTreeMap<String, usize> {
    let acknowledged = shared.acknowledged.lock().unwrap().clone();
    let mut states = std::collections::BTreeMap::new();
    for intent in &acknowledged {
        let mut settled = shared.settle(&intent.id).await;
        if settled["state"] == "awaiting_payment" {
            shared.pay(&settled).await;
            settled = shared.settle(&intent.id).await;
        }
        let state = settled["state"].as_str().unwrap().to_string();
        assert!(
            state == "succeeded" || state == "reconciled",
            "{} ({}) ended {state}: {settled}",
            intent.id,
            intent.key
        );
        *states.entry(state).or_insert(0) += 1;
    }
    states
}

/// Each simulator's audit: no duplicates, and every acknowledged key executed exactly once.
async fn assert_audits(shared: &Shared, purple_flea: &RunningServer, aeeron: &RunningServer) {
    let acknowledged = shared.acknowledged.lock().unwrap().clone();
    for (server, is_aeeron) in [(purple_flea, false), (aeeron, true)] {
        let audit: Value = shared
            .client
            .get(format!("{}/_sim/audit", server.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(audit["duplicates"], 0, "{audit}");
        for intent in acknowledged
            .iter()
            .filter(|intent| intent.aeeron == is_aeeron)
        {
            let executions = audit["keys"][&intent.key]["executions"].as_u64();
            assert_eq!(executions, Some(1), "key {}: {}", intent.key, audit["keys"]);
        }
    }
}

fn write_config(directory: &Path, purple_flea: &str, aeeron: &str) -> PathBuf {
    let path = directory.join("intents.toml");
    let text = SIDECAR_CONFIG
        .replace("COMPACT_LOG_BYTES", &COMPACT_LOG_BYTES.to_string())
        .replace("SEGMENT_BYTES", &SEGMENT_BYTES.to_string())
        .replace("PURPLE_FLEA_URL", purple_flea)
        .replace("AEERON_URL", aeeron);
    std::fs::write(&path, text).unwrap();
    path
}

/// (soak duration, seed) from `SOAK_SECONDS` and `SOAK_SEED`, or the defaults.
fn soak_settings() -> (Duration, u64) {
    let soak = Duration::from_secs(env_u64("SOAK_SECONDS").unwrap_or(SOAK_SECONDS_DEFAULT));
    let seed = env_u64("SOAK_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.unwrap().as_nanos() as u64
    });
    println!("compaction_restart: seed {seed} (SOAK_SEED={seed} replays it), soak {soak:?}");
    (soak, seed)
}

/// Both simulators in-process, without faults: every kill is the only fault.
async fn start_simulators(seed: u64) -> (RunningServer, RunningServer) {
    let localhost = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let options = PurpleFleaOptions::default()
        .with_balance("100000000.00")
        .unwrap();
    let purple_flea = PurpleFlea::start_with(localhost, FaultPlan::none(seed), options)
        .await
        .unwrap();
    let aeeron = Aeeron::start(localhost, FaultPlan::none(seed))
        .await
        .unwrap();
    (purple_flea, aeeron)
}

fn spawn_agents(shared: &Arc<Shared>, seed: u64) -> tokio::task::JoinSet<()> {
    let mut agents = tokio::task::JoinSet::new();
    for agent in 0..BET_AGENTS {
        agents.spawn(bet_agent(shared.clone(), agent, seed));
    }
    for agent in 0..PAYING_AGENTS {
        agents.spawn(paying_agent(shared.clone(), agent, seed));
    }
    agents
}

/// Stops the agents; a panic in one of them fails the test here.
async fn stop_agents(shared: &Shared, mut agents: tokio::task::JoinSet<()>) {
    shared.stop.store(true, Ordering::Relaxed);
    let stopped = tokio::time::timeout(Duration::from_millis(AGENT_STOP_MS_MAX), async {
        while let Some(joined) = agents.join_next().await {
            joined.unwrap();
        }
    })
    .await;
    assert!(stopped.is_ok(), "the agents did not stop");
}

/// The path under test happened: compactions deleted segments (as seen on disk), kills
/// struck right after a deletion, and payments waited across rotations. Prints what one
/// run did.
fn assert_path_exercised(launch: &Launch, shared: &Shared, kills: &Kills, started: Instant) {
    let (compaction_runs, logged_deleted, errors) = compactions(launch);
    let deleted = shared.observe_deletions();
    let acknowledged = shared.acknowledged.lock().unwrap().len();
    let paid_after_rotation = shared.paid_after_rotation.load(Ordering::Relaxed);
    println!(
        "compaction_restart: {acknowledged} intents acknowledged and finished, {} sidecar \
         runs, kills {kills:?}, {deleted} segments seen deleted, {compaction_runs} \
         compactions logged (deleting {logged_deleted}: a kill right after a deletion \
         comes before most of these lines), {paid_after_rotation} payments attached after \
         a rotation, {:?}",
        launch.runs,
        started.elapsed()
    );
    assert!(errors.is_empty(), "compactions failed: {errors:#?}");
    assert!(deleted >= 2, "compactions deleted only {deleted} segments");
    assert!(kills.after_segment_deleted >= 1, "{kills:?}");
    assert!(
        paid_after_rotation >= 1,
        "no payment waited across a rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_compaction_opens_and_loses_nothing() {
    // Built (or found) first: the time bound is for the scenario, not for cargo.
    support::intentctl();
    let started = Instant::now();
    let (soak, seed) = soak_settings();
    let mut rng = Rng(seed | 1);
    let (purple_flea, aeeron) = start_simulators(seed).await;
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(
        directory.path(),
        &purple_flea.base_url(),
        &aeeron.base_url(),
    );
    let mut launch = Launch {
        data: directory.path().join("data"),
        config,
        logs: directory.path().to_path_buf(),
        runs: 0,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
        .build()
        .unwrap();
    let mut sidecar = launch.start(&client).await;
    let soak_end = Instant::now() + soak;
    let shared = Arc::new(Shared {
        base_url: RwLock::new(sidecar.base_url.clone()),
        client,
        aeeron_url: aeeron.base_url(),
        wal: launch.data.join("wal"),
        acknowledged: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        deadline: soak_end
            + Duration::from_millis(SOAK_EXTENSION_MS_MAX + AGENT_STOP_MS_MAX + SETTLE_MS_MAX),
        paid_after_rotation: AtomicUsize::new(0),
        seen_segments: Mutex::new(BTreeSet::new()),
    });
    let agents = spawn_agents(&shared, seed);
    let kills = chaos(&shared, &mut launch, &mut sidecar, &mut rng, soak_end).await;
    stop_agents(&shared, agents).await;
    // One more kill after the work: what is checked is what a restarted engine knows.
    sidecar.kill().await;
    sidecar = launch.start(&shared.client).await;
    *shared.base_url.write().unwrap() = sidecar.base_url.clone();
    let states = settle_all(&shared).await;
    println!("compaction_restart: final states {states:?}");
    assert_audits(&shared, &purple_flea, &aeeron).await;
    assert_path_exercised(&launch, &shared, &kills, started);
    sidecar.kill().await;
    tokio::join!(purple_flea.shutdown(), aeeron.shutdown());
}
