//! `intentctl inspect|intents|dlq`: operator commands, on a stopped engine's data directory
//! (`--data DIR`, read by replaying the log) or against a running sidecar (`--server URL`).
//!
//! Reads offline never change the directory: the log is verified and folded with the same
//! fold the engine uses, under the log's lock so a running engine is noticed. Offline
//! `dlq retry|resolve` open the engine for real (no connector registered, so nothing is
//! sent), log the operator action, and shut it down. Both modes print the same JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use intent_log::{FileSystem, StdFileSystem, LOCK_FILE_NAME, RECORD_BYTES_MAX_LIMIT};
use scheduler::record::{apply, Folded, Record, RECORD_KIND};
use scheduler::{Engine, EngineConfig, Intent, IntentId, StateName};
use serde_json::{json, Value};

use crate::serve::intent_view;

/// Page size of listings when `--limit` is not given.
const LIST_LIMIT_DEFAULT: usize = 100;
/// How long one HTTP call to the server may take.
const HTTP_TIMEOUT_MS: u64 = 30_000;
/// States in which an intent is still waiting for the engine (or for funding).
const WAITING_STATES: [StateName; 4] = [
    StateName::Pending,
    StateName::Sent,
    StateName::Ambiguous,
    StateName::AwaitingPayment,
];

/// Where the commands read: a stopped engine's data directory, or a running server.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Data directory of a stopped engine (the log is DIR/wal).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "server",
        conflicts_with = "server"
    )]
    pub data: Option<PathBuf>,
    /// Base URL of a running `intentctl serve` (e.g. http://127.0.0.1:7700).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Send `Authorization: Bearer <token>` with the token read from this variable.
    #[arg(long, value_name = "VARIABLE", requires = "server")]
    pub token_env: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `intentctl inspect`
#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    target: Target,
}

/// `intentctl intents ...`
#[derive(Subcommand, Debug)]
pub enum IntentsCommand {
    /// List intents in submit order.
    List(ListArgs),
    /// Show one intent.
    Show(IdArgs),
}

/// `intentctl dlq ...`
#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead letters in submit order.
    List(DlqListArgs),
    /// Show one dead letter.
    Show(IdArgs),
    /// Check a dead letter again and, if the provider has no record of it, re-send it with
    /// the same key and a fresh attempt budget.
    Retry(IdArgs),
    /// Close a dead letter with a note and optional evidence (e.g. a transaction id).
    Resolve(ResolveArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    target: Target,
    /// Only intents in this state (pending, sent, ambiguous, awaiting_payment, succeeded,
    /// reconciled, failed, dead_lettered, resolved).
    #[arg(long)]
    state: Option<String>,
    #[command(flatten)]
    page: PageArgs,
}

#[derive(Args, Debug)]
pub struct DlqListArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    page: PageArgs,
}

#[derive(Args, Debug)]
pub struct PageArgs {
    /// Only intents of this connector.
    #[arg(long)]
    connector: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = LIST_LIMIT_DEFAULT)]
    limit: usize,
    /// Start after this intent id (the `next_cursor` of the previous page).
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    target: Target,
    /// The intent id.
    id: String,
}

#[derive(Args, Debug)]
pub struct ResolveArgs {
    #[command(flatten)]
    target: Target,
    /// The intent id.
    id: String,
    /// What the operator found and did.
    #[arg(long)]
    note: String,
    /// Evidence, such as the provider's transaction id.
    #[arg(long)]
    evidence: Option<String>,
}

pub async fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let report = match Source::new(&args.target)? {
        Source::Offline(dir) => OfflineView::load(&dir)?.inspect(now_ms()),
        Source::Server(client) => client.inspect(now_ms()).await?,
    };
    print(&args.target, &report, render_inspect);
    Ok(ExitCode::SUCCESS)
}

pub async fn intents(command: IntentsCommand) -> anyhow::Result<ExitCode> {
    match command {
        IntentsCommand::List(args) => {
            let state = match args.state.as_deref() {
                None | Some("") => None,
                Some(text) => Some(parse_state(text)?),
            };
            list(&args.target, state, &args.page).await
        }
        IntentsCommand::Show(args) => show(&args, None).await,
    }
}

pub async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List(args) => {
            list(&args.target, Some(StateName::DeadLettered), &args.page).await
        }
        DlqCommand::Show(args) => show(&args, Some(StateName::DeadLettered)).await,
        DlqCommand::Retry(args) => {
            let id = parse_id(&args.id)?;
            let view = match Source::new(&args.target)? {
                Source::Offline(dir) => {
                    act_offline(&dir, |engine| async move { engine.dlq_retry(id).await }).await?
                }
                Source::Server(client) => {
                    client
                        .call(
                            reqwest::Method::POST,
                            &format!("/v1/dlq/{id}/retry"),
                            Some(json!({})),
                        )
                        .await?
                }
            };
            print(&args.target, &view, |view| {
                format!(
                    "retried: checked again before anything is re-sent\n{}",
                    render_intent(view)
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Resolve(args) => {
            let id = parse_id(&args.id)?;
            if args.note.trim().is_empty() {
                bail!("--note must not be empty");
            }
            let view = match Source::new(&args.target)? {
                Source::Offline(dir) => {
                    let (note, evidence) = (args.note.clone(), args.evidence.clone());
                    act_offline(&dir, |engine| async move {
                        engine.dlq_resolve(id, note, evidence).await
                    })
                    .await?
                }
                Source::Server(client) => {
                    let body = json!({"note": args.note, "evidence": args.evidence});
                    client
                        .call(
                            reqwest::Method::POST,
                            &format!("/v1/dlq/{id}/resolve"),
                            Some(body),
                        )
                        .await?
                }
            };
            print(&args.target, &view, |view| {
                format!("resolved\n{}", render_intent(view))
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn list(
    target: &Target,
    state: Option<StateName>,
    page: &PageArgs,
) -> anyhow::Result<ExitCode> {
    if page.limit == 0 {
        bail!("--limit must be at least 1");
    }
    let cursor = match page.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(parse_id(text)?),
    };
    let listing = match Source::new(target)? {
        Source::Offline(dir) => {
            OfflineView::load(&dir)?.list(state, page.connector.as_deref(), cursor, page.limit)
        }
        Source::Server(client) => {
            let mut query = vec![("limit", page.limit.to_string())];
            if let Some(state) = state.filter(|state| *state != StateName::DeadLettered) {
                query.push(("state", state.as_str().to_string()));
            }
            if let Some(connector) = &page.connector {
                query.push(("connector", connector.clone()));
            }
            if let Some(cursor) = cursor {
                query.push(("cursor", cursor.to_string()));
            }
            let path = if state == Some(StateName::DeadLettered) {
                "/v1/dlq"
            } else {
                "/v1/intents"
            };
            client.get_query(path, &query).await?
        }
    };
    print(target, &listing, render_listing);
    Ok(ExitCode::SUCCESS)
}

async fn show(args: &IdArgs, expect: Option<StateName>) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    let view = match Source::new(&args.target)? {
        Source::Offline(dir) => OfflineView::load(&dir)?
            .show(id)
            .ok_or_else(|| anyhow!("intent {id} is not in the log (history evicted by compaction is only in the index: use --server)"))?,
        Source::Server(client) => {
            client
                .call(reqwest::Method::GET, &format!("/v1/intents/{id}"), None)
                .await?
        }
    };
    if let Some(expect) = expect {
        if view["state"].as_str() != Some(expect.as_str()) {
            bail!(
                "intent {id} is {}, not {}",
                view["state"].as_str().unwrap_or("?"),
                expect.as_str()
            );
        }
    }
    print(&args.target, &view, render_intent);
    Ok(ExitCode::SUCCESS)
}

fn parse_id(text: &str) -> anyhow::Result<IntentId> {
    IntentId::parse(text).ok_or_else(|| anyhow!("{text:?} is not an intent id (a UUID)"))
}

fn parse_state(text: &str) -> anyhow::Result<StateName> {
    StateName::parse(text).ok_or_else(|| {
        let known: Vec<&str> = StateName::ALL.iter().map(|name| name.as_str()).collect();
        anyhow!("state {text:?} is unknown; one of {}", known.join(", "))
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn print(target: &Target, value: &Value, render: impl Fn(&Value) -> String) {
    if target.json {
        println!("{value}");
    } else {
        print!("{}", render(value));
    }
}

enum Source {
    Offline(PathBuf),
    Server(ServerClient),
}

impl Source {
    fn new(target: &Target) -> anyhow::Result<Source> {
        match (&target.data, &target.server) {
            (Some(dir), None) => Ok(Source::Offline(dir.clone())),
            (None, Some(url)) => Ok(Source::Server(ServerClient::new(
                url,
                target.token_env.as_deref(),
            )?)),
            _ => bail!("give exactly one of --data DIR and --server URL"),
        }
    }
}

/// The log of a stopped engine, folded.
struct OfflineView {
    folded: Folded,
    report: intent_log::RecoveryReport,
}

impl OfflineView {
    /// Verifies and folds `<dir>/wal` under its lock; changes nothing on disk.
    fn load(dir: &Path) -> anyhow::Result<OfflineView> {
        let wal_dir = dir.join("wal");
        if !wal_dir.is_dir() {
            bail!(
                "{} has no log ({} is not a directory)",
                dir.display(),
                wal_dir.display()
            );
        }
        let fs = StdFileSystem;
        let _lock = fs.lock(&wal_dir.join(LOCK_FILE_NAME)).map_err(|error| {
            if error.kind() == std::io::ErrorKind::WouldBlock {
                anyhow!(
                    "{} is in use by a running engine: stop it first, or use --server URL",
                    dir.display()
                )
            } else {
                anyhow!("locking {}: {error}", wal_dir.display())
            }
        })?;
        let (report, replay) =
            intent_log::replay_dir(Arc::new(StdFileSystem), &wal_dir, RECORD_BYTES_MAX_LIMIT)
                .with_context(|| {
                    format!(
                        "verifying {} (see `intentctl wal verify`)",
                        wal_dir.display()
                    )
                })?;
        let mut folded = Folded::default();
        // The newest checkpoint first (what compaction kept), then the records after it.
        for entry in replay.checkpoint.into_iter().flatten() {
            let (kind, body) = entry?;
            if kind != RECORD_KIND {
                bail!("checkpoint entry of unknown kind {kind}");
            }
            let record = Record::decode(&body).context("decoding a checkpoint entry")?;
            let lsn = match &record {
                Record::Snapshot(intent) => intent.last_lsn,
                _ => report
                    .checkpoint
                    .as_ref()
                    .map_or(0, |checkpoint| checkpoint.lsn),
            };
            apply(&mut folded, lsn, record).map_err(|error| anyhow!(error.0))?;
        }
        for entry in replay.records {
            let entry = entry?;
            if entry.kind != RECORD_KIND {
                bail!("LSN {}: unknown record kind {}", entry.lsn, entry.kind);
            }
            let record = Record::decode(&entry.body)
                .with_context(|| format!("decoding LSN {}", entry.lsn))?;
            apply(&mut folded, entry.lsn, record).map_err(|error| anyhow!(error.0))?;
        }
        Ok(OfflineView { folded, report })
    }

    fn sorted(&self) -> Vec<&Intent> {
        let mut intents: Vec<&Intent> = self.folded.intents.values().collect();
        intents.sort_by_key(|intent| (intent.spec.submitted_at_ms, intent.spec.id));
        intents
    }

    fn list(
        &self,
        state: Option<StateName>,
        connector: Option<&str>,
        cursor: Option<IntentId>,
        limit: usize,
    ) -> Value {
        let after = cursor
            .and_then(|id| self.folded.intents.get(&id))
            .map(|intent| (intent.spec.submitted_at_ms, intent.spec.id));
        let matching: Vec<&Intent> = self
            .sorted()
            .into_iter()
            .filter(|intent| {
                state.is_none_or(|name| intent.state.name() == name)
                    && connector.is_none_or(|name| intent.spec.connector == name)
                    && after
                        .is_none_or(|after| (intent.spec.submitted_at_ms, intent.spec.id) > after)
            })
            .take(limit.saturating_add(1))
            .collect();
        let more = matching.len() > limit;
        let page = &matching[..matching.len().min(limit)];
        let next_cursor = if more {
            page.last().map(|intent| intent.spec.id.to_string())
        } else {
            None
        };
        let views: Vec<Value> = page.iter().map(|intent| intent_view(intent)).collect();
        json!({"intents": views, "next_cursor": next_cursor})
    }

    fn show(&self, id: IntentId) -> Option<Value> {
        self.folded.intents.get(&id).map(intent_view)
    }

    fn inspect(&self, now_ms: u64) -> Value {
        let mut counts: BTreeMap<StateName, u64> =
            StateName::ALL.iter().map(|name| (*name, 0)).collect();
        for intent in self.folded.intents.values() {
            *counts.entry(intent.state.name()).or_insert(0) += 1;
        }
        let oldest = self
            .sorted()
            .into_iter()
            .find(|intent| WAITING_STATES.contains(&intent.state.name()))
            .map(intent_view);
        let report = &self.report;
        let log = json!({
            "bytes": report.log_bytes,
            "segments": report.segments,
            "records": report.records,
            "first_lsn": report.first_lsn,
            "next_lsn": report.next_lsn,
            "torn_tail_bytes": report.torn_tail.as_ref().map(|torn| torn.bytes),
        });
        inspect_value(&counts, oldest.as_ref(), log, now_ms)
    }
}

/// The JSON of `inspect`, the same in both modes.
fn inspect_value(
    counts: &BTreeMap<StateName, u64>,
    oldest_waiting: Option<&Value>,
    log: Value,
    now_ms: u64,
) -> Value {
    let counts_json: serde_json::Map<String, Value> = counts
        .iter()
        .map(|(name, count)| (name.as_str().to_string(), json!(count)))
        .collect();
    let oldest = oldest_waiting.map(|view| {
        let submitted = view["submitted_at_ms"].as_u64().unwrap_or(0);
        json!({
            "id": view["id"],
            "state": view["state"],
            "connector": view["connector"],
            "operation": view["operation"],
            "submitted_at_ms": submitted,
            "age_ms": now_ms.saturating_sub(submitted),
        })
    });
    json!({
        "counts": counts_json,
        "total": counts.values().sum::<u64>(),
        "dlq_depth": counts.get(&StateName::DeadLettered).copied().unwrap_or(0),
        "oldest_waiting": oldest,
        "log": log,
    })
}

/// Opens the engine for real with no connector registered (nothing is sent: intents of
/// unknown connectors wait), runs one operator action, and shuts down.
async fn act_offline<F, Fut>(dir: &Path, action: F) -> anyhow::Result<Value>
where
    F: FnOnce(Engine) -> Fut,
    Fut: std::future::Future<Output = scheduler::Result<Intent>>,
{
    let (engine, _report) = Engine::open(EngineConfig::new(dir), Vec::new())
        .await
        .map_err(|error| match error {
            scheduler::Error::Log(intent_log::Error::Locked { .. }) => anyhow!(
                "{} is in use by a running engine: stop it first, or use --server URL",
                dir.display()
            ),
            other => anyhow!("opening the engine on {}: {other}", dir.display()),
        })?;
    let outcome = action(engine.clone()).await;
    engine.shutdown().await;
    Ok(intent_view(&outcome?))
}

/// The HTTP API of a running `intentctl serve`.
struct ServerClient {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ServerClient {
    fn new(url: &str, token_env: Option<&str>) -> anyhow::Result<ServerClient> {
        let token = match token_env {
            Some(variable) => Some(
                std::env::var(variable)
                    .map_err(|_| anyhow!("the variable {variable} (--token-env) is not set"))?,
            ),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(HTTP_TIMEOUT_MS))
            .build()?;
        Ok(ServerClient {
            client,
            base: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .map_err(|error| anyhow!("{what}: {}: {error}", self.base))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| anyhow!("{what}: {error}"))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let code = body["error"].as_str().unwrap_or("error");
            let message = body["message"].as_str().unwrap_or("");
            bail!("{what}: the server answered {status}: {code}: {message}");
        }
        Ok(body)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let what = format!("{method} {path}");
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request, &what).await
    }

    async fn get_query(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let request = self.request(reqwest::Method::GET, path).query(query);
        self.send(request, &format!("GET {path}")).await
    }

    async fn inspect(&self, now_ms: u64) -> anyhow::Result<Value> {
        let metrics = self
            .send(
                self.request(reqwest::Method::GET, "/metrics"),
                "GET /metrics",
            )
            .await?;
        let metrics = metrics.as_str().unwrap_or("");
        let (counts, log) = parse_metrics(metrics);
        let mut oldest: Option<Value> = None;
        for state in WAITING_STATES {
            let page = self
                .get_query(
                    "/v1/intents",
                    &[
                        ("state", state.as_str().to_string()),
                        ("limit", "1".to_string()),
                    ],
                )
                .await?;
            if let Some(first) = page["intents"].get(0) {
                let older = oldest.as_ref().is_none_or(|current| {
                    first["submitted_at_ms"].as_u64() < current["submitted_at_ms"].as_u64()
                });
                if older {
                    oldest = Some(first.clone());
                }
            }
        }
        Ok(inspect_value(&counts, oldest.as_ref(), log, now_ms))
    }
}

/// Counts by state and log figures from the server's Prometheus text.
fn parse_metrics(text: &str) -> (BTreeMap<StateName, u64>, Value) {
    let mut counts: BTreeMap<StateName, u64> =
        StateName::ALL.iter().map(|name| (*name, 0)).collect();
    let mut log = serde_json::Map::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        if let Some(state) = name
            .strip_prefix("intents{state=\"")
            .and_then(|rest| rest.strip_suffix("\"}"))
            .and_then(StateName::parse)
        {
            counts.insert(state, value);
        }
        match name {
            "intents_log_bytes" => {
                log.insert("bytes".to_string(), json!(value));
            }
            "intents_log_segments" => {
                log.insert("segments".to_string(), json!(value));
            }
            _ => {}
        }
    }
    (counts, Value::Object(log))
}

/// Plain aligned columns, two spaces apart, no trailing spaces.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut text = String::new();
    let header_row: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            let width = widths.get(index).copied().unwrap_or(0);
            line.push_str(cell);
            if index + 1 < row.len() {
                line.push_str(&" ".repeat(width.saturating_sub(cell.chars().count()) + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// A JSON scalar as table text ("-" for null or missing).
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC (proleptic Gregorian).
fn utc(ms: u64) -> String {
    let seconds = ms / 1000;
    let days = (seconds / 86_400) as i64;
    let of_day = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

fn time_cell(value: &Value) -> String {
    value.as_u64().map(utc).unwrap_or_else(|| "-".to_string())
}

/// The code that explains an intent: its reason, else its last error.
fn reason_code(view: &Value) -> String {
    let code = &view["reason"]["code"];
    if code.is_string() {
        return cell(code);
    }
    cell(&view["last_error"]["code"])
}

fn render_listing(listing: &Value) -> String {
    let empty = Vec::new();
    let intents = listing["intents"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = intents
        .iter()
        .map(|view| {
            vec![
                cell(&view["id"]),
                cell(&view["state"]),
                cell(&view["connector"]),
                cell(&view["operation"]),
                cell(&view["attempts"]),
                reason_code(view),
                time_cell(&view["submitted_at_ms"]),
            ]
        })
        .collect();
    let mut text = table(
        &[
            "ID",
            "STATE",
            "CONNECTOR",
            "OPERATION",
            "ATTEMPTS",
            "REASON",
            "SUBMITTED (UTC)",
        ],
        &rows,
    );
    text.push_str(&format!("{} intent(s)\n", intents.len()));
    if let Some(cursor) = listing["next_cursor"].as_str() {
        text.push_str(&format!("more: --cursor {cursor}\n"));
    }
    text
}

fn reason_text(reason: &Value) -> String {
    if reason.is_null() {
        return "-".to_string();
    }
    let mut text = format!("{}: {}", cell(&reason["code"]), cell(&reason["message"]));
    if let Some(status) = reason["http_status"].as_u64() {
        text.push_str(&format!(" (HTTP {status})"));
    }
    if !reason["details"].is_null() {
        text.push_str(&format!(" details {}", reason["details"]));
    }
    text
}

fn render_intent(view: &Value) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("id", cell(&view["id"])),
        ("state", cell(&view["state"])),
        ("connector", cell(&view["connector"])),
        ("operation", cell(&view["operation"])),
        ("idempotency_key", cell(&view["idempotency_key"])),
        ("params", view["params"].to_string()),
        ("attempts", cell(&view["attempts"])),
        ("status_checks", cell(&view["status_checks"])),
        ("resource_id", cell(&view["resource_id"])),
        ("reason", reason_text(&view["reason"])),
        ("last_error", reason_text(&view["last_error"])),
    ];
    if !view["result"].is_null() {
        rows.push(("result", view["result"].to_string()));
    }
    if view.get("note").is_some() {
        rows.push(("note", cell(&view["note"])));
        rows.push(("evidence", cell(&view["evidence"])));
    }
    rows.push(("submitted", time_cell(&view["submitted_at_ms"])));
    rows.push(("updated", time_cell(&view["updated_at_ms"])));
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(name, value)| format!("{name:width$}  {value}\n"))
        .collect()
}

fn render_inspect(report: &Value) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    if let Some(counts) = report["counts"].as_object() {
        for name in StateName::ALL {
            let count = counts
                .get(name.as_str())
                .map(cell)
                .unwrap_or_else(|| "0".to_string());
            rows.push(vec![name.as_str().to_string(), count]);
        }
    }
    rows.push(vec!["total".to_string(), cell(&report["total"])]);
    let mut text = table(&["STATE", "INTENTS"], &rows);
    text.push('\n');
    text.push_str(&format!("dlq depth       {}\n", cell(&report["dlq_depth"])));
    let oldest = &report["oldest_waiting"];
    if oldest.is_null() {
        text.push_str("oldest waiting  none\n");
    } else {
        text.push_str(&format!(
            "oldest waiting  {} {} {}/{} submitted {} ({} s ago)\n",
            cell(&oldest["id"]),
            cell(&oldest["state"]),
            cell(&oldest["connector"]),
            cell(&oldest["operation"]),
            time_cell(&oldest["submitted_at_ms"]),
            oldest["age_ms"].as_u64().unwrap_or(0) / 1000
        ));
    }
    let log = &report["log"];
    text.push_str(&format!(
        "log             {} bytes in {} segment(s)",
        cell(&log["bytes"]),
        cell(&log["segments"])
    ));
    if log["records"].is_u64() {
        text.push_str(&format!(
            ", {} records (LSN {} to {})",
            cell(&log["records"]),
            cell(&log["first_lsn"]),
            log["next_lsn"].as_u64().unwrap_or(1).saturating_sub(1)
        ));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["a".to_string(), "long value".to_string(), "x".to_string()],
            vec!["bbbb".to_string(), "v".to_string(), "-".to_string()],
        ];
        let text = table(&["K", "VALUE", "Z"], &rows);
        assert_eq!(
            text,
            "K     VALUE       Z\na     long value  x\nbbbb  v           -\n"
        );
    }

    #[test]
    fn utc_formats_known_instants() {
        for (ms, expected) in [
            (0, "1970-01-01 00:00:00"),
            (951_782_400_000, "2000-02-29 00:00:00"),
            (1_709_164_799_999, "2024-02-28 23:59:59"),
            (1_798_761_600_000, "2027-01-01 00:00:00"),
        ] {
            assert_eq!(utc(ms), expected, "{ms}");
        }
    }

    #[test]
    fn metrics_text_parses_into_counts_and_log() {
        let text = "# HELP intents x\nintents{state=\"pending\"} 3\nintents{state=\"dead_lettered\"} 2\nintents_log_bytes 4096\nintents_log_segments 1\nintents_log_sync_micros_bucket{le=\"2\"} 5\n";
        let (counts, log) = parse_metrics(text);
        assert_eq!(counts[&StateName::Pending], 3);
        assert_eq!(counts[&StateName::DeadLettered], 2);
        assert_eq!(counts[&StateName::Succeeded], 0);
        assert_eq!(log, json!({"bytes": 4096, "segments": 1}));
    }

    fn sample_view(state: &str, reason: Value) -> Value {
        json!({
            "id": "0b8e4f5c-1d2a-4a39-9d0e-3f1f2c3d4e5f", "state": state, "connector": "aeeron",
            "operation": "execute", "params": {"action": "compute.gpu_hours"}, "idempotency_key": "k-1",
            "attempts": 1, "status_checks": 2, "last_error": null, "result": null, "reason": reason,
            "resource_id": null, "submitted_at_ms": 0u64, "updated_at_ms": 1000u64,
        })
    }

    #[test]
    fn listing_shows_reason_and_cursor() {
        let dead = sample_view(
            "dead_lettered",
            json!({"code": "execution_failed", "message": "m", "details": null, "http_status": 502}),
        );
        let text = render_listing(&json!({"intents": [dead], "next_cursor": "c1"}));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID "), "{text}");
        assert!(lines[1].contains("dead_lettered  aeeron"), "{text}");
        assert!(lines[1].contains("execution_failed"), "{text}");
        assert!(lines[1].ends_with("1970-01-01 00:00:00"), "{text}");
        assert_eq!(lines[2], "1 intent(s)");
        assert_eq!(lines[3], "more: --cursor c1");
    }

    #[test]
    fn intent_render_table() {
        for (view, expected_line) in [
            (sample_view("dead_lettered", json!({"code": "undecidable", "message": "no answer", "details": null, "http_status": null})), "reason           undecidable: no answer"),
            (sample_view("pending", Value::Null), "reason           -"),
            (sample_view("dead_lettered", json!({"code": "execution_failed", "message": "m", "details": {"execution_id": "ex_1"}, "http_status": 502})), "reason           execution_failed: m (HTTP 502) details {\"execution_id\":\"ex_1\"}"),
        ] {
            let text = render_intent(&view);
            assert!(text.lines().any(|line| line == expected_line), "{text}");
        }
    }

    #[test]
    fn inspect_value_and_render() {
        let mut counts: BTreeMap<StateName, u64> =
            StateName::ALL.iter().map(|name| (*name, 0)).collect();
        counts.insert(StateName::DeadLettered, 2);
        counts.insert(StateName::Pending, 1);
        let oldest = sample_view("pending", Value::Null);
        let value = inspect_value(
            &counts,
            Some(&oldest),
            json!({"bytes": 10, "segments": 1}),
            5_000,
        );
        assert_eq!(value["dlq_depth"], 2);
        assert_eq!(value["total"], 3);
        assert_eq!(value["oldest_waiting"]["age_ms"], 5_000);
        assert_eq!(value["counts"]["resolved"], 0);
        let text = render_inspect(&value);
        assert!(text.contains("dlq depth       2\n"), "{text}");
        assert!(text.contains("dead_lettered     2\n"), "{text}");
        assert!(text.contains("(5 s ago)"), "{text}");
        assert!(
            text.contains("log             10 bytes in 1 segment(s)\n"),
            "{text}"
        );
        let empty = inspect_value(&counts, None, json!({}), 0);
        assert!(render_inspect(&empty).contains("oldest waiting  none"));
    }
}
