//! The `gitlab` provider: commit statuses (name = context) and a merge
//! request note with the PipelineRun summary, updated in place, on
//! gitlab.com or a self-managed GitLab.

use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use relay_core::RunEvent;
use relay_core::RunState;
use relay_core::config::ProviderDoc;
use relay_core::escape;
use relay_core::message::{
    SummaryMessages, find_marked, post_status_once, summary_text, upsert_summary,
};
use relay_core::oauth2::{ClientCredentials, ClientCredentialsSettings};
use relay_core::provider::{
    DeliveryInput, GitAction, Outbound, OutboundRequest, Provider, ProviderFactory, StatusParams,
    Verdict, check_action_and_params, commit_sha, delivery_params, json_id, parse_settings,
    status_context,
};
use relay_core::secret::SecretFile;
use relay_core::transport::{Http, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub const TYPE: &str = "gitlab";
const DEFAULT_BASE: &str = "https://gitlab.com/api/v4";
const DESCRIPTION_MAX: usize = 255;
const NOTE_PAGE: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitlabSettings {
    /// `https://gitlab.com/api/v4`, or `https://gitlab.example.com/api/v4`.
    #[serde(default, rename = "baseURL")]
    pub base_url: Option<url::Url>,
    /// A project or group access token with the `api` scope (sent as
    /// `PRIVATE-TOKEN`). Either this or `oauth2`.
    #[serde(default)]
    pub token_file: Option<SecretFile>,
    /// OAuth2 client credentials: the access token is fetched, cached and
    /// refreshed before it expires (sent as `Authorization: Bearer`).
    #[serde(default)]
    pub oauth2: Option<ClientCredentialsSettings>,
}

/// How run states show on GitLab (see the README's table).
pub fn commit_status(s: RunState) -> &'static str {
    match s {
        RunState::Queued => "pending",
        RunState::Started | RunState::Running => "running",
        RunState::Succeeded => "success",
        RunState::Failed | RunState::TimedOut => "failed",
        RunState::Cancelled => "canceled",
    }
}

pub struct Gitlab {
    base: String,
    credentials: Credentials,
}

enum Credentials {
    Token(SecretFile),
    OAuth2(Box<ClientCredentials>),
}

pub struct GitlabFactory;

impl ProviderFactory for GitlabFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, Vec<(String, String)>> {
        let s: GitlabSettings = parse_settings(doc)?;
        let base = s.base_url.map_or_else(
            || DEFAULT_BASE.to_string(),
            |u| u.as_str().trim_end_matches('/').to_string(),
        );
        let credentials = match (s.token_file, s.oauth2) {
            (Some(file), None) => Credentials::Token(file),
            (None, Some(o)) => Credentials::OAuth2(Box::new(ClientCredentials::new(o))),
            (Some(_), Some(_)) => {
                return Err(vec![(
                    "oauth2".into(),
                    "give either tokenFile or oauth2, not both".into(),
                )]);
            }
            (None, None) => {
                return Err(vec![(
                    String::new(),
                    "credentials missing: give tokenFile, or oauth2 {tokenURL, clientId, clientSecretFile}"
                        .into(),
                )]);
            }
        };
        Ok(Arc::new(Gitlab { base, credentials }))
    }
}

/// The project path, URL-encoded as GitLab's `:id` (`group%2Fsub%2Fproject`).
fn project(ev: &RunEvent) -> Result<String, Verdict> {
    match (&ev.scm.owner, &ev.scm.name) {
        (Some(o), Some(n)) => {
            Ok(url::form_urlencoded::byte_serialize(format!("{o}/{n}").as_bytes()).collect())
        }
        _ => Err(Verdict::permanent(
            "the event names no repository (annotations, Pipelines-as-Code labels or a url param)",
        )),
    }
}

impl Gitlab {
    async fn call(
        &self,
        http: &Http<'_>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Response, Verdict> {
        let url = url::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| Verdict::permanent(e.to_string()))?;
        let mut req =
            OutboundRequest::post_json(url, body.map(|b| b.to_string()).unwrap_or_default());
        req.method = method;
        let (name, value) = match &self.credentials {
            Credentials::Token(file) => (
                http::HeaderName::from_static("private-token"),
                file.read()
                    .await
                    .map_err(|e| Verdict::permanent(e.to_string()))?
                    .expose()
                    .to_string(),
            ),
            Credentials::OAuth2(client) => (
                http::header::AUTHORIZATION,
                format!("Bearer {}", client.access_token(http).await?.expose()),
            ),
        };
        req.sensitive_header(name, &value)
            .map_err(|e| Verdict::permanent(e.to_string()))?;
        let answer = http.send(&Outbound::Http(req)).await;
        // A refused token is dropped, so the next attempt fetches a new one.
        if let (
            Err(Verdict::Permanent {
                status: Some(401), ..
            }),
            Credentials::OAuth2(client),
        ) = (&answer, &self.credentials)
        {
            client.invalidate().await;
        }
        answer
    }

    async fn status(
        &self,
        input: &DeliveryInput<'_>,
        params: &StatusParams,
        http: &Http<'_>,
    ) -> Result<String, Verdict> {
        let ev = input.event;
        if ev.kind != "PipelineRun" {
            return Ok("not a PipelineRun: no status".into());
        }
        let project = project(ev)?;
        let sha = commit_sha(ev)?;
        let name = status_context(params.context.as_deref(), ev);
        let state = commit_status(ev.state);
        let description = escape::one_line(
            ev.reason.as_deref().unwrap_or(ev.state.as_str()),
            DESCRIPTION_MAX,
        );
        let key = format!("gl-status/{project}/{sha}/{name}");
        post_status_once(input.store, key, &name, state, &description, || async {
            let mut body = json!({"state": state, "name": name, "description": description, "target_url": ev.url});
            if let Some(branch) = &ev.scm.branch {
                body["ref"] = branch.clone().into();
            }
            let path = format!("/projects/{project}/statuses/{sha}");
            self.call(http, Method::POST, &path, Some(body))
                .await
                .map(|_| ())
        })
        .await
    }

    async fn note(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let ev = input.event;
        let project = project(ev)?;
        let Some(mr) = ev.scm.pull_request else {
            return Ok("not a merge request: no note".into());
        };
        let Some(run) = input.summary.map(|s| &s.uid) else {
            return Ok("not part of a PipelineRun: no note".into());
        };
        let marker = format!("<!-- tekton-relay:{}:{run} -->", input.notification);
        let text = summary_text(input, &marker)?.unwrap_or_default();
        let notes = Notes {
            gitlab: self,
            http,
            path: format!("/projects/{project}/merge_requests/{mr}/notes"),
        };
        let key = format!("gl-note/{project}/{mr}/{}/{run}", input.notification);
        upsert_summary(input.store, &key, &marker, &text, &notes)
            .await?
            .into_result("note")
    }
}

/// A merge request's notes.
struct Notes<'a, 'h> {
    gitlab: &'a Gitlab,
    http: &'a Http<'h>,
    path: String,
}

#[async_trait]
impl SummaryMessages for Notes<'_, '_> {
    /// Every page of the merge request's notes, for one carrying `marker`.
    async fn find(&self, marker: &str) -> Result<Option<String>, Verdict> {
        let found = find_marked(NOTE_PAGE, marker, |page| async move {
            let path = format!("{}?per_page={NOTE_PAGE}&page={page}", self.path);
            self.gitlab
                .call(self.http, Method::GET, &path, None)
                .await?
                .json::<Vec<Value>>()
        })
        .await?;
        found.as_ref().map(json_id).transpose()
    }

    async fn create(&self, text: &str) -> Result<String, Verdict> {
        let r = self
            .gitlab
            .call(
                self.http,
                Method::POST,
                &self.path,
                Some(json!({"body": text})),
            )
            .await?;
        json_id(&r.json::<Value>()?)
    }

    async fn update(&self, id: &str, text: &str) -> Result<(), Verdict> {
        self.gitlab
            .call(
                self.http,
                Method::PUT,
                &format!("{}/{id}", self.path),
                Some(json!({"body": text})),
            )
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Provider for Gitlab {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn uses_summary(&self) -> bool {
        true
    }

    fn check_notification(
        &self,
        action: Option<&str>,
        params: &Map<String, Value>,
    ) -> Result<(), Vec<(String, String)>> {
        check_action_and_params::<StatusParams>(
            GitAction::parse(action, "note").map(|_| ()),
            params,
        )
    }

    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let params: StatusParams = delivery_params(input)?;
        match input.action {
            Some("note") => self.note(input, http).await,
            _ => self.status(input, &params, http).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_project_ids() {
        use RunState::*;
        let got: Vec<&str> = [
            Queued, Started, Running, Succeeded, Failed, TimedOut, Cancelled,
        ]
        .into_iter()
        .map(commit_status)
        .collect();
        assert_eq!(
            got,
            [
                "pending", "running", "running", "success", "failed", "failed", "canceled"
            ]
        );
        let mut ev = relay_core::sample::run_event();
        ev.scm.owner = Some("group/sub".into());
        assert_eq!(project(&ev).unwrap(), "group%2Fsub%2Fwidgets");
    }
}
