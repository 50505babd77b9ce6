//! Run events as CDEvents, spec 0.4 (TEP-0137's mapping, as Tekton's own
//! CDEvents controller emits them): PipelineRun queued/started/finished,
//! TaskRun started/finished. Other states (running) and other kinds have no
//! CDEvent and are declined.

use cdevents_sdk::spec_0_4_1::{
    pipelinerun_finished, pipelinerun_queued, pipelinerun_started, taskrun_finished,
    taskrun_started,
};
use cdevents_sdk::{CDEvent, Subject};
use relay_core::RunEvent;
use relay_core::model::{EventFormat, RunState};
use serde_json::Value;

use crate::cloudevents::resource;

/// Which CDEvent a run event maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    PipelineRunQueued,
    PipelineRunStarted,
    PipelineRunFinished,
    TaskRunStarted,
    TaskRunFinished,
}

/// The CDEvent of `ev`, or why it has none.
pub fn mapping(ev: &RunEvent) -> Result<Mapped, String> {
    if ev.format == EventFormat::Flux {
        return Err(format!("a Flux {} event has no CDEvents mapping", ev.kind));
    }
    let terminal = ev.state.is_terminal();
    match (ev.kind.as_str(), ev.state) {
        ("PipelineRun", RunState::Queued) => Ok(Mapped::PipelineRunQueued),
        ("PipelineRun", RunState::Started) => Ok(Mapped::PipelineRunStarted),
        ("PipelineRun", _) if terminal => Ok(Mapped::PipelineRunFinished),
        ("TaskRun", RunState::Started) => Ok(Mapped::TaskRunStarted),
        ("TaskRun", _) if terminal => Ok(Mapped::TaskRunFinished),
        (kind, state) => Err(format!("CDEvents 0.4 has no event for a {kind} {state}")),
    }
}

/// `success`, `failure` or `error` (the spec's outcomes): a cancelled or
/// timed-out run did not fail a task, it was stopped.
fn outcome(state: RunState) -> &'static str {
    match state {
        RunState::Succeeded => "success",
        RunState::Failed => "failure",
        _ => "error",
    }
}

fn errors(ev: &RunEvent) -> Option<String> {
    if ev.state == RunState::Succeeded {
        return None;
    }
    match (&ev.reason, &ev.message) {
        (Some(r), Some(m)) => Some(format!("{r}: {m}")),
        (Some(s), None) | (None, Some(s)) => Some(s.clone()),
        (None, None) => None,
    }
}

/// Builds the CDEvent. `source` is the context source (the producer);
/// `custom_data` goes to `customData` as JSON.
pub fn build(ev: &RunEvent, source: &str, custom_data: Option<Value>) -> Result<CDEvent, String> {
    let run_source = resource::path(ev);
    let url = ev.url.clone();
    let subject: Subject = match mapping(ev)? {
        Mapped::PipelineRunQueued => pipelinerun_queued::Content {
            pipeline_name: Some(pipeline_name(ev)),
            url,
        }
        .into(),
        Mapped::PipelineRunStarted => pipelinerun_started::Content {
            pipeline_name: pipeline_name(ev),
            // Required by the schema: the API path when no dashboard is known.
            url: url.unwrap_or_else(|| run_source.clone()),
        }
        .into(),
        Mapped::PipelineRunFinished => pipelinerun_finished::Content {
            errors: errors(ev),
            outcome: Some(outcome(ev.state).into()),
            pipeline_name: Some(pipeline_name(ev)),
            url,
        }
        .into(),
        Mapped::TaskRunStarted => taskrun_started::Content {
            pipeline_run: parent(ev)?.map(|(id, source)| taskrun_started::ContentPipelineRun {
                id,
                source: Some(source),
            }),
            task_name: Some(task_name(ev)),
            url,
        }
        .into(),
        Mapped::TaskRunFinished => taskrun_finished::Content {
            errors: errors(ev),
            outcome: Some(outcome(ev.state).into()),
            pipeline_run: parent(ev)?.map(|(id, source)| taskrun_finished::ContentPipelineRun {
                id,
                source: Some(source),
            }),
            task_name: Some(task_name(ev)),
            url,
        }
        .into(),
    };
    let subject = subject
        .with_id(id(&format!("{}/{}", ev.namespace, ev.name))?)
        .with_source(uri(&run_source)?);
    let mut cd = CDEvent::from(subject)
        .with_id(id(&ev.event_id)?)
        .with_source(uri(source)?)
        .with_timestamp(timestamp(ev));
    if let Some(data) = custom_data {
        cd = cd
            .with_custom_data(data)
            .with_custom_data_content_type("application/json".into());
    }
    Ok(cd)
}

fn pipeline_name(ev: &RunEvent) -> String {
    ev.pipeline.clone().unwrap_or_else(|| ev.name.clone())
}

/// The pipeline task's name (`unit-tests`), as Tekton's controller sends
/// it, else the Task's.
fn task_name(ev: &RunEvent) -> String {
    ev.pipeline_task
        .clone()
        .or_else(|| ev.task.clone())
        .unwrap_or_else(|| ev.name.clone())
}

/// The TaskRun's PipelineRun as a subject reference.
fn parent(ev: &RunEvent) -> Result<Option<(cdevents_sdk::Id, cdevents_sdk::UriReference)>, String> {
    let Some(p) = &ev.pipeline_run else {
        return Ok(None);
    };
    let pr = RunEvent {
        kind: "PipelineRun".into(),
        name: p.name.clone(),
        ..ev.clone()
    };
    Ok(Some((
        id(&format!("{}/{}", ev.namespace, p.name))?,
        uri(&resource::path(&pr))?,
    )))
}

fn id(s: &str) -> Result<cdevents_sdk::Id, String> {
    s.try_into()
        .map_err(|_| format!("{s:?} is not a valid CDEvents id"))
}

fn uri(s: &str) -> Result<cdevents_sdk::UriReference, String> {
    s.try_into()
        .map_err(|_| format!("{s:?} is not a valid URI-reference"))
}

/// The event's time, else now (a context timestamp is required).
fn timestamp(ev: &RunEvent) -> time::OffsetDateTime {
    ev.time
        .as_deref()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .unwrap_or_else(time::OffsetDateTime::now_utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_core::model::RunRef;

    fn json(cd: &CDEvent) -> Value {
        serde_json::to_value(cd).unwrap()
    }

    #[test]
    fn a_failed_pipelinerun_is_finished_with_outcome_failure() {
        let ev = relay_core::sample::run_event();
        let v = json(&build(&ev, "/relay", None).unwrap());
        assert_eq!(v["context"]["version"], "0.4.1");
        assert_eq!(
            v["context"]["type"],
            "dev.cdevents.pipelinerun.finished.0.2.0"
        );
        assert_eq!(v["context"]["id"], ev.event_id);
        assert_eq!(v["context"]["source"], "/relay");
        assert_eq!(v["context"]["timestamp"], "2024-05-14T10:58:00Z");
        assert_eq!(v["subject"]["id"], "ci/build-and-test-abcde");
        assert_eq!(v["subject"]["type"], "pipelineRun");
        let c = &v["subject"]["content"];
        assert_eq!(c["outcome"], "failure");
        assert_eq!(c["pipelineName"], "build-and-test");
        assert_eq!(
            c["errors"],
            "Failed: Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1"
        );
        // What the SDK reads back is what it wrote.
        let back: CDEvent = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(json(&back), v);
    }

    #[test]
    fn states_map_per_tep_0137() {
        let mut ev = relay_core::sample::run_event();
        for (state, want) in [
            (RunState::Queued, Ok(Mapped::PipelineRunQueued)),
            (RunState::Started, Ok(Mapped::PipelineRunStarted)),
            (RunState::Succeeded, Ok(Mapped::PipelineRunFinished)),
            (RunState::Cancelled, Ok(Mapped::PipelineRunFinished)),
            (RunState::TimedOut, Ok(Mapped::PipelineRunFinished)),
        ] {
            ev.state = state;
            assert_eq!(mapping(&ev), want, "{state}");
        }
        ev.state = RunState::Running;
        assert!(mapping(&ev).unwrap_err().contains("PipelineRun running"));
        ev.state = RunState::TimedOut;
        assert_eq!(outcome(ev.state), "error");
        ev.kind = "CustomRun".into();
        assert!(mapping(&ev).is_err());
        ev.kind = "TaskRun".into();
        ev.state = RunState::Queued;
        assert!(mapping(&ev).is_err(), "0.4 has no taskrun.queued");
        ev.format = EventFormat::Flux;
        ev.state = RunState::Succeeded;
        assert!(mapping(&ev).unwrap_err().contains("Flux"));
    }

    #[test]
    fn a_taskrun_names_its_pipelinerun() {
        let mut ev = relay_core::sample::run_event();
        ev.kind = "TaskRun".into();
        ev.name = "build-and-test-abcde-unit-tests".into();
        ev.state = RunState::Started;
        ev.task = None;
        ev.pipeline_task = Some("unit-tests".into());
        ev.pipeline_run = Some(RunRef {
            name: "build-and-test-abcde".into(),
            uid: None,
        });
        let v = json(&build(&ev, "/relay", Some(serde_json::json!({"a": 1}))).unwrap());
        assert_eq!(v["context"]["type"], "dev.cdevents.taskrun.started.0.2.0");
        let c = &v["subject"]["content"];
        assert_eq!(c["taskName"], "unit-tests");
        assert_eq!(c["pipelineRun"]["id"], "ci/build-and-test-abcde");
        assert_eq!(
            c["pipelineRun"]["source"],
            "/apis/tekton.dev/v1/namespaces/ci/pipelineruns/build-and-test-abcde"
        );
        assert_eq!(v["customData"]["a"], 1);
        assert_eq!(v["customDataContentType"], "application/json");
    }
}
