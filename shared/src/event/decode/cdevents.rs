//! CDEvents pipelineRun/taskRun queued/started/finished, spec 0.3, 0.4 and 0.5.
//!
//! The three spec versions differ in the context (`version` vs `specversion`,
//! `chainId`, `links`) and in type versions, not in the run subjects this relay
//! reads, so one tolerant reader covers them all.

use serde_json::Value;

use super::scm::{self, ScmSources};
use super::{DecodeError, EventMeta, str_at, string_map};
use crate::event::model::{EventFormat, RunEvent, RunRef, RunState};

const PREFIX: &str = "dev.cdevents.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdeventsType {
    pub kind: &'static str,
    pub verb: &'static str,
}

/// Parses `dev.cdevents.{pipelinerun|taskrun}.{queued|started|finished}.<semver>`.
pub fn parse_type(ty: &str) -> Option<CdeventsType> {
    let rest = ty.strip_prefix(PREFIX)?;
    let (subject, rest) = rest.split_once('.')?;
    let (verb, version) = rest.split_once('.')?;
    let kind = match subject {
        "pipelinerun" => "PipelineRun",
        "taskrun" => "TaskRun",
        _ => return None,
    };
    let verb = ["queued", "started", "finished"]
        .into_iter()
        .find(|v| *v == verb)?;
    // 0.3 uses type versions 0.1.x, 0.4 uses 0.2.x, 0.5 uses 0.2.x/0.3.x.
    let mut nums = version.split('.');
    let valid = (0..3).all(|_| nums.next().is_some_and(|n| n.parse::<u32>().is_ok()))
        || version.contains('-');
    valid.then_some(CdeventsType { kind, verb })
}

fn outcome_state(outcome: Option<&str>) -> RunState {
    match outcome.map(str::to_ascii_lowercase).as_deref() {
        Some("success") | Some("succeeded") => RunState::Succeeded,
        Some("cancel") | Some("cancelled") | Some("canceled") => RunState::Cancelled,
        Some("timeout") | Some("timedout") | Some("timed_out") => RunState::TimedOut,
        _ => RunState::Failed,
    }
}

/// `/apis/.../namespaces/<ns>/...` -> `<ns>`.
fn namespace_of(source: &str) -> Option<&str> {
    let mut it = source.split('/');
    it.by_ref().find(|s| *s == "namespaces")?;
    it.next().filter(|s| !s.is_empty())
}

/// CDEvents carry no Kubernetes uid: the subject's source plus id names the run.
fn run_uid(source: &str, id: &str) -> String {
    if source.trim_end_matches('/').ends_with(&format!("/{id}")) {
        source.trim_end_matches('/').to_string()
    } else {
        format!("{}/{id}", source.trim_end_matches('/'))
    }
}

pub fn decode(meta: &EventMeta, ty: CdeventsType, data: &Value) -> Result<RunEvent, DecodeError> {
    let subject = data
        .get("subject")
        .filter(|s| s.is_object())
        .ok_or_else(|| DecodeError::InvalidPayload("CDEvent has no subject".into()))?;
    let id = str_at(subject, &["id"])
        .ok_or_else(|| DecodeError::InvalidPayload("CDEvent subject.id is missing".into()))?;
    let context_source = str_at(data, &["context", "source"]).unwrap_or(&meta.source);
    let source = str_at(subject, &["source"]).unwrap_or(context_source);
    let content = subject.get("content").unwrap_or(&Value::Null);
    let outcome = str_at(content, &["outcome"]);
    let state = match ty.verb {
        "queued" => RunState::Queued,
        "started" => RunState::Started,
        _ => outcome_state(outcome),
    };
    let condition_status = match state {
        RunState::Succeeded => "True",
        s if s.is_terminal() => "False",
        _ => "Unknown",
    };
    let custom = string_map(data.get("customData"));
    let scm = scm::extract(&ScmSources {
        labels: &Default::default(),
        annotations: &custom,
        params: &[],
    });
    let pipeline_run = content.get("pipelineRun").and_then(|p| {
        let pid = str_at(p, &["id"])?;
        let psrc = str_at(p, &["source"]).unwrap_or(context_source);
        Some(RunRef {
            name: pid.to_string(),
            uid: Some(run_uid(psrc, pid)),
        })
    });
    let time = str_at(data, &["context", "timestamp"])
        .map(str::to_string)
        .or_else(|| meta.time.clone());
    let errors =
        str_at(content, &["errors"]).map(|e| scm::without_userinfo(e.trim_end()).into_owned());
    Ok(RunEvent {
        format: EventFormat::Cdevents,
        event_id: meta.id.clone(),
        event_type: meta.event_type.clone(),
        phase: ty.verb.to_string(),
        time: time.clone(),
        kind: ty.kind.to_string(),
        name: id.to_string(),
        namespace: namespace_of(source)
            .or_else(|| namespace_of(context_source))
            .unwrap_or_default()
            .to_string(),
        uid: run_uid(source, id),
        state,
        condition_status: condition_status.to_string(),
        reason: outcome
            .map(str::to_string)
            .or_else(|| Some(ty.verb.to_string())),
        message: errors,
        pipeline: str_at(content, &["pipelineName"]).map(str::to_string),
        task: str_at(content, &["taskName"]).map(str::to_string),
        pipeline_task: str_at(content, &["taskName"]).map(str::to_string),
        finally: false,
        pipeline_run,
        labels: Default::default(),
        annotations: custom,
        started_at: (ty.verb == "started").then(|| time.clone()).flatten(),
        completed_at: (ty.verb == "finished").then_some(time).flatten(),
        results: Default::default(),
        child_references: Vec::new(),
        pipeline_tasks: Vec::new(),
        finally_tasks: Vec::new(),
        skipped_tasks: Vec::new(),
        scm,
        // A link with userinfo (credentials, or a host that is not the one
        // shown) is no link.
        url: str_at(content, &["url"])
            .filter(|u| scm::without_userinfo(u) == *u)
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_spec_type_versions() {
        for t in [
            "dev.cdevents.pipelinerun.queued.0.1.1",
            "dev.cdevents.taskrun.finished.0.2.0",
            "dev.cdevents.pipelinerun.finished.0.2.0",
            "dev.cdevents.taskrun.started.0.3.0-draft",
        ] {
            assert!(parse_type(t).is_some(), "{t}");
        }
        assert!(parse_type("dev.cdevents.build.finished.0.2.0").is_none());
        assert!(parse_type("dev.cdevents.taskrun.exploded.0.2.0").is_none());
    }

    #[test]
    fn uid_is_stable_between_run_and_parent_reference() {
        let src = "/apis/tekton.dev/v1beta1/namespaces/ci/pipelineruns/p1";
        assert_eq!(run_uid(src, "p1"), src);
        assert_eq!(run_uid("/tekton", "p1"), "/tekton/p1");
        assert_eq!(namespace_of(src), Some("ci"));
    }
}
