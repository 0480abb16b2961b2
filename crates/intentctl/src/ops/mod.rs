//! `intentctl inspect|intents|dlq`: operator commands, on a stopped engine's data directory
//! (`--data DIR`, read by replaying the log) or against a running sidecar (`--server URL`).
//!
//! Reads offline never change the directory: the log is verified and folded with the same
//! fold the engine uses, under the log's lock so a running engine is noticed. Offline
//! `dlq retry|resolve` open the engine for real (no connector registered, so nothing is
//! sent), log the operator action, and shut it down. Both modes print the same JSON: the
//! views of [`crate::api`] (offline.rs reads the log, client.rs the server, render.rs
//! prints tables).

mod client;
mod inspect;
mod offline;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use scheduler::{IntentId, StateName};
use serde::Serialize;

use crate::api::{IntentView, ResolveBody, LIST_LIMIT_DEFAULT};
use client::ServerClient;
use offline::{act_offline, OfflineView};
use render::{render_inspect, render_intent, render_listing};

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
    print(&args.target, &report, render_inspect)?;
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
        DlqCommand::Retry(args) => dlq_retry(&args).await,
        DlqCommand::Resolve(args) => dlq_resolve(&args).await,
    }
}

async fn dlq_retry(args: &IdArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    let view = match Source::new(&args.target)? {
        Source::Offline(dir) => {
            act_offline(&dir, |engine| async move { engine.dlq_retry(id).await }).await?
        }
        Source::Server(client) => client.dlq_retry(id).await?,
    };
    print(&args.target, &view, |view| {
        format!(
            "retried: checked again before anything is re-sent\n{}",
            render_intent(view)
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn dlq_resolve(args: &ResolveArgs) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    if args.note.trim().is_empty() {
        bail!("--note must not be empty");
    }
    let body = ResolveBody {
        evidence: args.evidence.clone(),
        note: args.note.clone(),
    };
    let view = match Source::new(&args.target)? {
        Source::Offline(dir) => {
            act_offline(&dir, |engine| async move {
                engine.dlq_resolve(id, body.note, body.evidence).await
            })
            .await?
        }
        Source::Server(client) => client.dlq_resolve(id, &body).await?,
    };
    print(&args.target, &view, |view| {
        format!("resolved\n{}", render_intent(view))
    })?;
    Ok(ExitCode::SUCCESS)
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
    let connector = page.connector.as_deref();
    let listing = match Source::new(target)? {
        Source::Offline(dir) => OfflineView::load(&dir)?.list(state, connector, cursor, page.limit),
        Source::Server(client) => client.list(state, connector, cursor, page.limit).await?,
    };
    print(target, &listing, render_listing)?;
    Ok(ExitCode::SUCCESS)
}

async fn show(args: &IdArgs, expect: Option<StateName>) -> anyhow::Result<ExitCode> {
    let id = parse_id(&args.id)?;
    let view: IntentView = match Source::new(&args.target)? {
        Source::Offline(dir) => OfflineView::load(&dir)?
            .show(id)
            .ok_or_else(|| anyhow!("intent {id} is not in the log (history evicted by compaction is only in the index: use --server)"))?,
        Source::Server(client) => client.get_intent(id).await?,
    };
    if let Some(expect) = expect {
        if view.state != expect.as_str() {
            bail!("intent {id} is {}, not {}", view.state, expect.as_str());
        }
    }
    print(&args.target, &view, render_intent)?;
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

/// Prints `value` as one line of JSON with `--json`, else as `render` draws it.
fn print<T: Serialize>(
    target: &Target,
    value: &T,
    render: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if target.json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        print!("{}", render(value));
    }
    Ok(())
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
