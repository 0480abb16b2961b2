//! The exactly-once oracle: how many times each idempotency key's side effect really executed.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// One key's line in the audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditKey {
    /// How many times the side effect ran (anything above 1 is a duplicate).
    pub executions: u64,
    /// The route that executed it, e.g. `"POST /casino/bet"`.
    pub route: String,
}

/// The body of `GET /_sim/audit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// `"purple_flea"` or `"aeeron"`.
    pub service: String,
    /// Every key whose side effect ran at least once.
    pub keys: BTreeMap<String, AuditKey>,
    /// `keys.len()`.
    pub total_keys: u64,
    /// The sum of all executions.
    pub total_executions: u64,
    /// Keys executed more than once: must stay 0.
    pub duplicates: u64,
}

/// Counts side effects. Lives inside the service's state mutex, next to the state it audits,
/// so an execution and its count are one critical section. Kept apart from the idempotency
/// cache on purpose: a bug that lets the cache execute a key twice must show up here.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    keys: HashMap<String, (u64, &'static str)>,
}

impl Audit {
    /// Records one real execution of `key`'s side effect.
    pub(crate) fn record(&mut self, key: &str, route: &'static str) {
        let entry = self.keys.entry(key.to_owned()).or_insert((0, route));
        entry.0 += 1;
    }

    pub(crate) fn report(&self, service: &str) -> AuditReport {
        let keys: BTreeMap<String, AuditKey> = self
            .keys
            .iter()
            .map(|(key, (executions, route))| {
                (
                    key.clone(),
                    AuditKey {
                        executions: *executions,
                        route: (*route).to_owned(),
                    },
                )
            })
            .collect();
        AuditReport {
            service: service.to_owned(),
            total_keys: keys.len() as u64,
            total_executions: keys.values().map(|entry| entry.executions).sum(),
            duplicates: keys.values().filter(|entry| entry.executions > 1).count() as u64,
            keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates() {
        let mut audit = Audit::default();
        audit.record("a", "POST /casino/bet");
        audit.record("b", "POST /casino/bet");
        audit.record("b", "POST /casino/bet");
        let report = audit.report("purple_flea");
        assert_eq!(
            (
                report.total_keys,
                report.total_executions,
                report.duplicates
            ),
            (2, 3, 1)
        );
        assert_eq!(report.keys["b"].executions, 2);
    }
}
