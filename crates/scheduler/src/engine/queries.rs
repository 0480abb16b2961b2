//! Reading intents: by id, by key, listed with a filter, counted, waited for. Memory
//! answers first; the index answers for intents compaction evicted.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{lock, Engine};
use crate::error::{Error, Result};
use crate::intent::{Intent, IntentId, StateName};
use crate::machine::settled;

/// A filter for [`Engine::list`].
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub state: Option<StateName>,
    pub connector: Option<String>,
    /// Only intents after this id in the listing order (a cursor).
    pub after: Option<IntentId>,
    pub limit: usize,
}

impl Engine {
    /// The intent as the engine knows it now: from memory, else (once compaction evicted
    /// it after the key-retention window) from the index.
    pub fn get(&self, id: IntentId) -> Option<Intent> {
        if let Some(intent) = lock(&self.inner.state).folded.intents.get(&id).cloned() {
            return Some(intent);
        }
        let store = self.inner.store()?;
        match store.get(id) {
            Ok(intent) => intent,
            Err(error) => {
                tracing::warn!(intent = %id, %error, "index lookup failed");
                None
            }
        }
    }

    /// The intent submitted with this key on this connector: from memory while the key
    /// is retained, else the one the index last saw with it. Only lookups fall back to the
    /// index: G4 (a replayed key returns the same intent) is guaranteed within the
    /// key-retention window only; a key submitted again after it is a new intent.
    pub fn get_by_key(&self, connector: &str, key: &str) -> Option<Intent> {
        {
            let state = lock(&self.inner.state);
            if let Some(id) = state.keys.get(&(connector.to_string(), key.to_string())) {
                if let Some(intent) = state.folded.intents.get(id) {
                    return Some(intent.clone());
                }
            }
        }
        let store = self.inner.store()?;
        match store.get_by_key(connector, key) {
            Ok(intent) => intent,
            Err(error) => {
                tracing::warn!(connector, %error, "index lookup by key failed");
                None
            }
        }
    }

    /// Intents in submit order, filtered: those in memory, and those the index still
    /// holds after compaction evicted them (history beyond the key-retention window).
    pub fn list(&self, filter: &ListFilter) -> Vec<Intent> {
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        let cursor = filter
            .after
            .and_then(|after| self.get(after))
            .map(|intent| (intent.spec.submitted_at_ms, intent.spec.id));
        let matches = |intent: &Intent| {
            filter.state.is_none_or(|name| intent.state.name() == name)
                && filter
                    .connector
                    .as_ref()
                    .is_none_or(|connector| &intent.spec.connector == connector)
                && cursor
                    .is_none_or(|cursor| (intent.spec.submitted_at_ms, intent.spec.id) > cursor)
        };
        let (mut intents, in_memory): (Vec<Intent>, HashSet<IntentId>) = {
            let state = lock(&self.inner.state);
            let mut intents: Vec<&Intent> = state
                .folded
                .intents
                .values()
                .filter(|intent| matches(intent))
                .collect();
            intents.sort_by_key(|intent| (intent.spec.submitted_at_ms, intent.spec.id));
            let intents = intents.into_iter().take(limit).cloned().collect();
            (intents, state.folded.intents.keys().copied().collect())
        };
        if let Some(store) = self.inner.store() {
            // The memory copy decides for intents still in memory; the index adds the
            // evicted ones, read page by page until `limit` of them match.
            let mut from_store = 0;
            let mut after = cursor;
            let page = crate::index::list_page_size();
            'pages: loop {
                let batch = match store.list(filter.state, after, page) {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::warn!(%error, "index listing failed");
                        break;
                    }
                };
                let done = batch.len() < page;
                for intent in batch {
                    after = Some((intent.spec.submitted_at_ms, intent.spec.id));
                    if in_memory.contains(&intent.spec.id) || !matches(&intent) {
                        continue;
                    }
                    intents.push(intent);
                    from_store += 1;
                    if from_store >= limit {
                        break 'pages;
                    }
                }
                if done {
                    break;
                }
            }
        }
        intents.sort_by_key(|intent| (intent.spec.submitted_at_ms, intent.spec.id));
        intents.truncate(limit);
        intents
    }

    /// How many intents are in each state: every live one (pending, sent, ambiguous,
    /// awaiting payment, dead-lettered), and the finished ones inside the key-retention
    /// window, in memory or not (with the index on they leave memory, and a tally by
    /// state stands for them); not the index's older history.
    pub fn counts(&self) -> HashMap<StateName, usize> {
        let state = lock(&self.inner.state);
        let mut counts = HashMap::new();
        for intent in state.folded.intents.values() {
            *counts.entry(intent.state.name()).or_insert(0) += 1;
        }
        for (name, count) in &state.retained {
            if *count > 0 {
                *counts.entry(*name).or_insert(0) += count;
            }
        }
        counts
    }

    /// Waits until the intent is settled (terminal, or awaiting payment) or `timeout`
    /// passes, and returns it as it is then.
    pub async fn wait(&self, id: IntentId, timeout: Duration) -> Result<Intent> {
        let receiver = {
            let mut state = lock(&self.inner.state);
            let Some(intent) = state.folded.intents.get(&id) else {
                drop(state);
                // Evicted by compaction: finished, so settled, if the index has it.
                return self.get(id).ok_or_else(|| Error::NotFound(id.to_string()));
            };
            if settled(&intent.state) {
                return Ok(intent.clone());
            }
            let (sender, receiver) = oneshot::channel();
            state.waiters.entry(id).or_default().push(sender);
            receiver
        };
        let _ = tokio::time::timeout(timeout, receiver).await;
        self.get(id).ok_or_else(|| Error::NotFound(id.to_string()))
    }
}
