//! The normalized event every decoder produces and every provider consumes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Normalized run state (docs/design.md "Event model").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Started,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl RunState {
    pub const ALL: [RunState; 7] = [
        RunState::Queued,
        RunState::Started,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Started => "started",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled | RunState::TimedOut
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the event came from, which decides how ids and conditions are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    Tekton,
    Cdevents,
    Flux,
}

/// A reference to the PipelineRun a TaskRun or CustomRun belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunRef {
    pub name: String,
    pub uid: Option<String>,
}

/// One child of a PipelineRun, from `status.childReferences`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildRef {
    pub kind: String,
    pub name: String,
    pub pipeline_task: Option<String>,
}

/// Source-control context of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ScmContext {
    /// Clone URL as written, e.g. `https://github.com/acme/widgets`.
    pub url: Option<String>,
    /// Host and path without scheme, e.g. `github.com/acme/widgets`.
    pub repo: Option<String>,
    pub owner: Option<String>,
    pub name: Option<String>,
    /// Git hosting provider named by the run (`github`, ...; see `decode::scm`).
    pub provider: Option<String>,
    pub sha: Option<String>,
    pub pull_request: Option<u64>,
    pub branch: Option<String>,
    pub event_type: Option<String>,
    pub sender: Option<String>,
    pub title: Option<String>,
}

/// The normalized `RunEvent` of docs/design.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub format: EventFormat,
    pub event_id: String,
    pub event_type: String,
    /// The verb of the event type (`started`, `unknown`, `finished`, ...): two
    /// events of one run with the same state can still differ in phase.
    pub phase: String,
    pub time: Option<String>,
    /// `PipelineRun`, `TaskRun`, `CustomRun`, `Run`, or a Flux object kind.
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub state: RunState,
    /// The `Succeeded` condition's status: `True`, `False` or `Unknown`.
    pub condition_status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub pipeline: Option<String>,
    pub task: Option<String>,
    pub pipeline_task: Option<String>,
    pub finally: bool,
    pub pipeline_run: Option<RunRef>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub results: BTreeMap<String, serde_json::Value>,
    pub child_references: Vec<ChildRef>,
    /// Pipeline tasks in pipeline order, and the finally tasks, from the
    /// PipelineRun's `status.pipelineSpec`.
    pub pipeline_tasks: Vec<String>,
    pub finally_tasks: Vec<String>,
    /// `status.skippedTasks` names.
    pub skipped_tasks: Vec<String>,
    pub scm: ScmContext,
    /// Link to the run in a dashboard, when one is known.
    pub url: Option<String>,
}

impl RunEvent {
    /// `Kind/name`, the way operators name a run.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// The condition triple the semantic idempotency key is built from.
    pub fn condition_fingerprint(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}",
            self.condition_status,
            self.reason.as_deref().unwrap_or(""),
            self.message.as_deref().unwrap_or("")
        )
    }
}
