//! Finished intents leave memory for the index (issue 11) and their keys stay
//! deduplicated (G4) inside the retention window: right after they left, after a
//! compaction, after a restart, after a restart with the index deleted (re-folded from
//! the log), and after a crash at every step of a compaction; and they stay visible to
//! get, get_by_key and list.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use intent_log::sim_fs::SimFileSystem;
use serde_json::json;

use super::sim_provider::SimProvider;
use crate::index::INDEX_DIR;
use crate::{
    ConnectorSettings, Engine, EngineConfig, Error, IntentId, ListFilter, StateName, SubmitRequest,
};

const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &Path, fs: Option<&SimFileSystem>) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    // Every finished intent is a batch of its own: it leaves memory at the next turn.
    config.retire_batch = 1;
    config.seed = Some(11);
    config.fs = fs.map(|fs| Arc::new(fs.clone()) as Arc<dyn intent_log::FileSystem>);
    config
}

async fn open(
    dir: &Path,
    fs: Option<&SimFileSystem>,
) -> crate::Result<(Engine, crate::OpenReport)> {
    let settings = ConnectorSettings::new(Arc::new(SimProvider::new(11, 0)));
    Engine::open(config(dir, fs), vec![settings]).await
}

fn request(number: usize, amount: &str) -> SubmitRequest {
    SubmitRequest {
        connector: "sim".into(),
        operation: "pay".into(),
        params: json!({"amount": amount, "n": number}),
        idempotency_key: Some(format!("key-{number}")),
    }
}

/// Submits intents `numbers` and waits until each succeeded; returns their ids.
async fn run(engine: &Engine, numbers: std::ops::Range<usize>) -> Vec<(usize, IntentId)> {
    let mut done = Vec::new();
    for number in numbers {
        let submitted = engine.submit(request(number, "1.00")).await.unwrap();
        assert!(submitted.created);
        let intent = engine.wait(submitted.intent.spec.id, WAIT).await.unwrap();
        assert_eq!(intent.state.name(), StateName::Succeeded, "{intent:?}");
        done.push((number, intent.spec.id));
    }
    done
}

fn in_memory(engine: &Engine) -> usize {
    engine.intents_in_memory()
}

/// `counts` still counts every finished intent inside the window, in memory or not.
fn succeeded(engine: &Engine) -> usize {
    let counts = engine.counts();
    assert_eq!(counts.len(), 1, "{counts:?}");
    counts.get(&StateName::Succeeded).copied().unwrap_or(0)
}

/// Every key of `done` is deduplicated: the same payload returns the same finished
/// intent (created = false), another payload is a conflict; get, get_by_key and list
/// find each one.
async fn check_deduplicated(engine: &Engine, done: &[(usize, IntentId)], when: &str) {
    let listed: Vec<IntentId> = engine
        .list(&ListFilter::default())
        .iter()
        .map(|intent| intent.spec.id)
        .collect();
    for &(number, id) in done {
        let again = engine.submit(request(number, "1.00")).await.unwrap();
        assert!(!again.created, "{when}: key-{number} made a second intent");
        assert_eq!(again.intent.spec.id, id, "{when}: key-{number}");
        assert_eq!(again.intent.state.name(), StateName::Succeeded, "{when}");
        match engine.submit(request(number, "2.00")).await {
            Err(Error::IdempotencyConflict { existing, .. }) => assert_eq!(existing, id),
            other => panic!("{when}: key-{number} with another payload: {other:?}"),
        }
        assert_eq!(engine.get(id).map(|i| i.spec.id), Some(id), "{when}: get");
        let by_key = engine.get_by_key("sim", &format!("key-{number}"));
        assert_eq!(by_key.map(|i| i.spec.id), Some(id), "{when}: get_by_key");
        assert!(listed.contains(&id), "{when}: list misses key-{number}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_intents_leave_memory_and_their_keys_stay_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), None).await.unwrap();
    let mut done = run(&engine, 0..6).await;
    engine.retire_finished().await.unwrap();
    assert_eq!(in_memory(&engine), 0, "finished intents left memory");
    assert_eq!(succeeded(&engine), 6);
    check_deduplicated(&engine, &done, "retired").await;

    let report = engine.compact().await.unwrap();
    assert_eq!((report.kept, report.evicted), (6, 0), "{report:?}");
    done.extend(run(&engine, 6..9).await);
    engine.retire_finished().await.unwrap();
    done.extend(run(&engine, 9..10).await);
    // Three retired since the checkpoint, one finished still in memory, six copied from
    // the previous checkpoint.
    let report = engine.compact().await.unwrap();
    assert_eq!(report.kept, 10, "{report:?}");
    assert!(report.retired <= 1, "{report:?}");
    assert_eq!(in_memory(&engine), 0);
    assert_eq!(succeeded(&engine), 10);
    check_deduplicated(&engine, &done, "after compaction").await;
    engine.shutdown().await;

    let (engine, opened) = open(dir.path(), None).await.unwrap();
    assert_eq!(
        opened.intents, 0,
        "the checkpoint's finished intents stay out of memory"
    );
    check_deduplicated(&engine, &done, "after a restart").await;
    engine.shutdown().await;

    std::fs::remove_dir_all(dir.path().join(INDEX_DIR)).unwrap();
    let (engine, opened) = open(dir.path(), None).await.unwrap();
    assert_eq!(opened.index_refolded, 10, "re-folded from the checkpoint");
    check_deduplicated(&engine, &done, "after a restart without the index").await;
    engine.shutdown().await;
}

/// Retired intents not yet in a checkpoint are re-folded from the log's segments when the
/// index is lost with the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_intents_come_back_from_the_log_when_the_index_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), None).await.unwrap();
    let done = run(&engine, 0..4).await;
    engine.retire_finished().await.unwrap();
    assert_eq!(in_memory(&engine), 0);
    engine.kill();
    std::fs::remove_dir_all(dir.path().join(INDEX_DIR)).unwrap();
    let (engine, opened) = open(dir.path(), None).await.unwrap();
    assert_eq!(opened.intents, 4, "folded back into memory from the log");
    check_deduplicated(&engine, &done, "after a kill without the index").await;
    engine.shutdown().await;
}

/// Opens after a simulated crash, retrying when the crash point is reached again.
async fn reopen(dir: &Path, fs: &SimFileSystem) -> Engine {
    for _ in 0..5 {
        match open(dir, Some(fs)).await {
            Ok((engine, _)) => return engine,
            Err(error) => {
                assert!(fs.is_dead(), "open failed without a crash: {error}");
                fs.crash();
            }
        }
    }
    panic!("could not reopen");
}

/// A crash (power cut: unsynced bytes torn or lost) at every step of a compaction that
/// copies retired intents from the index and finished ones from the previous checkpoint;
/// half the time the index is lost too. Every key stays deduplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_step_of_compaction_keeps_every_key() {
    for crash_after in 0..24u64 {
        let dir = tempfile::tempdir().unwrap();
        let fs = SimFileSystem::new(crash_after);
        let (engine, _) = open(dir.path(), Some(&fs)).await.unwrap();
        let mut done = run(&engine, 0..4).await;
        engine.retire_finished().await.unwrap();
        engine.compact().await.unwrap();
        done.extend(run(&engine, 4..7).await);
        engine.retire_finished().await.unwrap();
        done.extend(run(&engine, 7..8).await);
        fs.crash_after_ops(crash_after);
        let compacted = engine.compact().await;
        assert!(compacted.is_ok() || fs.is_dead(), "{compacted:?}");
        engine.kill();
        fs.crash();
        if crash_after % 2 == 1 {
            std::fs::remove_dir_all(dir.path().join(INDEX_DIR)).unwrap();
        }
        let engine = reopen(dir.path(), &fs).await;
        check_deduplicated(&engine, &done, &format!("crash after {crash_after} ops")).await;
        // And once more after a compaction on the recovered log.
        engine.retire_finished().await.unwrap();
        engine.compact().await.unwrap();
        check_deduplicated(
            &engine,
            &done,
            &format!("crash after {crash_after}, compacted"),
        )
        .await;
        engine.shutdown().await;
    }
}
