//! The `bitbucketserver` provider (Bitbucket Server / Data Center): commit
//! build statuses through the build-status REST API every version has.

pub mod state;

use std::sync::Arc;

use async_trait::async_trait;
use relay_core::RunEvent;
use relay_core::config::ProviderDoc;
use relay_core::escape;
use relay_core::family::{GitHost, NoOther, StatusLine};
use relay_core::field::FieldErrors;
use relay_core::githost::{RepoPath, Repositories, api_url};
use relay_core::provider::{
    Outbound, OutboundRequest, Provider, ProviderFactory, StatusParams, Verdict, parse_settings,
    status_context,
};
use relay_core::secret::SecretFile;
use relay_core::transport::Http;
use serde::Deserialize;
use serde_json::json;

pub const TYPE: &str = "bitbucketserver";
const DESCRIPTION_MAX: usize = 255;
/// The build-status key column's width.
const KEY_MAX: usize = 255;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BitbucketServerSettings {
    /// The server's base URL, e.g. `https://bitbucket.example.com` (with its
    /// context path, if any).
    #[serde(rename = "baseURL")]
    pub base_url: url::Url,
    /// An HTTP access token (project, repository or personal) with
    /// Repository read.
    pub token_file: SecretFile,
    /// The repositories this Provider may post statuses for,
    /// `PROJECT/repo` glob patterns (`PROJ/*`, `PROJ/widgets`), matched
    /// against the repository the event names (a build status is keyed by
    /// commit alone, so an event that names none is refused too). Unset: any.
    /// Recommended, since events name the repository.
    #[serde(default)]
    pub repositories: Repositories,
}

pub struct BitbucketServer {
    base: url::Url,
    token: SecretFile,
    repositories: Repositories,
}

pub struct BitbucketServerFactory;

impl ProviderFactory for BitbucketServerFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: BitbucketServerSettings = parse_settings(doc)?;
        if !matches!(s.base_url.scheme(), "https" | "http") {
            return Err(FieldErrors::one("baseURL", "must be an http(s) URL"));
        }
        if s.base_url.cannot_be_a_base() {
            return Err(FieldErrors::one("baseURL", "must be an http(s) URL"));
        }
        Ok(Arc::new(BitbucketServer {
            base: s.base_url,
            token: s.token_file,
            repositories: s.repositories,
        }))
    }
}

/// A build status key within the server's limit: the context itself, or a
/// prefix of it and a hash of the whole (stable, so updates hit one status).
pub fn status_key(context: &str) -> String {
    escape::bounded_key(context, KEY_MAX)
}

impl BitbucketServer {
    /// The server's base URL as written, without a trailing `/`.
    fn root(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// With a `repositories` allowlist, the event's repository (clone URLs
    /// read `/scm/PROJECT/repo.git`) must be in it.
    fn check_repository(&self, ev: &RunEvent) -> Result<(), Verdict> {
        if !self.repositories.is_set() {
            return Ok(());
        }
        let repo = RepoPath::of_event(ev)?;
        let project = repo.owner().strip_prefix("scm/").unwrap_or(repo.owner());
        self.repositories
            .permit(RepoPath::new(project, repo.name())?)?;
        Ok(())
    }

    /// Where a build status links to (Bitbucket requires one): the run in
    /// the dashboard, else the repository's page on this server, else the
    /// clone URL's.
    pub fn status_url(&self, ev: &RunEvent) -> Option<String> {
        let on_server = RepoPath::of_event(ev).ok().and_then(|r| {
            // Clone URLs read `/scm/PROJECT/repo.git`.
            let project = r.owner().strip_prefix("scm/").unwrap_or(r.owner());
            (!project.contains('/'))
                .then(|| format!("{}/projects/{project}/repos/{}", self.root(), r.name()))
        });
        ev.url
            .as_deref()
            .and_then(escape::link)
            .or_else(|| on_server.as_deref().and_then(escape::link))
            .or_else(|| ev.scm.url.as_deref().and_then(escape::repository_page))
    }
}

/// Why a build status cannot be posted without a link.
fn no_link() -> Verdict {
    Verdict::permanent(
        "a Bitbucket build status needs a link: set the RelayConfig dashboardURL \
         or give the run a repository URL",
    )
}

/// Statuses only: the build-status API takes the commit alone, so a
/// repository is only checked against the allowlist, and is no part of the
/// state keys.
#[async_trait]
impl GitHost for BitbucketServer {
    const TYPE: &'static str = TYPE;
    const SUMMARY: Option<&'static str> = None;
    type Params = StatusParams;
    type Other = NoOther;
    type Repo = ();

    fn repository(&self, ev: &RunEvent) -> Result<(), Verdict> {
        self.check_repository(ev)
    }

    fn key_parts(&self, _repo: &()) -> Vec<String> {
        Vec::new()
    }

    fn status_line(
        &self,
        ev: &RunEvent,
        params: &StatusParams,
        _sha: &str,
    ) -> Result<StatusLine, Verdict> {
        let name = status_context(params.context.as_deref(), ev);
        self.status_url(ev).ok_or_else(no_link)?;
        Ok(StatusLine {
            key: vec![status_key(&name)],
            context: name,
            state: state::build_status(ev.state),
            description: escape::one_line(
                &state::description(ev.state, ev.reason.as_deref()),
                DESCRIPTION_MAX,
            ),
        })
    }

    async fn post_status(
        &self,
        http: &Http<'_>,
        ev: &RunEvent,
        _params: &StatusParams,
        _repo: &(),
        sha: &str,
        line: &StatusLine,
    ) -> Result<(), Verdict> {
        let body = json!({
            "state": line.state, "key": status_key(&line.context), "name": line.context,
            "url": self.status_url(ev).ok_or_else(no_link)?, "description": line.description,
        });
        let url = api_url(&self.base, &["rest", "build-status", "1.0", "commits", sha])?;
        let mut req = OutboundRequest::post_json(url, body.to_string());
        let token = self
            .token
            .read()
            .await
            .map_err(Verdict::from)?;
        req.sensitive_header(
            http::header::AUTHORIZATION,
            &format!("Bearer {}", token.expose()),
        )
        .map_err(|e| Verdict::permanent(e.to_string()))?;
        // 204 No Content on success: nothing to read.
        http.send(&Outbound::Http(req)).await.map(|_| ())
    }
}

/// How each relay state shows on this host: the columns of the state table
/// in docs/providers/README.md (checked by the `state_table` test).
pub fn state_columns() -> Vec<crate::StateColumn> {
    vec![("Bitbucket Server", |s| state::build_status(s).into())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn server() -> BitbucketServer {
        BitbucketServer {
            base: url::Url::parse("https://bitbucket.example.com/bb").unwrap(),
            token: SecretFile("/nonexistent".into()),
            repositories: Repositories::default(),
        }
    }

    fn errors(settings: Value) -> FieldErrors {
        let doc = ProviderDoc {
            name: "bbs".into(),
            provider_type: TYPE.into(),
            settings,
        };
        match BitbucketServerFactory.build(&doc) {
            Ok(_) => FieldErrors::new(),
            Err(e) => e,
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(
            errors(json!({"baseURL": "https://bitbucket.example.com", "tokenFile": "/t"}))
                .is_empty()
        );
        let missing = errors(json!({"tokenFile": "/t"}));
        assert!(missing[0].message.contains("baseURL"), "{missing:?}");
        let extra = errors(json!({"baseURL": "https://b", "tokenFile": "/t", "username": "x"}));
        assert!(extra[0].message.contains("unknown field"), "{extra:?}");
        assert_eq!(
            errors(json!({"baseURL": "ftp://b", "tokenFile": "/t"}))[0].path,
            "baseURL"
        );
    }

    #[test]
    fn status_links_fall_back_to_the_repository() {
        let s = server();
        let mut ev = relay_core::sample::run_event();
        ev.url = Some("https://tekton.example.com/#/pipelineruns/<b>x</b>*y*".into());
        let u = s.status_url(&ev).unwrap();
        assert!(!u.contains('<') && !u.contains('*'), "{u}");
        ev.url = None;
        ev.scm.owner = Some("scm/PROJ".into());
        assert_eq!(
            s.status_url(&ev).as_deref(),
            Some("https://bitbucket.example.com/bb/projects/PROJ/repos/widgets")
        );
        ev.scm.owner = Some("a/b/c".into());
        ev.scm.url = Some("https://user:SECRET@git.example.com/a/b/c/widgets.git".into());
        assert_eq!(
            s.status_url(&ev).as_deref(),
            Some("https://git.example.com/a/b/c/widgets")
        );
        ev.scm.url = None;
        assert_eq!(s.status_url(&ev), None);
    }

    #[test]
    fn keys_and_notifications() {
        assert_eq!(status_key("tekton/ci"), "tekton/ci");
        let long = "x".repeat(300);
        assert_eq!(status_key(&long).chars().count(), KEY_MAX);
        assert_eq!(status_key(&long), status_key(&long));
        let s = server();
        assert_eq!(
            s.compile_notification(Some("comment"), &Map::new())
                .unwrap_err()[0]
                .path,
            "action"
        );
        let mut params = Map::new();
        params.insert("perTask".into(), true.into());
        assert!(
            s.compile_notification(None, &params).unwrap_err()[0]
                .message
                .contains("unknown field")
        );
        assert!(s.compile_notification(Some("status"), &Map::new()).is_ok());
    }
}
