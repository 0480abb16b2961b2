//! The sidecar API as a client sees it: `intentctl sim` and `intentctl serve` as real
//! processes, `examples/agent.py` run against them, and bad requests that must each get
//! their documented 4xx (per `GET /openapi.json`) with a JSON error, never a 500.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support;

/// How long a child may take to print its address.
const CHILD_START_MS: u64 = 20_000;
/// The sidecar's body cap (crates/intentctl/src/api/routes.rs `REQUEST_BODY_BYTES_MAX`).
const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
const TOKEN_VARIABLE: &str = "SIDECAR_API_TEST_TOKEN";
const TOKEN: &str = "sidecar-api-test-token";

/// (what, path, content type, body, token, expected status, expected error code)
type BadRequest<'a> = (
    &'a str,
    &'a str,
    &'a str,
    String,
    Option<&'a str>,
    u16,
    &'a str,
);

/// Child processes killed (and reaped) when the test ends, also on panic.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `command` with stdout piped, keeps it in `children`, returns its first `lines` lines.
fn start(children: &mut Children, mut command: Command, lines: usize) -> Vec<String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("RUST_BACKTRACE", "0")
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    children.0.push(child);
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (0..lines)
        .map(|_| {
            receiver
                .recv_timeout(Duration::from_millis(CHILD_START_MS))
                .expect("child printed its address")
        })
        .collect()
}

fn url_after(line: &str, prefix: &str) -> String {
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
        .trim()
        .to_string()
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_example_and_bad_requests_against_real_processes() {
    let directory = tempfile::tempdir().unwrap();
    let mut children = Children(Vec::new());
    let mut sim = Command::new(support::intentctl());
    sim.arg("sim");
    let sim_lines = start(&mut children, sim, 2);
    let purple_flea = url_after(&sim_lines[0], "purple_flea ");
    let aeeron = url_after(&sim_lines[1], "aeeron ");
    let mut serve = Command::new(support::intentctl());
    serve
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token-env",
            TOKEN_VARIABLE,
        ])
        .arg("--data")
        .arg(directory.path().join("data"))
        .args(["--purple-flea", &purple_flea, "--aeeron", &aeeron])
        .env(TOKEN_VARIABLE, TOKEN);
    let server = url_after(&start(&mut children, serve, 1)[0], "listening ");

    // The example agent, as a user would run it.
    let agent = tokio::task::spawn_blocking({
        let (server, aeeron) = (server.clone(), aeeron.clone());
        move || {
            Command::new("python3")
                .arg(repository_root().join("examples/agent.py"))
                .args(["--server", &server, "--aeeron", &aeeron])
                .args(["--token-env", TOKEN_VARIABLE])
                .env(TOKEN_VARIABLE, TOKEN)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let agent_stdout = String::from_utf8_lossy(&agent.stdout);
    assert!(
        agent.status.success(),
        "agent.py exit {:?}\nstdout: {agent_stdout}\nstderr: {}",
        agent.status,
        String::from_utf8_lossy(&agent.stderr)
    );
    let summary: Value = serde_json::from_str(&agent_stdout).unwrap();
    assert_eq!(summary["bet"]["state"], "succeeded", "{summary}");
    assert_eq!(summary["aeeron"]["state"], "succeeded", "{summary}");
    assert_eq!(summary["aeeron"]["paid"], "16.80", "{summary}");

    // The document is public and describes every status checked below.
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{server}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.0.3");
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let bet = |key: &str, connector: &str| {
        json!({"connector": connector, "operation": "bet", "idempotency_key": key,
               "params": {"game": "dice", "amount": "1.00", "target": 50, "prediction": "over"}})
        .to_string()
    };
    let oversized = format!(
        "{{\"connector\":\"{}\"}}",
        "x".repeat(REQUEST_BODY_BYTES_MAX + 1)
    );
    let long_key = "k".repeat(65);
    // (what, path, content type, body, token, expected status, expected error code)
    let cases: Vec<BadRequest> = vec![
        (
            "malformed JSON",
            "/v1/intents",
            "application/json",
            "{\"connector\":".to_string(),
            Some(TOKEN),
            400,
            "malformed_json",
        ),
        (
            "oversized body",
            "/v1/intents",
            "application/json",
            oversized,
            Some(TOKEN),
            413,
            "invalid_body",
        ),
        (
            "wrong content type, form body",
            "/v1/intents",
            "application/x-www-form-urlencoded",
            "connector=purple_flea&operation=bet".to_string(),
            Some(TOKEN),
            400,
            "malformed_json",
        ),
        (
            "unknown connector",
            "/v1/intents",
            "application/json",
            bet("sidecar-api-1", "no_such_connector"),
            Some(TOKEN),
            422,
            "unknown_connector",
        ),
        (
            "key over 64 characters",
            "/v1/intents",
            "application/json",
            bet(&long_key, "purple_flea"),
            Some(TOKEN),
            422,
            "invalid_input",
        ),
        (
            "no token",
            "/v1/intents",
            "application/json",
            bet("sidecar-api-2", "purple_flea"),
            None,
            401,
            "unauthorized",
        ),
        (
            "wrong token",
            "/v1/intents",
            "application/json",
            bet("sidecar-api-3", "purple_flea"),
            Some("not-the-token"),
            401,
            "unauthorized",
        ),
        (
            "payment, malformed JSON",
            "/v1/intents/00000000-0000-0000-0000-000000000000/payment",
            "application/json",
            "[".to_string(),
            Some(TOKEN),
            400,
            "malformed_json",
        ),
        (
            "resolve, wrong token",
            "/v1/dlq/00000000-0000-0000-0000-000000000000/resolve",
            "application/json",
            "{\"note\":\"x\"}".to_string(),
            Some("nope"),
            401,
            "unauthorized",
        ),
    ];
    for (what, path, content_type, body, token, expected, code) in cases {
        let mut request = client
            .post(format!("{server}{path}"))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, expected, "{what}: {text}");
        let error: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: body is not JSON: {text}"));
        assert_eq!(error["error"], code, "{what}: {error}");
        assert!(error["message"].is_string(), "{what}: {error}");
        let documented = document["paths"][path]["post"]["responses"]
            .get(expected.to_string())
            .is_some();
        let openapi_path = path.replace("00000000-0000-0000-0000-000000000000", "{id}");
        let documented = documented
            || document["paths"][&openapi_path]["post"]["responses"]
                .get(expected.to_string())
                .is_some();
        assert!(
            documented,
            "{what}: {expected} not documented for {openapi_path}"
        );
    }

    // Still serving, and nothing above was accepted.
    let health = client
        .get(format!("{server}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let listing: Value = client
        .get(format!("{server}/v1/intents"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let intents = listing["intents"].as_array().unwrap();
    assert_eq!(intents.len(), 2, "only the agent's two intents: {listing}");
    drop(children);
}
