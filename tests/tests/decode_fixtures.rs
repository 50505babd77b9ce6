//! Every request under `../shared/fixtures/` decodes, and the decoded fields
//! match each scenario's ground truth.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use relay_core::RunEvent;
use relay_core::decode::wrappers;
use relay_core::ingress::{self, Accepted};
use relay_tests::fixtures::{RequestFile, Scenario, state_label};
use serde_json::Value;

fn headers(f: &RequestFile) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in f.send_headers() {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    h
}

/// Decodes an HTTP request file the way the relay's ingress does.
fn decode_http(f: &RequestFile) -> Result<Accepted, ingress::IngressError> {
    ingress::parse_request(&headers(f), f.body_bytes().into()).and_then(ingress::decode)
}

/// Decodes every event a file carries (HTTP, EventBridge or SQS).
fn decode_all(f: &RequestFile) -> Vec<RunEvent> {
    let one = |ce: cloudevents::Event| match relay_core::decode::decode_cloudevent(&ce).unwrap() {
        relay_core::decode::Decoded::Run(r) => *r,
        other => panic!("{}: {other:?}", f.file_name),
    };
    match f.transport.as_deref() {
        Some("aws-lambda-eventbridge") => vec![one(wrappers::from_eventbridge(&f.body).unwrap())],
        Some("aws-lambda-sqs") => wrappers::from_sqs_batch(&f.body)
            .unwrap()
            .into_iter()
            .map(|r| one(r.event.unwrap()))
            .collect(),
        _ => match decode_http(f) {
            Ok(Accepted::Run { event, .. }) => vec![*event],
            Ok(Accepted::Ignored { .. }) => vec![],
            Err(e) => panic!("{}: {e:?}", f.file_name),
        },
    }
}

fn opt(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}

fn check_commit(ev: &RunEvent, commit: &Value, what: &str) {
    let scm = &ev.scm;
    let pairs = [
        ("sha", opt(&scm.sha)),
        ("repo", opt(&scm.repo)),
        ("repoUrl", opt(&scm.url)),
        ("provider", opt(&scm.provider)),
        ("eventType", opt(&scm.event_type)),
        ("branch", opt(&scm.branch)),
        ("sender", opt(&scm.sender)),
        ("title", opt(&scm.title)),
        (
            "pullRequest",
            scm.pull_request.map_or(Value::Null, Value::from),
        ),
    ];
    for (key, got) in pairs {
        if let Some(want) = commit.get(key) {
            assert_eq!(&got, want, "{what}: commit.{key}");
        }
    }
}

#[test]
fn every_fixture_request_decodes_to_its_ground_truth() {
    let scenarios = Scenario::all();
    assert!(scenarios.len() >= 12, "found {} scenarios", scenarios.len());
    let mut decoded_runs = 0;
    for sc in &scenarios {
        if sc.name == "bad-input" || sc.name == "flux-events" {
            continue;
        }
        let events: Vec<RunEvent> = sc.files.iter().flat_map(decode_all).collect();
        assert!(!events.is_empty(), "{}", sc.name);
        decoded_runs += events.len();
        check_runs(sc, &events);
    }
    assert!(decoded_runs > 100, "decoded {decoded_runs}");
}

/// Final state per run: the last terminal event, else the last event.
fn final_of<'a>(events: &'a [RunEvent], name: &str) -> &'a RunEvent {
    let mine: Vec<&RunEvent> = events.iter().filter(|e| e.name == name).collect();
    assert!(!mine.is_empty(), "no event for {name}");
    mine.iter()
        .rev()
        .find(|e| e.state.is_terminal())
        .unwrap_or(mine.last().unwrap())
}

fn check_runs(sc: &Scenario, events: &[RunEvent]) {
    for key in ["pipelineRuns", "customRuns"] {
        let Some(runs) = sc.expect.get(key).and_then(Value::as_object) else {
            continue;
        };
        for (name, truth) in runs {
            let what = format!("{}/{name}", sc.name);
            let ev = final_of(events, name);
            let label = state_label(&ev.phase, ev.state.as_str());
            assert_eq!(
                Some(label.as_str()),
                truth["finalState"]
                    .as_str()
                    .map(|s| if s == "error" { "failure" } else { s }),
                "{what}: finalState"
            );
            if let Some(r) = truth.get("finalReason") {
                assert_eq!(ev.reason.as_deref(), r.as_str(), "{what}: finalReason");
            }
            for (field, got) in [("namespace", &ev.namespace), ("uid", &ev.uid)] {
                if let Some(w) = truth.get(field) {
                    assert_eq!(Some(got.as_str()), w.as_str(), "{what}: {field}");
                }
            }
            if let Some(p) = truth.get("pipeline") {
                assert_eq!(ev.pipeline.as_deref(), p.as_str(), "{what}: pipeline");
            }
            if let Some(p) = truth.get("parentPipelineRun") {
                assert_eq!(
                    ev.pipeline_run.as_ref().map(|r| r.name.as_str()),
                    p.as_str(),
                    "{what}"
                );
            }
            if let Some(p) = truth.get("pipelineTask") {
                assert_eq!(
                    ev.pipeline_task.as_deref(),
                    p.as_str(),
                    "{what}: pipelineTask"
                );
            }
            if let Some(c) = truth.get("commit") {
                check_commit(ev, c, &what);
            }
            if let Some(task_runs) = truth.get("taskRuns").and_then(Value::as_object) {
                for (task, tr_name) in task_runs {
                    let tr_name = tr_name.as_str().unwrap();
                    let child = ev.child_references.iter().find(|c| c.name == tr_name);
                    if let Some(c) = child {
                        assert_eq!(
                            c.pipeline_task.as_deref(),
                            Some(task.as_str()),
                            "{what}: childReferences"
                        );
                    }
                    if events.iter().any(|e| e.name == tr_name) {
                        let tr = final_of(events, tr_name);
                        assert_eq!(
                            tr.pipeline_task.as_deref(),
                            Some(task.as_str()),
                            "{what}: taskRuns"
                        );
                        assert_eq!(
                            tr.pipeline_run.as_ref().map(|p| p.name.as_str()),
                            Some(name.as_str())
                        );
                    } else {
                        assert!(
                            child.is_some(),
                            "{what}: {tr_name} neither decoded nor a child reference"
                        );
                    }
                }
            }
            if let Some(tasks) = truth.get("tasks").and_then(Value::as_object) {
                let mut got: BTreeMap<String, String> = BTreeMap::new();
                for e in events.iter().filter(|e| {
                    e.pipeline_run.as_ref().is_some_and(|p| &p.name == name)
                        && e.kind != "PipelineRun"
                }) {
                    let task = e.pipeline_task.clone().unwrap();
                    let fin = final_of(events, &e.name);
                    got.insert(task, state_label(&fin.phase, fin.state.as_str()));
                }
                if ev.state == relay_core::RunState::Succeeded {
                    // A child without events of its own: the run's success says it succeeded.
                    for c in &ev.child_references {
                        got.entry(c.pipeline_task.clone().unwrap())
                            .or_insert_with(|| "success".into());
                    }
                }
                for (task, want) in tasks {
                    let have = got.get(task).map_or("skipped", String::as_str);
                    assert_eq!(have, want.as_str().unwrap(), "{what}: tasks.{task}");
                }
            }
        }
    }
}

#[test]
fn pipelinerun_children_and_times_are_decoded() {
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let events: Vec<RunEvent> = sc.files.iter().flat_map(decode_all).collect();
    let last = events.last().unwrap();
    assert_eq!(last.kind, "PipelineRun");
    assert!(last.started_at.is_some() && last.completed_at.is_some());
    let tasks: Vec<_> = last
        .child_references
        .iter()
        .filter_map(|c| c.pipeline_task.clone())
        .collect();
    assert_eq!(tasks, ["fetch-source", "unit-tests", "build-image"]);
    let tr = events.iter().find(|e| e.kind == "TaskRun").unwrap();
    assert_eq!(tr.task.as_deref(), Some("git-clone"));
    assert!(!tr.finally);
    assert_eq!(
        tr.url.as_deref().map(|u| u.starts_with("https://")),
        Some(true)
    );
}

#[test]
fn wrappers_unwrap_to_their_events() {
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("wrappers"));
    let truth = &sc.expect["wrappers"];
    for f in &sc.files {
        let want = &truth[&f.file_name];
        let got = decode_all(f);
        let want_events = want["events"].as_array().unwrap();
        assert_eq!(got.len(), want_events.len(), "{}", f.file_name);
        for (g, w) in got.iter().zip(want_events) {
            assert_eq!(g.event_id, w["id"].as_str().unwrap());
            assert_eq!(g.kind, w["kind"].as_str().unwrap());
            assert_eq!(g.name, w["name"].as_str().unwrap());
            assert_eq!(
                state_label(&g.phase, g.state.as_str()),
                w["state"].as_str().unwrap()
            );
        }
        if f.transport.as_deref() == Some("aws-lambda-sqs") {
            let ids: Vec<String> = wrappers::from_sqs_batch(&f.body)
                .unwrap()
                .into_iter()
                .map(|r| r.message_id)
                .collect();
            assert_eq!(serde_json::to_value(ids).unwrap(), want["messageIds"]);
        }
        if f.file_name == "knative-dead-lettered.json" {
            let Ok(ingress::Inbound::CloudEvent(ce)) =
                ingress::parse_request(&headers(f), f.body_bytes().into())
            else {
                panic!("not a CloudEvent")
            };
            let k = wrappers::knative_error(&ce).unwrap();
            assert_eq!(k.code.as_deref(), want["knativeErrorCode"].as_str());
            assert_eq!(k.dest.as_deref(), want["knativeErrorDest"].as_str());
            assert_eq!(k.data.as_deref(), want["knativeErrorData"].as_str());
        }
    }
}

#[test]
fn flux_events_decode() {
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("flux-events"));
    let truth = sc.expect["fluxObjects"].as_object().unwrap();
    assert_eq!(sc.files.len(), truth.len());
    for f in &sc.files {
        let ev = decode_all(f).pop().unwrap();
        let want = &truth[&format!("{}/{}/{}", ev.kind, ev.namespace, ev.name)];
        assert_eq!(ev.phase, want["severity"].as_str().unwrap());
        assert_eq!(ev.reason.as_deref(), want["reason"].as_str());
        assert_eq!(
            state_label(&ev.phase, ev.state.as_str()),
            want["state"].as_str().unwrap()
        );
        assert_eq!(ev.scm.sha.as_deref(), want["sha"].as_str());
        assert_eq!(ev.scm.branch.as_deref(), want["branch"].as_str());
        assert_eq!(
            ev.annotations.contains_key("commit_status"),
            want["commitStatus"].as_bool().unwrap()
        );
    }
}

#[test]
fn bad_input_is_refused_precisely() {
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("bad-input"));
    for f in &sc.files {
        let want = sc.expect["statuses"][&f.file_name].as_u64().unwrap() as u16;
        let got = match decode_http(f) {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        };
        // The body limit is the server's: the decoder alone accepts the bytes.
        if want == 413 {
            continue;
        }
        assert_eq!(got, want, "{}", f.file_name);
    }
}
