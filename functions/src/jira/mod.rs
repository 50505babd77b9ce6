//! The `jira` provider: a comment (Atlassian Document Format, REST API v3;
//! wiki markup on v2 for Data Center) and/or a workflow transition on the
//! Jira issue a run names — by the `relay.tekton.dev/jira-issue`
//! annotation, else by the first issue key in its branch name.

pub mod adf;
pub mod auth;
pub mod issue;
pub mod params;
pub mod wiki;

use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use relay_core::field::FieldErrors;
use relay_core::RunEvent;
use relay_core::chat::{ChatView, template_text};
use relay_core::config::ProviderDoc;
use relay_core::message::{LastPosted, MEMORY};
use relay_core::oauth2::ClientCredentialsSettings;
use relay_core::state::Kind;
use relay_core::provider::{
    DeliveryInput, Outbound, OutboundRequest, Provider, ProviderFactory, Verdict, Compiled, Parsed,
    parse_settings,
};
use relay_core::secret::SecretFile;
use relay_core::transport::{Http, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::jira::auth::Credential;
use crate::jira::params::{Actions, JiraParams};

pub const TYPE: &str = "jira";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JiraSettings {
    /// The site: `https://acme.atlassian.net`, a Data Center server, or
    /// `https://api.atlassian.com/ex/jira/<cloudId>` with OAuth2.
    #[serde(rename = "baseURL")]
    pub base_url: url::Url,
    /// Jira Cloud: the Atlassian account's email, with `apiTokenFile`.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub api_token_file: Option<SecretFile>,
    /// A bearer token (a Data Center personal access token).
    #[serde(default)]
    pub token_file: Option<SecretFile>,
    /// OAuth2 client credentials (an Atlassian service account).
    #[serde(default)]
    pub oauth2: Option<ClientCredentialsSettings>,
    /// Project keys the provider may touch; empty: any.
    #[serde(default)]
    pub projects: Vec<String>,
    /// REST API version: 3 (ADF comments) on Jira Cloud, 2 (wiki markup)
    /// on Data Center. Default: 3 for Atlassian's hosts, else 2.
    #[serde(default)]
    pub api_version: Option<u8>,
}

/// The REST API a site speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Jira Data Center (and Cloud): comments in wiki markup.
    V2,
    /// Jira Cloud: comments in the Atlassian Document Format.
    V3,
}

impl Api {
    fn of(configured: Option<u8>, base: &url::Url) -> Result<Api, String> {
        match configured {
            Some(2) => Ok(Api::V2),
            Some(3) => Ok(Api::V3),
            Some(v) => Err(format!("{v} is not 2 (Data Center) or 3 (Cloud)")),
            None => {
                let host = base.host_str().unwrap_or("");
                let cloud = host.ends_with(".atlassian.net")
                    || host.ends_with(".jira.com")
                    || host == "api.atlassian.com";
                Ok(if cloud { Api::V3 } else { Api::V2 })
            }
        }
    }

    fn segment(self) -> &'static str {
        match self {
            Api::V2 => "2",
            Api::V3 => "3",
        }
    }
}

pub struct Jira {
    base: url::Url,
    api: Api,
    credential: Credential,
    projects: Vec<String>,
}

pub struct JiraFactory;

impl ProviderFactory for JiraFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: JiraSettings = parse_settings(doc)?;
        let mut errs = FieldErrors::new();
        let mut base = s.base_url.clone();
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            errs.push(
                "baseURL",
                format!("expected an http(s) URL such as https://acme.atlassian.net, got {base}"),
            );
        }
        // The REST path is appended; a pasted `/rest/api/3` or browse URL
        // would double it, so it is refused here rather than 404 later.
        let cloud_site = base
            .host_str()
            .is_some_and(|h| h.ends_with(".atlassian.net"));
        if base.path().contains("/rest/")
            || base.path().contains("/browse")
            || (cloud_site && !base.path().trim_end_matches('/').is_empty())
        {
            errs.push(
                "baseURL",
                "give the site root (https://acme.atlassian.net), without /rest/api or /browse",
            );
        }
        let api = Api::of(s.api_version, &base)
            .map_err(|e| errs.push("apiVersion", e))
            .unwrap_or(Api::V3);
        for (i, p) in s.projects.iter().enumerate() {
            if !issue::is_project(p) {
                errs.push(
                    format!("projects[{i}]"),
                    format!("{p:?} is not a project key (uppercase, like PAY)"),
                );
            }
        }
        let credential = Credential::from_settings(&s)
            .map_err(|e| errs.extend(e))
            .ok();
        let (Some(credential), true) = (credential, errs.is_empty()) else {
            return Err(errs);
        };
        let path = base.path().trim_end_matches('/').to_string();
        base.set_path(&path);
        base.set_query(None);
        base.set_fragment(None);
        Ok(Arc::new(Jira {
            base,
            api,
            credential,
            projects: s.projects,
        }))
    }
}

#[derive(Deserialize)]
struct Transitions {
    #[serde(default)]
    transitions: Vec<Transition>,
}

#[derive(Deserialize)]
struct Transition {
    id: String,
    name: String,
    #[serde(default)]
    to: Option<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// Jira compares workflow names case-insensitively.
fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

impl Jira {
    /// `<base>/rest/api/<version>/<segments>`, each segment percent-encoded.
    fn url(&self, segments: &[&str], query: Option<&str>) -> Result<url::Url, Verdict> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Verdict::permanent("baseURL cannot have a path"))?
            .pop_if_empty()
            .extend(["rest", "api", self.api.segment()])
            .extend(segments);
        url.set_query(query);
        Ok(url)
    }

    /// One request through the delivery's retry policy.
    async fn call(
        &self,
        http: &Http<'_>,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
    ) -> Result<Response, Verdict> {
        let mut req =
            OutboundRequest::post_json(url, body.map(Value::to_string).unwrap_or_default());
        req.method = method;
        let auth = self.credential.authorization(http).await?;
        req.sensitive_header(http::header::AUTHORIZATION, &auth)
            .map_err(|e| Verdict::permanent(e.to_string()))?;
        let answer = http.send(&Outbound::Http(req)).await;
        if let Err(Verdict::Permanent {
            status: Some(401), ..
        }) = &answer
        {
            self.credential.refused().await;
        }
        answer
    }

    async fn comment(
        &self,
        input: &DeliveryInput<'_>,
        key: &str,
        http: &Http<'_>,
    ) -> Result<String, Verdict> {
        let ev = input.event;
        let body = match (template_text(input)?, self.api) {
            (Some(t), _) if t.trim().is_empty() => {
                return Ok("the template rendered nothing: no comment".into());
            }
            (Some(t), Api::V3) => adf::from_template(&t),
            (Some(t), Api::V2) => wiki::from_template(&t).into(),
            (None, Api::V3) => adf::from_view(&ChatView::of(ev)),
            (None, Api::V2) => wiki::from_view(&ChatView::of(ev)).into(),
        };
        // One comment per run, state and Notification, even when a dead
        // letter (say, of a failed transition) is replayed.
        let memo = input.state.key(
            Kind::IssueComment,
            &[self.base.as_str(), key, input.notification, &ev.uid],
        );
        let Some(last) = LastPosted::unless_same(input.state, memo, ev.state.as_str()).await else {
            return Ok(format!("{key} already has the {} comment", ev.state));
        };
        let url = self.url(&["issue", key, "comment"], None)?;
        self.call(http, Method::POST, url, Some(&json!({"body": body})))
            .await?;
        last.record(ev.state.as_str(), MEMORY).await;
        Ok(format!("comment on {key}"))
    }

    /// Moves the issue by the transition named `name` (or leading to the
    /// status named `name`), unless it is in that status already.
    async fn transition(&self, key: &str, name: &str, http: &Http<'_>) -> Result<String, Verdict> {
        let url = self.url(&["issue", key, "transitions"], None)?;
        let list: Transitions = self
            .call(http, Method::GET, url.clone(), None)
            .await?
            .json()?;
        let found = list
            .transitions
            .iter()
            .find(|t| same_name(&t.name, name))
            .or_else(|| {
                list.transitions
                    .iter()
                    .find(|t| t.to.as_ref().is_some_and(|s| same_name(&s.name, name)))
            });
        if let Some(t) = found {
            let body = json!({"transition": {"id": t.id}});
            self.call(http, Method::POST, url, Some(&body)).await?;
            return Ok(format!("{key} transitioned by {:?}", t.name));
        }
        // A workflow rarely offers a transition into the current status:
        // being there already is success (a replay, a re-run).
        let issue = self.url(&["issue", key], Some("fields=status"))?;
        let current: Value = self.call(http, Method::GET, issue, None).await?.json()?;
        let status = current["fields"]["status"]["name"].as_str().unwrap_or("?");
        if same_name(status, name) {
            return Ok(format!("{key} already {status:?}"));
        }
        let available: Vec<&str> = list.transitions.iter().map(|t| t.name.as_str()).collect();
        Err(Verdict::permanent(format!(
            "issue {key} (status {status:?}) has no transition {name:?}; available: {available:?}"
        )))
    }
}

/// Why a TaskRun of a PipelineRun is left alone: its PipelineRun's events
/// comment and transition, once per run rather than once per task.
fn task_of_pipeline_run(ev: &RunEvent) -> Option<String> {
    let parent = ev.pipeline_run.as_ref()?;
    (ev.kind != "PipelineRun").then(|| {
        format!(
            "a task of PipelineRun {}: its PipelineRun's events update the issue",
            parent.name
        )
    })
}

#[async_trait]
impl Provider for Jira {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn compile_notification(
        &self,
        action: Option<&str>,
        params: &Map<String, Value>,
    ) -> Result<Compiled, FieldErrors> {
        params::check(action, params).map(Compiled::new)
    }

    fn declines(&self, ev: &RunEvent) -> Option<String> {
        task_of_pipeline_run(ev).or_else(|| issue::issue_key(ev, &self.projects).err())
    }

    async fn deliver(&self, input: &DeliveryInput<'_>, http: &Http<'_>) -> Result<String, Verdict> {
        let ev = input.event;
        let key = issue::issue_key(ev, &self.projects).map_err(Verdict::permanent)?;
        let Parsed {
            action: actions,
            params,
        } = input.compiled.get::<Parsed<Actions, JiraParams>>()?;
        let mut done = Vec::new();
        if actions.comment {
            if params.comments_on(ev.state) {
                done.push(self.comment(input, &key, http).await?);
            } else {
                done.push(format!("no comment when {}", ev.state));
            }
        }
        if actions.transition {
            match params.transitions.get(ev.state.as_str()) {
                Some(name) => done.push(self.transition(&key, name, http).await?),
                None => done.push(format!("no transition when {}", ev.state)),
            }
        }
        Ok(done.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("jira", TYPE, settings)
    }

    fn errors(settings: Value) -> FieldErrors {
        crate::testkit::refused(&JiraFactory, &doc(settings))
    }

    #[test]
    fn settings_errors_name_their_path() {
        let ok = json!({"baseURL": "https://acme.atlassian.net/", "email": "ci@acme.dev",
                        "apiTokenFile": "/t", "projects": ["PAY", "OPS_2"]});
        assert!(JiraFactory.build(&doc(ok)).is_ok());
        assert!(
            JiraFactory
                .build(&doc(
                    json!({"baseURL": "https://jira.acme.dev", "tokenFile": "/t"})
                ))
                .is_ok()
        );
        let errs = errors(json!({"email": "a@b", "apiTokenFile": "/t"}));
        assert!(errs[0].message.contains("missing field `baseURL`"), "{errs:?}");
        let errs = errors(json!({"baseURL": "https://a.atlassian.net", "apiToken": "x"}));
        assert_eq!(errs[0].path, "apiToken");
        assert!(errs[0].message.contains("unknown field `apiToken`"), "{errs:?}");
        // Every error at once.
        let errs = errors(
            json!({"baseURL": "ftp://a/rest/api/3", "projects": ["PAY", "pay"],
                                 "email": "ci@acme.dev"}),
        );
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["baseURL", "baseURL", "projects[1]", "apiTokenFile"],
            "{errs:?}"
        );
        let errs = errors(json!({"baseURL": "https://a.atlassian.net"}));
        assert!(errs[0].message.contains("no credentials"), "{errs:?}");
        // A page of the site pasted for its root.
        let errs = errors(
            json!({"baseURL": "https://a.atlassian.net/jira/software/projects/PAY/boards/1", "tokenFile": "/t"}),
        );
        assert_eq!(errs[0].path, "baseURL");
        let errs = errors(
            json!({"baseURL": "https://a.atlassian.net", "email": "e", "apiTokenFile": "/t", "tokenFile": "/p"}),
        );
        assert_eq!(errs[0].path, "tokenFile");
    }

    #[test]
    fn the_api_version_defaults_by_host() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(Api::of(None, &u("https://acme.atlassian.net")), Ok(Api::V3));
        assert_eq!(
            Api::of(None, &u("https://api.atlassian.com/ex/jira/x")),
            Ok(Api::V3)
        );
        assert_eq!(Api::of(None, &u("https://jira.acme.dev")), Ok(Api::V2));
        assert_eq!(Api::of(Some(3), &u("https://jira.acme.dev")), Ok(Api::V3));
        assert_eq!(
            Api::of(Some(2), &u("https://acme.atlassian.net")),
            Ok(Api::V2)
        );
        let errs =
            errors(json!({"baseURL": "https://jira.acme.dev", "tokenFile": "/t", "apiVersion": 1}));
        assert_eq!(errs[0].path, "apiVersion");
        assert!(
            errs[0].message.contains("not 2 (Data Center) or 3 (Cloud)"),
            "{errs:?}"
        );
    }

    #[test]
    fn urls_are_under_the_rest_api_and_keep_the_base_path() {
        let Ok(p) = JiraFactory.build(&doc(json!({
            "baseURL": "https://api.atlassian.com/ex/jira/1324a887/", "tokenFile": "/t"
        }))) else {
            panic!("valid settings")
        };
        assert_eq!(p.type_name(), TYPE);
        let j = Jira {
            base: url::Url::parse("https://api.atlassian.com/ex/jira/1324a887").unwrap(),
            api: Api::V3,
            credential: Credential::Bearer(SecretFile("/t".into())),
            projects: Vec::new(),
        };
        let u = j.url(&["issue", "PAY-1/../x", "comment"], None).unwrap();
        assert_eq!(
            u.as_str(),
            "https://api.atlassian.com/ex/jira/1324a887/rest/api/3/issue/PAY-1%2F..%2Fx/comment"
        );
    }

    #[test]
    fn tasks_of_a_pipeline_run_and_keyless_runs_are_declined() {
        let j = Jira {
            base: url::Url::parse("https://acme.atlassian.net").unwrap(),
            api: Api::V3,
            credential: Credential::Bearer(SecretFile("/t".into())),
            projects: vec!["PAY".into()],
        };
        let mut ev = relay_core::sample::run_event();
        ev.scm.branch = Some("feature/PAY-9-x".into());
        assert_eq!(j.declines(&ev), None);
        ev.kind = "TaskRun".into();
        assert!(j.declines(&ev).unwrap().contains("a task of PipelineRun"));
        ev.pipeline_run = None;
        assert_eq!(j.declines(&ev), None, "a standalone TaskRun");
        ev.scm.branch = Some("feature/OPS-9-x".into());
        assert!(j.declines(&ev).unwrap().contains("projects"));
    }
}
