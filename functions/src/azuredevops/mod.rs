//! The `azuredevops` provider: commit statuses and a pull request comment
//! thread with the PipelineRun summary, updated in place, on Azure DevOps
//! Services or Azure DevOps Server.
//!
//! How run states show as commit statuses:
//!
//! | relay state | status state |
//! |---|---|
//! | queued, started, running | pending |
//! | succeeded | succeeded |
//! | failed, timed_out | failed |
//! | cancelled | error |
//!
//! The summary thread is closed once its run succeeded; it is created
//! active, and stays so when the run fails.

pub mod repo;

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode};
use relay_core::RunEvent;
use relay_core::RunState;
use relay_core::config::ProviderDoc;
use relay_core::escape;
use relay_core::family::{GitHost, NoOther, StatusLine};
use relay_core::field::FieldErrors;
use relay_core::githost::{RepoPath, Repositories, api_url, check_name};
use relay_core::message::{Identity, LastPosted, MEMORY, SummaryMessages, adopt_own, json_text};
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderFactory, Verdict, default_classify,
    parse_settings, status_context,
};
use relay_core::secret::SecretFile;
use relay_core::state::{Kind, StateKey};
use relay_core::transport::{Http, Response};
use serde::Deserialize;
use serde_json::{Value, json};

pub use repo::AdoRepo;

pub const TYPE: &str = "azuredevops";
const DEFAULT_BASE: &str = "https://dev.azure.com";
const API_VERSION: &str = "7.1";
const DESCRIPTION_MAX: usize = 255;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzureDevopsSettings {
    /// `https://dev.azure.com`, or a server's collection root such as
    /// `https://ado.example.com/tfs`.
    #[serde(default, rename = "baseURL")]
    pub base_url: Option<url::Url>,
    /// A personal access token with Code (status) for statuses, Code (read
    /// & write) for PR threads.
    pub token_file: SecretFile,
    /// The repositories this Provider may write to,
    /// `organization/project/repository` glob patterns (`acme/Widgets/*`,
    /// `acme/*/widgets`); an event naming another is refused
    /// (dead-lettered) before any request. Unset: any repository the token
    /// reaches. Recommended, since events name the repository.
    #[serde(default)]
    pub repositories: Repositories,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Params {
    /// Status name (default `tekton/<pipeline>`).
    #[serde(default)]
    pub context: Option<String>,
    /// Status genre, shown before the name (default `tekton`).
    #[serde(default)]
    pub genre: Option<String>,
}

/// The status state of a run state (the module's table).
pub fn status_state(s: RunState) -> &'static str {
    match s {
        RunState::Queued | RunState::Started | RunState::Running => "pending",
        RunState::Succeeded => "succeeded",
        RunState::Failed | RunState::TimedOut => "failed",
        RunState::Cancelled => "error",
    }
}

pub struct AzureDevops {
    base: url::Url,
    token: SecretFile,
    repositories: Repositories,
    /// The user id the token's comments show.
    identity: Identity,
}

pub struct AzureDevopsFactory;

impl ProviderFactory for AzureDevopsFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: AzureDevopsSettings = parse_settings(doc)?;
        let base = match s.base_url {
            Some(u) if matches!(u.scheme(), "https" | "http") && !u.cannot_be_a_base() => u,
            Some(_) => {
                return Err(FieldErrors::one(
                    "baseURL",
                    "expected an http(s) URL such as https://dev.azure.com",
                ));
            }
            None => url::Url::parse(DEFAULT_BASE).expect("the default base URL parses"),
        };
        Ok(Arc::new(AzureDevops {
            base,
            token: s.token_file,
            repositories: s.repositories,
            identity: Identity::default(),
        }))
    }
}

/// The repository of an event, every part checked, or why it cannot be
/// posted.
fn target(ev: &RunEvent) -> Result<AdoRepo, Verdict> {
    let url = ev.scm.url.as_deref().ok_or_else(|| {
        Verdict::permanent(
            "the event names no repository (relay.tekton.dev/repo-url, Pipelines-as-Code \
             repo-url, or a url param)",
        )
    })?;
    let r = repo::parse(url).map_err(Verdict::permanent)?;
    check_name("organization", &r.organization)?;
    check_name("project", &r.project)?;
    check_name("repository", &r.repository)?;
    Ok(r)
}

/// `"{threadId}/{commentId}"`, as the message-id record holds them.
fn thread_ids(record: &str) -> Result<(u64, u64), Verdict> {
    record
        .split_once('/')
        .and_then(|(t, c)| Some((t.parse().ok()?, c.parse().ok()?)))
        .ok_or_else(|| Verdict::permanent(format!("bad thread record {record:?}")))
}

impl AzureDevops {
    /// `{base}/{org}/{project}/_apis/git/repositories/{repo}/{tail}?api-version=7.1`,
    /// every segment percent-encoded (projects often hold spaces).
    fn url(&self, r: &AdoRepo, tail: &[&str]) -> Result<url::Url, Verdict> {
        let mut path = vec![
            r.organization.as_str(),
            &r.project,
            "_apis",
            "git",
            "repositories",
            &r.repository,
        ];
        path.extend_from_slice(tail);
        let mut u = api_url(&self.base, &path)?;
        u.query_pairs_mut().append_pair("api-version", API_VERSION);
        Ok(u)
    }

    /// The id of the token's user, as comments show it (`author.id`), from
    /// the organization's `_apis/connectionData`.
    async fn me(&self, r: &AdoRepo, http: &Http<'_>) -> Result<String, Verdict> {
        let url = api_url(&self.base, &[&r.organization, "_apis", "connectionData"])?;
        let me: Value = self.call(http, Method::GET, url, None).await?.json()?;
        json_text(&me["authenticatedUser"]["id"])
            .ok_or_else(|| Verdict::permanent("connectionData answered no authenticatedUser id"))
    }

    async fn call(
        &self,
        http: &Http<'_>,
        method: Method,
        url: url::Url,
        body: Option<Value>,
    ) -> Result<Response, Verdict> {
        let mut req =
            OutboundRequest::post_json(url, body.map(|b| b.to_string()).unwrap_or_default());
        req.method = method;
        let token = self
            .token
            .read()
            .await
            .map_err(Verdict::from)?;
        // A PAT is sent as the password of Basic auth with an empty user.
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!(":{}", token.expose()));
        req.sensitive_header(http::header::AUTHORIZATION, &format!("Basic {basic}"))
            .map_err(|e| Verdict::permanent(e.to_string()))?;
        http.send(&Outbound::Http(req)).await
    }

    /// Closes the thread of a succeeded run, once.
    async fn close(
        &self,
        input: &DeliveryInput<'_>,
        r: &AdoRepo,
        pr: &str,
        closed: StateKey,
        record: &str,
        http: &Http<'_>,
    ) -> Result<(), Verdict> {
        let Some(last) = LastPosted::unless_same(input.state, closed, "closed").await else {
            return Ok(());
        };
        let (thread, _) = thread_ids(record)?;
        let url = self.url(r, &["pullRequests", pr, "threads", &thread.to_string()])?;
        self.call(http, Method::PATCH, url, Some(json!({"status": "closed"})))
            .await?;
        last.record("closed", MEMORY).await;
        Ok(())
    }
}

#[async_trait]
impl GitHost for AzureDevops {
    const TYPE: &'static str = TYPE;
    const SUMMARY: Option<&'static str> = Some("thread");
    type Params = Params;
    type Other = NoOther;
    type Repo = AdoRepo;

    /// The repository of an event, checked and allowed (as
    /// `organization/project/repository`).
    fn repository(&self, ev: &RunEvent) -> Result<AdoRepo, Verdict> {
        let r = target(ev)?;
        let owner = format!("{}/{}", r.organization, r.project);
        self.repositories
            .permit(RepoPath::new(&owner, &r.repository)?)?;
        Ok(r)
    }

    fn key_parts(&self, r: &AdoRepo) -> Vec<String> {
        vec![
            r.organization.clone(),
            r.project.clone(),
            r.repository.clone(),
        ]
    }

    fn status_line(
        &self,
        ev: &RunEvent,
        params: &Params,
        _sha: &str,
    ) -> Result<StatusLine, Verdict> {
        let name = status_context(params.context.as_deref(), ev);
        let genre = genre(params);
        Ok(StatusLine {
            context: format!("{genre}/{name}"),
            key: vec![genre, name],
            state: status_state(ev.state),
            description: escape::one_line(
                ev.reason.as_deref().unwrap_or(ev.state.as_str()),
                DESCRIPTION_MAX,
            ),
        })
    }

    async fn post_status(
        &self,
        http: &Http<'_>,
        ev: &RunEvent,
        params: &Params,
        r: &AdoRepo,
        sha: &str,
        line: &StatusLine,
    ) -> Result<(), Verdict> {
        let mut body = json!({
            "state": line.state,
            "description": line.description,
            "context": {"name": status_context(params.context.as_deref(), ev), "genre": genre(params)},
        });
        if let Some(u) = ev.url.as_deref() {
            body["targetUrl"] = u.into();
        }
        let url = self.url(r, &["commits", sha, "statuses"])?;
        self.call(http, Method::POST, url, Some(body))
            .await
            .map(|_| ())
    }

    fn messages<'a>(
        &'a self,
        http: &'a Http<'_>,
        repo: &'a AdoRepo,
        pr: &'a str,
    ) -> Box<dyn SummaryMessages + Send + 'a> {
        Box::new(Threads {
            ado: self,
            http,
            repo,
            pr,
        })
    }

    /// A succeeded run's thread is closed.
    async fn summary_kept(
        &self,
        input: &DeliveryInput<'_>,
        http: &Http<'_>,
        r: &AdoRepo,
        pr: &str,
        parts: &[String],
        record: &str,
    ) -> Result<(), Verdict> {
        let done = input.summary.and_then(|s| s.run.as_ref()).map(|e| e.state);
        if done != Some(RunState::Succeeded) {
            return Ok(());
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let closed = input.state.key(Kind::SummaryClosed, &parts);
        self.close(input, r, pr, closed, record, http).await
    }

    /// A wrong or expired PAT is answered `203` with an HTML sign-in page:
    /// a failure, not a success, and no retry will fix it.
    fn classify_answer(
        &self,
        _request: &OutboundRequest,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> Verdict {
        if status == StatusCode::NON_AUTHORITATIVE_INFORMATION {
            return Verdict::Permanent {
                status: Some(203),
                message: "answered 203 (a sign-in page): the personal access token is wrong, \
                          expired or lacks access"
                    .into(),
            };
        }
        default_classify(status, headers, body)
    }
}

/// The status genre: the Notification's, else `tekton`.
fn genre(params: &Params) -> String {
    params.genre.clone().unwrap_or_else(|| "tekton".into())
}

/// A pull request's comment threads; a message id is `"{threadId}/{commentId}"`.
struct Threads<'a, 'h> {
    ado: &'a AzureDevops,
    http: &'a Http<'h>,
    repo: &'a AdoRepo,
    pr: &'a str,
}

#[async_trait]
impl SummaryMessages for Threads<'_, '_> {
    /// The thread whose first comment starts with `marker` and was written
    /// by the token's own user. Threads come in one answer, unpaged.
    async fn find(&self, marker: &str) -> Result<Option<String>, Verdict> {
        let url = self
            .ado
            .url(self.repo, &["pullRequests", self.pr, "threads"])?;
        let list: Value = self
            .ado
            .call(self.http, Method::GET, url, None)
            .await?
            .json()?;
        let marked: Vec<Value> = list["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["isDeleted"] != Value::Bool(true))
            .filter(|t| {
                t["comments"][0]["content"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(marker))
            })
            .cloned()
            .collect();
        let found = adopt_own(
            marked,
            |t| json_text(&t["comments"][0]["author"]["id"]),
            &self.ado.identity,
            || self.ado.me(self.repo, self.http),
        )
        .await?;
        match found {
            None => Ok(None),
            Some(t) => match (t["id"].as_u64(), t["comments"][0]["id"].as_u64()) {
                (Some(thread), Some(comment)) => Ok(Some(format!("{thread}/{comment}"))),
                _ => Err(Verdict::permanent(
                    "Azure DevOps listed a marked thread without ids",
                )),
            },
        }
    }

    async fn create(&self, text: &str) -> Result<String, Verdict> {
        let body = json!({
            "comments": [{"parentCommentId": 0, "content": text, "commentType": 1}],
            "status": "active",
        });
        let url = self
            .ado
            .url(self.repo, &["pullRequests", self.pr, "threads"])?;
        let t: Value = self
            .ado
            .call(self.http, Method::POST, url, Some(body))
            .await?
            .json()?;
        match (t["id"].as_u64(), t["comments"][0]["id"].as_u64()) {
            (Some(thread), Some(comment)) => Ok(format!("{thread}/{comment}")),
            _ => Err(Verdict::permanent(
                "Azure DevOps answered without a thread and comment id",
            )),
        }
    }

    async fn update(&self, record: &str, text: &str) -> Result<(), Verdict> {
        let (thread, comment) = thread_ids(record)?;
        let (thread, comment) = (thread.to_string(), comment.to_string());
        let url = self.ado.url(
            self.repo,
            &[
                "pullRequests",
                self.pr,
                "threads",
                &thread,
                "comments",
                &comment,
            ],
        )?;
        self.ado
            .call(
                self.http,
                Method::PATCH,
                url,
                Some(json!({"content": text})),
            )
            .await
            .map(|_| ())
    }
}

/// How each relay state shows on this host: the columns of the state table
/// in docs/providers/README.md (checked by the `state_table` test).
pub fn state_columns() -> Vec<crate::StateColumn> {
    vec![("Azure DevOps", |s| status_state(s).into())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    /// What a classification answers; its content does not matter here.
    fn any_request() -> OutboundRequest {
        OutboundRequest::post_json(url::Url::parse("https://example.com/").unwrap(), "")
    }

    fn ado() -> AzureDevops {
        AzureDevops {
            base: url::Url::parse("https://ado.example.com/tfs/").unwrap(),
            token: SecretFile("/nonexistent".into()),
            repositories: Repositories::default(),
            identity: Identity::default(),
        }
    }

    #[test]
    fn the_state_table() {
        use RunState::*;
        let got: Vec<&str> = [
            Queued, Started, Running, Succeeded, Failed, TimedOut, Cancelled,
        ]
        .into_iter()
        .map(status_state)
        .collect();
        assert_eq!(
            got,
            [
                "pending",
                "pending",
                "pending",
                "succeeded",
                "failed",
                "failed",
                "error"
            ]
        );
    }

    #[test]
    fn urls_encode_every_segment_under_the_base() {
        let r = repo::parse("https://dev.azure.com/acme/Widget%20Team/_git/w%3Fx").unwrap();
        assert_eq!(
            ado()
                .url(&r, &["pullRequests", "9", "threads"])
                .unwrap()
                .as_str(),
            "https://ado.example.com/tfs/acme/Widget%20Team/_apis/git/repositories/w%3Fx/pullRequests/9/threads?api-version=7.1"
        );
        let mut ev = relay_core::sample::run_event();
        assert!(target(&ev).is_err(), "a GitHub URL is no Azure repository");
        ev.scm.url = None;
        assert!(target(&ev).is_err());
    }

    #[test]
    fn thread_records() {
        assert_eq!(thread_ids("12/1").unwrap(), (12, 1));
        for bad in ["12", "a/1", "12/", "/1"] {
            assert!(thread_ids(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sign_in_page_is_a_permanent_failure() {
        let h = HeaderMap::new();
        for (code, permanent) in [(203, true), (401, true), (403, true), (503, false)] {
            let v = ado().classify(
                &any_request(),
                StatusCode::from_u16(code).unwrap(),
                &h,
                "<html>",
            );
            assert_eq!(matches!(v, Verdict::Permanent { .. }), permanent, "{code}");
        }
        assert_eq!(
            ado().classify(&any_request(), StatusCode::OK, &h, ""),
            Verdict::Success
        );
    }

    #[test]
    fn notification_actions_and_params_are_checked() {
        let a = ado();
        let mut params = Map::new();
        params.insert("contxt".into(), "x".into());
        let errs = a.compile_notification(Some("note"), &params).unwrap_err();
        assert_eq!(errs[0].path, "action");
        assert!(
            errs[1].message.contains("unknown field `contxt`"),
            "{errs:?}"
        );
        let mut params = Map::new();
        params.insert("genre".into(), " ".into());
        let errs = a.compile_notification(None, &params).unwrap_err();
        assert_eq!(errs[0].path, "params.genre");
        let mut params = Map::new();
        params.insert("context".into(), "ci/build".into());
        params.insert("genre".into(), "acme".into());
        assert!(a.compile_notification(Some("status"), &params).is_ok());
        assert!(a.compile_notification(Some("thread"), &Map::new()).is_ok());
    }
}
