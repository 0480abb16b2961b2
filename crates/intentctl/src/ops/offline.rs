//! Reading a stopped engine's data directory: the log is verified and folded with the
//! same fold the engine uses (`scheduler::record`), under the log's lock so a running
//! engine is noticed; and operator actions through an engine opened with no connector.
//! Everything that reads records lives here, so a change of record types touches one file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use intent_log::{FileSystem, StdFileSystem, LOCK_FILE_NAME, RECORD_BYTES_MAX_LIMIT};
use scheduler::record::{apply, Folded, Record, RECORD_KIND};
use scheduler::{Engine, EngineConfig, Intent, IntentId, StateName};

use super::inspect::{inspect_report, InspectReport, LogSummary, WAITING_STATES};
use crate::api::{IntentPage, IntentView};

/// The log of a stopped engine, folded.
pub struct OfflineView {
    folded: Folded,
    report: intent_log::RecoveryReport,
}

impl OfflineView {
    /// Verifies and folds `<dir>/wal` under its lock; changes nothing on disk.
    pub fn load(dir: &Path) -> anyhow::Result<OfflineView> {
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

    pub fn list(
        &self,
        state: Option<StateName>,
        connector: Option<&str>,
        cursor: Option<IntentId>,
        limit: usize,
    ) -> IntentPage {
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
        let intents = page
            .iter()
            .map(|intent| IntentView::from(*intent))
            .collect();
        IntentPage {
            intents,
            next_cursor,
        }
    }

    pub fn show(&self, id: IntentId) -> Option<IntentView> {
        self.folded.intents.get(&id).map(IntentView::from)
    }

    pub fn inspect(&self, now_ms: u64) -> InspectReport {
        let mut counts: BTreeMap<StateName, u64> =
            StateName::ALL.iter().map(|name| (*name, 0)).collect();
        for intent in self.folded.intents.values() {
            *counts.entry(intent.state.name()).or_insert(0) += 1;
        }
        let oldest = self
            .sorted()
            .into_iter()
            .find(|intent| WAITING_STATES.contains(&intent.state.name()))
            .map(IntentView::from);
        let report = &self.report;
        let log = LogSummary {
            bytes: report.log_bytes,
            first_lsn: Some(report.first_lsn),
            next_lsn: Some(report.next_lsn),
            records: Some(report.records),
            segments: report.segments as u64,
            torn_tail_bytes: Some(report.torn_tail.as_ref().map(|torn| torn.bytes)),
        };
        inspect_report(&counts, oldest.as_ref(), log, now_ms)
    }
}

/// Opens the engine for real with no connector registered (nothing is sent: intents of
/// unknown connectors wait), runs one operator action, and shuts down.
pub async fn act_offline<F, Fut>(dir: &Path, action: F) -> anyhow::Result<IntentView>
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
    Ok(IntentView::from(&outcome?))
}
