//! The per-PipelineRun accumulator: each task's latest state, timing and
//! link, merged monotonically from TaskRun and PipelineRun events in any
//! order, stored as one versioned record updated by compare-and-set, so two
//! replicas updating one run at once both land.
//!
//! The merge is a join (commutative, associative, idempotent): whatever the
//! order and duplication of events, the summary converges to the same value.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::delivery::store::{SharedStore, StoreError};
use crate::event::model::{RunEvent, RunState};

/// One run's (the PipelineRun's or a task's) latest known state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub kind: String,
    pub state: RunState,
    pub phase: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub url: Option<String>,
    pub finally: bool,
}

impl Entry {
    fn of(ev: &RunEvent) -> Entry {
        Entry {
            name: ev.name.clone(),
            kind: ev.kind.clone(),
            state: ev.state,
            phase: ev.phase.clone(),
            reason: ev.reason.clone(),
            message: ev.message.clone(),
            started_at: ev.started_at.clone(),
            completed_at: ev.completed_at.clone(),
            url: ev.url.clone(),
            finally: ev.finally,
        }
    }

    /// How far along a run is: a later state never yields to an earlier one.
    fn rank(&self) -> u8 {
        match (self.state, self.phase.as_str()) {
            (RunState::Queued, _) => 0,
            (RunState::Started, _) => 1,
            (RunState::Running, "unknown") => 2,
            (RunState::Running, _) => 3,
            _ => 4,
        }
    }

    /// A total order: rank first, then the rest, so the join never depends
    /// on arrival order.
    fn order(&self, other: &Entry) -> Ordering {
        self.rank()
            .cmp(&other.rank())
            .then_with(|| self.completed_at.cmp(&other.completed_at))
            .then_with(|| self.state.cmp(&other.state))
            .then_with(|| self.reason.cmp(&other.reason))
            .then_with(|| self.message.cmp(&other.message))
            .then_with(|| self.url.cmp(&other.url))
            .then_with(|| self.name.cmp(&other.name))
            .then_with(|| self.kind.cmp(&other.kind))
            .then_with(|| self.phase.cmp(&other.phase))
            .then_with(|| self.finally.cmp(&other.finally))
            .then_with(|| self.started_at.cmp(&other.started_at))
    }

    fn join(a: Entry, b: Entry) -> Entry {
        let started = min_some(a.started_at.clone(), b.started_at.clone());
        let mut winner = if a.order(&b) == Ordering::Less { b } else { a };
        winner.started_at = started;
        winner
    }
}

fn min_some(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Everything known about one PipelineRun.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunSummary {
    pub uid: String,
    pub pipeline: Option<String>,
    pub namespace: Option<String>,
    /// The PipelineRun's own state.
    pub run: Option<Entry>,
    /// Per pipeline task.
    pub tasks: BTreeMap<String, Entry>,
    /// Pipeline tasks in pipeline order, then finally tasks.
    pub pipeline_tasks: Vec<String>,
    pub finally_tasks: Vec<String>,
    pub skipped_tasks: BTreeSet<String>,
}

/// Of two task lists, the longer (then the greater): every event of one run
/// carries the same spec, and the choice must not depend on order.
fn pick_list(a: Vec<String>, b: Vec<String>) -> Vec<String> {
    match a.len().cmp(&b.len()) {
        Ordering::Less => b,
        Ordering::Greater => a,
        Ordering::Equal => a.max(b),
    }
}

impl RunSummary {
    /// The summary one event contributes, if the event belongs to a PipelineRun.
    pub fn from_event(ev: &RunEvent) -> Option<RunSummary> {
        let mut s = RunSummary::default();
        if ev.kind == "PipelineRun" {
            s.uid = ev.uid.clone();
            s.run = Some(Entry::of(ev));
            s.pipeline = ev.pipeline.clone();
            s.pipeline_tasks = ev.pipeline_tasks.clone();
            s.finally_tasks = ev.finally_tasks.clone();
            s.skipped_tasks = ev.skipped_tasks.iter().cloned().collect();
        } else {
            let parent = ev.pipeline_run.as_ref()?;
            // CDEvents name the parent by its own uid scheme; Tekton by label.
            s.uid = parent.uid.clone()?;
            let task = ev.pipeline_task.clone()?;
            s.tasks.insert(task, Entry::of(ev));
            s.pipeline = ev.pipeline.clone();
        }
        s.namespace = Some(ev.namespace.clone());
        Some(s)
    }

    /// The join of two summaries of the same run.
    pub fn merge(mut self, other: RunSummary) -> RunSummary {
        self.run = match (self.run.take(), other.run) {
            (Some(a), Some(b)) => Some(Entry::join(a, b)),
            (a, b) => a.or(b),
        };
        for (task, entry) in other.tasks {
            let merged = match self.tasks.remove(&task) {
                Some(mine) => Entry::join(mine, entry),
                None => entry,
            };
            self.tasks.insert(task, merged);
        }
        self.pipeline = self.pipeline.max(other.pipeline);
        self.namespace = self.namespace.max(other.namespace);
        self.pipeline_tasks = pick_list(
            std::mem::take(&mut self.pipeline_tasks),
            other.pipeline_tasks,
        );
        self.finally_tasks =
            pick_list(std::mem::take(&mut self.finally_tasks), other.finally_tasks);
        self.skipped_tasks.extend(other.skipped_tasks);
        self
    }
}

/// How many compare-and-set rounds one update may take before giving up.
const MAX_ROUNDS: usize = 32;

/// The accumulator over a shared store.
#[derive(Clone)]
pub struct Accumulator {
    store: SharedStore,
    ttl: Duration,
}

fn key(uid: &str) -> String {
    format!("acc/{uid}")
}

impl Accumulator {
    pub fn new(store: SharedStore, ttl: Duration) -> Accumulator {
        Accumulator { store, ttl }
    }

    /// Merges one event into its PipelineRun's summary and returns the result
    /// (`None` for events outside any PipelineRun).
    pub async fn record(&self, ev: &RunEvent) -> Result<Option<RunSummary>, StoreError> {
        match RunSummary::from_event(ev) {
            Some(s) => self.merge(s).await.map(Some),
            None => Ok(None),
        }
    }

    /// Merges `update` into the stored summary of its run, atomically.
    pub async fn merge(&self, update: RunSummary) -> Result<RunSummary, StoreError> {
        let k = key(&update.uid);
        for _ in 0..MAX_ROUNDS {
            let current = self.store.get(&k).await?;
            let (merged, expected) = match &current {
                Some(rec) => {
                    let stored: RunSummary = serde_json::from_slice(&rec.value).unwrap_or_default();
                    (stored.merge(update.clone()), Some(rec.version))
                }
                None => (update.clone(), None),
            };
            if current.as_ref().is_some_and(|rec| {
                serde_json::from_slice::<RunSummary>(&rec.value).is_ok_and(|s| s == merged)
            }) {
                return Ok(merged); // nothing new: no write
            }
            let bytes = serde_json::to_vec(&merged).expect("summary serializes");
            if self
                .store
                .put_if_version(&k, &bytes, expected, self.ttl)
                .await?
                .is_some()
            {
                return Ok(merged);
            }
            tokio::task::yield_now().await;
        }
        Err(StoreError {
            backend: self.store.backend(),
            op: "merge",
            message: format!(
                "summary of {} kept changing under {MAX_ROUNDS} attempts",
                update.uid
            ),
        })
    }

    pub async fn get(&self, uid: &str) -> Result<Option<RunSummary>, StoreError> {
        Ok(self
            .store
            .get(&key(uid))
            .await?
            .and_then(|rec| serde_json::from_slice(&rec.value).ok()))
    }
}
