//! The alert's alias: the same for every run of one pipeline on one
//! repository and branch, so the next success there closes what a failure
//! opened, whichever run it was.

use relay_core::escape;
use relay_core::model::{EventFormat, RunEvent};

/// Opsgenie's limit on `alias`.
pub const MAX: usize = 512;

/// `tekton:<namespace>:<pipeline>:<owner>:<repo>@<branch>`: the PagerDuty
/// provider's `dedup_key` with `:` for `/`, so closing by alias never
/// depends on an encoded slash surviving the URL path. A TaskRun's alias
/// names its task after a `+` (never in a Kubernetes name), so a task's
/// alert never closes its pipeline's.
pub fn alias(ev: &RunEvent) -> String {
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
    escape::bounded_key(&escape::one_line(&key.replace('/', ":"), usize::MAX), MAX)
}

/// What the alert is about within the namespace. A PipelineRun's own name is
/// the last resort only: it changes every run, so nothing would close.
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
                format!("{}+{task}", ev.kind)
            } else {
                format!("{pipeline}+{task}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_name_pipeline_repository_and_branch_without_slashes() {
        let mut ev = relay_core::sample::run_event();
        assert_eq!(alias(&ev), "tekton:ci:build-and-test:acme:widgets@main");
        ev.name = "build-and-test-zzzzz".into();
        ev.uid = "another".into();
        assert_eq!(alias(&ev), "tekton:ci:build-and-test:acme:widgets@main");
        ev.scm.owner = Some("group/sub".into());
        ev.scm.branch = Some("release/1.2".into());
        assert_eq!(
            alias(&ev),
            "tekton:ci:build-and-test:group:sub:widgets@release:1.2"
        );
        ev.scm = Default::default();
        assert_eq!(alias(&ev), "tekton:ci:build-and-test");
    }

    #[test]
    fn task_aliases_differ_from_their_pipelines() {
        let mut ev = relay_core::sample::run_event();
        ev.kind = "TaskRun".into();
        ev.pipeline_task = Some("unit-tests".into());
        assert_eq!(
            alias(&ev),
            "tekton:ci:build-and-test+unit-tests:acme:widgets@main"
        );
    }

    #[test]
    fn long_aliases_are_bounded_and_stable() {
        let mut ev = relay_core::sample::run_event();
        ev.scm.branch = Some("b\n".repeat(400));
        let a = alias(&ev);
        assert_eq!(a.chars().count(), MAX);
        assert!(!a.contains('\n'));
        assert_eq!(a, alias(&ev));
    }
}
