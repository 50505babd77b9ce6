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
use relay_core::family::{GitHost, NoOther, StatusLine};
use relay_core::field::FieldErrors;
use relay_core::githost::{Repositories, api_url};
use relay_core::message::{Identity, SummaryMessages, adopt_own, find_marked, json_text};
use relay_core::oauth2::{ClientCredentials, ClientCredentialsSettings};
use relay_core::provider::{
    Outbound, OutboundRequest, Provider, ProviderFactory, StatusParams, Verdict, json_id,
    parse_settings, status_context,
};
use relay_core::secret::SecretFile;
use relay_core::transport::{Http, Response};
use serde::Deserialize;
use serde_json::{Value, json};

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
                    .map_err(Verdict::from)?
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
}

#[async_trait]
impl GitHost for Gitlab {
    const TYPE: &'static str = TYPE;
    const SUMMARY: Option<&'static str> = Some("note");
    const CHANGE_REQUEST: &'static str = "merge request";
    type Params = StatusParams;
    type Other = NoOther;
    /// The project path (`group/sub/project`).
    type Repo = String;

    fn repository(&self, ev: &RunEvent) -> Result<String, Verdict> {
        self.project(ev)
    }

    fn key_parts(&self, project: &String) -> Vec<String> {
        vec![project.clone()]
    }

    fn status_line(
        &self,
        ev: &RunEvent,
        params: &StatusParams,
        _sha: &str,
    ) -> Result<StatusLine, Verdict> {
        let name = status_context(params.context.as_deref(), ev);
        Ok(StatusLine {
            key: vec![name.clone()],
            context: name,
            state: commit_status(ev.state),
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
        _params: &StatusParams,
        project: &String,
        sha: &str,
        line: &StatusLine,
    ) -> Result<(), Verdict> {
        let mut body = json!({
            "state": line.state, "name": line.context, "description": line.description,
            "target_url": ev.url,
        });
        if let Some(branch) = &ev.scm.branch {
            body["ref"] = branch.clone().into();
        }
        let url = self.url(&["projects", project, "statuses", sha], None)?;
        self.call(http, Method::POST, url, Some(body))
            .await
            .map(|_| ())
    }

    fn messages<'a>(
        &'a self,
        http: &'a Http<'_>,
        project: &'a String,
        mr: &'a str,
    ) -> Box<dyn SummaryMessages + Send + 'a> {
        Box::new(Notes {
            gitlab: self,
            http,
            project: project.clone(),
            mr: mr.to_string(),
        })
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
