//! The alert's stable key (`dedup_key`): the same for every run of one
//! pipeline on one repository and branch, so the next success there resolves
//! what a failure opened, whichever run it was.

use relay_core::escape;
use relay_core::model::{EventFormat, RunEvent};

/// PagerDuty's limit on `dedup_key`.
pub const MAX: usize = 255;

/// `tekton/<namespace>/<pipeline>/<owner>/<repo>@<branch>`, the repository
/// and branch when the event names them. A TaskRun's key adds `:<task>` (a
/// character Kubernetes names never hold), so a task's alert never resolves
/// its pipeline's. A Flux object's key is its kind and name.
pub fn incident_key(ev: &RunEvent) -> String {
    let mut key = match ev.format {
        EventFormat::Flux => format!("flux/{}/{}/{}", ev.namespace, ev.kind, ev.name),
        _ => format!("tekton/{}/{}", ev.namespace, subject(ev)),
    };
    match (&ev.scm.owner, &ev.scm.name, &ev.scm.repo) {
        (Some(o), Some(n), _) => key.push_str(&format!("/{o}/{n}")),
        (_, _, Some(r)) => key.push_str(&format!("/{r}")),
        _ => {}
    }
    if let Some(b) = ev.scm.branch.as_deref().filter(|b| !b.is_empty()) {
        key.push_str(&format!("@{b}"));
    }
    escape::bounded_key(&key, MAX)
}

/// What the alert is about within the namespace. A PipelineRun's own name is
/// the last resort only: it changes every run, so nothing would resolve.
fn subject(ev: &RunEvent) -> String {
    let pipeline = ev.pipeline.as_deref().unwrap_or_default();
    match ev.kind.as_str() {
        "PipelineRun" if pipeline.is_empty() => ev.name.clone(),
        "PipelineRun" => pipeline.to_string(),
        _ => {
            let task = ev
                .pipeline_task
                .as_deref()
                .or(ev.task.as_deref())
                .unwrap_or(&ev.name);
            if pipeline.is_empty() {
                format!("{}:{task}", ev.kind)
            } else {
                format!("{pipeline}:{task}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_pipeline_repository_and_branch() {
        let mut ev = relay_core::sample::run_event();
        assert_eq!(
            incident_key(&ev),
            "tekton/ci/build-and-test/acme/widgets@main"
        );
        // Another run of the same pipeline: the same key.
        ev.name = "build-and-test-zzzzz".into();
        ev.uid = "another".into();
        assert_eq!(
            incident_key(&ev),
            "tekton/ci/build-and-test/acme/widgets@main"
        );
        ev.scm.branch = Some("release/1.2".into());
        assert_eq!(
            incident_key(&ev),
            "tekton/ci/build-and-test/acme/widgets@release/1.2"
        );
        ev.scm = Default::default();
        assert_eq!(incident_key(&ev), "tekton/ci/build-and-test");
    }

    #[test]
    fn task_keys_differ_from_their_pipelines() {
        let mut ev = relay_core::sample::run_event();
        ev.kind = "TaskRun".into();
        ev.pipeline_task = Some("unit-tests".into());
        assert_eq!(
            incident_key(&ev),
            "tekton/ci/build-and-test:unit-tests/acme/widgets@main"
        );
        ev.pipeline = None;
        ev.pipeline_task = None;
        ev.task = Some("golang-test".into());
        assert_eq!(
            incident_key(&ev),
            "tekton/ci/TaskRun:golang-test/acme/widgets@main"
        );
    }

    #[test]
    fn long_keys_are_bounded_and_stable() {
        let mut ev = relay_core::sample::run_event();
        ev.scm.branch = Some("b".repeat(400));
        let key = incident_key(&ev);
        assert_eq!(key.chars().count(), MAX);
        assert_eq!(key, incident_key(&ev));
        ev.scm.branch = Some(format!("{}c", "b".repeat(399)));
        assert_ne!(key, incident_key(&ev));
    }
}
