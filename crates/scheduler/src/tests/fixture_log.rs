//! The log format's compatibility promise: `tests/fixtures/wal-v1/` holds a log written in
//! the record format of today (v1), with every scheduler record variant and every string
//! value the engine writes in them, a checkpoint of snapshots, and several segments. Every
//! later build must replay it to exactly the intents asserted here; a format change either
//! still reads it or ships an explicit migration. The fixture is never regenerated to make
//! a test pass (see `tests/fixtures/README.md`).
//!
//! `generate_fixture_log_v1` wrote it and runs with every test run: with `FIXTURE_WRITE=1` it writes the
//! fixture (refusing to overwrite one), without it writes a copy into a temporary directory
//! and checks it is byte for byte the committed one (so it tells whether this build still
//! encodes records as v1 did).
//!
//! The file is long because it is two tables kept side by side on purpose: the records the
//! fixture holds, and what the fold must make of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::record::{
    self, AttemptOutcome, CheckResult, Folded, OperatorAction, Record, RECORD_KIND,
};
use crate::{
    Attempt, Clock, Engine, EngineConfig, Intent, IntentId, IntentSpec, Reason, State, StateName,
};

/// 2026-01-01T00:00:00Z: every time in the fixture is a fixed offset from it.
const T0_MS: u64 = 1_767_225_600_000;
/// A due time far after the fixture and the test's clock: nothing with it is due.
const FAR_MS: u64 = T0_MS + 30 * 86_400_000;
/// The test's clock at open: after every time in the fixture.
const OPEN_AT_MS: u64 = T0_MS + 3_600_000;
/// The log id in every segment header (a fresh log gets a random one; the fixture's bytes
/// must not depend on chance).
const LOG_ID: [u8; 16] = *b"fixture-wal-v1\0\0";
const CONNECTOR: &str = "aeeron";
/// Intents in the fixture, numbered 1..=INTENTS.
const INTENTS: u8 = 17;
/// The checkpoint covers records up to this LSN (its segments were deleted).
const CHECKPOINT_LSN: u64 = 10;

/// `T0_MS` plus `seconds`.
fn t(seconds: u64) -> u64 {
    T0_MS + seconds * 1_000
}

/// Intent `n`'s id: `00000000-0000-4000-8000-0000000000nn`.
fn id(n: u8) -> IntentId {
    let mut bytes = [0u8; 16];
    bytes[6] = 0x40;
    bytes[8] = 0x80;
    bytes[15] = n;
    IntentId(bytes)
}

fn key(n: u8) -> String {
    format!("fixture-{n:02}")
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal-v1")
}

// ---- The generator: records built by hand with today's types. ----

fn spec(n: u8, operation: &str, params_json: &str, amount_micros: Option<u64>, at: u64) -> Record {
    // The engine's payload identity: connector, operation and canonical params.
    let mut hasher = Sha256::new();
    for part in [CONNECTOR, operation, params_json] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    Record::Submitted(IntentSpec {
        id: id(n),
        connector: CONNECTOR.to_string(),
        operation: operation.to_string(),
        params_json: params_json.to_string(),
        idempotency_key: key(n),
        payload_sha256: hasher.finalize().into(),
        amount_micros,
        submitted_at_ms: at,
    })
}

fn reason(code: &str, message: &str, details_json: Option<&str>, http: Option<u16>) -> Reason {
    Reason {
        code: code.to_string(),
        message: message.to_string(),
        details_json: details_json.map(str::to_string),
        http_status: http,
    }
}

fn started(n: u8, attempt: u32, at_ms: u64) -> Record {
    Record::AttemptStarted {
        id: id(n),
        attempt,
        at_ms,
    }
}

fn finished(
    n: u8,
    attempt: u32,
    at_ms: u64,
    outcome: &str,
    detail: Option<Reason>,
    resource_id: Option<&str>,
    next: State,
) -> Record {
    Record::AttemptFinished {
        id: id(n),
        attempt,
        at_ms,
        outcome: AttemptOutcome::parse(outcome).expect("a v1 outcome name"),
        detail,
        resource_id: resource_id.map(str::to_string),
        next,
    }
}

fn checked(n: u8, at_ms: u64, result: &str, detail: Option<Reason>, next: State) -> Record {
    Record::StatusChecked {
        id: id(n),
        at_ms,
        result: CheckResult::parse(result).expect("a v1 status-check result"),
        detail,
        next,
    }
}

fn operator(n: u8, at_ms: u64, action: &str, next: State) -> Record {
    Record::Operator {
        id: id(n),
        at_ms,
        action: OperatorAction::parse(action).expect("a v1 operator action"),
        next,
    }
}

fn ambiguous(checks: u32, due_ms: u64, resend_allowed: bool) -> State {
    State::Ambiguous {
        checks,
        due_ms,
        resend_allowed,
    }
}

fn done(result_json: &str) -> State {
    State::Succeeded {
        result_json: result_json.to_string(),
    }
}

fn reconciled(result_json: &str) -> State {
    State::Reconciled {
        result_json: result_json.to_string(),
    }
}

fn payment_reason() -> Reason {
    let details = r#"{"amount":"9.00","currency":"USD"}"#;
    reason(
        "payment_required",
        "payment required: 9.00 USD",
        Some(details),
        Some(402),
    )
}

fn timeout() -> Reason {
    reason("timeout", "no response within 30000 ms", None, None)
}

fn status_unavailable() -> Reason {
    let message = "the status endpoint answered 502";
    reason("status_unavailable", message, None, Some(502))
}

fn unavailable(message: &str) -> Reason {
    reason("upstream_unavailable", message, None, Some(503))
}

/// Before the checkpoint: these segments are deleted; only the snapshots keep them.
#[rustfmt::skip]
fn before_checkpoint() -> Vec<Record> {
    vec![
        // 1: succeeded, with the provider's id.
        spec(1, "bet", r#"{"amount":"2.50","market":"m-1"}"#, Some(2_500_000), t(100)),
        started(1, 1, t(101)),
        finished(1, 1, t(102), "success", None, Some("bet_0001"), done(r#"{"id":"bet_0001","status":"complete"}"#)),
        // 2: waits for payment; paid after the checkpoint.
        spec(2, "execute", r#"{"amount":"9.00","task":"t-2"}"#, Some(9_000_000), t(200)),
        started(2, 1, t(201)),
        finished(2, 1, t(202), "payment_required", Some(payment_reason()), None, State::AwaitingPayment { reason: payment_reason() }),
        // 3: ambiguous; checked after the checkpoint.
        spec(3, "bet", r#"{"amount":"1.00","market":"m-3"}"#, Some(1_000_000), t(300)),
        started(3, 1, t(301)),
        finished(3, 1, t(302), "ambiguous", Some(timeout()), None, ambiguous(0, t(312), true)),
        Record::ConnectorPaused { connector: CONNECTOR.to_string(), until_ms: t(900) },
    ]
}

/// After the checkpoint, one group per segment (the log rotates between groups, and
/// inside them when a segment fills).
fn after_checkpoint() -> Vec<Vec<Record>> {
    vec![group_a(), group_b(), group_c(), group_d(), group_e()]
}

#[rustfmt::skip]
fn group_a() -> Vec<Record> {
    let permanent = reason("invalid_market", "market m-9 does not exist", Some(r#"{"field":"market"}"#), Some(400));
    let budget_details = r#"{"budget":"10.00","currency":"USD","quote":"12.00"}"#;
    let budget = reason("budget_exceeded", "quote 12.00 is above the budget 10.00", Some(budget_details), Some(402));
    let reset = reason("connection_reset", "the connection was reset after the request was written", None, None);
    vec![
        Record::PaymentAttached { id: id(2), at_ms: t(1000), payment_json: r#"{"payment_id":"pay_0002"}"#.to_string(), next: State::Pending { due_ms: t(1000) } },
        started(2, 2, t(1001)),
        finished(2, 2, t(1002), "success", None, Some("exec_0002"), done(r#"{"id":"exec_0002","status":"succeeded"}"#)),
        checked(3, t(1010), "unknown", Some(status_unavailable()), ambiguous(1, FAR_MS, true)),
        // 5: ambiguous, then found.
        spec(5, "bet", r#"{"amount":"3.00","market":"m-5"}"#, Some(3_000_000), t(1100)),
        started(5, 1, t(1101)),
        finished(5, 1, t(1102), "ambiguous", Some(reset), None, ambiguous(0, t(1112), true)),
        checked(5, t(1112), "found", None, reconciled(r#"{"id":"bet_0005","status":"complete"}"#)),
        // 6: refused for good.
        spec(6, "bet", r#"{"amount":"4.00","market":"m-9"}"#, Some(4_000_000), t(1200)),
        started(6, 1, t(1201)),
        finished(6, 1, t(1202), "permanent", Some(permanent.clone()), None, State::Failed { reason: permanent }),
        // 7: over the caller's budget (no amount of its own).
        spec(7, "execute", r#"{"budget":"10.00","task":"t-7"}"#, None, t(1300)),
        started(7, 1, t(1301)),
        finished(7, 1, t(1302), "budget_exceeded", Some(budget.clone()), None, State::Failed { reason: budget }),
    ]
}

#[rustfmt::skip]
fn group_b() -> Vec<Record> {
    let throttled = reason("rate_limited", "too many requests", None, Some(429));
    let in_use = reason("idempotency_key_in_use", "a request with this key was already accepted", None, Some(409));
    let failed_details = r#"{"execution_id":"exec_0010","step":2}"#;
    let failed = reason("execution_failed", "step 2 of 3 failed", Some(failed_details), Some(422));
    let dead = reason("execution_failed", "the provider ran it and it failed part-way: step 2 of 3 failed", Some(failed_details), Some(422));
    vec![
        // 8: throttled (the connector pauses), pending again.
        spec(8, "bet", r#"{"amount":"1.50","market":"m-8"}"#, Some(1_500_000), t(1400)),
        started(8, 1, t(1401)),
        Record::ConnectorPaused { connector: CONNECTOR.to_string(), until_ms: t(1460) },
        finished(8, 1, t(1402), "retryable", Some(throttled), None, State::Pending { due_ms: FAR_MS }),
        // 9: retried, then "already done" (409), then found.
        spec(9, "bet", r#"{"amount":"2.00","market":"m-9b"}"#, Some(2_000_000), t(1500)),
        started(9, 1, t(1501)),
        finished(9, 1, t(1502), "retryable", Some(unavailable("service unavailable")), None, State::Pending { due_ms: t(1512) }),
        started(9, 2, t(1512)),
        finished(9, 2, t(1513), "already_done", Some(in_use), None, ambiguous(0, t(1523), true)),
        checked(9, t(1523), "found", None, reconciled(r#"{"id":"bet_0009","status":"complete"}"#)),
        // 10: executed and failed part-way: a dead letter (resolved in group D).
        spec(10, "execute", r#"{"amount":"5.00","task":"t-10"}"#, Some(5_000_000), t(1600)),
        started(10, 1, t(1601)),
        finished(10, 1, t(1602), "execution_failed", Some(failed), Some("exec_0010"), ambiguous(0, t(1612), false)),
        checked(10, t(1612), "found", None, State::DeadLettered { reason: dead }),
        Record::ConnectorPaused { connector: "sim".to_string(), until_ms: FAR_MS },
    ]
}

#[rustfmt::skip]
fn group_c() -> Vec<Record> {
    let exhausted = reason("retries_exhausted", "2 attempts made; last error upstream_unavailable: service unavailable again", None, Some(503));
    let unknown = reason("status_unknown", "1 status checks could not tell; last error status_unavailable: the status endpoint answered 502", None, Some(502));
    let deadline = reason("deadline_exceeded", "the retry deadline passed; no error recorded", None, None);
    vec![
        // 11: retries exhausted: stays a dead letter.
        spec(11, "bet", r#"{"amount":"6.00","market":"m-11"}"#, Some(6_000_000), t(1700)),
        started(11, 1, t(1701)),
        finished(11, 1, t(1702), "retryable", Some(unavailable("service unavailable")), None, State::Pending { due_ms: t(1712) }),
        started(11, 2, t(1712)),
        finished(11, 2, t(1713), "retryable", Some(unavailable("service unavailable again")), None, State::Pending { due_ms: t(1733) }),
        checked(11, t(1733), "not_sent", None, State::DeadLettered { reason: exhausted }),
        // 12: status unknown: a dead letter (retried in group D).
        spec(12, "bet", r#"{"amount":"0.50","market":"m-12"}"#, Some(500_000), t(1800)),
        started(12, 1, t(1801)),
        finished(12, 1, t(1802), "ambiguous", Some(timeout()), None, ambiguous(0, t(1812), true)),
        checked(12, t(1812), "unknown", Some(status_unavailable()), State::DeadLettered { reason: unknown }),
        // 13: never sent before its deadline: a dead letter (retried in group D).
        spec(13, "escrow", r#"{"escrow":"e-13","to":"released"}"#, None, t(1900)),
        checked(13, t(1990), "not_sent", None, State::DeadLettered { reason: deadline }),
    ]
}

#[rustfmt::skip]
fn group_d() -> Vec<Record> {
    vec![
        operator(10, t(2000), "resolve", State::Resolved { note: "refunded by hand".to_string(), evidence: Some("ticket-4411".to_string()) }),
        operator(12, t(2010), "retry", ambiguous(0, t(2010), true)),
        checked(12, t(2020), "not_found", None, State::Pending { due_ms: FAR_MS }),
        operator(13, t(2030), "retry", State::Pending { due_ms: t(2030) }),
        // 4: waits for payment.
        spec(4, "execute", r#"{"amount":"9.00","task":"t-4"}"#, Some(9_000_000), t(2040)),
        started(4, 1, t(2041)),
        finished(4, 1, t(2042), "payment_required", Some(payment_reason()), None, State::AwaitingPayment { reason: payment_reason() }),
    ]
}

#[rustfmt::skip]
fn group_e() -> Vec<Record> {
    vec![
        // 14: found in flight by an earlier restart, then found by a status check.
        spec(14, "bet", r#"{"amount":"2.25","market":"m-14"}"#, Some(2_250_000), t(2100)),
        started(14, 1, t(2101)),
        Record::Recovered { id: id(14), at_ms: t(2150), next: ambiguous(0, t(2150), true) },
        checked(14, t(2160), "found", None, reconciled(r#"{"id":"bet_0014","status":"complete"}"#)),
        // 15: succeeded with no id in the result.
        spec(15, "escrow", r#"{"escrow":"e-15","to":"funded"}"#, None, t(2200)),
        started(15, 1, t(2201)),
        finished(15, 1, t(2202), "success", None, None, done(r#"{"status":"complete"}"#)),
        // 16: accepted, never sent.
        spec(16, "bet", r#"{"amount":"7.00","market":"m-16"}"#, Some(7_000_000), t(2300)),
        // 17: on the wire when the log closed: the next open finds it in flight.
        spec(17, "bet", r#"{"amount":"0.75","market":"m-17"}"#, Some(750_000), t(2400)),
        started(17, 1, t(2401)),
    ]
}

/// A log being written, and what the fold made of it so far (for the snapshots).
struct FixtureWriter {
    log: intent_log::Log,
    folded: Folded,
}

impl FixtureWriter {
    async fn put_all(&mut self, records: Vec<Record>) {
        for record in records {
            let lsn = self
                .log
                .append(RECORD_KIND, record.encode().unwrap())
                .await
                .unwrap();
            record::apply(&mut self.folded, lsn, record).unwrap();
        }
    }

    /// What compaction does (`engine/compaction.rs`): rotate, write a checkpoint of the
    /// connector pauses and a snapshot of every intent, delete the segments it covers.
    async fn checkpoint(&mut self) -> u64 {
        self.log.rotate().await.unwrap();
        let lsn = self.log.durable_lsn();
        let pauses: BTreeMap<&String, &u64> = self.folded.paused_until_ms.iter().collect();
        let mut entries = Vec::new();
        for (connector, until_ms) in pauses {
            let record = Record::ConnectorPaused {
                connector: connector.clone(),
                until_ms: *until_ms,
            };
            entries.push((RECORD_KIND, record.encode().unwrap()));
        }
        let mut keep: Vec<&Intent> = self.folded.intents.values().collect();
        keep.sort_by_key(|intent| intent.last_lsn);
        for intent in keep {
            let record = Record::Snapshot(Box::new(intent.clone()));
            entries.push((RECORD_KIND, record.encode().unwrap()));
        }
        self.log
            .write_checkpoint(lsn, &mut entries.into_iter())
            .unwrap();
        let deleted = self.log.truncate_before(lsn + 1).unwrap();
        assert!(
            deleted >= 1,
            "the checkpoint deletes the segments it covers"
        );
        lsn
    }
}

/// Writes the fixture's log into `wal`, which must not exist.
async fn write_fixture(wal: &Path) {
    std::fs::create_dir_all(wal).unwrap();
    // The first segment, created by hand so its log id is fixed.
    let header = intent_log::format::SegmentHeader {
        log_id: LOG_ID,
        segment_id: 1,
        first_lsn: 1,
    };
    let first = wal.join(intent_log::format::segment_file_name(1));
    std::fs::write(&first, header.encode()).unwrap();
    // Small segments, so the log also rotates by itself.
    let options = intent_log::Options {
        segment_bytes: 1200,
        batch_bytes_max: 1100,
        record_bytes_max: 1024,
        ..intent_log::Options::default()
    };
    let (log, report) = intent_log::Log::open(wal, options).unwrap();
    assert_eq!((report.segments, report.records), (1, 0));
    let mut writer = FixtureWriter {
        log,
        folded: Folded::default(),
    };
    writer.put_all(before_checkpoint()).await;
    assert_eq!(writer.checkpoint().await, CHECKPOINT_LSN);
    for (number, group) in after_checkpoint().into_iter().enumerate() {
        if number > 0 {
            writer.log.rotate().await.unwrap();
        }
        writer.put_all(group).await;
    }
    // A clean close seals the last batch; the lock file is not part of the log.
    writer.log.close();
    std::fs::remove_file(wal.join(intent_log::LOCK_FILE_NAME)).unwrap();
}

/// The files of a directory (names and bytes), sorted by name.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// `FIXTURE_WRITE=1 cargo test -p scheduler --lib generate_fixture_log_v1` writes the
/// fixture (only where none exists); without `FIXTURE_WRITE` it checks this build writes
/// the committed bytes.
#[tokio::test]
async fn generate_fixture_log_v1() {
    let committed = fixture_dir().join("wal");
    if std::env::var("FIXTURE_WRITE").as_deref() == Ok("1") {
        assert!(
            !committed.exists(),
            "{} exists: the fixture is a compatibility promise and is never rewritten; \
             a new format gets a new fixture (wal-v2) beside it",
            committed.display()
        );
        write_fixture(&committed).await;
        let report = intent_log::verify(&committed, intent_log::RECORD_BYTES_MAX_DEFAULT).unwrap();
        println!("wrote {}: {report:?}", committed.display());
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let wal = scratch.path().join("wal");
    write_fixture(&wal).await;
    assert!(
        files(&wal) == files(&committed),
        "this build does not write the committed fixture's bytes: the record encoding changed \
         (the committed fixture must still replay: see a_log_written_in_format_v1_still_replays)"
    );
}

// ---- The promise: the committed fixture replays to exactly these intents. ----

/// An attempt as compared: number, started, finished, outcome, detail code.
type AttemptRow = (u32, u64, Option<u64>, Option<String>, Option<String>);

/// The attempt's outcome class by name. The one place that reads `Attempt::outcome`:
/// when its type changes, only this changes.
fn outcome_name(attempt: &Attempt) -> Option<String> {
    attempt.outcome.map(|outcome| outcome.as_str().to_string())
}

fn row(attempt: &Attempt) -> AttemptRow {
    (
        attempt.number,
        attempt.started_at_ms,
        attempt.finished_at_ms,
        outcome_name(attempt),
        attempt.detail.as_ref().map(|detail| detail.code.clone()),
    )
}

/// Attempt `number`, started and finished at second offsets, with its outcome and code.
fn attempt(
    number: u32,
    started: u64,
    finished: Option<u64>,
    outcome: Option<&str>,
    code: Option<&str>,
) -> AttemptRow {
    (
        number,
        t(started),
        finished.map(t),
        outcome.map(str::to_string),
        code.map(str::to_string),
    )
}

/// What the fold must have made of one intent.
struct Want {
    n: u8,
    state: State,
    attempts: Vec<AttemptRow>,
    status_checks: u32,
    resource_id: Option<&'static str>,
    payment_json: Option<&'static str>,
    last_error: Option<&'static str>,
    /// (attempt_budget_start, budget_started_at_ms)
    budget: (u32, u64),
    /// `Intent::attempts_in_budget` (409s do not count).
    attempts_in_budget: u32,
    updated_at_ms: u64,
}

impl Want {
    fn new(n: u8, state: State, attempts: Vec<AttemptRow>) -> Want {
        Want {
            n,
            state,
            attempts_in_budget: attempts.len() as u32,
            attempts,
            status_checks: 0,
            resource_id: None,
            payment_json: None,
            last_error: None,
            budget: (0, 0),
            updated_at_ms: 0,
        }
    }

    fn checks(mut self, status_checks: u32) -> Want {
        self.status_checks = status_checks;
        self
    }

    fn resource(mut self, resource_id: &'static str) -> Want {
        self.resource_id = Some(resource_id);
        self
    }

    fn error(mut self, code: &'static str) -> Want {
        self.last_error = Some(code);
        self
    }

    /// Submitted at second `submitted`, last changed at second `updated`.
    fn times(mut self, submitted: u64, updated: u64) -> Want {
        if self.budget == (0, 0) {
            self.budget = (0, t(submitted));
        }
        self.updated_at_ms = t(updated);
        self
    }

    fn check(&self, engine: &Engine) {
        let n = self.n;
        let intent = engine
            .get(id(n))
            .unwrap_or_else(|| panic!("intent {n} missing"));
        assert_eq!(intent.state, self.state, "intent {n}: state");
        let attempts: Vec<AttemptRow> = intent.attempts.iter().map(row).collect();
        assert_eq!(attempts, self.attempts, "intent {n}: attempts");
        assert_eq!(
            intent.status_checks, self.status_checks,
            "intent {n}: status checks"
        );
        assert_eq!(
            intent.resource_id.as_deref(),
            self.resource_id,
            "intent {n}: resource id"
        );
        assert_eq!(
            intent.payment_json.as_deref(),
            self.payment_json,
            "intent {n}: payment"
        );
        let last_error = intent
            .last_error
            .as_ref()
            .map(|reason| reason.code.as_str());
        assert_eq!(last_error, self.last_error, "intent {n}: last error");
        let budget = (intent.attempt_budget_start, intent.budget_started_at_ms);
        assert_eq!(budget, self.budget, "intent {n}: budget");
        assert_eq!(
            intent.attempts_in_budget(),
            self.attempts_in_budget,
            "intent {n}: attempts in budget"
        );
        assert_eq!(
            intent.updated_at_ms, self.updated_at_ms,
            "intent {n}: updated at"
        );
        assert_eq!(intent.spec.idempotency_key, key(n), "intent {n}: key");
        assert_eq!(intent.spec.connector, CONNECTOR, "intent {n}: connector");
        let by_key = engine
            .get_by_key(CONNECTOR, &key(n))
            .map(|intent| intent.spec.id);
        assert_eq!(by_key, Some(id(n)), "intent {n}: the key finds it");
    }
}

#[rustfmt::skip]
fn want_finished() -> Vec<Want> {
    let permanent = reason("invalid_market", "market m-9 does not exist", Some(r#"{"field":"market"}"#), Some(400));
    let budget = reason("budget_exceeded", "quote 12.00 is above the budget 10.00", Some(r#"{"budget":"10.00","currency":"USD","quote":"12.00"}"#), Some(402));
    vec![
        Want::new(1, done(r#"{"id":"bet_0001","status":"complete"}"#), vec![attempt(1, 101, Some(102), Some("success"), None)])
            .resource("bet_0001").times(100, 102),
        Want { payment_json: Some(r#"{"payment_id":"pay_0002"}"#), ..Want::new(2, done(r#"{"id":"exec_0002","status":"succeeded"}"#), vec![
            attempt(1, 201, Some(202), Some("payment_required"), Some("payment_required")),
            attempt(2, 1001, Some(1002), Some("success"), None),
        ]).resource("exec_0002").error("payment_required").times(200, 1002) },
        Want::new(5, reconciled(r#"{"id":"bet_0005","status":"complete"}"#), vec![attempt(1, 1101, Some(1102), Some("ambiguous"), Some("connection_reset"))])
            .checks(1).error("connection_reset").times(1100, 1112),
        Want::new(6, State::Failed { reason: permanent }, vec![attempt(1, 1201, Some(1202), Some("permanent"), Some("invalid_market"))])
            .error("invalid_market").times(1200, 1202),
        Want::new(7, State::Failed { reason: budget }, vec![attempt(1, 1301, Some(1302), Some("budget_exceeded"), Some("budget_exceeded"))])
            .error("budget_exceeded").times(1300, 1302),
        Want { attempts_in_budget: 1, ..Want::new(9, reconciled(r#"{"id":"bet_0009","status":"complete"}"#), vec![
            attempt(1, 1501, Some(1502), Some("retryable"), Some("upstream_unavailable")),
            attempt(2, 1512, Some(1513), Some("already_done"), Some("idempotency_key_in_use")),
        ]).checks(1).error("idempotency_key_in_use").times(1500, 1523) },
        Want::new(10, State::Resolved { note: "refunded by hand".to_string(), evidence: Some("ticket-4411".to_string()) }, vec![attempt(1, 1601, Some(1602), Some("execution_failed"), Some("execution_failed"))])
            .checks(1).resource("exec_0010").error("execution_failed").times(1600, 2000),
        Want::new(14, reconciled(r#"{"id":"bet_0014","status":"complete"}"#), vec![attempt(1, 2101, None, None, None)])
            .checks(1).times(2100, 2160),
        Want::new(15, done(r#"{"status":"complete"}"#), vec![attempt(1, 2201, Some(2202), Some("success"), None)])
            .times(2200, 2202),
    ]
}

#[rustfmt::skip]
fn want_waiting() -> Vec<Want> {
    let exhausted = reason("retries_exhausted", "2 attempts made; last error upstream_unavailable: service unavailable again", None, Some(503));
    vec![
        Want::new(3, ambiguous(1, FAR_MS, true), vec![attempt(1, 301, Some(302), Some("ambiguous"), Some("timeout"))])
            .checks(1).error("status_unavailable").times(300, 1010),
        Want::new(4, State::AwaitingPayment { reason: payment_reason() }, vec![attempt(1, 2041, Some(2042), Some("payment_required"), Some("payment_required"))])
            .error("payment_required").times(2040, 2042),
        Want::new(8, State::Pending { due_ms: FAR_MS }, vec![attempt(1, 1401, Some(1402), Some("retryable"), Some("rate_limited"))])
            .error("rate_limited").times(1400, 1402),
        Want::new(11, State::DeadLettered { reason: exhausted }, vec![
            attempt(1, 1701, Some(1702), Some("retryable"), Some("upstream_unavailable")),
            attempt(2, 1712, Some(1713), Some("retryable"), Some("upstream_unavailable")),
        ]).checks(1).error("upstream_unavailable").times(1700, 1733),
        // The operator's retry started a fresh budget at 2010 and reset the checks.
        Want { budget: (1, t(2010)), attempts_in_budget: 0, ..Want::new(12, State::Pending { due_ms: FAR_MS }, vec![attempt(1, 1801, Some(1802), Some("ambiguous"), Some("timeout"))])
            .checks(1).error("status_unavailable").times(1800, 2020) },
        Want { budget: (0, t(2030)), ..Want::new(13, State::Pending { due_ms: t(2030) }, vec![]).times(1900, 2030) },
        Want::new(16, State::Pending { due_ms: t(2300) }, vec![]).times(2300, 2300),
        // In flight in the fixture: the open made it ambiguous at once (G3).
        Want { updated_at_ms: OPEN_AT_MS, ..Want::new(17, ambiguous(0, OPEN_AT_MS, true), vec![attempt(1, 2401, None, None, None)])
            .times(2400, 2401) },
    ]
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for (name, bytes) in files(from) {
        std::fs::write(to.join(name), bytes).unwrap();
    }
}

fn config(data_dir: &Path) -> EngineConfig {
    let mut config = EngineConfig::new(data_dir);
    config.index = false;
    config.hold_paused_clock_during_io = true;
    config.seed = Some(1);
    config.clock = Some(Clock::anchored_at(OPEN_AT_MS));
    config
}

/// The amounts of every intent with one, as replay rebuilds the spending window.
const AMOUNTS_MICROS: u64 = 2_500_000
    + 9_000_000
    + 1_000_000
    + 9_000_000
    + 3_000_000
    + 4_000_000
    + 1_500_000
    + 2_000_000
    + 5_000_000
    + 6_000_000
    + 500_000
    + 2_250_000
    + 7_000_000
    + 750_000;

#[tokio::test(start_paused = true)]
async fn a_log_written_in_format_v1_still_replays() {
    let data = tempfile::tempdir().unwrap();
    copy_dir(&fixture_dir().join("wal"), &data.path().join("wal"));
    // No connectors: nothing is sent, and intents of an unknown connector wait unchanged.
    let (engine, report) = Engine::open(config(data.path()), Vec::new()).await.unwrap();
    assert_eq!(report.intents, INTENTS as usize);
    assert_eq!(report.recovered_in_flight, 1, "intent 17 was on the wire");
    assert!(
        report.log.torn_tail.is_none(),
        "the fixture was sealed: {report:?}"
    );
    assert!(report.log.removed_empty_segment.is_none());
    let checkpoint = report
        .log
        .checkpoint
        .as_ref()
        .map(|checkpoint| checkpoint.lsn);
    assert_eq!(checkpoint, Some(CHECKPOINT_LSN));
    assert_eq!(report.log.first_lsn, CHECKPOINT_LSN + 1);
    for want in want_finished().iter().chain(&want_waiting()) {
        want.check(&engine);
    }
    let counts = engine.counts();
    let count = |name: StateName| counts.get(&name).copied().unwrap_or(0);
    assert_eq!(count(StateName::Sent), 0);
    assert_eq!(count(StateName::Ambiguous), 2);
    assert_eq!(count(StateName::Pending), 4);
    assert_eq!(engine.window_micros(CONNECTOR), AMOUNTS_MICROS);
    shutdown(&engine).await;

    // This build appended to the v1 log (intent 17's recovery): it opens again, the same.
    let (engine, report) = Engine::open(config(data.path()), Vec::new()).await.unwrap();
    assert_eq!(
        (report.intents, report.recovered_in_flight),
        (INTENTS as usize, 0)
    );
    for want in want_finished().iter().chain(&want_waiting()) {
        want.check(&engine);
    }
    shutdown(&engine).await;
}

async fn shutdown(engine: &Engine) {
    tokio::time::timeout(std::time::Duration::from_secs(60), engine.shutdown())
        .await
        .expect("shutdown hung");
}

/// The fixture covers what it promises: every record variant, every outcome, status
/// check result and operator action the engine writes, and the connector pauses.
#[test]
fn the_fixture_log_holds_every_record_variant() {
    let wal = fixture_dir().join("wal");
    let fs: Arc<dyn intent_log::FileSystem> = Arc::new(intent_log::StdFileSystem);
    let (report, replay) =
        intent_log::replay_dir(fs, &wal, intent_log::RECORD_BYTES_MAX_DEFAULT).unwrap();
    assert!(report.torn_tail.is_none());
    assert!(
        report.segments >= 5,
        "several segments: {}",
        report.segments
    );
    let mut variants = BTreeSet::new();
    let mut strings = BTreeSet::new();
    let mut folded = Folded::default();
    let checkpoint = replay.checkpoint.expect("the fixture has a checkpoint");
    let checkpoint_lsn = checkpoint.info().lsn;
    let entries = checkpoint.map(|entry| (checkpoint_lsn, entry.unwrap()));
    let records = replay
        .records
        .map(|entry| entry.unwrap())
        .map(|entry| (entry.lsn, (entry.kind, entry.body)));
    for (lsn, (kind, body)) in entries.chain(records) {
        assert_eq!(kind, RECORD_KIND);
        let record = Record::decode(&body).unwrap();
        let (variant, string) = describe(&record);
        variants.insert(variant);
        strings.extend(string);
        let lsn = match &record {
            Record::Snapshot(intent) => intent.last_lsn,
            _ => lsn,
        };
        record::apply(&mut folded, lsn, record).unwrap();
    }
    let all = [
        "AttemptFinished",
        "AttemptStarted",
        "ConnectorPaused",
        "Operator",
        "PaymentAttached",
        "Recovered",
        "Snapshot",
        "StatusChecked",
        "Submitted",
    ];
    assert_eq!(variants, all.into_iter().collect());
    let all = [
        "action:resolve",
        "action:retry",
        "outcome:already_done",
        "outcome:ambiguous",
        "outcome:budget_exceeded",
        "outcome:execution_failed",
        "outcome:payment_required",
        "outcome:permanent",
        "outcome:retryable",
        "outcome:success",
        "result:found",
        "result:not_found",
        "result:not_sent",
        "result:unknown",
    ];
    assert_eq!(strings, all.into_iter().map(str::to_string).collect());
    assert_eq!(folded.intents.len(), INTENTS as usize);
    let pauses: BTreeMap<&str, u64> = folded
        .paused_until_ms
        .iter()
        .map(|(name, until)| (name.as_str(), *until))
        .collect();
    assert_eq!(
        pauses,
        BTreeMap::from([(CONNECTOR, t(1460)), ("sim", FAR_MS)])
    );
}

/// A record's variant name, and the string value it carries, if any. The one place that
/// reads the records' string fields: when their types change, only this changes.
fn describe(record: &Record) -> (&'static str, Option<String>) {
    match record {
        Record::Submitted(_) => ("Submitted", None),
        Record::AttemptStarted { .. } => ("AttemptStarted", None),
        Record::AttemptFinished { outcome, .. } => {
            ("AttemptFinished", Some(format!("outcome:{outcome}")))
        }
        Record::StatusChecked { result, .. } => ("StatusChecked", Some(format!("result:{result}"))),
        Record::PaymentAttached { .. } => ("PaymentAttached", None),
        Record::Operator { action, .. } => ("Operator", Some(format!("action:{action}"))),
        Record::Recovered { .. } => ("Recovered", None),
        Record::ConnectorPaused { .. } => ("ConnectorPaused", None),
        Record::Snapshot(_) => ("Snapshot", None),
    }
}
