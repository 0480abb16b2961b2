//! The sled index against a real engine on a real temporary directory: history outlives
//! compaction's eviction, a deleted index is rebuilt from the log, an index ahead of the
//! log refuses to open, a corrupt one is moved aside and rebuilt, one that fails to open
//! with an I/O error is left alone; and the store's own put/list rules.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::sim_provider::SimProvider;
use crate::index::{ListCursor, SledStore, StateStore, INDEX_DIR};
use crate::intent::{Intent, IntentId, IntentSpec, State};
use crate::{ConnectorSettings, Engine, EngineConfig, Error, ListFilter, StateName, SubmitRequest};

const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut config = EngineConfig::new(dir);
    // Finished intents are evicted from memory by the first compaction a millisecond
    // later. Retention may not be shorter than the key lifetime, so the provider "forgets"
    // keys after a millisecond too (these tests never re-send).
    config.key_retention_ms = 1;
    config.seed = Some(7);
    config
}

async fn open(dir: &std::path::Path) -> crate::Result<(Engine, crate::OpenReport)> {
    let provider = SimProvider::new(7, 0);
    let mut settings = ConnectorSettings::new(Arc::new(provider));
    settings.key_lifetime = Some(Duration::from_millis(1));
    Engine::open(config(dir), vec![settings]).await
}

/// Submits `count` intents and waits until each succeeded; returns (id, key) pairs.
async fn run(engine: &Engine, count: usize) -> Vec<(IntentId, String)> {
    let mut done = Vec::new();
    for number in 0..count {
        let key = format!("key-{number}");
        let submitted = engine
            .submit(SubmitRequest {
                connector: "sim".into(),
                operation: "pay".into(),
                params: json!({"amount": "1.00", "n": number}),
                idempotency_key: Some(key.clone()),
            })
            .await
            .unwrap();
        let intent = engine.wait(submitted.intent.spec.id, WAIT).await.unwrap();
        assert_eq!(intent.state.name(), StateName::Succeeded, "{intent:?}");
        done.push((intent.spec.id, key));
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_intents_stay_visible_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path()).await.unwrap();
    let done = run(&engine, 5).await;
    // Past the 1 ms retention of the last one to finish.
    tokio::time::sleep(Duration::from_millis(5)).await;
    engine.compact().await.unwrap();
    let in_memory: usize = engine.counts().values().sum();
    assert_eq!(
        in_memory, 0,
        "compaction should have evicted every finished intent"
    );
    for (id, key) in &done {
        let intent = engine
            .get(*id)
            .expect("evicted intent is served by the index");
        assert_eq!(intent.state.name(), StateName::Succeeded);
        let by_key = engine
            .get_by_key("sim", key)
            .expect("by key from the index");
        assert_eq!(by_key.spec.id, *id);
        assert_eq!(engine.wait(*id, WAIT).await.unwrap().spec.id, *id);
    }
    let ids: Vec<IntentId> = done.iter().map(|(id, _)| *id).collect();
    let listed = |filter: ListFilter| -> Vec<IntentId> {
        engine
            .list(&filter)
            .into_iter()
            .map(|intent| intent.spec.id)
            .collect()
    };
    // (filter, expected ids), one case a line.
    let cases: Vec<(ListFilter, Vec<IntentId>)> = vec![
        (ListFilter::default(), ids.clone()),
        (
            ListFilter {
                state: Some(StateName::Succeeded),
                ..ListFilter::default()
            },
            ids.clone(),
        ),
        (
            ListFilter {
                state: Some(StateName::Failed),
                ..ListFilter::default()
            },
            vec![],
        ),
        (
            ListFilter {
                limit: 2,
                ..ListFilter::default()
            },
            ids[..2].to_vec(),
        ),
        (
            ListFilter {
                after: Some(ids[1]),
                limit: 2,
                ..ListFilter::default()
            },
            ids[2..4].to_vec(),
        ),
        (
            ListFilter {
                connector: Some("other".into()),
                ..ListFilter::default()
            },
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(listed(filter.clone()), expected, "{filter:?}");
    }
    engine.shutdown().await;
    // Still there after a restart.
    let (engine, _) = open(dir.path()).await.unwrap();
    for (id, _) in &done {
        assert!(engine.get(*id).is_some(), "{id} after reopen");
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path()).await.unwrap();
    let done = run(&engine, 3).await;
    engine.shutdown().await;
    std::fs::remove_dir_all(dir.path().join(INDEX_DIR)).unwrap();
    let (engine, report) = open(dir.path()).await.unwrap();
    assert_eq!(report.index_refolded, done.len(), "{report:?}");
    let last_lsn = engine.log_stats();
    engine.shutdown().await;
    let (store, moved_aside) = SledStore::open_or_rebuild(&dir.path().join(INDEX_DIR)).unwrap();
    assert_eq!(moved_aside, None);
    assert!(store.applied_lsn().unwrap() > 0, "{last_lsn:?}");
    for (id, key) in &done {
        let intent = store.get(*id).unwrap().expect("rebuilt entry");
        assert_eq!(intent.state.name(), StateName::Succeeded);
        assert_eq!(store.get_by_key("sim", key).unwrap().unwrap().spec.id, *id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_ahead_of_the_log_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path()).await.unwrap();
    run(&engine, 2).await;
    engine.shutdown().await;
    {
        let (store, _) = SledStore::open_or_rebuild(&dir.path().join(INDEX_DIR)).unwrap();
        let applied = store.applied_lsn().unwrap();
        store.mark_applied(applied + 1_000).unwrap();
        store.flush().unwrap();
    }
    let wal = |dir: &std::path::Path| -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .map(|path| (path.clone(), std::fs::read(&path).unwrap()))
            .collect();
        files.sort();
        files
    };
    // A torn tail too: issue 9 found the open cut it first and refused afterwards.
    let before = {
        let mut files = wal(dir.path());
        let (path, bytes) = files.last_mut().unwrap();
        bytes.extend_from_slice(&[0xAB; 100]);
        std::fs::write(path, &bytes).unwrap();
        files
    };
    match open(dir.path()).await {
        // The log refuses before it changes anything (the index's applied LSN is its floor).
        Err(Error::Log(error)) => assert!(
            error.to_string().contains("seen by the caller's index"),
            "{error}"
        ),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened with an index ahead of the log"),
    }
    assert_eq!(wal(dir.path()), before, "a refused open cut nothing");
}

/// (state, cursor, limit, expected intents) of one store listing.
type ListCase = (Option<StateName>, Option<ListCursor>, usize, Vec<u8>);

fn intent(number: u8, submitted_at_ms: u64, state: State, last_lsn: u64) -> Intent {
    let spec = IntentSpec {
        id: IntentId([number; 16]),
        connector: "sim".into(),
        operation: "pay".into(),
        params_json: "{}".into(),
        idempotency_key: format!("key-{number}"),
        payload_sha256: [0; 32],
        amount_micros: None,
        submitted_at_ms,
    };
    let mut intent = Intent::new(spec, last_lsn);
    intent.state = state;
    intent
}

#[test]
fn store_keeps_the_newest_copy_and_moves_state_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = SledStore::open_or_rebuild(dir.path()).unwrap();
    let pending = State::Pending { due_ms: 0 };
    let done = State::Succeeded {
        result_json: "{}".into(),
    };
    // (intent written, lsn, whether it is written) in order, one step a line.
    let steps = [
        (intent(1, 10, pending.clone(), 1), 1, true),
        (intent(2, 20, pending.clone(), 2), 2, true),
        (intent(1, 10, done.clone(), 3), 3, true),
        // A stale copy arriving late is ignored, but does not lower the applied LSN.
        (intent(1, 10, pending.clone(), 1), 1, false),
    ];
    for (number, (written, lsn, expected)) in steps.iter().enumerate() {
        assert_eq!(
            store.put(written, *lsn).unwrap(),
            *expected,
            "step {number}"
        );
    }
    assert_eq!(store.applied_lsn().unwrap(), 3);
    let names = |state: Option<StateName>, after, limit| -> Vec<u8> {
        store
            .list(state, after, limit)
            .unwrap()
            .into_iter()
            .map(|intent| intent.spec.id.0[0])
            .collect()
    };
    // (state, cursor, limit, expected intents), one case a line.
    let cases: [ListCase; 5] = [
        (None, None, 10, vec![1, 2]),
        (Some(StateName::Pending), None, 10, vec![2]),
        (Some(StateName::Succeeded), None, 10, vec![1]),
        (None, None, 1, vec![1]),
        (None, Some((10, IntentId([1; 16]))), 10, vec![2]),
    ];
    for (state, after, limit, expected) in cases {
        assert_eq!(
            names(state, after, limit),
            expected,
            "{state:?} {after:?} {limit}"
        );
    }
    assert_eq!(
        store.get_by_key("sim", "key-1").unwrap().unwrap().state,
        done
    );
    assert!(store.get(IntentId([9; 16])).unwrap().is_none());
}

/// `put_many` (one sled batch) keeps `put`'s rules: the newest copy wins, within the
/// batch as across calls, state entries move, and the applied LSN only rises.
#[test]
fn put_many_keeps_the_rules_of_put_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = SledStore::open_or_rebuild(dir.path()).unwrap();
    let pending = State::Pending { due_ms: 0 };
    let done = State::Succeeded {
        result_json: "{}".into(),
    };
    let failed = State::Failed {
        reason: crate::Reason::new("rejected", "no"),
    };
    assert!(store.put(&intent(1, 10, pending.clone(), 5), 5).unwrap());
    let batch = [
        intent(1, 10, done.clone(), 9),
        intent(2, 20, pending.clone(), 7),
        // Older than what the index holds for 1: kept out.
        intent(1, 10, pending.clone(), 3),
        // Newer than the copy of 2 earlier in this batch: replaces it, moves its state.
        intent(2, 20, failed.clone(), 8),
        // Older than the copy of 2 earlier in this batch: kept out.
        intent(2, 20, pending.clone(), 6),
    ];
    assert_eq!(store.put_many(&batch).unwrap(), 3);
    assert_eq!(store.applied_lsn().unwrap(), 9);
    let names = |state: Option<StateName>| -> Vec<u8> {
        store
            .list(state, None, 10)
            .unwrap()
            .into_iter()
            .map(|intent| intent.spec.id.0[0])
            .collect()
    };
    assert_eq!(names(None), vec![1, 2]);
    assert_eq!(names(Some(StateName::Pending)), Vec::<u8>::new());
    assert_eq!(names(Some(StateName::Succeeded)), vec![1]);
    assert_eq!(names(Some(StateName::Failed)), vec![2]);
    assert_eq!(store.get(IntentId([2; 16])).unwrap().unwrap().state, failed);
    assert_eq!(
        store.get_by_key("sim", "key-1").unwrap().unwrap().state,
        done
    );
    // An older batch leaves everything, the applied LSN included, as it was.
    assert_eq!(store.put_many(&[intent(1, 10, pending, 2)]).unwrap(), 0);
    assert_eq!(store.applied_lsn().unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_index_is_moved_aside_and_rebuilt_by_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path()).await.unwrap();
    let done = run(&engine, 2).await;
    engine.shutdown().await;
    let index = dir.path().join(INDEX_DIR);
    // sled's config file with bytes no sled wrote.
    std::fs::write(index.join("conf"), b"not a sled config\x00\xff").unwrap();
    let before = listing(&index);
    let (engine, report) = open(dir.path()).await.unwrap();
    assert!(report.index_rebuilt, "{report:?}");
    assert_eq!(report.index_refolded, done.len(), "{report:?}");
    let moved = report
        .index_moved_aside
        .clone()
        .expect("a moved-aside path");
    assert_eq!(moved_aside(&index), vec![moved.clone()]);
    assert_eq!(listing(&moved), before, "the moved copy differs");
    for (id, _) in &done {
        assert!(engine.get(*id).is_some(), "{id} after the rebuild");
    }
    engine.shutdown().await;
}

/// Every file under `dir` with its size, sorted: what "left untouched" is checked against.
fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            if metadata.is_dir() {
                pending.push(path.clone());
            }
            let relative = path.strip_prefix(dir).unwrap().to_path_buf();
            files.push((relative, if metadata.is_dir() { 0 } else { metadata.len() }));
        }
    }
    files.sort();
    files
}

/// The directories beside `index` whose names start with `index.corrupt-`.
fn moved_aside(index: &Path) -> Vec<PathBuf> {
    let mut moved: Vec<PathBuf> = std::fs::read_dir(index.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("index.corrupt-"))
        })
        .collect();
    moved.sort();
    moved
}

/// A store in `index` holding intents 1 and 2 (succeeded), flushed and closed.
fn seed_index(index: &Path) {
    let (store, _) = SledStore::open_or_rebuild(index).unwrap();
    let done = State::Succeeded {
        result_json: "{}".into(),
    };
    store.put(&intent(1, 10, done.clone(), 1), 1).unwrap();
    store.put(&intent(2, 20, done, 2), 2).unwrap();
    store.flush().unwrap();
}

/// sled's newest snapshot file: the first thing its recovery reads.
const LAST_SNAPSHOT: &str = "snap.FFFFFFFFFFFFFFFF";

/// Issue 9, defect 4: a restart on a full disk deleted the index, the only copy of the
/// history compaction removed from the log. An I/O error at open (here EISDIR, from a
/// directory where sled reads its newest snapshot; on a full disk it is ENOSPC) proves
/// nothing about the files: the open fails with the cause, and nothing is touched.
#[test]
fn an_index_open_io_error_fails_and_leaves_the_index_intact() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join(INDEX_DIR);
    seed_index(&index);
    let blocker = index.join(LAST_SNAPSHOT);
    std::fs::create_dir(&blocker).unwrap();
    let before = listing(&index);
    match SledStore::open_or_rebuild(&index) {
        Err(Error::Index(message)) => {
            assert!(message.contains("Is a directory"), "{message}");
            assert!(message.contains(&index.display().to_string()), "{message}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("an index that failed with an I/O error was replaced"),
    }
    assert_eq!(listing(&index), before, "the index directory was changed");
    assert_eq!(moved_aside(&index), Vec::<PathBuf>::new());
    // Once the cause is gone, the same index opens with its history.
    std::fs::remove_dir(&blocker).unwrap();
    let (store, moved) = SledStore::open_or_rebuild(&index).unwrap();
    assert_eq!(moved, None);
    for number in [1, 2] {
        let intent = store.get(IntentId([number; 16])).unwrap();
        assert!(intent.is_some(), "intent {number} lost");
    }
}

/// Issue 9, defect 4: proven corruption (a snapshot whose checksum fails) is moved aside
/// beside the index, never deleted, and an empty index takes its place.
#[test]
fn a_corrupt_index_is_moved_aside_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join(INDEX_DIR);
    seed_index(&index);
    std::fs::write(index.join(LAST_SNAPSHOT), [0x5a; 40]).unwrap();
    let before = listing(&index);
    let (store, reported) = SledStore::open_or_rebuild(&index).unwrap();
    assert!(store.get(IntentId([1; 16])).unwrap().is_none());
    let moved = moved_aside(&index);
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(reported.as_ref(), Some(&moved[0]));
    assert_eq!(listing(&moved[0]), before, "the moved copy differs");
}

/// Issue 9, defect 4: what each sled open error means for the index, one case a line. Only
/// sled's proof of damage moves the index aside; every I/O error leaves it alone.
#[test]
fn classify_open_error_table() {
    use crate::index::{classify_open_error, OpenFailure};
    use std::io::{Error as IoError, ErrorKind};
    #[derive(Debug, PartialEq)]
    enum Class {
        Locked,
        Corrupt,
        Failed,
    }
    let lock_text = "could not acquire lock on \"index/db\": Os { code: 11 }";
    // (sled error, class), one case a line.
    let cases: Vec<(sled::Error, Class)> = vec![
        (
            sled::Error::Io(IoError::from_raw_os_error(28)),
            Class::Failed,
        ), // ENOSPC
        (
            sled::Error::Io(IoError::from_raw_os_error(5)),
            Class::Failed,
        ), // EIO
        (
            sled::Error::Io(IoError::from_raw_os_error(13)),
            Class::Failed,
        ), // EACCES
        (
            sled::Error::Io(IoError::from_raw_os_error(30)),
            Class::Failed,
        ), // EROFS
        (
            sled::Error::Io(IoError::from_raw_os_error(21)),
            Class::Failed,
        ), // EISDIR
        (
            sled::Error::Io(IoError::new(ErrorKind::UnexpectedEof, "short")),
            Class::Failed,
        ),
        (sled::Error::Io(IoError::other(lock_text)), Class::Locked),
        (sled::Error::Io(IoError::other("other")), Class::Failed),
        (sled::Error::Corruption { at: None, bt: () }, Class::Corrupt),
        (
            sled::Error::Unsupported("bad config".into()),
            Class::Corrupt,
        ),
        (sled::Error::ReportableBug("a bug".into()), Class::Failed),
        (
            sled::Error::CollectionNotFound(sled::IVec::from(&b"tree"[..])),
            Class::Failed,
        ),
    ];
    for (error, expected) in cases {
        let class = match classify_open_error(&error) {
            OpenFailure::Locked(_) => Class::Locked,
            OpenFailure::Corrupt(_) => Class::Corrupt,
            OpenFailure::Failed(_) => Class::Failed,
        };
        assert_eq!(class, expected, "{error:?}");
    }
}

/// Issue 9, defect 4: damage the index's own metadata proves (an applied LSN that is not
/// 8 bytes) also moves it aside rather than deleting it.
#[test]
fn an_index_whose_own_metadata_does_not_decode_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join(INDEX_DIR);
    seed_index(&index);
    {
        let db = sled::open(&index).unwrap();
        let tree = db.open_tree(crate::index::TREE_NAME).unwrap();
        tree.insert(b"m/applied_lsn", &[1u8, 2, 3][..]).unwrap();
        db.flush().unwrap();
    }
    let (_store, moved) = SledStore::open_or_rebuild(&index).unwrap();
    let moved = moved.expect("moved aside");
    assert_eq!(moved_aside(&index), vec![moved.clone()]);
    // The moved copy still holds the history (an intent's entry: b'i' then its id).
    let db = sled::open(&moved).unwrap();
    let tree = db.open_tree(crate::index::TREE_NAME).unwrap();
    let mut intent_entry = vec![b'i'];
    intent_entry.extend_from_slice(&[1; 16]);
    assert!(tree.get(&intent_entry).unwrap().is_some());
}

/// An intent as `intent` makes it, last updated at `updated_at_ms`.
fn updated(number: u8, submitted_at_ms: u64, state: State, updated_at_ms: u64) -> Intent {
    let mut intent = intent(number, submitted_at_ms, state, u64::from(number));
    intent.updated_at_ms = updated_at_ms;
    intent
}

/// Issue 9, defect 10: the index grew with all history. Pruning removes finished intents
/// last updated before the cutoff with every entry of theirs, and nothing else.
#[test]
fn prune_removes_only_old_finished_intents_and_their_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = SledStore::open_or_rebuild(dir.path()).unwrap();
    let succeeded = State::Succeeded {
        result_json: "{}".into(),
    };
    let reason = crate::Reason {
        code: "invalid_input".into(),
        message: "no".into(),
        details_json: None,
        http_status: None,
    };
    let failed = State::Failed {
        reason: reason.clone(),
    };
    let dead = State::DeadLettered { reason };
    let cutoff_ms = 1_000;
    // (intent, pruned), one case a line.
    let cases: Vec<(Intent, bool)> = vec![
        (updated(1, 10, succeeded.clone(), 500), true),
        (updated(2, 20, failed.clone(), 999), true),
        (updated(3, 30, succeeded.clone(), 1_000), false), // updated at the cutoff
        (updated(4, 900, succeeded.clone(), 2_000), false), // finished after the cutoff
        (updated(5, 40, State::Pending { due_ms: 0 }, 50), false), // live
        (updated(6, 2_000, succeeded.clone(), 2_500), false),
        (updated(7, 50, dead, 60), false), // waits for an operator
    ];
    for (intent, _) in &cases {
        store.put(intent, intent.last_lsn).unwrap();
    }
    assert_eq!(store.prune_finished_before(cutoff_ms, 100).unwrap(), 2);
    for (intent, pruned) in &cases {
        let id = intent.spec.id;
        let key = &intent.spec.idempotency_key;
        assert_eq!(store.get(id).unwrap().is_none(), *pruned, "{id}");
        assert_eq!(
            store.get_by_key("sim", key).unwrap().is_none(),
            *pruned,
            "{key}"
        );
    }
    let listed: Vec<u8> = store
        .list(None, None, 100)
        .unwrap()
        .iter()
        .map(|intent| intent.spec.id.0[0])
        .collect();
    assert_eq!(listed, vec![3, 5, 7, 4, 6]);
    // No entry of a pruned intent is left: the survivors' 4 entries each, and the LSN.
    assert_eq!(store.entries(), 5 * 4 + 1);
    assert_eq!(store.prune_finished_before(cutoff_ms, 100).unwrap(), 0);
}

/// Issue 9, defect 10: a key submitted again after key retention names the newer intent;
/// pruning the older one keeps that key entry.
#[test]
fn prune_keeps_a_key_entry_that_names_a_newer_intent() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = SledStore::open_or_rebuild(dir.path()).unwrap();
    let done = State::Succeeded {
        result_json: "{}".into(),
    };
    let old = updated(1, 10, done.clone(), 20);
    let mut newer = updated(2, 5_000, done, 5_010);
    newer.spec.idempotency_key = old.spec.idempotency_key.clone();
    store.put(&old, 1).unwrap();
    store.put(&newer, 2).unwrap();
    assert_eq!(store.prune_finished_before(1_000, 10).unwrap(), 1);
    let by_key = store.get_by_key("sim", &old.spec.idempotency_key).unwrap();
    assert_eq!(by_key.map(|intent| intent.spec.id), Some(newer.spec.id));
}

/// Issue 9, defect 10: `prune_history` works through more than one batch and keeps what
/// is inside the retention window.
#[test]
fn prune_history_removes_everything_past_retention_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = SledStore::open_or_rebuild(dir.path()).unwrap();
    let old_count = crate::history::PRUNE_BATCH_INTENTS * 2 + 3;
    let done = State::Succeeded {
        result_json: "{}".into(),
    };
    for number in 0..old_count + 2 {
        let mut intent = updated(0, number as u64, done.clone(), number as u64 + 1);
        intent.spec.id = IntentId((number as u128).to_be_bytes());
        intent.spec.idempotency_key = format!("key-{number}");
        store.put(&intent, number as u64 + 1).unwrap();
    }
    // now - retention = old_count + 1: intents updated before it go.
    let now_ms = 10_000;
    let retention_ms = now_ms - (old_count as u64 + 1);
    let removed = crate::history::prune_history(&store, now_ms, retention_ms).unwrap();
    assert_eq!(removed, old_count);
    assert_eq!(store.list(None, None, usize::MAX).unwrap().len(), 2);
    // A retention reaching before time began removes nothing.
    assert_eq!(crate::history::prune_history(&store, 5, 10).unwrap(), 0);
}

/// Issue 9, defect 10: a history retention shorter than key retention would prune what the
/// engine may still hold; open refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_history_retention_shorter_than_key_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.key_retention_ms = 10_000;
    config.history_retention_ms = 9_999;
    let provider = SimProvider::new(7, 0);
    let mut settings = ConnectorSettings::new(Arc::new(provider));
    settings.key_lifetime = Some(Duration::from_millis(10_000));
    let opened = Engine::open(config, vec![settings]).await;
    match opened {
        Err(Error::Config(message)) => {
            assert!(message.contains("history_retention_ms"), "{message}")
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened with history retention shorter than key retention"),
    }
}

/// Bytes a directory takes: (apparent bytes, allocated bytes).
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut usage = (0, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            if metadata.is_dir() {
                pending.push(path);
            } else {
                usage.0 += metadata.len();
                usage.1 += metadata.blocks() * 512;
            }
        }
    }
    usage
}

/// Measures the index's disk bytes per finished Purple Flea bet, before and after
/// history retention prunes them. Not a test of behaviour; run by hand:
/// `INDEX_MEASURE_INTENTS=20000 cargo test -p scheduler --release --lib
/// measure_index_bytes_per_finished_intent -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_index_bytes_per_finished_intent() {
    let count: u64 = std::env::var("INDEX_MEASURE_INTENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join(INDEX_DIR);
    let (store, _) = SledStore::open_or_rebuild(&index).unwrap();
    let encoded_bytes = put_finished_bets(&store, 0..count);
    store.flush().unwrap();
    let (apparent, allocated) = disk_usage(&index);
    println!(
        "{count} finished bets: index {apparent} bytes apparent ({} per intent), {allocated} \
         allocated ({} per intent); one intent encoded (a Snapshot record body) is {} bytes",
        apparent / count,
        allocated / count,
        encoded_bytes / count
    );
    let removed = crate::history::prune_history(&store, u64::MAX, 0).unwrap();
    assert_eq!(removed as u64, count);
    store.flush().unwrap();
    let (apparent, allocated) = disk_usage(&index);
    println!("after pruning all {removed}: index {apparent} bytes apparent, {allocated} allocated");
    // sled does not shrink its file; freed space is reused by what is written next.
    put_finished_bets(&store, count..2 * count);
    store.flush().unwrap();
    let (apparent, allocated) = disk_usage(&index);
    println!("after {count} more: index {apparent} bytes apparent, {allocated} allocated");
}

/// Puts finished Purple Flea bets numbered `numbers` (realistic params and results);
/// returns the bytes of their encodings.
fn put_finished_bets(store: &SledStore, numbers: std::ops::Range<u64>) -> u64 {
    let mut encoded_bytes = 0;
    for number in numbers {
        let submitted_at_ms = 1_764_000_000_000 + number * 10;
        let key = format!("agent-7-bet-{number:012}-{:016x}", number * 2_654_435_761);
        let spec = IntentSpec {
            id: IntentId((u128::from(number) * 0x9e37_79b9_7f4a_7c15).to_be_bytes()),
            connector: "purple_flea".into(),
            operation: "bet".into(),
            params_json: r#"{"amount":"1.00","game":"dice","prediction":"over","target":50}"#
                .into(),
            idempotency_key: key,
            payload_sha256: [7; 32],
            amount_micros: Some(1_000_000),
            submitted_at_ms,
        };
        let mut intent = Intent::new(spec, number * 3 + 1);
        intent.state = State::Succeeded {
            result_json: format!(
                r#"{{"bet_id":"bet_{number:010}","game":"dice","outcome":"win","payout":"1.98","roll":73.12,"balance":"{}.00"}}"#,
                1_000 + number
            ),
        };
        intent.attempts.push(crate::Attempt {
            number: 1,
            started_at_ms: submitted_at_ms + 1,
            finished_at_ms: Some(submitted_at_ms + 120),
            outcome: Some(crate::record::AttemptOutcome::Success),
            detail: None,
        });
        intent.resource_id = Some(format!("bet_{number:010}"));
        intent.updated_at_ms = submitted_at_ms + 120;
        intent.last_lsn = number * 3 + 3;
        encoded_bytes += intent_log::codec::encode(&intent).unwrap().len() as u64;
        store.put(&intent, intent.last_lsn).unwrap();
    }
    encoded_bytes
}

/// Issue 9, defect 4, found by the full-disk end-to-end test: sled leaves a partial
/// `snap.*.generating` when ENOSPC cuts a snapshot short, and would read it as corrupt
/// on the next open; the index must open with its history instead of being moved aside.
#[test]
fn an_unfinished_sled_snapshot_does_not_make_the_index_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join(INDEX_DIR);
    seed_index(&index);
    std::fs::write(index.join("snap.FFFFFFFFFFFFFFFF.generating"), [0x5a; 40]).unwrap();
    let (store, moved) = SledStore::open_or_rebuild(&index).unwrap();
    assert_eq!(moved, None);
    assert!(store.get(IntentId([1; 16])).unwrap().is_some());
}

/// Issue 9, defect 10, wired: compaction prunes from the index the finished intents older
/// than the history retention (here a millisecond), after evicting them from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_prunes_history_past_the_history_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.history_retention_ms = 1;
    let provider = SimProvider::new(7, 0);
    let mut settings = ConnectorSettings::new(Arc::new(provider));
    settings.key_lifetime = Some(Duration::from_millis(1));
    let (engine, _) = Engine::open(config, vec![settings]).await.unwrap();
    let done = run(&engine, 4).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let report = engine.compact().await.unwrap();
    assert_eq!((report.evicted, report.pruned), (4, 4), "{report:?}");
    for (id, key) in &done {
        assert!(
            engine.get(*id).is_none(),
            "{id} outlived the history retention"
        );
        assert!(engine.get_by_key("sim", key).is_none());
    }
    engine.shutdown().await;
}
