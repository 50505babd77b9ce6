//! An incident's stable key (PagerDuty's `dedup_key`, Opsgenie's `alias`):
//! the same for every run of one pipeline on one repository and branch, so
//! the next success there resolves what a failure opened, whichever run it
//! was.

use crate::escape;
use crate::model::{EventFormat, RunEvent};

/// How a service wants the key spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFormat {
    /// Between the key's parts, and in place of every `/` within them
    /// (`:` where the key travels in a URL path, so closing by it never
    /// depends on an encoded slash surviving).
    pub separator: char,
    /// Between a TaskRun's pipeline (or kind) and its task: a character
    /// Kubernetes names never hold, and not the separator.
    pub task_separator: char,
    /// The service's limit: a longer key is cut, keeping a hash of it whole.
    pub max: usize,
}

/// `tekton/<namespace>/<pipeline>/<owner>/<repo>@<branch>` (with `format`'s
/// separator), the repository and branch when the event names them. A
/// TaskRun's key names its task after the task separator, so a task's alert
/// never resolves its pipeline's. A Flux object's key is its kind and name.
/// On one line (no control character) and within `format.max`.
pub fn key(ev: &RunEvent, format: &KeyFormat) -> String {
    let mut key = match ev.format {
        EventFormat::Flux => format!("flux/{}/{}/{}", ev.namespace, ev.kind, ev.name),
        _ => format!(
            "tekton/{}/{}",
            ev.namespace,
            subject(ev, format.task_separator)
        ),
    };
    match (&ev.scm.owner, &ev.scm.name, &ev.scm.repo) {
        (Some(o), Some(n), _) => key.push_str(&format!("/{o}/{n}")),
        (_, _, Some(r)) => key.push_str(&format!("/{r}")),
        _ => {}
    }
    if let Some(b) = ev.scm.branch.as_deref().filter(|b| !b.is_empty()) {
        key.push_str(&format!("@{b}"));
    }
    if format.separator != '/' {
        key = key.replace('/', &format.separator.to_string());
    }
    escape::bounded_key(&escape::one_line(&key, usize::MAX), format.max)
}

/// What the alert is about within the namespace. A PipelineRun's own name is
/// the last resort only: it changes every run, so nothing would resolve.
fn subject(ev: &RunEvent, task_separator: char) -> String {
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
                format!("{}{task_separator}{task}", ev.kind)
            } else {
                format!("{pipeline}{task_separator}{task}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLASHES: KeyFormat = KeyFormat {
        separator: '/',
        task_separator: ':',
        max: 255,
    };
    const COLONS: KeyFormat = KeyFormat {
        separator: ':',
        task_separator: '+',
        max: 512,
    };

    #[test]
    fn keys_name_pipeline_repository_and_branch() {
        let mut ev = crate::sample::run_event();
        assert_eq!(
            key(&ev, &SLASHES),
            "tekton/ci/build-and-test/acme/widgets@main"
        );
        assert_eq!(
            key(&ev, &COLONS),
            "tekton:ci:build-and-test:acme:widgets@main"
        );
        // Another run of the same pipeline: the same key.
        ev.name = "build-and-test-zzzzz".into();
        ev.uid = "another".into();
        assert_eq!(
            key(&ev, &SLASHES),
            "tekton/ci/build-and-test/acme/widgets@main"
        );
        ev.scm.owner = Some("group/sub".into());
        ev.scm.branch = Some("release/1.2".into());
        assert_eq!(
            key(&ev, &SLASHES),
            "tekton/ci/build-and-test/group/sub/widgets@release/1.2"
        );
        assert_eq!(
            key(&ev, &COLONS),
            "tekton:ci:build-and-test:group:sub:widgets@release:1.2",
            "no slash left anywhere"
        );
        ev.scm = Default::default();
        assert_eq!(key(&ev, &SLASHES), "tekton/ci/build-and-test");
    }

    #[test]
    fn task_keys_differ_from_their_pipelines() {
        let mut ev = crate::sample::run_event();
        ev.kind = "TaskRun".into();
        ev.pipeline_task = Some("unit-tests".into());
        assert_eq!(
            key(&ev, &SLASHES),
            "tekton/ci/build-and-test:unit-tests/acme/widgets@main"
        );
        assert_eq!(
            key(&ev, &COLONS),
            "tekton:ci:build-and-test+unit-tests:acme:widgets@main"
        );
        ev.pipeline = None;
        ev.pipeline_task = None;
        ev.task = Some("golang-test".into());
        assert_eq!(
            key(&ev, &SLASHES),
            "tekton/ci/TaskRun:golang-test/acme/widgets@main"
        );
    }

    #[test]
    fn long_keys_are_bounded_stable_and_on_one_line() {
        let mut ev = crate::sample::run_event();
        for f in [SLASHES, COLONS] {
            ev.scm.branch = Some("b\n".repeat(400));
            let k = key(&ev, &f);
            assert_eq!(k.chars().count(), f.max);
            assert!(!k.contains('\n'));
            assert_eq!(k, key(&ev, &f));
            ev.scm.branch = Some(format!("{}c", "b\n".repeat(399)));
            assert_ne!(k, key(&ev, &f));
        }
    }
}
