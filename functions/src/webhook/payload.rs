//! The webhook payload, version 1 (docs/design.md "Webhook payload").

use relay_core::RunEvent;
use serde_json::{Value, json};

pub fn v1(ev: &RunEvent) -> Value {
    let pipeline_run = match (ev.kind.as_str(), &ev.pipeline_run) {
        ("PipelineRun", _) => json!({"name": ev.name, "uid": ev.uid}),
        (_, Some(p)) => json!({"name": p.name, "uid": p.uid}),
        _ => Value::Null,
    };
    let repo = if ev.scm.url.is_some() || ev.scm.repo.is_some() {
        json!({"url": ev.scm.url, "owner": ev.scm.owner, "name": ev.scm.name})
    } else {
        Value::Null
    };
    json!({
        "version": "1",
        "event_id": ev.event_id,
        "event_type": ev.event_type,
        "kind": ev.kind,
        "name": ev.name,
        "namespace": ev.namespace,
        "uid": ev.uid,
        "state": ev.state,
        "reason": ev.reason,
        "message": ev.message,
        "pipeline": ev.pipeline,
        "task": ev.task,
        "pipeline_task": ev.pipeline_task,
        "pipeline_run": pipeline_run,
        "repo": repo,
        "sha": ev.scm.sha,
        "pull_request": ev.scm.pull_request,
        "started_at": ev.started_at,
        "completed_at": ev.completed_at,
        "url": ev.url,
    })
}
