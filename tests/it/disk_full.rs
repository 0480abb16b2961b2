//! Issue 6: the data disk fills up under `intentctl serve` (a real size-limited tmpfs, so
//! the log's write really fails with ENOSPC). The server keeps answering, refuses new
//! intents with 503 `log_unavailable`, reports degraded on `/healthz`, loses nothing
//! acknowledged, and accepts intents again once space returns. Needs root to mount (CI
//! runs as root).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::intentctl;

/// Size of the tmpfs holding the data directory.
const TMPFS_SIZE: &str = "size=4m";
/// Intents acknowledged before the disk fills.
const INTENTS_BEFORE_FILL: usize = 10;
/// Most submits tried after the fill before the refusal must have come.
const SUBMITS_DURING_FILL_MAX: usize = 200;
/// Bounds of each waiting phase.
const REFUSAL_WAIT_MS_MAX: u64 = 10_000;
const RECOVERY_WAIT_MS_MAX: u64 = 15_000;
const SETTLE_WAIT_MS_MAX: u64 = 15_000;
/// ENOSPC on Linux.
const ENOSPC: i32 = 28;

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a size-limited tmpfs failed ({status}): this test needs root (CI runs as root)"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    line.trim().to_string()
}

fn bet(key: &str) -> Value {
    json!({
        "connector": "purple_flea",
        "operation": "bet",
        "params": {"game": "dice", "amount": "1.00", "target": 50, "prediction": "over"},
        "idempotency_key": key,
    })
}

async fn submit(client: &reqwest::Client, base: &str, key: &str) -> (u16, Value) {
    let response = client
        .post(format!("{base}/v1/intents"))
        .json(&bet(key))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Writes zeros into `path` until the file system is full; returns the error that stopped it.
fn fill(path: &Path) -> std::io::Error {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if let Err(error) = file.write_all(&chunk).and_then(|()| file.sync_all()) {
            return error;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_with_503_keeps_acknowledged_intents_and_recovers() {
    // Built (or found) first: the time bound is for the scenario, not for cargo.
    let binary = intentctl();
    let started = Instant::now();
    let tmpfs = Tmpfs::mount();
    let data: PathBuf = tmpfs.path().join("data");
    let logs = tempfile::tempdir().unwrap();
    let stderr_path = logs.path().join("serve.stderr");

    let mut sim = Command::new(binary)
        .args(["sim", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addresses: Value = serde_json::from_str(&first_line(&mut sim)).unwrap();
    let _sim = Running(sim);
    let purple_flea = addresses["purple_flea"].as_str().unwrap().to_string();
    let aeeron = addresses["aeeron"].as_str().unwrap().to_string();

    let mut serve = Command::new(binary)
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--purple-flea", &purple_flea])
        .args(["--aeeron", &aeeron])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let line = first_line(&mut serve);
    let _serve = Running(serve);
    let base = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("serve did not start: {line:?}"))
        .to_string();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Acknowledged before the disk fills.
    let mut acknowledged = Vec::new();
    for index in 0..INTENTS_BEFORE_FILL {
        let (status, body) = submit(&client, &base, &format!("before-{index}")).await;
        assert_eq!(status, 201, "{body}");
        acknowledged.push(body["id"].as_str().unwrap().to_string());
    }

    // Fill the tmpfs: the next log write fails with ENOSPC.
    let filler = tmpfs.path().join("filler");
    let error = fill(&filler);
    assert_eq!(
        error.raw_os_error(),
        Some(ENOSPC),
        "the fill stopped on {error}"
    );

    // Submits are refused with a clear 503 (a few may still fit in the last page).
    let deadline = Instant::now() + Duration::from_millis(REFUSAL_WAIT_MS_MAX);
    let mut refusal = None;
    for index in 0..SUBMITS_DURING_FILL_MAX {
        let (status, body) = submit(&client, &base, &format!("during-{index}")).await;
        match status {
            201 => acknowledged.push(body["id"].as_str().unwrap().to_string()),
            503 => {
                refusal = Some(body);
                break;
            }
            other => panic!("submit on a full disk answered {other}: {body}"),
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let refusal = refusal.expect("a full disk never refused a submit");
    assert_eq!(refusal["error"], "log_unavailable", "{refusal}");
    let message = refusal["message"].as_str().unwrap();
    assert!(message.contains("disk full?"), "{message}");
    assert!(message.contains("no intent is accepted"), "{message}");

    // Still answering: /healthz is degraded, reads come from memory.
    let (status, health) = get_json(&client, &format!("{base}/healthz")).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["log"], "poisoned", "{health}");
    for id in &acknowledged {
        let (status, body) = get_json(&client, &format!("{base}/v1/intents/{id}")).await;
        assert_eq!(status, 200, "{id} unknown while the disk is full: {body}");
    }
    let (status, again) = submit(&client, &base, "during-again").await;
    assert_eq!(status, 503, "{again}");

    // Space returns: intents are accepted again within a bounded time.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_millis(RECOVERY_WAIT_MS_MAX);
    let mut attempt = 0;
    loop {
        let (status, body) = submit(&client, &base, &format!("after-{attempt}")).await;
        if status == 201 {
            acknowledged.push(body["id"].as_str().unwrap().to_string());
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "not accepting intents {RECOVERY_WAIT_MS_MAX} ms after space returned"
        );
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, health) = get_json(&client, &format!("{base}/healthz")).await;
    assert_eq!(status, 200, "{health}");

    // Nothing acknowledged is lost, and everything settles.
    let deadline = Instant::now() + Duration::from_millis(SETTLE_WAIT_MS_MAX);
    for id in &acknowledged {
        loop {
            let (status, body) = get_json(
                &client,
                &format!("{base}/v1/intents/{id}/wait?timeout=2000"),
            )
            .await;
            assert_eq!(status, 200, "{id} lost after recovery: {body}");
            let state = body["state"].as_str().unwrap().to_string();
            if ["succeeded", "reconciled"].contains(&state.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "{id} did not settle: {body}");
        }
    }
    let (_, audit) = get_json(&client, &format!("{purple_flea}/_sim/audit")).await;
    assert_eq!(audit["duplicates"], 0, "{audit}");

    // The log says what happened.
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(stderr.contains("poisoned"), "{stderr}");
    assert!(stderr.contains("recovered"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the scenario took {:?}",
        started.elapsed()
    );
}

/// Finished bets served and settled before the restart.
const HISTORY_INTENTS: usize = 5;
/// Most bets settled in-process to make the log rotate.
const ROTATE_BETS_MAX: usize = 40;
/// Bound on an `intentctl serve` that must fail to start.
const FAILED_START_WAIT_MS_MAX: u64 = 20_000;

/// Starts `intentctl serve` on `data`; returns the child and the base URL, or the child if
/// it did not print its address (it failed to start).
fn start_serve(
    binary: &Path,
    data: &Path,
    purple_flea: &str,
    aeeron: &str,
    stderr: &Path,
) -> (Running, Option<String>) {
    let mut serve = Command::new(binary)
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--purple-flea", purple_flea])
        .args(["--aeeron", aeeron])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap();
    let line = first_line(&mut serve);
    let base = line.strip_prefix("listening ").map(str::to_string);
    (Running(serve), base)
}

/// Every file under `dir` with its size, sorted, leaving out sled's `*.generating`
/// snapshot scratch files (sled may start one before the disk refuses it).
fn index_listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "generating") {
                continue;
            }
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            let size = if metadata.is_dir() {
                pending.push(path.clone());
                0
            } else {
                metadata.len()
            };
            files.push((path.strip_prefix(dir).unwrap().to_path_buf(), size));
        }
    }
    files.sort();
    files
}

/// Opens the engine on `data` in this process with a 1 ms key retention and small segments,
/// settles one more bet (so the log rotates past the old records) and compacts: the
/// finished bets leave the log and live on only in the index, as after a real
/// compaction past the key-retention window.
async fn compact_history_into_the_index(data: &Path, purple_flea: &str) -> scheduler::IntentId {
    let mut config = scheduler::EngineConfig::new(data);
    // Retention may not be shorter than the key lifetime: both a millisecond here (this
    // engine never re-sends), so compaction evicts every finished bet.
    config.key_retention_ms = 1;
    // Small enough that the bets the server logged already fill the active segment.
    config.log.record_bytes_max = 1024;
    config.log.batch_bytes_max = 2 * 1024;
    config.log.segment_bytes = 4 * 1024;
    let connector =
        connectors::PurpleFleaConnector::new(connectors::HttpConnectorConfig::new(purple_flea))
            .unwrap();
    let mut settings = scheduler::ConnectorSettings::new(std::sync::Arc::new(connector));
    settings.key_lifetime = Some(Duration::from_millis(1));
    let (engine, _) = scheduler::Engine::open(config, vec![settings])
        .await
        .unwrap();
    // Settled bets until the log has rotated past the server's records.
    let mut last = None;
    for number in 0..ROTATE_BETS_MAX {
        if engine.log_stats().segments >= 2 {
            break;
        }
        let key = format!("rotate-{number}");
        let submitted = engine
            .submit(scheduler::SubmitRequest {
                connector: "purple_flea".into(),
                operation: "bet".into(),
                params: bet(&key)["params"].clone(),
                idempotency_key: Some(key),
            })
            .await
            .unwrap();
        let id = submitted.intent.spec.id;
        let settled = engine.wait(id, Duration::from_secs(10)).await.unwrap();
        assert_eq!(
            settled.state.name(),
            scheduler::StateName::Succeeded,
            "{settled:?}"
        );
        last = Some(id);
    }
    assert!(engine.log_stats().segments >= 2, "the log never rotated");
    let id = last.expect("at least one bet settled in this process");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = engine.compact().await.unwrap();
    assert!(
        report.deleted_segments >= 1,
        "compaction deleted no segment: {report:?}"
    );
    assert!(
        report.evicted >= 1,
        "compaction evicted nothing: {report:?}"
    );
    engine.shutdown().await;
    id
}

/// Issue 9, defect 4: `intentctl serve` restarted on a full disk used to class sled's
/// ENOSPC as "unreadable" and delete the index, the only copy of the history compaction
/// had removed from the log. Now the start fails with the cause, the index is untouched,
/// and once space returns the history is served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_a_full_disk_keeps_the_index_and_its_history() {
    let binary = intentctl();
    let started = Instant::now();
    let tmpfs = Tmpfs::mount();
    let data: PathBuf = tmpfs.path().join("data");
    let index = data.join("index");
    let logs = tempfile::tempdir().unwrap();
    let mut sim = Command::new(binary)
        .args(["sim", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addresses: Value = serde_json::from_str(&first_line(&mut sim)).unwrap();
    let _sim = Running(sim);
    let purple_flea = addresses["purple_flea"].as_str().unwrap().to_string();
    let aeeron = addresses["aeeron"].as_str().unwrap().to_string();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Bets are served and settle; then the server dies.
    let first_stderr = logs.path().join("first.stderr");
    let (serve, base) = start_serve(binary, &data, &purple_flea, &aeeron, &first_stderr);
    let base = base.unwrap_or_else(|| panic!("serve did not start: {first_stderr:?}"));
    let mut history = Vec::new();
    for number in 0..HISTORY_INTENTS {
        let (status, body) = submit(&client, &base, &format!("history-{number}")).await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let (status, body) = get_json(
            &client,
            &format!("{base}/v1/intents/{id}/wait?timeout=5000"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "succeeded", "{body}");
        history.push(id);
    }
    drop(serve);

    // Compaction moves that history out of the log: only the index has it now.
    let rotate = compact_history_into_the_index(&data, &purple_flea).await;
    let mut memory_only = scheduler::EngineConfig::new(&data);
    memory_only.index = false;
    let (engine, _) = scheduler::Engine::open(memory_only, vec![]).await.unwrap();
    for id in &history {
        let id = scheduler::IntentId::parse(id).unwrap();
        assert!(engine.get(id).is_none(), "{id} is still in the log");
    }
    engine.shutdown().await;
    let before = index_listing(&index);
    assert!(!before.is_empty());

    // The disk is full: the restart fails, naming the index and the cause.
    let filler = tmpfs.path().join("filler");
    let error = fill(&filler);
    assert_eq!(
        error.raw_os_error(),
        Some(ENOSPC),
        "the fill stopped on {error}"
    );
    let full_stderr = logs.path().join("full.stderr");
    let (mut serve, base) = start_serve(binary, &data, &purple_flea, &aeeron, &full_stderr);
    assert_eq!(base, None, "serve started on a full disk");
    let deadline = Instant::now() + Duration::from_millis(FAILED_START_WAIT_MS_MAX);
    let status = loop {
        if let Some(status) = serve.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve neither started nor exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status}");
    let stderr = std::fs::read_to_string(&full_stderr).unwrap();
    assert!(stderr.contains("opening the index in"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert_eq!(index_listing(&index), before, "the index was changed");

    // Space returns: the same index serves the history the log no longer has.
    std::fs::remove_file(&filler).unwrap();
    let last_stderr = logs.path().join("last.stderr");
    let (_serve, base) = start_serve(binary, &data, &purple_flea, &aeeron, &last_stderr);
    let base = base.unwrap_or_else(|| {
        panic!(
            "serve did not start: {}",
            std::fs::read_to_string(&last_stderr).unwrap()
        )
    });
    for id in history.iter().cloned().chain([rotate.to_string()]) {
        let (status, body) = get_json(&client, &format!("{base}/v1/intents/{id}")).await;
        assert_eq!(status, 200, "{id} lost with the index: {body}");
        assert_eq!(body["state"], "succeeded", "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the scenario took {:?}",
        started.elapsed()
    );
}
