//! The `gitlab` provider: commit statuses (name = context) and a merge
//! request note with the PipelineRun summary, updated in place, on
//! gitlab.com or a self-managed GitLab.

use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use relay_core::field::FieldErrors;
use relay_core::RunEvent;
use relay_core::RunState;
use relay_core::config::ProviderDoc;
use relay_core::escape;
use relay_core::githost::{Repositories, api_url};
use relay_core::message::{
    Identity, SummaryMessages, adopt_own, find_marked, json_text, post_status_once, summary_text,
    upsert_summary,
};
use relay_core::oauth2::{ClientCredentials, ClientCredentialsSettings};
use relay_core::notification::compile;
use relay_core::state::Kind;
use relay_core::provider::{
    DeliveryInput, GitAction, Outbound, OutboundRequest, Provider, ProviderFactory, StatusParams,
    Verdict, commit_sha, Compiled, Parsed, json_id, parse_settings,
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
    /// The projects this Provider may write to, `group/project` glob
    /// patterns (`acme/*`; `acme/**` takes subgroups too); an event naming
    /// another is refused (dead-lettered) before any request. Unset: any
    /// project the credential reaches. Recommended, since events name the
    /// project.
    #[serde(default)]
    pub repositories: Repositories,
}

/// How run states show on GitLab (see the table of docs/providers/README.md).
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
    base: url::Url,
    credentials: Credentials,
    repositories: Repositories,
    /// The user id notes of this Provider's credential show.
    identity: Identity,
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

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: GitlabSettings = parse_settings(doc)?;
        let base = s
            .base_url
            .unwrap_or_else(|| url::Url::parse(DEFAULT_BASE).expect("the default base URL parses"));
        if base.cannot_be_a_base() || !matches!(base.scheme(), "https" | "http") {
            return Err(FieldErrors::one(
                "baseURL",
                "expected an http(s) URL such as https://gitlab.com/api/v4",
            ));
        }
        let credentials = match (s.token_file, s.oauth2) {
            (Some(file), None) => Credentials::Token(file),
            (None, Some(o)) => Credentials::OAuth2(Box::new(ClientCredentials::new(o))),
            (Some(_), Some(_)) => {
                return Err(FieldErrors::one(
                    "oauth2",
                    "give either tokenFile or oauth2, not both",
                ));
            }
            (None, None) => {
                return Err(FieldErrors::one(
                    String::new(),
                    "credentials missing: give tokenFile, or oauth2 {tokenURL, clientId, clientSecretFile}",
                ));
            }
        };
        Ok(Arc::new(Gitlab {
            base,
            credentials,
            repositories: s.repositories,
            identity: Identity::default(),
        }))
    }
}

impl Gitlab {
    /// The project path of an event (`group/sub/project`), checked and
    /// allowed: one path segment, GitLab's `:id`, which the URL encodes as
    /// `group%2Fsub%2Fproject`.
    fn project(&self, ev: &RunEvent) -> Result<String, Verdict> {
        Ok(self.repositories.of_event(ev)?.to_string())
    }

    /// The API URL of `segments` (each percent-encoded) with `query`.
    fn url(&self, segments: &[&str], query: Option<&str>) -> Result<url::Url, Verdict> {
        let mut url = api_url(&self.base, segments)?;
        url.set_query(query);
        Ok(url)
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
        let project = self.project(ev)?;
        let sha = commit_sha(ev)?;
        let name = status_context(params.context.as_deref(), ev);
        let state = commit_status(ev.state);
        let description = escape::one_line(
            ev.reason.as_deref().unwrap_or(ev.state.as_str()),
            DESCRIPTION_MAX,
        );
        let key = input
            .state
            .key(Kind::CommitStatus, &[&project.to_string(), sha, &name]);
        post_status_once(input.state, key, &name, state, &description, || async {
            let mut body = json!({"state": state, "name": name, "description": description, "target_url": ev.url});
            if let Some(branch) = &ev.scm.branch {
                body["ref"] = branch.clone().into();
            }
            let url = self.url(&["projects", &project, "statuses", sha], None)?;
            self.call(http, Method::POST, url, Some(body))
                .await
                .map(|_| ())
        })
        .await
    }

    async fn note(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let ev = input.event;
        let project = self.project(ev)?;
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
            project: project.clone(),
            mr: mr.to_string(),
        };
        let key = input.state.key(
            Kind::Summary,
            &[&project.to_string(), &mr.to_string(), input.notification, run],
        );
        upsert_summary(input.state, &key, &marker, &text, &notes)
            .await?
            .into_result("note")
    }
}

/// A merge request's notes.
struct Notes<'a, 'h> {
    gitlab: &'a Gitlab,
    http: &'a Http<'h>,
    project: String,
    mr: String,
}

impl Notes<'_, '_> {
    /// `/projects/{project}/merge_requests/{mr}/notes[/{id}]`.
    fn url(&self, id: Option<&str>, query: Option<&str>) -> Result<url::Url, Verdict> {
        let mut path = vec![
            "projects",
            &self.project,
            "merge_requests",
            &self.mr,
            "notes",
        ];
        path.extend(id);
        self.gitlab.url(&path, query)
    }
}

#[async_trait]
impl SummaryMessages for Notes<'_, '_> {
    /// Every page of the merge request's notes, for one carrying `marker`
    /// that this Provider's own user wrote.
    async fn find(&self, marker: &str) -> Result<Option<String>, Verdict> {
        let marked = find_marked(NOTE_PAGE, marker, |page| async move {
            let query = format!("per_page={NOTE_PAGE}&page={page}");
            self.gitlab
                .call(self.http, Method::GET, self.url(None, Some(&query))?, None)
                .await?
                .json::<Vec<Value>>()
        })
        .await?;
        let found = adopt_own(
            marked,
            |n| json_text(&n["author"]["id"]),
            &self.gitlab.identity,
            || async {
                let me: Value = self
                    .gitlab
                    .call(
                        self.http,
                        Method::GET,
                        self.gitlab.url(&["user"], None)?,
                        None,
                    )
                    .await?
                    .json()?;
                json_text(&me["id"]).ok_or_else(|| Verdict::permanent("GET /user answered no id"))
            },
        )
        .await?;
        found.as_ref().map(json_id).transpose()
    }

    async fn create(&self, text: &str) -> Result<String, Verdict> {
        let r = self
            .gitlab
            .call(
                self.http,
                Method::POST,
                self.url(None, None)?,
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
                self.url(Some(id), None)?,
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

    fn compile_notification(
        &self,
        action: Option<&str>,
        params: &Map<String, Value>,
    ) -> Result<Compiled, FieldErrors> {
        compile::<GitAction, StatusParams>(GitAction::parse(action, "note"), params)
    }

    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let Parsed { action, params } = input.compiled.get::<Parsed<GitAction, StatusParams>>()?;
        match action {
            GitAction::Summary => self.note(input, http).await,
            GitAction::Status => self.status(input, params, http).await,
        }
    }
}

/// How each relay state shows on this host: the columns of the state table
/// in docs/providers/README.md (checked by the `state_table` test).
pub fn state_columns() -> Vec<crate::StateColumn> {
    vec![("GitLab", |s| commit_status(s).into())]
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
        let gl = Gitlab {
            base: url::Url::parse(DEFAULT_BASE).unwrap(),
            credentials: Credentials::Token(SecretFile("/nonexistent".into())),
            repositories: Repositories::default(),
            identity: Identity::default(),
        };
        let project = gl.project(&ev).unwrap();
        let url = gl.url(&["projects", &project], None).unwrap();
        assert_eq!(
            url.path_segments().unwrap().next_back(),
            Some("group%2Fsub%2Fwidgets")
        );
    }
}
