//! The `bitbucket` provider (Bitbucket Cloud): commit build statuses, and a
//! pull request comment with the PipelineRun summary, updated in place.

pub mod auth;
pub mod state;

use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use relay_core::RunEvent;
use relay_core::config::ProviderDoc;
use relay_core::escape;
use relay_core::family::{GitHost, NoOther, StatusLine};
use relay_core::field::FieldErrors;
use relay_core::githost::{RepoPath, Repositories, api_url};
use relay_core::message::{Identity, SummaryMessages, adopt_own, json_text};
use relay_core::provider::{
    Outbound, OutboundRequest, Provider, ProviderFactory, StatusParams, Verdict, json_id,
    parse_settings, status_context,
};
use relay_core::secret::SecretFile;
use relay_core::transport::{Http, Response};
use serde::Deserialize;
use serde_json::{Value, json};

pub use auth::Credential;

pub const TYPE: &str = "bitbucket";
const DEFAULT_BASE: &str = "https://api.bitbucket.org/2.0";
const DESCRIPTION_MAX: usize = 255;
/// Bitbucket Cloud's limit on a build status key.
const KEY_MAX: usize = 40;
const COMMENT_PAGE: usize = 100;
const MAX_PAGES: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BitbucketSettings {
    /// `https://api.bitbucket.org/2.0` unless given.
    #[serde(default, rename = "baseURL")]
    pub base_url: Option<url::Url>,
    /// The account an app password belongs to (not its e-mail address).
    #[serde(default)]
    pub username: Option<String>,
    /// An app password (Repositories: Read, Pull requests: Read).
    #[serde(default)]
    pub app_password_file: Option<SecretFile>,
    /// A repository, project or workspace access token (scopes
    /// `repository`, `pullrequest`).
    #[serde(default)]
    pub token_file: Option<SecretFile>,
    /// An OAuth consumer's client credentials (token URL
    /// `https://bitbucket.org/site/oauth2/access_token`): the access token is
    /// fetched, cached and refreshed before it expires.
    #[serde(default)]
    pub oauth2: Option<relay_core::oauth2::ClientCredentialsSettings>,
    /// The repositories this Provider may write to, `workspace/repo` glob
    /// patterns (`acme/*`, `acme/widgets`); an event naming another is
    /// refused (dead-lettered) before any request. Unset: any repository
    /// the credential reaches. Recommended, since events name the repository.
    #[serde(default)]
    pub repositories: Repositories,
}

pub struct Bitbucket {
    base: url::Url,
    credential: Credential,
    repositories: Repositories,
    /// The account uuid comments of this Provider's credential show.
    identity: Identity,
}

pub struct BitbucketFactory;

impl ProviderFactory for BitbucketFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: BitbucketSettings = parse_settings(doc)?;
        let credential = Credential::from_settings(&s)?;
        let base = s
            .base_url
            .unwrap_or_else(|| url::Url::parse(DEFAULT_BASE).expect("the default base URL parses"));
        if base.cannot_be_a_base() || !matches!(base.scheme(), "https" | "http") {
            return Err(FieldErrors::one(
                "baseURL",
                "expected an http(s) URL such as https://api.bitbucket.org/2.0",
            ));
        }
        Ok(Arc::new(Bitbucket {
            base,
            credential,
            repositories: s.repositories,
            identity: Identity::default(),
        }))
    }
}

/// A build status key within Bitbucket's limit: the context itself, or a
/// prefix of it and a hash of the whole (stable, so updates hit one status).
pub fn status_key(context: &str) -> String {
    escape::bounded_key(context, KEY_MAX)
}

/// `repositories/{workspace}/{repo_slug}` and `tail`, as path segments.
fn repository_path<'a>(repo: &'a RepoPath, tail: &[&'a str]) -> Vec<&'a str> {
    let mut path = vec!["repositories", repo.owner(), repo.name()];
    path.extend_from_slice(tail);
    path
}

/// Where a build status links to (Bitbucket requires one): the run in the
/// dashboard, else the repository on bitbucket.org.
pub fn status_url(ev: &RunEvent) -> Option<String> {
    ev.url
        .as_deref()
        .and_then(escape::link)
        .or_else(|| ev.scm.url.as_deref().and_then(escape::repository_page))
        .or_else(|| match (&ev.scm.owner, &ev.scm.name) {
            (Some(ws), Some(repo)) => escape::link(&format!("https://bitbucket.org/{ws}/{repo}")),
            _ => None,
        })
}

/// The comments carrying `marker`, in one page of a comment list.
fn marked<'a>(page: &'a Value, marker: &'a str) -> impl Iterator<Item = &'a Value> {
    page["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |c| {
            c["deleted"] != Value::Bool(true)
                && c["content"]["raw"]
                    .as_str()
                    .is_some_and(|raw| raw.starts_with(marker))
        })
}

impl Bitbucket {
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
        let authorization = self.credential.authorization(http).await?;
        req.sensitive_header(http::header::AUTHORIZATION, &authorization)
            .map_err(|e| Verdict::permanent(e.to_string()))?;
        let answer = http.send(&Outbound::Http(req)).await;
        // A refused token is dropped, so the next attempt fetches a new one.
        if let (
            Err(Verdict::Permanent {
                status: Some(401), ..
            }),
            crate::bitbucket::auth::Credential::OAuth2(client),
        ) = (&answer, &self.credential)
        {
            client.invalidate().await;
        }
        answer
    }
}

/// Why a build status cannot be posted without a link.
fn no_link() -> Verdict {
    Verdict::permanent(
        "a Bitbucket build status needs a link: set the RelayConfig dashboardURL \
         or give the run a repository URL",
    )
}

#[async_trait]
impl GitHost for Bitbucket {
    const TYPE: &'static str = TYPE;
    const SUMMARY: Option<&'static str> = Some("comment");
    type Params = StatusParams;
    type Other = NoOther;
    type Repo = RepoPath;

    fn repository(&self, ev: &RunEvent) -> Result<RepoPath, Verdict> {
        self.repositories.of_event(ev)
    }

    fn key_parts(&self, repo: &RepoPath) -> Vec<String> {
        vec![repo.to_string()]
    }

    fn status_line(
        &self,
        ev: &RunEvent,
        params: &StatusParams,
        _sha: &str,
    ) -> Result<StatusLine, Verdict> {
        let name = status_context(params.context.as_deref(), ev);
        status_url(ev).ok_or_else(no_link)?;
        Ok(StatusLine {
            key: vec![status_key(&name)],
            context: name,
            state: state::build_status(ev.state),
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
        repo: &RepoPath,
        sha: &str,
        line: &StatusLine,
    ) -> Result<(), Verdict> {
        let body = json!({
            "key": status_key(&line.context), "state": line.state, "name": line.context,
            "url": status_url(ev).ok_or_else(no_link)?, "description": line.description,
        });
        let url = self.url(
            &repository_path(repo, &["commit", sha, "statuses", "build"]),
            None,
        )?;
        self.call(http, Method::POST, url, Some(body))
            .await
            .map(|_| ())
    }

    /// Bitbucket shows HTML comments as text; an empty link reference
    /// definition (and the blank line after it) renders as nothing.
    fn marker(&self, notification: &str, run: &str) -> String {
        format!("[//]: # (tekton-relay:{notification}:{run})\n")
    }

    fn messages<'a>(
        &'a self,
        http: &'a Http<'_>,
        repo: &'a RepoPath,
        pr: &'a str,
    ) -> Box<dyn SummaryMessages + Send + 'a> {
        Box::new(Comments {
            bitbucket: self,
            http,
            repo,
            pr: pr.to_string(),
        })
    }
}

/// A pull request's comments.
struct Comments<'a, 'h> {
    bitbucket: &'a Bitbucket,
    http: &'a Http<'h>,
    repo: &'a RepoPath,
    pr: String,
}

impl Comments<'_, '_> {
    /// `…/pullrequests/{pr}/comments[/{id}]`.
    fn url(&self, id: Option<&str>, query: Option<&str>) -> Result<url::Url, Verdict> {
        let mut tail = vec!["pullrequests", &self.pr, "comments"];
        tail.extend(id);
        self.bitbucket
            .url(&repository_path(self.repo, &tail), query)
    }
}

#[async_trait]
impl SummaryMessages for Comments<'_, '_> {
    /// Every page of the pull request's comments (until there is no
    /// `next`), for one whose `content.raw` starts with `marker` that this
    /// Provider's own account wrote.
    async fn find(&self, marker: &str) -> Result<Option<String>, Verdict> {
        let mut found = Vec::new();
        for page in 1..=MAX_PAGES {
            let query = format!("pagelen={COMMENT_PAGE}&page={page}");
            let list: Value = self
                .bitbucket
                .call(self.http, Method::GET, self.url(None, Some(&query))?, None)
                .await?
                .json()?;
            found.extend(marked(&list, marker).cloned());
            if !list["next"].is_string() {
                break;
            }
        }
        let found = adopt_own(
            found,
            |c| json_text(&c["user"]["uuid"]),
            &self.bitbucket.identity,
            || async {
                let url = self.bitbucket.url(&["user"], None)?;
                let me: Value = self
                    .bitbucket
                    .call(self.http, Method::GET, url, None)
                    .await?
                    .json()?;
                json_text(&me["uuid"])
                    .ok_or_else(|| Verdict::permanent("GET /user answered no uuid"))
            },
        )
        .await?;
        found.as_ref().map(json_id).transpose()
    }

    async fn create(&self, text: &str) -> Result<String, Verdict> {
        let body = json!({"content": {"raw": text}});
        let r = self
            .bitbucket
            .call(self.http, Method::POST, self.url(None, None)?, Some(body))
            .await?;
        json_id(&r.json::<Value>()?)
    }

    async fn update(&self, id: &str, text: &str) -> Result<(), Verdict> {
        let body = json!({"content": {"raw": text}});
        self.bitbucket
            .call(
                self.http,
                Method::PUT,
                self.url(Some(id), None)?,
                Some(body),
            )
            .await
            .map(|_| ())
    }
}

/// How each relay state shows on this host: the columns of the state table
/// in docs/providers/README.md (checked by the `state_table` test).
pub fn state_columns() -> Vec<crate::StateColumn> {
    vec![("Bitbucket Cloud", |s| state::build_status(s).into())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("bb", TYPE, settings)
    }

    fn errors(settings: Value) -> FieldErrors {
        match BitbucketFactory.build(&doc(settings)) {
            Ok(_) => FieldErrors::new(),
            Err(e) => e,
        }
    }

    #[test]
    fn exactly_one_credential_is_accepted() {
        let both =
            errors(json!({"username": "ci", "appPasswordFile": "/s/pw", "tokenFile": "/s/token"}));
        assert_eq!(both.len(), 1, "{both:?}");
        assert_eq!(both[0].path, "tokenFile");
        assert!(both[0].message.contains("not both"), "{both:?}");
        let none = errors(json!({"baseURL": "https://api.bitbucket.org/2.0"}));
        assert_eq!(none[0].path, "");
        assert!(none[0].message.contains("no credentials"), "{none:?}");
        assert_eq!(errors(json!({"username": "ci"}))[0].path, "appPasswordFile");
        assert_eq!(
            errors(json!({"appPasswordFile": "/s/pw"}))[0].path,
            "username"
        );
        assert_eq!(
            errors(json!({"username": "ci", "tokenFile": "/s/token"}))[0].path,
            "username"
        );
        assert!(errors(json!({"tokenFile": "/s/token"})).is_empty());
        let oauth2 = json!({"tokenURL": "https://bitbucket.org/site/oauth2/access_token", "clientId": "k", "clientSecretFile": "/s/c"});
        assert!(errors(json!({"oauth2": oauth2})).is_empty());
        assert_eq!(
            errors(json!({"oauth2": oauth2, "tokenFile": "/s/token"}))[0].path,
            "oauth2"
        );
        assert!(errors(json!({"username": "ci", "appPasswordFile": "/s/pw"})).is_empty());
        assert!(
            errors(json!({"tokenFile": "/t", "token": "x"}))[0]
                .message
                .contains("unknown field")
        );
    }

    #[test]
    fn long_contexts_get_a_stable_short_key() {
        assert_eq!(status_key("tekton/build-and-test"), "tekton/build-and-test");
        let long = "tekton/a-very-long-pipeline-name-that-goes-on-and-on";
        let key = status_key(long);
        assert_eq!(key.chars().count(), KEY_MAX);
        assert!(key.starts_with("tekton/a-very-long-pipeline-"), "{key}");
        assert_eq!(key, status_key(long));
        assert_ne!(key, status_key(&format!("{long}-2")));
        let exact = "x".repeat(KEY_MAX);
        assert_eq!(status_key(&exact), exact);
    }

    #[test]
    fn status_links_fall_back_to_the_repository() {
        let mut ev = relay_core::sample::run_event();
        ev.url = Some("https://tekton.example.com/#/pipelineruns/<b>x</b>*y*".into());
        let u = status_url(&ev).unwrap();
        assert!(!u.contains('<') && !u.contains('*'), "{u}");
        ev.url = None;
        ev.scm.url = Some("https://x-token-auth:SECRET@bitbucket.org/acme/widgets.git".into());
        assert_eq!(
            status_url(&ev).as_deref(),
            Some("https://bitbucket.org/acme/widgets")
        );
        ev.scm.url = Some("git@bitbucket.org:acme/widgets.git".into());
        assert_eq!(
            status_url(&ev).as_deref(),
            Some("https://bitbucket.org/acme/widgets")
        );
        ev.scm.owner = None;
        assert_eq!(status_url(&ev), None);
    }

    #[test]
    fn repository_paths_are_single_segments() {
        let b = bitbucket();
        let path = |ev: &RunEvent| -> Result<String, Verdict> {
            let repo = b.repositories.of_event(ev)?;
            let url = b.url(&repository_path(&repo, &[]), None)?;
            Ok(url.path().strip_prefix("/2.0").unwrap().to_string())
        };
        let mut ev = relay_core::sample::run_event();
        assert_eq!(path(&ev).unwrap(), "/repositories/acme/widgets");
        ev.scm.owner = Some("..".into());
        assert!(path(&ev).is_err());
        ev.scm.owner = Some("a/b c".into());
        assert_eq!(path(&ev).unwrap(), "/repositories/a%2Fb%20c/widgets");
    }

    fn bitbucket() -> Bitbucket {
        Bitbucket {
            base: url::Url::parse(DEFAULT_BASE).unwrap(),
            credential: Credential::Token(SecretFile("/nonexistent".into())),
            repositories: Repositories::default(),
            identity: Identity::default(),
        }
    }

    #[test]
    fn notification_actions_and_params_are_checked() {
        let b = bitbucket();
        let mut params = Map::new();
        params.insert("contxt".into(), "x".into());
        let errs = b.compile_notification(Some("note"), &params).unwrap_err();
        assert_eq!(errs[0].path, "action");
        assert!(
            errs[1].message.contains("unknown field `contxt`"),
            "{errs:?}"
        );
        let mut params = Map::new();
        params.insert("context".into(), " ".into());
        assert_eq!(
            b.compile_notification(None, &params).unwrap_err()[0].path,
            "params.context"
        );
        assert!(b.compile_notification(Some("comment"), &Map::new()).is_ok());
    }

    #[test]
    fn the_marked_comment_is_found_by_its_raw_text() {
        let marker = "[//]: # (tekton-relay:n:u)";
        let page = json!({"values": [
            {"id": 1, "content": {"raw": "lgtm"}},
            {"id": 2, "deleted": true, "content": {"raw": format!("{marker}\n\nold")}},
            {"id": 3, "content": {"raw": format!("{marker}\n\nnew")}},
        ]});
        assert_eq!(marked(&page, marker).next().unwrap()["id"], 3);
        assert!(marked(&json!({"values": []}), marker).next().is_none());
    }
}
