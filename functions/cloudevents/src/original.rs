//! The received event, rebuilt from the normalized [`RunEvent`].
//!
//! A provider is given the `RunEvent` only, not the bytes that arrived
//! (relay-core keeps those for dead letters), so `format: original` rebuilds
//! the event: the same id, type, time and subject, the object's API path as
//! `source` (Flux events: the ingress's own wrapping), and data of the
//! sender's shape holding every field the relay
//! read (metadata, the `Succeeded` condition, times, results, children).
//! Fields the relay does not read (the run's spec, step states) are absent.

use relay_core::RunEvent;
use relay_core::model::EventFormat;
use serde_json::{Map, Value, json};

/// The data of the event as its sender shaped it.
pub fn data(ev: &RunEvent) -> Value {
    match ev.format {
        EventFormat::Flux => flux(ev),
        EventFormat::Tekton | EventFormat::Cdevents => tekton(ev),
    }
}

/// `{"pipelineRun" | "taskRun" | "customRun" | "run": <object>}`.
fn tekton(ev: &RunEvent) -> Value {
    let key = match ev.kind.as_str() {
        "PipelineRun" => "pipelineRun",
        "TaskRun" => "taskRun",
        "CustomRun" => "customRun",
        _ => "run",
    };
    let mut metadata = Map::new();
    metadata.insert("name".into(), ev.name.clone().into());
    metadata.insert("namespace".into(), ev.namespace.clone().into());
    metadata.insert("uid".into(), ev.uid.clone().into());
    if !ev.labels.is_empty() {
        metadata.insert("labels".into(), json!(ev.labels));
    }
    if !ev.annotations.is_empty() {
        metadata.insert("annotations".into(), json!(ev.annotations));
    }
    let mut spec = Map::new();
    if let Some(p) = &ev.pipeline {
        spec.insert("pipelineRef".into(), json!({"name": p}));
    }
    if let Some(t) = &ev.task {
        spec.insert("taskRef".into(), json!({"name": t}));
    }
    let mut condition = Map::new();
    condition.insert("type".into(), "Succeeded".into());
    condition.insert("status".into(), ev.condition_status.clone().into());
    if let Some(r) = &ev.reason {
        condition.insert("reason".into(), r.clone().into());
    }
    if let Some(m) = &ev.message {
        condition.insert("message".into(), m.clone().into());
    }
    let mut status = Map::new();
    status.insert("conditions".into(), json!([condition]));
    if let Some(t) = &ev.started_at {
        status.insert("startTime".into(), t.clone().into());
    }
    if let Some(t) = &ev.completed_at {
        status.insert("completionTime".into(), t.clone().into());
    }
    if !ev.results.is_empty() {
        let results: Vec<Value> = ev
            .results
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        status.insert("results".into(), results.into());
    }
    if !ev.child_references.is_empty() {
        let children: Vec<Value> = ev
            .child_references
            .iter()
            .map(|c| json!({"kind": c.kind, "name": c.name, "pipelineTaskName": c.pipeline_task}))
            .collect();
        status.insert("childReferences".into(), children.into());
    }
    if !ev.pipeline_tasks.is_empty() || !ev.finally_tasks.is_empty() {
        let names = |v: &[String]| -> Vec<Value> { v.iter().map(|n| json!({"name": n})).collect() };
        status.insert(
            "pipelineSpec".into(),
            json!({"tasks": names(&ev.pipeline_tasks), "finally": names(&ev.finally_tasks)}),
        );
    }
    if !ev.skipped_tasks.is_empty() {
        let skipped: Vec<Value> = ev
            .skipped_tasks
            .iter()
            .map(|n| json!({"name": n}))
            .collect();
        status.insert("skippedTasks".into(), skipped.into());
    }
    let api_version = match ev.kind.as_str() {
        "PipelineRun" | "TaskRun" => "tekton.dev/v1",
        "CustomRun" => "tekton.dev/v1beta1",
        _ => "tekton.dev/v1alpha1",
    };
    json!({
        key: {
            "apiVersion": api_version,
            "kind": ev.kind,
            "metadata": metadata,
            "spec": spec,
            "status": status,
        }
    })
}

/// The notification-controller's generic payload.
fn flux(ev: &RunEvent) -> Value {
    json!({
        "involvedObject": {"kind": ev.kind, "namespace": ev.namespace, "name": ev.name, "uid": ev.uid},
        "severity": ev.phase,
        "timestamp": ev.time,
        "reason": ev.reason,
        "message": ev.message,
        "metadata": ev.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipelinerun_keeps_the_fields_the_relay_read() {
        let ev = relay_core::sample::run_event();
        let d = data(&ev);
        let pr = &d["pipelineRun"];
        assert_eq!(pr["kind"], "PipelineRun");
        assert_eq!(pr["metadata"]["name"], ev.name);
        assert_eq!(pr["metadata"]["uid"], ev.uid);
        assert_eq!(pr["spec"]["pipelineRef"]["name"], "build-and-test");
        let c = &pr["status"]["conditions"][0];
        assert_eq!(c["type"], "Succeeded");
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "Failed");
        assert_eq!(pr["status"]["startTime"], "2024-05-14T10:54:00Z");
    }

    #[test]
    fn a_flux_event_is_the_generic_payload() {
        let mut ev = relay_core::sample::run_event();
        ev.format = EventFormat::Flux;
        ev.kind = "GitRepository".into();
        ev.phase = "info".into();
        ev.annotations
            .insert("revision".into(), "main@sha1:abc".into());
        let d = data(&ev);
        assert_eq!(d["involvedObject"]["kind"], "GitRepository");
        assert_eq!(d["severity"], "info");
        assert_eq!(d["metadata"]["revision"], "main@sha1:abc");
    }
}
