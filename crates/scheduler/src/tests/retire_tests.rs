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
/// copies retired intents from the spool and finished ones from the previous checkpoint;
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

/// A new key is answered from memory (the filter of retired keys says "absent"); a
/// retired key is looked up in the index (the filter never says "absent" for it), after
/// retirement, after a compaction rebuilt the filter, and after a restart rebuilt it from
/// the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_keys_that_may_be_retired_are_looked_up_in_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), None).await.unwrap();
    let mut done = run(&engine, 0..8).await;
    // In memory still: no lookup.
    assert_eq!(engine.index_key_lookups(), 0);
    engine.retire_finished().await.unwrap();
    assert_eq!(in_memory(&engine), 0);
    check_deduplicated(&engine, &done, "retired").await;
    // Each retired key was submitted twice (same payload, another payload): each looked up.
    assert_eq!(engine.index_key_lookups(), 16);
    let fresh = run(&engine, 100..140).await;
    let false_positives = engine.index_key_lookups() - 16;
    assert!(
        false_positives <= 2,
        "{false_positives} of 40 new keys were looked up"
    );
    done.extend(fresh);
    engine.retire_finished().await.unwrap();
    engine.compact().await.unwrap();
    let before = engine.index_key_lookups();
    check_deduplicated(&engine, &done, "after compaction rebuilt the filter").await;
    assert_eq!(engine.index_key_lookups() - before, 2 * done.len() as u64);
    engine.shutdown().await;

    let (engine, _) = open(dir.path(), None).await.unwrap();
    assert_eq!(engine.index_key_lookups(), 0);
    check_deduplicated(&engine, &done, "after a restart rebuilt the filter").await;
    assert_eq!(engine.index_key_lookups(), 2 * done.len() as u64);
    let before = engine.index_key_lookups();
    run(&engine, 200..240).await;
    let false_positives = engine.index_key_lookups() - before;
    assert!(
        false_positives <= 2,
        "{false_positives} of 40 new keys were looked up"
    );
    engine.shutdown().await;
}

/// Keys past the retention window leave the filter when compaction rebuilds it: they are
/// new again (as the index lookup said already), and no longer cost a lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_drops_expired_keys_from_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), None);
    config.key_retention_ms = 1;
    let mut settings = ConnectorSettings::new(Arc::new(SimProvider::new(11, 0)));
    settings.key_lifetime = Some(Duration::from_millis(1));
    let (engine, _) = Engine::open(config, vec![settings]).await.unwrap();
    run(&engine, 0..5).await;
    engine.retire_finished().await.unwrap();
    assert_eq!(in_memory(&engine), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Expired but still in the filter: looked up, found expired, made anew.
    let again = engine.submit(request(0, "1.00")).await.unwrap();
    assert!(again.created, "an expired key makes a new intent");
    assert_eq!(engine.index_key_lookups(), 1);
    engine.wait(again.intent.spec.id, WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = engine.compact().await.unwrap();
    assert_eq!(report.kept, 0, "{report:?}");
    for number in 1..5 {
        let again = engine.submit(request(number, "1.00")).await.unwrap();
        assert!(again.created, "key-{number} expired");
    }
    assert_eq!(
        engine.index_key_lookups(),
        1,
        "the rebuilt filter no longer holds expired keys"
    );
    engine.shutdown().await;
}

/// The names of the log's segment files.
fn segment_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wal"))
        .collect()
}

/// The spool file of the intents retired since the last checkpoint.
fn spool_file(dir: &Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir.join("spool"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// A damaged or missing retired spool does not stop compaction: the retired intents are
/// read from the index instead (each checked against the digest memory took), the
/// checkpoint holds them, the spool starts over, and every key stays deduplicated, also
/// after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_lost_spool_is_replaced_by_the_index_and_loses_nothing() {
    for damage in ["flip", "delete"] {
        let dir = tempfile::tempdir().unwrap();
        let (engine, _) = open(dir.path(), None).await.unwrap();
        let mut done = run(&engine, 0..4).await;
        engine.retire_finished().await.unwrap();
        let path = spool_file(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        match damage {
            "flip" => {
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x20;
                std::fs::write(&path, &bytes).unwrap();
            }
            _ => std::fs::remove_file(&path).unwrap(),
        }
        let segments = segment_files(dir.path());
        assert!(!segments.is_empty());
        let report = engine.compact().await.unwrap();
        assert_eq!(report.kept, 4, "{damage}: {report:?}");
        assert!(report.deleted_segments > 0, "{damage}: {report:?}");
        assert!(engine.compaction_status().checkpoint_lsn.is_some());
        check_deduplicated(&engine, &done, damage).await;
        // The spool started over: retirement and compaction go on.
        done.extend(run(&engine, 10..12).await);
        assert_eq!(engine.retire_finished().await.unwrap(), 2);
        let report = engine.compact().await.unwrap();
        assert_eq!(report.kept, 6, "{damage}: {report:?}");
        engine.shutdown().await;

        let (engine, opened) = open(dir.path(), None).await.unwrap();
        assert_eq!(opened.intents, 0, "{damage}: all in the checkpoint");
        check_deduplicated(&engine, &done, damage).await;
        engine.shutdown().await;
    }
}

/// A failed write to the spool stops retirement (the intents stay in memory) but keeps
/// the entries written before it: the next compaction copies them and the intents in
/// memory into its checkpoint, the spool starts over, and retirement resumes. (Switching
/// to a new file at the failure orphaned the earlier entries: every later compaction
/// failed until a restart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_spool_write_waits_for_the_next_checkpoint_and_loses_nothing() {
    use intent_log::sim_fs::{SimError, SimFault, SimOp};
    let dir = tempfile::tempdir().unwrap();
    let fs = SimFileSystem::new(3);
    let (engine, _) = open(dir.path(), Some(&fs)).await.unwrap();
    let mut done = run(&engine, 0..3).await;
    assert_eq!(engine.retire_finished().await.unwrap(), 3);
    done.extend(run(&engine, 3..5).await);
    // The engine is idle: the next write is the spool's, in the next retirement.
    fs.inject(SimFault {
        op: SimOp::Write,
        skip: 0,
        error: SimError::Eio,
        repeat: false,
    });
    let failed = engine
        .retire_finished()
        .await
        .expect_err("the spool write fails");
    assert_eq!(fs.faults_fired(), 1, "the fault fired");
    assert!(failed.to_string().contains("spool"), "{failed}");
    assert_eq!(in_memory(&engine), 2, "the two stay in memory");
    // Broken: retirement waits (nothing leaves memory) and asks for a compaction now.
    assert_eq!(engine.retire_finished().await.unwrap(), 0);
    assert_eq!(in_memory(&engine), 2);
    check_deduplicated(&engine, &done, "after the failed write").await;

    // The driver starts that compaction by itself (the log is far below its threshold).
    let deadline = std::time::Instant::now() + WAIT;
    while engine.compaction_status().compactions_total == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction was started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = engine.compaction_status();
    assert_eq!(status.failures_total, 0, "{status:?}");
    assert_eq!(
        in_memory(&engine),
        0,
        "3 from the spool, 2 from memory, all checkpointed"
    );
    done.extend(run(&engine, 5..7).await);
    assert_eq!(
        engine.retire_finished().await.unwrap(),
        2,
        "retirement resumed"
    );
    let report = engine.compact().await.unwrap();
    assert_eq!(report.kept, 7, "{report:?}");
    check_deduplicated(&engine, &done, "after two compactions").await;
    engine.shutdown().await;
    let (engine, _) = open(dir.path(), Some(&fs)).await.unwrap();
    check_deduplicated(&engine, &done, "after a restart").await;
    engine.shutdown().await;
}
