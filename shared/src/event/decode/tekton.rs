//! Tekton Pipelines CloudEvents: `dev.tekton.event.<kind>.<verb>.v1`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::scm::{self, ScmSources};
use super::{DecodeError, EventMeta, str_at, string_map};
use crate::event::model::{ChildRef, EventFormat, RunEvent, RunRef, RunState};

const PREFIX: &str = "dev.tekton.event.";

/// A parsed Tekton event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TektonType {
    /// The body key holding the object, which also names the kind.
    pub key: &'static str,
    pub kind: &'static str,
    pub verb: &'static str,
}

/// Parses a Tekton run event type; `None` for anything else (including Tekton
/// types for objects that are not runs, such as Triggers events).
pub fn parse_type(ty: &str) -> Option<TektonType> {
    let rest = ty.strip_prefix(PREFIX)?;
    let mut parts = rest.split('.');
    let (object, verb, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "v1" {
        return None;
    }
    let (key, kind) = match object {
        "pipelinerun" => ("pipelineRun", "PipelineRun"),
        "taskrun" => ("taskRun", "TaskRun"),
        "customrun" => ("customRun", "CustomRun"),
        "run" => ("run", "Run"),
        _ => return None,
    };
    let verb = ["started", "running", "unknown", "successful", "failed"]
        .into_iter()
        .find(|v| *v == verb)?;
    Some(TektonType { key, kind, verb })
}

/// Reasons with which Tekton marks a failed run as cancelled.
const CANCEL_REASONS: &[&str] = &[
    "Cancelled",
    "TaskRunCancelled",
    "PipelineRunCancelled",
    "CustomRunCancelled",
    "RunCancelled",
    "CancelledRunFinally",
    "StoppedRunFinally",
];
/// Reasons with which Tekton marks a failed run as timed out.
const TIMEOUT_REASONS: &[&str] = &[
    "PipelineRunTimeout",
    "TaskRunTimeout",
    "CustomRunTimedOut",
    "RunTimedOut",
];

pub fn state_for(verb: &str, reason: Option<&str>) -> RunState {
    match verb {
        "started" => RunState::Started,
        "running" | "unknown" => RunState::Running,
        "successful" => RunState::Succeeded,
        _ => match reason {
            Some(r) if CANCEL_REASONS.contains(&r) => RunState::Cancelled,
            Some(r) if TIMEOUT_REASONS.contains(&r) => RunState::TimedOut,
            _ => RunState::Failed,
        },
    }
}

pub fn decode(meta: &EventMeta, ty: TektonType, data: &Value) -> Result<RunEvent, DecodeError> {
    let obj =
        data.get(ty.key)
            .filter(|o| o.is_object())
            .ok_or_else(|| DecodeError::MissingRunKey {
                event_type: meta.event_type.clone(),
                key: ty.key,
            })?;
    let md = obj.get("metadata").unwrap_or(&Value::Null);
    let field = |name: &str| -> Result<String, DecodeError> {
        str_at(md, &[name]).map(str::to_string).ok_or_else(|| {
            DecodeError::InvalidPayload(format!("{}.metadata.{name} is missing", ty.key))
        })
    };
    let name = field("name")?;
    let namespace = field("namespace")?;
    let uid = field("uid")?;
    let labels = string_map(md.get("labels"));
    let annotations = string_map(md.get("annotations"));
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let status = obj.get("status").unwrap_or(&Value::Null);

    let condition = status
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| str_at(c, &["type"]) == Some("Succeeded"))
                .or_else(|| cs.first())
        });
    let cond_str = |k: &str| condition.and_then(|c| str_at(c, &[k])).map(str::to_string);
    let reason = cond_str("reason");
    // A failed clone quotes its URL, credentials and all.
    let message = cond_str("message").map(|m| scm::without_userinfo(&m).into_owned());
    let condition_status = cond_str("status").unwrap_or_else(|| match ty.verb {
        "successful" => "True".into(),
        "failed" => "False".into(),
        _ => "Unknown".into(),
    });
    let state = state_for(ty.verb, reason.as_deref());

    let params = params(spec);
    let scm = scm::extract(&ScmSources {
        labels: &labels,
        annotations: &annotations,
        params: &params,
    });

    let pipeline_run = labels.get("tekton.dev/pipelineRun").map(|n| RunRef {
        name: n.clone(),
        uid: labels.get("tekton.dev/pipelineRunUID").cloned(),
    });
    let pipeline = labels
        .get("tekton.dev/pipeline")
        .cloned()
        .or_else(|| str_at(spec, &["pipelineRef", "name"]).map(str::to_string));
    let task = labels
        .get("tekton.dev/task")
        .cloned()
        .or_else(|| str_at(spec, &["taskRef", "name"]).map(str::to_string));
    let finally = labels.get("tekton.dev/memberOf").map(String::as_str) == Some("finally");

    // The run's link as written (the annotations above lost any userinfo):
    // one with credentials, or that shows one host and goes to another
    // (`https://tekton.example@evil.example`), is no link at all.
    let url = ["pipelinesascode.tekton.dev/log-url", "relay.tekton.dev/url"]
        .iter()
        .find_map(|k| md.get("annotations")?.get(*k)?.as_str())
        .filter(|u| scm::without_userinfo(u) == *u)
        .map(str::to_string);

    Ok(RunEvent {
        format: EventFormat::Tekton,
        event_id: meta.id.clone(),
        event_type: meta.event_type.clone(),
        phase: ty.verb.to_string(),
        time: meta.time.clone(),
        kind: ty.kind.to_string(),
        name,
        namespace,
        uid,
        state,
        condition_status,
        reason,
        message,
        pipeline,
        task: if ty.kind == "TaskRun" { task } else { None },
        pipeline_task: labels.get("tekton.dev/pipelineTask").cloned(),
        finally,
        pipeline_run: if ty.kind == "PipelineRun" {
            None
        } else {
            pipeline_run
        },
        started_at: str_at(status, &["startTime"]).map(str::to_string),
        completed_at: str_at(status, &["completionTime"]).map(str::to_string),
        results: results(status),
        child_references: child_references(status),
        pipeline_tasks: task_names(status, "tasks"),
        finally_tasks: task_names(status, "finally"),
        skipped_tasks: status
            .get("skippedTasks")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter_map(|t| str_at(t, &["name"]).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        labels,
        annotations,
        scm,
        url,
    })
}

fn task_names(status: &Value, list: &str) -> Vec<String> {
    status
        .get("pipelineSpec")
        .and_then(|p| p.get(list))
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .filter_map(|t| str_at(t, &["name"]).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn params(spec: &Value) -> Vec<(String, String)> {
    spec.get("params")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    let name = str_at(p, &["name"])?;
                    let value = str_at(p, &["value"])?;
                    Some((name.to_string(), value.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `status.results` (v1) or `taskResults`/`pipelineResults` (v1beta1).
fn results(status: &Value) -> BTreeMap<String, Value> {
    ["results", "taskResults", "pipelineResults"]
        .iter()
        .filter_map(|k| status.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|r| Some((str_at(r, &["name"])?.to_string(), r.get("value")?.clone())))
        .collect()
}

/// `status.childReferences`, or the v1beta1 `taskRuns`/`runs` maps.
fn child_references(status: &Value) -> Vec<ChildRef> {
    if let Some(refs) = status.get("childReferences").and_then(Value::as_array) {
        return refs
            .iter()
            .filter_map(|c| {
                Some(ChildRef {
                    kind: str_at(c, &["kind"]).unwrap_or("TaskRun").to_string(),
                    name: str_at(c, &["name"])?.to_string(),
                    pipeline_task: str_at(c, &["pipelineTaskName"]).map(str::to_string),
                })
            })
            .collect();
    }
    let mut out = Vec::new();
    for (key, kind) in [("taskRuns", "TaskRun"), ("runs", "Run")] {
        if let Some(map) = status.get(key).and_then(Value::as_object) {
            for (name, v) in map {
                out.push(ChildRef {
                    kind: kind.to_string(),
                    name: name.clone(),
                    pipeline_task: str_at(v, &["pipelineTaskName"]).map(str::to_string),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types() {
        let t = parse_type("dev.tekton.event.taskrun.unknown.v1").unwrap();
        assert_eq!((t.key, t.kind, t.verb), ("taskRun", "TaskRun", "unknown"));
        assert_eq!(
            parse_type("dev.tekton.event.run.failed.v1").unwrap().key,
            "run"
        );
        assert!(parse_type("dev.tekton.event.triggers.started.v1").is_none());
        assert!(parse_type("dev.tekton.event.taskrun.exploded.v1").is_none());
        assert!(parse_type("dev.tekton.event.taskrun.started.v2").is_none());
    }

    #[test]
    fn failed_reasons_map_to_states() {
        assert_eq!(
            state_for("failed", Some("TaskRunCancelled")),
            RunState::Cancelled
        );
        assert_eq!(
            state_for("failed", Some("PipelineRunTimeout")),
            RunState::TimedOut
        );
        assert_eq!(state_for("failed", Some("Failed")), RunState::Failed);
        assert_eq!(state_for("unknown", Some("Pending")), RunState::Running);
    }
}
