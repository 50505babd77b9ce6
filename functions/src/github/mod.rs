//! The `github` provider: commit statuses, check runs and PR summary
//! comments updated in place, and deployment statuses, on github.com or
//! GitHub Enterprise.

pub mod auth;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use relay_core::RunEvent;
use relay_core::config::ProviderDoc;
use relay_core::escape;
use relay_core::family::{GitHost, HostAction, StatusLine};
use relay_core::field::FieldErrors;
use relay_core::githost::{RepoPath, Repositories, api_url};
use relay_core::message::{
    Identity, SummaryMessages, adopt_own, find_marked, json_text, upsert_summary,
};
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderFactory, Verdict, commit_sha,
    default_classify, json_id, parse_settings, retry_after, status_context,
};
use relay_core::secret::SecretFile;
use relay_core::state::Kind;
use relay_core::transport::Http;
use serde::Deserialize;
use serde_json::{Value, json};

pub const TYPE: &str = "github";
const DEFAULT_BASE: &str = "https://api.github.com";
/// GitHub's limit on a commit status description.
const DESCRIPTION_MAX: usize = 140;
const COMMENT_PAGE: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GithubSettings {
    /// `https://api.github.com`, or `https://ghe.example.com/api/v3`.
    #[serde(default, rename = "baseURL")]
    pub base_url: Option<url::Url>,
    /// A token with `repo:status` (statuses), `pull-requests:write`
    /// (comments), `deployments:write`. Either this or `app`.
    #[serde(default)]
    pub token_file: Option<SecretFile>,
    /// A GitHub App installation (needed for check runs).
    #[serde(default)]
    pub app: Option<auth::AppSettings>,
    /// The repositories this Provider may write to, `owner/repo` glob
    /// patterns (`acme/*`, `acme/widgets`); an event naming another is
    /// refused (dead-lettered) before any request. Unset: any repository
    /// the credential reaches. Recommended, since events name the repository.
    #[serde(default)]
    pub repositories: Repositories,
}

/// GitHub's own actions, beside `status` and `comment` (the family's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own {
    CheckRun,
    Deployment,
}

/// Notification params.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Params {
    /// Status or check-run name (default `tekton/<pipeline>`).
    #[serde(default)]
    pub context: Option<String>,
    /// One status per pipeline task (`<context>/<task>`) from TaskRun events.
    #[serde(default)]
    pub per_task: bool,
}

pub struct Github {
    api: Api,
    credentials: auth::Credentials,
    repositories: Repositories,
    /// The login comments of this Provider's credential show.
    identity: Identity,
}

/// Builds requests against one GitHub API root.
pub struct Api {
    base: url::Url,
}

pub struct GithubFactory;

impl ProviderFactory for GithubFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: GithubSettings = parse_settings(doc)?;
        let base = s
            .base_url
            .unwrap_or_else(|| url::Url::parse(DEFAULT_BASE).expect("the default base URL parses"));
        if base.cannot_be_a_base() || !matches!(base.scheme(), "https" | "http") {
            return Err(FieldErrors::one(
                "baseURL",
                "expected an http(s) URL such as https://api.github.com",
            ));
        }
        let credentials = match (s.token_file, s.app) {
            (Some(file), None) => auth::Credentials::Token(file),
            (None, Some(app)) => auth::Credentials::App(Box::new(auth::App::new(app))),
            (Some(_), Some(_)) => {
                return Err(FieldErrors::one(
                    "app",
                    "give either tokenFile or app, not both",
                ));
            }
            (None, None) => {
                return Err(FieldErrors::one(
                    String::new(),
                    "credentials missing: give tokenFile, or app {appId, privateKeyFile}",
                ));
            }
        };
        Ok(Arc::new(Github {
            api: Api { base },
            credentials,
            repositories: s.repositories,
            identity: Identity::default(),
        }))
    }
}

impl Api {
    /// The API URL of `segments` (each percent-encoded) with `query`.
    pub fn url(&self, segments: &[&str], query: Option<&str>) -> Result<url::Url, Verdict> {
        let mut url = api_url(&self.base, segments)?;
        url.set_query(query);
        Ok(url)
    }

    pub fn request(
        &self,
        method: Method,
        url: url::Url,
        body: Option<Value>,
        bearer: &relay_core::secret::Secret,
    ) -> Result<Outbound, Verdict> {
        let mut req =
            OutboundRequest::post_json(url, body.map(|b| b.to_string()).unwrap_or_default());
        req.method = method;
        req.headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        req.headers.insert(
            "x-github-api-version",
            HeaderValue::from_static("2022-11-28"),
        );
        req.sensitive_header(
            http::header::AUTHORIZATION,
            &format!("Bearer {}", bearer.expose()),
        )
        .map_err(|e| Verdict::permanent(e.to_string()))?;
        Ok(Outbound::Http(req))
    }
}

impl Github {
    /// One request on `/repos/{owner}/{repo}/{tail…}?{query}` (every
    /// segment percent-encoded) through the delivery's retry policy.
    async fn call(
        &self,
        http: &Http<'_>,
        repo: &RepoPath,
        method: Method,
        tail: &[&str],
        query: Option<&str>,
        body: Option<Value>,
    ) -> Result<relay_core::transport::Response, Verdict> {
        let mut segments = vec!["repos", repo.owner(), repo.name()];
        segments.extend_from_slice(tail);
        let url = self.api.url(&segments, query)?;
        let token = self.credentials.token(&self.api, repo, http).await?;
        http.send(&self.api.request(method, url, body, &token)?)
            .await
    }

    /// The login of this Provider's credential, asked of GitHub: the
    /// token's user (`GET /user`), or an App's bot (`<slug>[bot]`, from
    /// `GET /app`), which `identity` remembers.
    async fn login(&self, repo: &RepoPath, http: &Http<'_>) -> Result<String, Verdict> {
        let (path, bearer) = match &self.credentials {
            auth::Credentials::Token(_) => {
                ("user", self.credentials.token(&self.api, repo, http).await?)
            }
            auth::Credentials::App(app) => ("app", app.jwt().await?),
        };
        let url = self.api.url(&[path], None)?;
        let me: Value = http
            .send(&self.api.request(Method::GET, url, None, &bearer)?)
            .await?
            .json()?;
        let login = match path {
            "user" => json_text(&me["login"]),
            _ => json_text(&me["slug"]).map(|slug| format!("{slug}[bot]")),
        };
        login.ok_or_else(|| Verdict::permanent(format!("GET /{path} answered no login")))
    }

    fn context(&self, params: &Params, ev: &RunEvent) -> String {
        let base = status_context(params.context.as_deref(), ev);
        match (params.per_task, ev.pipeline_task.as_deref()) {
            (true, Some(task)) if ev.kind != "PipelineRun" => format!("{base}/{task}"),
            _ => base,
        }
    }

    async fn check_run(
        &self,
        input: &DeliveryInput<'_>,
        params: &Params,
        http: &Http<'_>,
    ) -> Result<String, Verdict> {
        let ev = input.event;
        let repo = self.repository(ev)?;
        let sha = commit_sha(ev)?;
        let run_uid = run_uid(ev)?;
        let name = self.context(
            &Params {
                per_task: false,
                ..params.clone()
            },
            ev,
        );
        let text = match input.summary {
            Some(s) => relay_core::summary::render(s, input)
                .map_err(|e| Verdict::permanent(format!("template: {e}")))?,
            None => String::new(),
        };
        let run_state = input
            .summary
            .and_then(|s| s.run.as_ref())
            .map_or(ev.state, |r| r.state);
        let (status, conclusion) = state::check_run(run_state);
        // What an update sends; a create adds the commit. GitHub refuses a
        // null `details_url`: a run without a dashboard URL sends none.
        let mut body = json!({
            "name": name, "status": status,
            "output": {"title": format!("{name}: {run_state}"), "summary": text},
        });
        if let Some(url) = &ev.url {
            body["details_url"] = url.as_str().into();
        }
        if let Some(c) = conclusion {
            body["conclusion"] = c.into();
        }
        let mut create = body.clone();
        create["head_sha"] = sha.into();
        let key = input
            .state
            .key(Kind::CheckRun, &[&repo.to_string(), &run_uid, &name]);
        let checks = CheckRuns {
            github: self,
            http,
            repo: &repo,
            create,
            update: body,
        };
        upsert_summary(input.state, &key, "", "", &checks)
            .await?
            .into_result("check run")
    }

    async fn deployment(
        &self,
        input: &DeliveryInput<'_>,
        http: &Http<'_>,
    ) -> Result<String, Verdict> {
        let ev = input.event;
        if ev.kind != "PipelineRun" {
            return Ok("not a PipelineRun: no deployment status".into());
        }
        let repo = self.repository(ev)?;
        let Some(id) = ev.annotations.get("relay.tekton.dev/github-deployment-id") else {
            return Err(Verdict::permanent(
                "no relay.tekton.dev/github-deployment-id annotation on the PipelineRun",
            ));
        };
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(Verdict::permanent(
                "relay.tekton.dev/github-deployment-id is not a number",
            ));
        }
        let state = state::deployment(ev.state);
        let mut body = json!({
            "state": state,
            "description": escape::one_line(ev.reason.as_deref().unwrap_or(""), DESCRIPTION_MAX),
        });
        // GitHub refuses a null `log_url`: a run without a dashboard URL sends none.
        if let Some(url) = &ev.url {
            body["log_url"] = url.as_str().into();
        }
        self.call(
            http,
            &repo,
            Method::POST,
            &["deployments", id, "statuses"],
            None,
            Some(body),
        )
        .await?;
        Ok(format!("deployment {id} {state}"))
    }
}

/// A pull request's comments (issue comments, on GitHub).
struct Comments<'a, 'h> {
    github: &'a Github,
    http: &'a Http<'h>,
    repo: &'a RepoPath,
    pr: String,
}

#[async_trait]
impl SummaryMessages for Comments<'_, '_> {
    /// Every page of the pull request's comments, for one carrying `marker`
    /// that this Provider's own login wrote.
    async fn find(&self, marker: &str) -> Result<Option<String>, Verdict> {
        let marked = find_marked(COMMENT_PAGE, marker, |page| async move {
            let query = format!("per_page={COMMENT_PAGE}&page={page}");
            self.github
                .call(
                    self.http,
                    self.repo,
                    Method::GET,
                    &["issues", &self.pr, "comments"],
                    Some(&query),
                    None,
                )
                .await?
                .json::<Vec<Value>>()
        })
        .await?;
        let found = adopt_own(
            marked,
            |c| json_text(&c["user"]["login"]),
            &self.github.identity,
            || self.github.login(self.repo, self.http),
        )
        .await?;
        found.as_ref().map(json_id).transpose()
    }

    async fn create(&self, text: &str) -> Result<String, Verdict> {
        let r = self
            .github
            .call(
                self.http,
                self.repo,
                Method::POST,
                &["issues", &self.pr, "comments"],
                None,
                Some(json!({"body": text})),
            )
            .await?;
        json_id(&r.json::<Value>()?)
    }

    async fn update(&self, id: &str, text: &str) -> Result<(), Verdict> {
        self.github
            .call(
                self.http,
                self.repo,
                Method::PATCH,
                &["issues", "comments", id],
                None,
                Some(json!({"body": text})),
            )
            .await
            .map(|_| ())
    }
}

/// A run's check run: the summary is in the request bodies, not a text,
/// and a check run is never searched for (it carries no marker).
struct CheckRuns<'a, 'h> {
    github: &'a Github,
    http: &'a Http<'h>,
    repo: &'a RepoPath,
    /// What a create sends (with the commit); an update sends the rest.
    create: Value,
    update: Value,
}

#[async_trait]
impl SummaryMessages for CheckRuns<'_, '_> {
    async fn find(&self, _marker: &str) -> Result<Option<String>, Verdict> {
        Ok(None)
    }

    async fn create(&self, _text: &str) -> Result<String, Verdict> {
        let r = self
            .github
            .call(
                self.http,
                self.repo,
                Method::POST,
                &["check-runs"],
                None,
                Some(self.create.clone()),
            )
            .await?;
        json_id(&r.json::<Value>()?)
    }

    async fn update(&self, id: &str, _text: &str) -> Result<(), Verdict> {
        self.github
            .call(
                self.http,
                self.repo,
                Method::PATCH,
                &["check-runs", id],
                None,
                Some(self.update.clone()),
            )
            .await
            .map(|_| ())
    }
}

fn run_uid(ev: &RunEvent) -> Result<String, Verdict> {
    if ev.kind == "PipelineRun" {
        return Ok(ev.uid.clone());
    }
    ev.pipeline_run
        .as_ref()
        .and_then(|p| p.uid.clone())
        .ok_or_else(|| Verdict::permanent("not part of a PipelineRun"))
}

#[async_trait]
impl GitHost for Github {
    const TYPE: &'static str = TYPE;
    const SUMMARY: Option<&'static str> = Some("comment");
    type Params = Params;
    type Other = Own;
    type Repo = RepoPath;

    fn parse_action(a: Option<&str>) -> Result<HostAction<Own>, String> {
        match a.unwrap_or("status") {
            "status" => Ok(HostAction::Status),
            "checkRun" => Ok(HostAction::Other(Own::CheckRun)),
            "comment" => Ok(HostAction::Summary),
            "deployment" => Ok(HostAction::Other(Own::Deployment)),
            other => Err(format!(
                "unknown action {other:?}, expected one of status, checkRun, comment, deployment"
            )),
        }
    }

    /// The repository of an event, checked and allowed.
    fn repository(&self, ev: &RunEvent) -> Result<RepoPath, Verdict> {
        self.repositories.of_event(ev)
    }

    fn key_parts(&self, repo: &RepoPath) -> Vec<String> {
        vec![repo.to_string()]
    }

    /// PipelineRuns, and with `perTask` TaskRuns too.
    fn posts_status(&self, ev: &RunEvent, params: &Params) -> bool {
        ev.kind == "PipelineRun" || params.per_task
    }

    fn status_line(
        &self,
        ev: &RunEvent,
        params: &Params,
        _sha: &str,
    ) -> Result<StatusLine, Verdict> {
        let context = self.context(params, ev);
        let description = escape::one_line(
            &match (&ev.reason, &ev.message) {
                (Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
                (Some(r), _) => r.clone(),
                (None, Some(m)) => m.clone(),
                _ => ev.state.to_string(),
            },
            DESCRIPTION_MAX,
        );
        Ok(StatusLine {
            key: vec![context.clone()],
            context,
            state: state::commit_status(ev.state),
            description,
        })
    }

    async fn post_status(
        &self,
        http: &Http<'_>,
        ev: &RunEvent,
        _params: &Params,
        repo: &RepoPath,
        sha: &str,
        line: &StatusLine,
    ) -> Result<(), Verdict> {
        let body = json!({
            "state": line.state, "target_url": ev.url, "description": line.description,
            "context": line.context,
        });
        self.call(
            http,
            repo,
            Method::POST,
            &["statuses", sha],
            None,
            Some(body),
        )
        .await
        .map(|_| ())
    }

    fn messages<'a>(
        &'a self,
        http: &'a Http<'_>,
        repo: &'a RepoPath,
        pr: &'a str,
    ) -> Box<dyn SummaryMessages + Send + 'a> {
        Box::new(Comments {
            github: self,
            http,
            repo,
            pr: pr.to_string(),
        })
    }

    /// Check runs and deployment statuses: GitHub's alone, kept here.
    async fn other(
        &self,
        action: &Own,
        input: &DeliveryInput<'_>,
        params: &Params,
        http: &Http<'_>,
    ) -> Result<String, Verdict> {
        match action {
            Own::CheckRun => self.check_run(input, params, http).await,
            Own::Deployment => self.deployment(input, http).await,
        }
    }

    /// GitHub's rate limits: a primary limit answers 403/429 with
    /// `X-RateLimit-Remaining: 0` (wait until `X-RateLimit-Reset`), a
    /// secondary one 403/429 with `Retry-After`. Both are retried.
    fn classify_answer(
        &self,
        _request: &OutboundRequest,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
    ) -> Verdict {
        if status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS {
            if let Some(wait) = retry_after(headers) {
                return rate_limited(status, wait, "secondary rate limit");
            }
            let remaining = headers
                .get("x-ratelimit-remaining")
                .and_then(|v| v.to_str().ok());
            if remaining == Some("0") {
                let reset = headers
                    .get("x-ratelimit-reset")
                    .and_then(|v| v.to_str().ok()?.parse::<i64>().ok())
                    // Saturating: the header is the server's text, any i64.
                    .map(|r| r.saturating_sub(chrono::Utc::now().timestamp()).max(1) as u64)
                    .unwrap_or(60);
                return rate_limited(status, Duration::from_secs(reset), "rate limit exhausted");
            }
        }
        default_classify(status, headers, body)
    }
}

fn rate_limited(status: StatusCode, wait: Duration, what: &str) -> Verdict {
    tracing::warn!(wait_s = wait.as_secs(), "GitHub {what}");
    Verdict::Retryable {
        status: Some(status.as_u16()),
        retry_after: Some(wait),
        message: format!("GitHub {what}: retry in {}s", wait.as_secs()),
    }
}

/// How each relay state shows on this host: the columns of the state table
/// in docs/providers/README.md (checked by the `state_table` test).
pub fn state_columns() -> Vec<crate::StateColumn> {
    vec![
        ("GitHub status", |s| state::commit_status(s).into()),
        ("GitHub check run", |s| match state::check_run(s) {
            (status, Some(conclusion)) => format!("{status} / {conclusion}"),
            (status, None) => status.into(),
        }),
        ("GitHub deployment", |s| state::deployment(s).into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    /// What a classification answers; its content does not matter here.
    fn any_request() -> OutboundRequest {
        OutboundRequest::post_json(url::Url::parse("https://example.com/").unwrap(), "")
    }

    fn github() -> Github {
        Github {
            api: Api {
                base: url::Url::parse(DEFAULT_BASE).unwrap(),
            },
            credentials: auth::Credentials::Token(SecretFile("/nonexistent".into())),
            repositories: Repositories::default(),
            identity: Identity::default(),
        }
    }

    #[test]
    fn rate_limits_are_retried_after_their_reset() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        let reset = chrono::Utc::now().timestamp() + 30;
        h.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        match github().classify(&any_request(), StatusCode::FORBIDDEN, &h, "") {
            Verdict::Retryable {
                retry_after: Some(w),
                ..
            } => assert!((25..=31).contains(&w.as_secs()), "{w:?}"),
            other => panic!("{other:?}"),
        }
        // A plain 403 (no permission) is permanent.
        assert!(matches!(
            github().classify(
                &any_request(),
                StatusCode::FORBIDDEN,
                &HeaderMap::new(),
                "Resource not accessible"
            ),
            Verdict::Permanent { .. }
        ));
    }

    #[test]
    fn notification_actions_and_params_are_checked() {
        let g = github();
        let mut params = Map::new();
        params.insert("contxt".into(), "x".into());
        let errs = g.compile_notification(Some("tweet"), &params).unwrap_err();
        assert_eq!(errs[0].path, "action");
        assert!(
            errs[1].message.contains("unknown field `contxt`"),
            "{errs:?}"
        );
        assert!(
            g.compile_notification(Some("checkRun"), &Map::new())
                .is_ok()
        );
    }
}
