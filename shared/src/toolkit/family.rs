//! The git-host family: what GitHub, GitLab, Gitea, Bitbucket Cloud and
//! Server and Azure DevOps share, written once. A host implements
//! [`GitHost`] — how it reads the repository an event names, how it posts a
//! commit status, how it lists, creates and updates the messages of a pull
//! request — and is a [`Provider`] by the blanket impl below, which does the
//! rest: compiling the Notification's action (`status`, or the host's
//! summary action: `comment`, `note`, `thread`), dispatching on it,
//! declining events that name no repository (Flux's), the commit checks,
//! the state keys, posting a status only when it changed, and keeping one
//! summary message per pull request and run (found by its marker, adopting
//! only the relay's own, created by exactly one replica).

use async_trait::async_trait;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::delivery::notification::{Compiled, Parsed, compile};
use crate::delivery::outbound::OutboundRequest;
use crate::delivery::provider::{DeliveryInput, Provider};
use crate::delivery::state::Kind;
use crate::delivery::transport::Http;
use crate::delivery::verdict::{Verdict, default_classify};
use crate::event::field::FieldErrors;
use crate::event::model::{EventFormat, RunEvent};
use crate::toolkit::message::{
    MessageAction, SummaryMessages, post_status_once, summary_text, upsert_summary,
};
use crate::toolkit::params::{GitAction, commit_sha};

/// What a Notification of a git host does: post a commit status, keep the
/// run's summary message, or one of the host's own actions (GitHub's check
/// runs and deployments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAction<O> {
    Status,
    Summary,
    Other(O),
}

/// The own actions of a host that has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoOther {}

/// One commit status, as the host words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// The context as the delivery detail names it.
    pub context: String,
    /// The parts of its state key after the repository's and the commit.
    pub key: Vec<String>,
    pub state: &'static str,
    pub description: String,
}

/// A git host. Implementing it makes the host a [`Provider`].
#[async_trait]
pub trait GitHost: Send + Sync + 'static {
    /// The provider type, as Provider documents name it.
    const TYPE: &'static str;
    /// The action that keeps the run's summary on a pull request
    /// (`comment`, `note`, `thread`); `None`: statuses only.
    const SUMMARY: Option<&'static str>;
    /// What the host calls a pull request, for delivery details.
    const CHANGE_REQUEST: &'static str = "pull request";

    /// The Notification params.
    type Params: DeserializeOwned + Send + Sync + 'static;
    /// The host's own actions ([`NoOther`] for none).
    type Other: Send + Sync + 'static;
    /// A repository, checked and allowed.
    type Repo: Send + Sync;

    /// The Notification's action: `status` (the default), the summary
    /// action, or (overridden) the host's own.
    fn parse_action(action: Option<&str>) -> Result<HostAction<Self::Other>, String> {
        match Self::SUMMARY {
            Some(summary) => GitAction::parse(action, summary).map(|a| match a {
                GitAction::Status => HostAction::Status,
                GitAction::Summary => HostAction::Summary,
            }),
            None => match action {
                None | Some("status") => Ok(HostAction::Status),
                Some(a) => Err(format!("unknown action {a:?}, expected status")),
            },
        }
    }

    /// The repository `ev` names, checked and allowed (the Provider's
    /// `repositories`), or a permanent failure saying why.
    fn repository(&self, ev: &RunEvent) -> Result<Self::Repo, Verdict>;

    /// The leading parts of the state keys of `repo`: the repository and,
    /// where the host's keys have it, the server.
    fn key_parts(&self, repo: &Self::Repo) -> Vec<String>;

    /// Whether `ev` gets a status (PipelineRuns do; GitHub's per-task
    /// statuses add TaskRuns).
    fn posts_status(&self, ev: &RunEvent, _params: &Self::Params) -> bool {
        ev.kind == "PipelineRun"
    }

    /// The status `ev` shows on commit `sha`, or why none can be posted.
    fn status_line(
        &self,
        ev: &RunEvent,
        params: &Self::Params,
        sha: &str,
    ) -> Result<StatusLine, Verdict>;

    /// Posts `line` on commit `sha` of `repo`.
    async fn post_status(
        &self,
        http: &Http<'_>,
        ev: &RunEvent,
        params: &Self::Params,
        repo: &Self::Repo,
        sha: &str,
        line: &StatusLine,
    ) -> Result<(), Verdict>;

    /// The hidden first line that marks the summary message of
    /// `notification` for run `run` (an HTML comment by default).
    fn marker(&self, notification: &str, run: &str) -> String {
        format!("<!-- tekton-relay:{notification}:{run} -->")
    }

    /// The summary messages of pull request `pr` of `repo`: how they are
    /// listed (and whose are the relay's own), created and updated.
    fn messages<'a>(
        &'a self,
        _http: &'a Http<'_>,
        _repo: &'a Self::Repo,
        _pr: &'a str,
    ) -> Box<dyn SummaryMessages + Send + 'a> {
        Box::new(NoMessages)
    }

    /// After the summary message was created or updated (`record`, as the
    /// store keeps it): Azure DevOps closes a succeeded run's thread.
    /// `parts` are its state key's.
    #[allow(clippy::too_many_arguments)]
    async fn summary_kept(
        &self,
        _input: &DeliveryInput<'_>,
        _http: &Http<'_>,
        _repo: &Self::Repo,
        _pr: &str,
        _parts: &[String],
        _record: &str,
    ) -> Result<(), Verdict> {
        Ok(())
    }

    /// The host's own actions.
    async fn other(
        &self,
        _action: &Self::Other,
        _input: &DeliveryInput<'_>,
        _params: &Self::Params,
        _http: &Http<'_>,
    ) -> Result<String, Verdict> {
        Err(Verdict::permanent(format!(
            "internal error: {} has no action of its own",
            Self::TYPE
        )))
    }

    /// Classifies the answer to `request` ([`Provider::classify`]).
    fn classify_answer(
        &self,
        _request: &OutboundRequest,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> Verdict {
        default_classify(status, headers, body)
    }
}

/// The messages of a host that keeps no summary (never asked: its
/// Notifications cannot take the summary action).
struct NoMessages;

#[async_trait]
impl SummaryMessages for NoMessages {
    async fn find(&self, _marker: &str) -> Result<Option<String>, Verdict> {
        Ok(None)
    }
    async fn create(&self, _text: &str) -> Result<String, Verdict> {
        Err(Verdict::permanent("this host keeps no summary"))
    }
    async fn update(&self, _id: &str, _text: &str) -> Result<(), Verdict> {
        Err(Verdict::permanent("this host keeps no summary"))
    }
}

/// Why a git host will not act on `ev`: a Flux event names an object in a
/// cluster, no repository or commit, so there is nothing to post on.
pub fn declines(ev: &RunEvent) -> Option<String> {
    (ev.format == EventFormat::Flux).then(|| {
        format!(
            "a Flux event ({} {}) names no repository or commit: git hosts post nothing for it",
            ev.kind,
            crate::toolkit::githost::quoted(&ev.name)
        )
    })
}

/// Posts the commit status of an event, unless it is unchanged.
async fn status<H: GitHost>(
    host: &H,
    input: &DeliveryInput<'_>,
    params: &H::Params,
    http: &Http<'_>,
) -> Result<String, Verdict> {
    let ev = input.event;
    if !host.posts_status(ev, params) {
        return Ok("not a PipelineRun: no status".into());
    }
    let repo = host.repository(ev)?;
    let sha = commit_sha(ev)?;
    let line = host.status_line(ev, params, sha)?;
    let mut parts = host.key_parts(&repo);
    parts.push(sha.to_string());
    parts.extend(line.key.iter().cloned());
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let key = input.state.key(Kind::CommitStatus, &parts);
    post_status_once(
        input.state,
        key,
        &line.context,
        line.state,
        &line.description,
        || host.post_status(http, ev, params, &repo, sha, &line),
    )
    .await
}

/// Keeps the run's summary message on the event's pull request.
async fn summary<H: GitHost>(
    host: &H,
    input: &DeliveryInput<'_>,
    http: &Http<'_>,
) -> Result<String, Verdict> {
    let what = H::SUMMARY.unwrap_or("summary");
    let ev = input.event;
    let repo = host.repository(ev)?;
    let Some(pr) = ev.scm.pull_request else {
        return Ok(format!("not a {}: no {what}", H::CHANGE_REQUEST));
    };
    let Some(summary) = input.summary else {
        return Ok(format!("not part of a PipelineRun: no {what}"));
    };
    // Only uid characters, so nothing can end the marker early.
    let run: String = summary
        .uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let marker = host.marker(input.notification, &run);
    let text = summary_text(input, &marker)?.unwrap_or_default();
    let pr = pr.to_string();
    let mut parts = host.key_parts(&repo);
    parts.extend([pr.clone(), input.notification.to_string(), run]);
    let key_parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let key = input.state.key(Kind::Summary, &key_parts);
    let messages = host.messages(http, &repo, &pr);
    let action = upsert_summary(input.state, &key, &marker, &text, messages.as_ref()).await?;
    if let MessageAction::Created(record) | MessageAction::Updated(record) = &action {
        host.summary_kept(input, http, &repo, &pr, &parts, record)
            .await?;
    }
    action.into_result(what)
}

#[async_trait]
impl<H: GitHost> Provider for H {
    fn type_name(&self) -> &'static str {
        H::TYPE
    }

    fn uses_summary(&self) -> bool {
        H::SUMMARY.is_some()
    }

    fn compile_notification(
        &self,
        action: Option<&str>,
        params: &Map<String, Value>,
    ) -> Result<Compiled, FieldErrors> {
        compile::<HostAction<H::Other>, H::Params>(H::parse_action(action), params)
    }

    fn declines(&self, event: &RunEvent) -> Option<String> {
        declines(event)
    }

    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let Parsed { action, params } = input
            .compiled
            .get::<Parsed<HostAction<H::Other>, H::Params>>()?;
        match action {
            HostAction::Status => status(self, input, params, http).await,
            HostAction::Summary => summary(self, input, http).await,
            HostAction::Other(o) => self.other(o, input, params, http).await,
        }
    }

    fn classify(
        &self,
        request: &OutboundRequest,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> Verdict {
        self.classify_answer(request, status, headers, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct StatusOnly;

    #[async_trait]
    impl GitHost for StatusOnly {
        const TYPE: &'static str = "statusonly";
        const SUMMARY: Option<&'static str> = None;
        type Params = crate::toolkit::params::StatusParams;
        type Other = NoOther;
        type Repo = ();

        fn repository(&self, _ev: &RunEvent) -> Result<(), Verdict> {
            Ok(())
        }
        fn key_parts(&self, _repo: &()) -> Vec<String> {
            Vec::new()
        }
        fn status_line(
            &self,
            _ev: &RunEvent,
            _params: &Self::Params,
            _sha: &str,
        ) -> Result<StatusLine, Verdict> {
            Err(Verdict::permanent("unused"))
        }
        async fn post_status(
            &self,
            _http: &Http<'_>,
            _ev: &RunEvent,
            _params: &Self::Params,
            _repo: &(),
            _sha: &str,
            _line: &StatusLine,
        ) -> Result<(), Verdict> {
            Ok(())
        }
    }

    #[test]
    fn flux_events_are_declined_and_runs_are_not() {
        let mut ev = crate::event::sample::run_event();
        assert_eq!(StatusOnly.declines(&ev), None);
        ev.format = EventFormat::Flux;
        ev.kind = "Kustomization".into();
        ev.name = "apps".into();
        let why = StatusOnly.declines(&ev).unwrap();
        assert!(why.contains("Kustomization \"apps\""), "{why}");
        assert!(why.contains("names no repository or commit"), "{why}");
    }

    #[test]
    fn a_host_without_a_summary_takes_status_only() {
        assert!(!StatusOnly.uses_summary());
        assert_eq!(StatusOnly.type_name(), "statusonly");
        assert!(StatusOnly.compile_notification(None, &Map::new()).is_ok());
        assert!(
            StatusOnly
                .compile_notification(Some("status"), &Map::new())
                .is_ok()
        );
        let errs = StatusOnly
            .compile_notification(Some("comment"), &Map::new())
            .unwrap_err();
        assert_eq!(errs[0].path, "action");
        assert!(errs[0].message.contains("expected status"), "{errs:?}");
    }
}
