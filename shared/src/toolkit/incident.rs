//! An incident's stable key (PagerDuty's `dedup_key`, Opsgenie's `alias`):
//! the same for every run of one pipeline on one repository and branch, so
//! the next success there resolves what a failure opened, whichever run it
//! was.

use crate::event::escape::{self, inert};
use crate::event::model::{EventFormat, RunEvent, RunState};
use crate::toolkit::chat::{ChatView, StateStyle};

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

/// What an event does to its incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Open,
    Close,
}

/// A service's words for opening and closing an incident (`trigger` and
/// `resolve`, `create` and `close`), for settings errors and declines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verbs {
    pub open: &'static str,
    pub close: &'static str,
}

/// Which events open an incident and which close it: the states that open
/// one (default failed and timed out), a success closing it, and only the
/// event kinds acted on (default PipelineRun: a task's failure is its
/// pipeline's, paged once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    open_on: Vec<RunState>,
    kinds: Vec<String>,
    verbs: Verbs,
}

impl Lifecycle {
    /// From the settings `open_setting` (`triggerOn`, `createOn`: its name
    /// for errors) and `kinds`; each error is pushed onto `errs` with its
    /// path.
    pub fn new(
        open_setting: &str,
        open_on: Option<Vec<RunState>>,
        kinds: Option<Vec<String>>,
        verbs: Verbs,
        errs: &mut crate::event::field::FieldErrors,
    ) -> Lifecycle {
        let open_on = open_on.unwrap_or_else(|| vec![RunState::Failed, RunState::TimedOut]);
        if open_on.is_empty() {
            errs.push(open_setting, "name at least one state");
        }
        if let Some(i) = open_on.iter().position(|s| *s == RunState::Succeeded) {
            errs.push(
                format!("{open_setting}[{i}]"),
                format!(
                    "succeeded {}s the alert; it cannot {} one",
                    verbs.close, verbs.open
                ),
            );
        }
        let kinds = kinds.unwrap_or_else(|| vec!["PipelineRun".into()]);
        if kinds.is_empty() {
            errs.push("kinds", "name at least one kind");
        }
        errs.extend(crate::event::config::check::blank_items("kinds", &kinds));
        Lifecycle {
            open_on,
            kinds,
            verbs,
        }
    }

    /// What a run in `state` does, if anything.
    pub fn step(&self, state: RunState) -> Option<Step> {
        if self.open_on.contains(&state) {
            Some(Step::Open)
        } else if state == RunState::Succeeded {
            Some(Step::Close)
        } else {
            None
        }
    }

    /// Why provider type `provider` does not act on `ev`, if it does not:
    /// another kind, or a state that neither opens nor closes (nothing is
    /// claimed either, so a cancelled run leaves the incident as it was).
    pub fn declines(&self, provider: &str, ev: &RunEvent) -> Option<String> {
        if !self.kinds.contains(&ev.kind) {
            return Some(format!(
                "{provider} acts on {} events (settings kinds), not {}",
                self.kinds.join(", "),
                ev.kind
            ));
        }
        if self.step(ev.state).is_none() {
            return Some(format!(
                "a {} run neither {}s nor {}s an alert",
                StateStyle::of(ev.state).word,
                self.verbs.open,
                self.verbs.close
            ));
        }
        None
    }
}

/// `PipelineRun build-and-test-x7k2p failed (acme/widgets@main)`, each
/// part from the event made inert: an incident's one-line title.
pub fn headline(view: &ChatView) -> String {
    let fact = |label| {
        view.facts
            .iter()
            .find(|f| f.label == label)
            .map(|f| inert(&f.value))
    };
    let mut s = inert(&view.title);
    match (fact("Repository"), fact("Branch")) {
        (Some(r), Some(b)) => s.push_str(&format!(" ({r}@{b})")),
        (Some(r), None) => s.push_str(&format!(" ({r})")),
        _ => {}
    }
    s
}

/// An incident service (PagerDuty, Opsgenie): what it supplies of the
/// incident family. Wrapped in [`IncidentProvider`], it is a `Provider`
/// whose Notifications take no action and only `Params`, which declines
/// what its [`Lifecycle`] does not act on, and which sends one request per
/// event, opening or closing the incident of the event's [`key`].
///
/// A wrapper, not a blanket impl as the git hosts' `GitHost`: Rust allows
/// one blanket impl of `Provider`, and the git hosts have it.
#[async_trait::async_trait]
pub trait IncidentService: Send + Sync + 'static {
    /// The provider type, as Provider documents name it.
    const TYPE: &'static str;
    /// What a Notification gets instead of an action, for the error that
    /// refuses one (`failures trigger, successes resolve`).
    const NO_ACTION: &'static str;
    /// How the service spells an incident's key.
    const KEY_FORMAT: KeyFormat;
    /// The delivery detail's words for an opened and a closed incident
    /// (`triggered`, `resolved`), before its key.
    const DONE: Verbs;
    /// The Notification params.
    type Params: serde::de::DeserializeOwned + Send + Sync + 'static;

    /// Which events open the incident, and which close it.
    fn lifecycle(&self) -> &Lifecycle;

    /// The request that takes `step` on the incident keyed `key`.
    async fn request(
        &self,
        input: &crate::delivery::provider::DeliveryInput<'_>,
        params: &Self::Params,
        step: Step,
        key: &str,
    ) -> Result<crate::delivery::outbound::OutboundRequest, crate::delivery::verdict::Verdict>;
}

/// An [`IncidentService`] as a `Provider`.
pub struct IncidentProvider<S>(pub S);

#[async_trait::async_trait]
impl<S: IncidentService> crate::delivery::provider::Provider for IncidentProvider<S> {
    fn type_name(&self) -> &'static str {
        S::TYPE
    }

    fn compile_notification(
        &self,
        action: Option<&str>,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<crate::delivery::notification::Compiled, crate::event::field::FieldErrors> {
        let action = crate::toolkit::params::no_action(S::TYPE, action, S::NO_ACTION);
        crate::delivery::notification::compile::<(), S::Params>(action, params)
    }

    /// Only the states that open or close are sent; nothing else is
    /// claimed either, so a cancelled run leaves the incident as it was.
    fn declines(&self, ev: &RunEvent) -> Option<String> {
        self.0.lifecycle().declines(S::TYPE, ev)
    }

    async fn deliver(
        &self,
        input: &crate::delivery::provider::DeliveryInput<'_>,
        http: &crate::delivery::transport::Http<'_>,
    ) -> Result<String, crate::delivery::verdict::Verdict> {
        let ev = input.event;
        let Some(step) = self.0.lifecycle().step(ev.state) else {
            return Ok(String::new());
        };
        let crate::delivery::notification::Parsed { params, .. } =
            input
                .compiled
                .get::<crate::delivery::notification::Parsed<(), S::Params>>()?;
        let key = key(ev, &S::KEY_FORMAT);
        let req = self.0.request(input, params, step, &key).await?;
        http.send(&crate::delivery::outbound::Outbound::Http(req))
            .await?;
        Ok(match step {
            Step::Open => format!("{} {key}", S::DONE.open),
            Step::Close => format!("{} {key}", S::DONE.close),
        })
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
        let mut ev = crate::event::sample::run_event();
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
        let mut ev = crate::event::sample::run_event();
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
        let mut ev = crate::event::sample::run_event();
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

    const VERBS: Verbs = Verbs {
        open: "trigger",
        close: "resolve",
    };

    #[test]
    fn a_lifecycle_opens_on_its_states_and_closes_on_success() {
        let mut errs = crate::event::field::FieldErrors::new();
        let l = Lifecycle::new("triggerOn", None, None, VERBS, &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        for (state, step) in [
            (RunState::Failed, Some(Step::Open)),
            (RunState::TimedOut, Some(Step::Open)),
            (RunState::Succeeded, Some(Step::Close)),
            (RunState::Cancelled, None),
            (RunState::Running, None),
        ] {
            assert_eq!(l.step(state), step, "{state}");
        }
        let mut ev = crate::event::sample::run_event();
        assert_eq!(l.declines("incident", &ev), None);
        ev.state = RunState::Cancelled;
        assert_eq!(
            l.declines("incident", &ev).unwrap(),
            "a cancelled run neither triggers nor resolves an alert"
        );
        ev.state = RunState::Failed;
        ev.kind = "TaskRun".into();
        assert_eq!(
            l.declines("incident", &ev).unwrap(),
            "incident acts on PipelineRun events (settings kinds), not TaskRun"
        );
        let l = Lifecycle::new(
            "triggerOn",
            Some(vec![RunState::Cancelled]),
            Some(vec!["TaskRun".into()]),
            VERBS,
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(l.step(RunState::Failed), None);
        assert_eq!(l.step(RunState::Cancelled), Some(Step::Open));
    }

    #[test]
    fn lifecycle_settings_errors_name_their_path() {
        use crate::event::field::{FieldError, FieldErrors};
        let mut errs = FieldErrors::new();
        Lifecycle::new(
            "createOn",
            Some(vec![RunState::Failed, RunState::Succeeded]),
            Some(vec!["PipelineRun".into(), " ".into()]),
            Verbs {
                open: "create",
                close: "close",
            },
            &mut errs,
        );
        assert_eq!(
            errs,
            FieldErrors::from_iter([
                FieldError::new(
                    "createOn[1]",
                    "succeeded closes the alert; it cannot create one"
                ),
                FieldError::new("kinds[1]", "must not be empty"),
            ])
        );
        let mut errs = FieldErrors::new();
        Lifecycle::new("triggerOn", Some(vec![]), Some(vec![]), VERBS, &mut errs);
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["triggerOn", "kinds"]);
    }

    #[test]
    fn a_headline_names_the_run_repository_and_branch() {
        let mut ev = crate::event::sample::run_event();
        ev.scm.branch = Some("@here".into());
        assert_eq!(
            headline(&ChatView::of(&ev)),
            "PipelineRun build-and-test-abcde failed (acme/widgets@@\u{2060}here)"
        );
        ev.scm = Default::default();
        assert_eq!(
            headline(&ChatView::of(&ev)),
            "PipelineRun build-and-test-abcde failed"
        );
    }
}
