//! Operator commands as real processes on a stopped engine's data directory: a few intents
//! through the Purple Flea simulator (two bets succeed, two transfers meet a 503 on every
//! attempt and are dead-lettered), then `intentctl inspect`, `intents list|show` and
//! `dlq list|show|resolve|retry`, checking their JSON, tables and exit codes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use connectors::{HttpConnectorConfig, PurpleFleaConnector};
use scheduler::{ConnectorSettings, Engine, EngineConfig, RetryPolicy, StateName, SubmitRequest};
use serde_json::{json, Value};
use simulator::{FaultKind, FaultPlan, FaultRule, PurpleFlea};

use crate::support::{intentctl, run, stdout};

const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
const TOKEN_VARIABLE: &str = "INTENTS_OPERATOR_CLI_TOKEN";
const TOKEN: &str = "operator-cli-test-token";

/// `intentctl serve`, killed (and reaped) when dropped, also on panic.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `intentctl serve` on `data` with a token; returns it and its base URL. Its
/// connectors point at a closed port: nothing in `data` is due to be sent.
fn serve(data: &str) -> (Served, String) {
    let mut child = Command::new(intentctl())
        .args(["serve", "--listen", "127.0.0.1:0", "--data", data])
        .args([
            "--purple-flea",
            "http://127.0.0.1:9",
            "--aeeron",
            "http://127.0.0.1:9",
        ])
        .args(["--token-env", TOKEN_VARIABLE])
        .env(TOKEN_VARIABLE, TOKEN)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let served = Served(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("serve printed {line:?}"))
        .to_string();
    (served, url)
}

/// Runs `intentctl` with the token variable set.
fn run_with_token(args: &[&str]) -> Output {
    Command::new(intentctl())
        .args(args)
        .env(TOKEN_VARIABLE, TOKEN)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// The same reads through a running sidecar (`--server`), and its errors.
fn server_mode(data: &str, resolved: &str, dead: &str) {
    let (served, url) = serve(data);
    let with = |args: &[&str]| -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", &url, "--token-env", TOKEN_VARIABLE, "--json"]);
        let output = run_with_token(&all);
        assert!(output.status.success(), "{all:?}: {output:?}");
        serde_json::from_str(stdout(&output).trim()).unwrap()
    };
    let inspect = with(&["inspect"]);
    assert_eq!(inspect["dlq_depth"], 1, "{inspect}");
    assert_eq!(inspect["counts"]["resolved"], 1, "{inspect}");
    assert_eq!(inspect["counts"]["succeeded"], 2, "{inspect}");
    assert!(inspect["log"]["bytes"].as_u64().unwrap() > 0, "{inspect}");
    let dlq = with(&["dlq", "list"]);
    assert_eq!(dlq["intents"].as_array().unwrap().len(), 1, "{dlq}");
    assert_eq!(dlq["intents"][0]["id"], dead, "{dlq}");
    let succeeded = with(&["intents", "list", "--state", "succeeded"]);
    assert_eq!(
        states(&succeeded),
        ["succeeded", "succeeded"],
        "{succeeded}"
    );
    let shown = with(&["intents", "show", resolved]);
    assert_eq!(shown["note"], "paid by hand", "{shown}");
    // The table form works through the server too.
    let table = run_with_token(&[
        "dlq",
        "list",
        "--server",
        &url,
        "--token-env",
        TOKEN_VARIABLE,
    ]);
    assert!(stdout(&table).contains("retries_exhausted"), "{table:?}");
    // No token: the server's 401 becomes exit 1. A resolved intent cannot be retried.
    let unauthorised = run(&["inspect", "--server", &url]);
    assert_eq!(unauthorised.status.code(), Some(1), "{unauthorised:?}");
    assert!(
        String::from_utf8_lossy(&unauthorised.stderr).contains("401"),
        "{unauthorised:?}"
    );
    let wrong_state = run_with_token(&[
        "dlq",
        "retry",
        resolved,
        "--server",
        &url,
        "--token-env",
        TOKEN_VARIABLE,
    ]);
    assert_eq!(wrong_state.status.code(), Some(1), "{wrong_state:?}");
    drop(served);
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        attempts_max: 2,
        delay_base_ms: 10,
        multiplier: 2.0,
        delay_max_ms: 50,
        jitter: 0.1,
        deadline_ms: 60_000,
    }
}

fn request(operation: &str, params: Value, key: &str) -> SubmitRequest {
    SubmitRequest {
        connector: "purple_flea".to_string(),
        operation: operation.to_string(),
        params,
        idempotency_key: Some(key.to_string()),
    }
}

/// Fills `dir` with two succeeded bets and two dead-lettered transfers; returns the ids of
/// the dead letters. While the engine still runs, checks that offline reads refuse.
async fn fill(dir: &Path) -> Vec<String> {
    let rule = FaultRule::new("POST /wallet/transfer", FaultKind::Unavailable, 1.0);
    let server = PurpleFlea::start(
        "127.0.0.1:0".parse().unwrap(),
        FaultPlan {
            seed: 9,
            rules: vec![rule],
        },
    )
    .await
    .unwrap();
    let mut config = HttpConnectorConfig::new(server.base_url());
    config.request_timeout = Duration::from_millis(400);
    let connector = Arc::new(PurpleFleaConnector::new(config).unwrap());
    let mut settings = ConnectorSettings::new(connector);
    settings.retry = retry_policy();
    let mut engine_config = EngineConfig::new(dir);
    engine_config.seed = Some(7);
    let (engine, _) = Engine::open(engine_config, vec![settings]).await.unwrap();
    let bet = json!({"game":"dice","amount":"1.00","target":50,"prediction":"over"});
    let transfer = json!({"to":"agent-b","amount":"5.00","currency":"USDC"});
    let mut dead = Vec::new();
    for (operation, params, key, expected) in [
        ("bet", &bet, "op-bet-1", StateName::Succeeded),
        (
            "wallet_transfer",
            &transfer,
            "op-tx-1",
            StateName::DeadLettered,
        ),
        ("bet", &bet, "op-bet-2", StateName::Succeeded),
        (
            "wallet_transfer",
            &transfer,
            "op-tx-2",
            StateName::DeadLettered,
        ),
    ] {
        let id = engine
            .submit(request(operation, params.clone(), key))
            .await
            .unwrap()
            .intent
            .spec
            .id;
        let intent = engine.wait(id, SETTLE_TIMEOUT).await.unwrap();
        assert_eq!(intent.state.name(), expected, "{key}: {:?}", intent.state);
        if expected == StateName::DeadLettered {
            dead.push(id.to_string());
        }
    }
    // The engine holds the directory: offline commands say so and fail.
    let locked = run(&["inspect", "--data", dir.to_str().unwrap()]);
    assert_eq!(locked.status.code(), Some(1), "{locked:?}");
    let stderr = String::from_utf8_lossy(&locked.stderr);
    assert!(
        stderr.contains("in use by a running engine") && stderr.contains("--server"),
        "{stderr}"
    );
    engine.shutdown().await;
    server.shutdown().await;
    dead
}

fn json_of(args: &[&str]) -> Value {
    let started = std::time::Instant::now();
    let output = run(args);
    println!("{:?} took {:?}", &args[..2], started.elapsed());
    assert!(output.status.success(), "{args:?}: {output:?}");
    serde_json::from_str(stdout(&output).trim())
        .unwrap_or_else(|error| panic!("{args:?}: not JSON ({error}): {}", stdout(&output)))
}

fn states(listing: &Value) -> Vec<String> {
    listing["intents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|view| view["state"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_on_a_stopped_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let dead = fill(dir.path()).await;
    let data = dir.path().to_str().unwrap();

    let inspect = json_of(&["inspect", "--data", data, "--json"]);
    assert_eq!(inspect["counts"]["succeeded"], 2, "{inspect}");
    assert_eq!(inspect["counts"]["dead_lettered"], 2, "{inspect}");
    assert_eq!(inspect["dlq_depth"], 2, "{inspect}");
    assert_eq!(inspect["total"], 4, "{inspect}");
    assert_eq!(inspect["oldest_waiting"], Value::Null, "{inspect}");
    assert!(inspect["log"]["bytes"].as_u64().unwrap() > 0, "{inspect}");
    assert!(
        inspect["log"]["records"].as_u64().unwrap() >= 4,
        "{inspect}"
    );

    let table = run(&["inspect", "--data", data]);
    assert!(table.status.success(), "{table:?}");
    let text = stdout(&table);
    println!("$ intentctl inspect --data DIR\n{text}");
    assert!(text.contains("dlq depth       2"), "{text}");
    assert!(text.contains("dead_lettered     2"), "{text}");

    let all = json_of(&["intents", "list", "--data", data, "--json"]);
    assert_eq!(
        states(&all),
        ["succeeded", "dead_lettered", "succeeded", "dead_lettered"],
        "{all}"
    );
    let page = json_of(&["intents", "list", "--data", data, "--json", "--limit", "3"]);
    assert_eq!(states(&page).len(), 3, "{page}");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = json_of(&[
        "intents", "list", "--data", data, "--json", "--cursor", cursor,
    ]);
    assert_eq!(states(&rest), ["dead_lettered"], "{rest}");

    let dlq = json_of(&["dlq", "list", "--data", data, "--json"]);
    let dlq_ids: Vec<&str> = dlq["intents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|view| view["id"].as_str().unwrap())
        .collect();
    assert_eq!(dlq_ids, dead, "{dlq}");
    assert_eq!(
        dlq["intents"][0]["reason"]["code"], "retries_exhausted",
        "{dlq}"
    );
    assert_eq!(
        dlq["intents"][0]["last_error"]["code"], "unavailable",
        "{dlq}"
    );

    let dlq_table = stdout(&run(&["dlq", "list", "--data", data]));
    println!("$ intentctl dlq list --data DIR\n{dlq_table}");
    assert!(dlq_table.starts_with("ID "), "{dlq_table}");
    assert!(dlq_table.contains("retries_exhausted"), "{dlq_table}");
    assert!(dlq_table.contains("2 intent(s)"), "{dlq_table}");

    let show = json_of(&["dlq", "show", "--data", data, "--json", &dead[0]]);
    assert_eq!(show["idempotency_key"], "op-tx-1", "{show}");
    // `dlq show` of an intent that is not a dead letter fails.
    let succeeded = all["intents"][0]["id"].as_str().unwrap();
    let not_dead = run(&["dlq", "show", "--data", data, succeeded]);
    assert_eq!(not_dead.status.code(), Some(1), "{not_dead:?}");

    let resolved = json_of(&[
        "dlq",
        "resolve",
        "--data",
        data,
        "--json",
        &dead[0],
        "--note",
        "paid by hand",
        "--evidence",
        "tx_123",
    ]);
    assert_eq!(resolved["state"], "resolved", "{resolved}");
    assert_eq!(resolved["note"], "paid by hand", "{resolved}");
    assert_eq!(resolved["evidence"], "tx_123", "{resolved}");
    // Resolving it twice is refused (it is no longer a dead letter).
    let again = run(&[
        "dlq", "resolve", "--data", data, &dead[0], "--note", "again",
    ]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");

    server_mode(data, &dead[0], &dead[1]);

    let retried = json_of(&["dlq", "retry", "--data", data, "--json", &dead[1]]);
    assert_eq!(retried["state"], "ambiguous", "{retried}");

    // The actions are in the log: a fresh read sees them.
    let after = json_of(&["inspect", "--data", data, "--json"]);
    assert_eq!(after["dlq_depth"], 0, "{after}");
    assert_eq!(after["counts"]["resolved"], 1, "{after}");
    assert_eq!(after["counts"]["ambiguous"], 1, "{after}");
    assert_eq!(after["oldest_waiting"]["id"], dead[1].as_str(), "{after}");

    let shown = stdout(&run(&["intents", "show", "--data", data, &dead[0]]));
    println!("$ intentctl intents show --data DIR {}\n{shown}", dead[0]);
    assert!(shown.contains("note             paid by hand"), "{shown}");

    // Bad input: exit 1 or clap's 2, never a panic.
    for (args, code) in [
        (vec!["intents", "show", "--data", data, "not-a-uuid"], 1),
        (
            vec!["intents", "list", "--data", data, "--state", "nope"],
            1,
        ),
        (vec!["inspect"], 2),
        (vec!["inspect", "--data", "/nonexistent/intents-data"], 1),
    ] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {output:?}");
    }
}
