//! Model-based crash testing: random appends from several tasks, rotations, truncations,
//! process kills and power cuts at any file-system operation (including during recovery),
//! and reopens, on the simulated file system, checked against a simple model.
//!
//! Invariants after every reopen: every acknowledged record reads back at its LSN, in
//! order, exactly once; nothing that was never appended appears; every record verifies;
//! an unacknowledged record survives whole or not at all; each task's records keep their
//! order. A failing case prints its seed and operations; proptest pins it in
//! `proptest-regressions/` and the named tests at the bottom pin the ones we fixed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::{runtime, small_options};
use crate::sim_fs::SimFileSystem;
use crate::{Log, Options};

#[derive(Clone, Debug)]
enum Op {
    Append {
        tasks: u8,
        per_task: u8,
        body_len: u8,
    },
    /// Appends while the process dies after `after_ops` file-system operations, then a power
    /// cut (or only a process kill), optionally with a second death during recovery.
    Crash {
        after_ops: u16,
        tasks: u8,
        per_task: u8,
        body_len: u8,
        power_cut: bool,
        during_recovery: Option<u8>,
    },
    /// Compaction: a checkpoint covering a fraction of the log, then truncation below it,
    /// optionally with the process dying after `crash_after` operations (a power cut).
    Truncate {
        fraction: u8,
        crash_after: Option<u8>,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..5u8, 1..8u8, 1..120u8).prop_map(|(tasks, per_task, body_len)| Op::Append { tasks, per_task, body_len }),
        4 => (0..60u16, 1..5u8, 1..8u8, 1..120u8, any::<bool>(), proptest::option::weighted(0.3, 0..8u8)).prop_map(
            |(after_ops, tasks, per_task, body_len, power_cut, during_recovery)| Op::Crash {
                after_ops, tasks, per_task, body_len, power_cut, during_recovery,
            }
        ),
        2 => (any::<u8>(), proptest::option::weighted(0.5, 0..12u8)).prop_map(|(fraction, crash_after)| Op::Truncate { fraction, crash_after }),
        1 => Just(Op::Reopen),
    ]
}

/// A body names its task and sequence number, padded to `len` with bytes derived from both.
fn body(task: u32, seq: u32, len: u8) -> Vec<u8> {
    let mut body = format!("{task}:{seq}:").into_bytes();
    let mut filler = task.wrapping_mul(31).wrapping_add(seq) as u8;
    while body.len() < usize::from(len).max(8) {
        body.push(filler);
        filler = filler.wrapping_mul(13).wrapping_add(7);
    }
    body
}

fn task_and_seq(body: &[u8]) -> Option<(u32, u32)> {
    let mut parts = body.splitn(3, |&byte| byte == b':');
    let task = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let seq = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    Some((task, seq))
}

struct Model {
    fs: SimFileSystem,
    options: Options,
    /// Records known durable: acknowledged, or read back after a recovery (which syncs).
    durable: BTreeMap<u64, Vec<u8>>,
    /// Every body ever handed to `append`.
    attempted: HashSet<Vec<u8>>,
    next_task: u32,
}

impl Model {
    fn open(&self) -> Log {
        let (log, _) = Log::open_with(
            Arc::new(self.fs.clone()),
            Path::new("/wal"),
            self.options.clone(),
        )
        .unwrap_or_else(|error| panic!("reopen after a crash must succeed: {error}"));
        log
    }

    fn append(
        &mut self,
        rt: &tokio::runtime::Runtime,
        log: &Arc<Log>,
        tasks: u8,
        per_task: u8,
        body_len: u8,
        must_succeed: bool,
    ) {
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let task = self.next_task;
            self.next_task += 1;
            let bodies: Vec<Vec<u8>> = (0..u32::from(per_task))
                .map(|seq| body(task, seq, body_len))
                .collect();
            self.attempted.extend(bodies.iter().cloned());
            let log = log.clone();
            handles.push(rt.spawn(async move {
                let mut acked = Vec::new();
                for body in bodies {
                    match log.append(1, body.clone()).await {
                        Ok(lsn) => acked.push((lsn, body)),
                        Err(_) => break, // a task stops at its first failure, like an agent would
                    }
                }
                acked
            }));
        }
        let total = usize::from(tasks) * usize::from(per_task);
        let mut acked_count = 0;
        for handle in handles {
            for (lsn, body) in rt.block_on(handle).expect("task") {
                acked_count += 1;
                assert!(
                    self.durable.insert(lsn, body).is_none(),
                    "LSN {lsn} acknowledged twice"
                );
            }
        }
        if must_succeed {
            assert_eq!(
                acked_count, total,
                "appends without faults must all succeed"
            );
        }
    }

    fn check(&mut self, log: &Log) {
        let replay = log.replay().expect("replay");
        // The checkpoint's entries are (LSN, body) of every record it covers.
        let mut all: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let covered = replay
            .checkpoint
            .as_ref()
            .map(|c| c.info().lsn)
            .unwrap_or(0);
        if let Some(checkpoint) = replay.checkpoint {
            for entry in checkpoint {
                let (_, body) = entry.expect("checkpoint entry verifies");
                let lsn = u64::from_le_bytes(body[..8].try_into().expect("entry names its LSN"));
                all.insert(lsn, body[8..].to_vec());
            }
            assert_eq!(
                all.len() as u64,
                covered,
                "the checkpoint covers LSNs 1..={covered}"
            );
        }
        let entries: Vec<crate::Entry> = replay
            .records
            .collect::<crate::Result<_>>()
            .expect("records verify");
        let first = covered + 1;
        let mut seen = HashSet::new();
        let mut last_seq: HashMap<u32, u32> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            assert_eq!(entry.lsn, first + index as u64, "LSNs are contiguous");
            all.insert(entry.lsn, entry.body.clone());
        }
        for (lsn, body) in &all {
            assert!(
                self.attempted.contains(body),
                "LSN {lsn} holds a record never appended"
            );
            assert!(seen.insert(body.clone()), "LSN {lsn} repeats a record");
            let (task, seq) = task_and_seq(body).expect("body names its task");
            if let Some(previous) = last_seq.insert(task, seq) {
                assert!(seq > previous, "task {task} out of order at LSN {lsn}");
            }
        }
        for (lsn, body) in &self.durable {
            assert_eq!(
                all.get(lsn),
                Some(body),
                "durable record at LSN {lsn} lost or changed"
            );
        }
        // What recovery accepted is durable now (open syncs it).
        self.durable = all;
    }

    /// Writes a checkpoint covering LSNs 1..=`lsn` (from the model: every record there is
    /// known durable) and deletes the segments below it.
    fn compact(&self, log: &Log, lsn: u64) -> crate::Result<usize> {
        let mut entries = self.durable.range(..=lsn).map(|(lsn, body)| {
            let mut entry = lsn.to_le_bytes().to_vec();
            entry.extend_from_slice(body);
            (1u8, entry)
        });
        log.write_checkpoint(lsn, &mut entries)?;
        log.truncate_before(lsn + 1)
    }
}

/// Runs one case; returns the simulated file system's (crashes, torn sectors).
fn run(seed: u64, ops: &[Op]) -> (u64, u64) {
    let rt = runtime();
    let mut model = Model {
        fs: SimFileSystem::new(seed),
        options: small_options(),
        durable: BTreeMap::new(),
        attempted: HashSet::new(),
        next_task: 0,
    };
    let mut log = Arc::new(model.open());
    for op in ops {
        match *op {
            Op::Append {
                tasks,
                per_task,
                body_len,
            } => model.append(&rt, &log, tasks, per_task, body_len, true),
            Op::Crash {
                after_ops,
                tasks,
                per_task,
                body_len,
                power_cut,
                during_recovery,
            } => {
                model.fs.crash_after_ops(u64::from(after_ops));
                model.append(&rt, &log, tasks, per_task, body_len, false);
                drop(log);
                let reboot = |fs: &SimFileSystem| {
                    if power_cut {
                        fs.crash()
                    } else {
                        fs.kill_process()
                    }
                };
                reboot(&model.fs);
                if let Some(after) = during_recovery {
                    model.fs.crash_after_ops(u64::from(after));
                    let attempt = Log::open_with(
                        Arc::new(model.fs.clone()),
                        Path::new("/wal"),
                        model.options.clone(),
                    );
                    drop(attempt);
                    reboot(&model.fs);
                }
                log = Arc::new(model.open());
                model.check(&log);
            }
            Op::Truncate {
                fraction,
                crash_after,
            } => {
                let first = log.first_lsn();
                let target =
                    first + (log.durable_lsn().saturating_sub(first) * u64::from(fraction)) / 255;
                let covered = log.checkpoint().map(|c| c.lsn).unwrap_or(0);
                let lsn = target.saturating_sub(1);
                if lsn <= covered {
                    continue;
                }
                match crash_after {
                    None => {
                        model.compact(&log, lsn).expect("compaction without faults");
                        assert!(
                            log.first_lsn() <= lsn + 1,
                            "truncation deleted records above the checkpoint at {lsn}"
                        );
                    }
                    Some(after) => {
                        model.fs.crash_after_ops(u64::from(after));
                        // Dies somewhere inside: the result is whatever the crash left.
                        let outcome = model.compact(&log, lsn);
                        assert!(
                            outcome.is_ok() || model.fs.is_dead(),
                            "compaction failed without a crash: {outcome:?}"
                        );
                        drop(log);
                        model.fs.crash();
                        log = Arc::new(model.open());
                    }
                }
                model.check(&log);
            }
            Op::Reopen => {
                drop(log);
                log = Arc::new(model.open());
                model.check(&log);
            }
        }
    }
    drop(log);
    model.fs.crash();
    let log = model.open();
    model.check(&log);
    model.fs.crash_counts()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn crashes_never_lose_acknowledged_records(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..14)) {
        eprintln!("model seed {seed}");
        let (crashes, _) = run(seed, &ops);
        prop_assert!(crashes >= 1);
    }
}

#[test]
fn body_names_parse() {
    assert_eq!(task_and_seq(&body(12, 345, 40)), Some((12, 345)));
    assert_eq!(task_and_seq(&body(0, 0, 1)), Some((0, 0)));
}

#[test]
fn crash_during_rotation_and_recovery() {
    // Deterministic sweep over the crash point: every op index of a workload that rotates.
    let mut torn_sectors = 0;
    for after_ops in 0..40u16 {
        let ops = [
            Op::Append {
                tasks: 2,
                per_task: 4,
                body_len: 100,
            },
            Op::Crash {
                after_ops,
                tasks: 3,
                per_task: 5,
                body_len: 90,
                power_cut: true,
                during_recovery: Some((after_ops % 5) as u8),
            },
            Op::Append {
                tasks: 1,
                per_task: 3,
                body_len: 50,
            },
        ];
        torn_sectors += run(u64::from(after_ops), &ops).1;
    }
    assert!(torn_sectors > 0, "the power cuts tore sectors");
}
