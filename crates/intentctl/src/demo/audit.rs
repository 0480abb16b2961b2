//! The demo's audit: what a restarted engine knows against what was acknowledged, and
//! what the simulators executed (every key at most once).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{json, Value};
use simulator::RunningServer;

use super::agents::Shared;
use super::{DemoArgs, INTENT_DEADLINE_MS};

pub async fn audit(client: &reqwest::Client, server: &RunningServer) -> anyhow::Result<Value> {
    let url = format!("{}/_sim/audit", server.base_url());
    Ok(client.get(&url).send().await?.json::<Value>().await?)
}

/// Every intent the sidecar knows, page by page.
pub async fn all_intents(shared: &Shared) -> anyhow::Result<Vec<Value>> {
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

pub fn print_report(report: &Value) {
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

/// Acknowledged intents the restarted engine does not know.
struct Losses {
    /// Distinct intents acknowledged.
    submitted: usize,
    lost: usize,
    /// The first few lost ids.
    examples: Vec<String>,
}

fn losses(acknowledged: &[(String, String)], intents: &[Value]) -> Losses {
    let known: HashMap<&str, &Value> = intents
        .iter()
        .filter_map(|intent| Some((intent["id"].as_str()?, intent)))
        .collect();
    let mut lost = 0usize;
    let mut examples = Vec::new();
    let mut acknowledged_ids: Vec<&str> = acknowledged.iter().map(|(_, id)| id.as_str()).collect();
    acknowledged_ids.sort_unstable();
    acknowledged_ids.dedup();
    for id in &acknowledged_ids {
        if !known.contains_key(id) {
            lost += 1;
            if examples.len() < 5 {
                examples.push(id.to_string());
            }
        }
    }
    Losses {
        submitted: acknowledged_ids.len(),
        lost,
        examples,
    }
}

/// Intents by state, and failures and dead letters by reason code.
struct Tally {
    by_state: BTreeMap<String, usize>,
    failed_by_reason: BTreeMap<String, usize>,
    dead_by_reason: BTreeMap<String, usize>,
}

fn tally(intents: &[Value]) -> Tally {
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut dead_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for intent in intents {
        let state = intent["state"].as_str().unwrap_or("?").to_string();
        let reason = intent["reason"]["code"].as_str().unwrap_or("?").to_string();
        match state.as_str() {
            "failed" => *failed_by_reason.entry(reason).or_insert(0) += 1,
            "dead_lettered" => *dead_by_reason.entry(reason).or_insert(0) += 1,
            _ => {}
        }
        *by_state.entry(state).or_insert(0) += 1;
    }
    Tally {
        by_state,
        failed_by_reason,
        dead_by_reason,
    }
}

/// Audits the run and returns the report and whether it is healthy (nothing executed
/// twice, nothing acknowledged lost).
pub async fn audit_run(
    args: &DemoArgs,
    shared: &Shared,
    simulators: (&RunningServer, &RunningServer),
    crashes_survived: usize,
    elapsed: Duration,
) -> anyhow::Result<(Value, bool)> {
    let acknowledged = shared
        .acknowledged
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let intents = all_intents(shared).await?;
    let losses = losses(&acknowledged, &intents);
    let tally = tally(&intents);
    let audit_purple_flea = audit(&shared.client, simulators.0).await?;
    let audit_aeeron = audit(&shared.client, simulators.1).await?;
    let duplicates = audit_purple_flea["duplicates"].as_u64().unwrap_or(u64::MAX)
        + audit_aeeron["duplicates"].as_u64().unwrap_or(u64::MAX);
    let count = |name: &str| tally.by_state.get(name).copied().unwrap_or(0);
    let unsettled = count("pending") + count("sent") + count("ambiguous");
    let submitted = losses.submitted;
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
        "failed": tally.failed_by_reason,
        "dead_lettered": tally.dead_by_reason,
        "payments_attached": shared.payments_attached.load(Ordering::Relaxed),
        "agent_jobs_given_up": shared.gave_up.load(Ordering::Relaxed),
        "executed_twice": duplicates,
        "lost": losses.lost,
        "lost_examples": losses.examples,
        "crashes_survived": crashes_survived,
        "elapsed_ms": elapsed.as_millis() as u64,
        "throughput_intents_per_s": (submitted as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "simulators": {
            "purple_flea": {"total_keys": audit_purple_flea["total_keys"], "total_executions": audit_purple_flea["total_executions"], "duplicates": audit_purple_flea["duplicates"]},
            "aeeron": {"total_keys": audit_aeeron["total_keys"], "total_executions": audit_aeeron["total_executions"], "duplicates": audit_aeeron["duplicates"]},
        },
    });
    Ok((report, duplicates == 0 && losses.lost == 0))
}
