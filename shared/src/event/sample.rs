//! A representative event to render templates against at validation time.

use crate::event::model::{EventFormat, RunEvent, RunRef, RunState, ScmContext};

pub fn run_event() -> RunEvent {
    RunEvent {
        format: EventFormat::Tekton,
        event_id: "00000000-0000-4000-8000-000000000000".into(),
        event_type: "dev.tekton.event.pipelinerun.failed.v1".into(),
        phase: "failed".into(),
        time: Some("2024-05-14T10:58:00Z".into()),
        kind: "PipelineRun".into(),
        name: "build-and-test-abcde".into(),
        namespace: "ci".into(),
        uid: "6cad4a26-8d11-4ece-9738-f7d93d9c1724".into(),
        state: RunState::Failed,
        condition_status: "False".into(),
        reason: Some("Failed".into()),
        message: Some("Tasks Completed: 2 (Failed: 1, Cancelled 0), Skipped: 1".into()),
        pipeline: Some("build-and-test".into()),
        task: None,
        pipeline_task: None,
        finally: false,
        pipeline_run: Some(RunRef {
            name: "build-and-test-abcde".into(),
            uid: Some("6cad4a26-8d11-4ece-9738-f7d93d9c1724".into()),
        }),
        labels: Default::default(),
        annotations: Default::default(),
        started_at: Some("2024-05-14T10:54:00Z".into()),
        completed_at: Some("2024-05-14T10:58:00Z".into()),
        results: Default::default(),
        child_references: Vec::new(),
        pipeline_tasks: Vec::new(),
        finally_tasks: Vec::new(),
        skipped_tasks: Vec::new(),
        scm: ScmContext {
            url: Some("https://github.com/acme/widgets".into()),
            repo: Some("github.com/acme/widgets".into()),
            owner: Some("acme".into()),
            name: Some("widgets".into()),
            provider: Some("github".into()),
            sha: Some("0c5c7fd0a6a3a4506513270e269e0d37f2a74de4".into()),
            pull_request: Some(47),
            branch: Some("main".into()),
            event_type: Some("pull_request".into()),
            sender: Some("mchen".into()),
            title: Some("Add pagination".into()),
        },
        url: Some(
            "https://tekton.example/#/namespaces/ci/pipelineruns/build-and-test-abcde".into(),
        ),
    }
}
