//! The `gitea` provider: commit statuses and a pull request comment with the
//! PipelineRun summary, updated in place, on a Gitea or Forgejo server
//! (Codeberg runs Forgejo; both speak the same API).

pub mod state;

use std::future::Future;
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

pub const TYPE: &str = "gitea";
/// Gitea's column for a commit status description.
const DESCRIPTION_MAX: usize = 255;
/// Gitea's default `MAX_RESPONSE_ITEMS`.
const COMMENT_PAGE: usize = 50;
const MAX_PAGES: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GiteaSettings {
    /// The API root: `https://gitea.example.com/api/v1`, `https://codeberg.org/api/v1`.
    #[serde(rename = "baseURL")]
    pub base_url: url::Url,
    /// An access token with `write:repository` (statuses) and `write:issue`
    /// (pull request comments).
    pub token_file: SecretFile,
    /// The repositories this Provider may write to, `owner/repo` glob
    /// patterns (`acme/*`, `acme/widgets`); an event naming another is
    /// refused (dead-lettered) before any request. Unset: any repository
    /// the token reaches. Recommended, since events name the repository.
    #[serde(default)]
    pub repositories: Repositories,
}

pub struct Gitea {
    base: url::Url,
    token: SecretFile,
    repositories: Repositories,
    /// The user id comments of this Provider's token show.
    identity: Identity,
}

pub struct GiteaFactory;

impl ProviderFactory for GiteaFactory {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn build(&self, doc: &ProviderDoc) -> Result<Arc<dyn Provider>, FieldErrors> {
        let s: GiteaSettings = parse_settings(doc)?;
        let mut base = s.base_url;
        // Checked here, so a server URL given for the API root fails at load
        // time rather than as a 404 on every delivery.
        let path = base.path().trim_end_matches('/').to_string();
        if !matches!(base.scheme(), "http" | "https") || !path.ends_with("/api/v1") {
            return Err(FieldErrors::one(
                "baseURL",
                format!(
                    "expected the API root, an http(s) URL ending in /api/v1 \
                     (https://gitea.example.com/api/v1), got {base}"
                ),
            ));
        }
        base.set_path(&path);
        base.set_query(None);
        Ok(Arc::new(Gitea {
            base,
            token: s.token_file,
            repositories: s.repositories,
            identity: Identity::default(),
        }))
    }
}

/// Owner and repository of an event, checked, or why it cannot be posted.
fn target(ev: &RunEvent) -> Result<RepoPath, Verdict> {
    let full = RepoPath::of_event(ev)?;
    // Gitea has no nested groups: an owner of several segments comes from
    // a server under a sub-path (`https://host/git/acme/widgets`), whose
    // owner is the last one.
    let owner = full.owner().rsplit('/').next().unwrap_or(full.owner());
    RepoPath::new(owner, full.name())
}

impl Gitea {
    /// The API URL of `segments` (each percent-encoded, so a name cannot
    /// change the path), with `query`.
    fn url(&self, segments: &[&str], query: Option<&str>) -> Result<url::Url, Verdict> {
        let mut url = api_url(&self.base, segments)?;
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
        let token = self
            .token
            .read()
            .await
            .map_err(Verdict::from)?;
        req.sensitive_header(
            http::header::AUTHORIZATION,
            &format!("token {}", token.expose()),
        )
        .map_err(|e| Verdict::permanent(e.to_string()))?;
        http.send(&Outbound::Http(req)).await
    }
}

#[async_trait]
impl GitHost for Gitea {
    const TYPE: &'static str = TYPE;
    const SUMMARY: Option<&'static str> = Some("comment");
    type Params = StatusParams;
    type Other = NoOther;
    type Repo = RepoPath;

    /// The repository of an event, checked and allowed.
    fn repository(&self, ev: &RunEvent) -> Result<RepoPath, Verdict> {
        self.repositories.permit(target(ev)?)
    }

    fn key_parts(&self, repo: &RepoPath) -> Vec<String> {
        vec![self.base.to_string(), repo.to_string()]
    }

    fn status_line(
        &self,
        ev: &RunEvent,
        params: &StatusParams,
        _sha: &str,
    ) -> Result<StatusLine, Verdict> {
        let context = status_context(params.context.as_deref(), ev);
        // Plain text: Gitea shows the description HTML-escaped, unrendered.
        let description = escape::one_line(
            &match (&ev.reason, &ev.message) {
                (Some(r), Some(m)) if !m.trim().is_empty() => format!("{r}: {m}"),
                (Some(r), _) => r.clone(),
                (None, Some(m)) if !m.trim().is_empty() => m.clone(),
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
        _params: &StatusParams,
        repo: &RepoPath,
        sha: &str,
        line: &StatusLine,
    ) -> Result<(), Verdict> {
        let mut body = json!({
            "state": line.state, "description": line.description, "context": line.context,
        });
        if let Some(u) = &ev.url {
            body["target_url"] = u.clone().into();
        }
        let url = self.url(&["repos", repo.owner(), repo.name(), "statuses", sha], None)?;
        self.call(http, Method::POST, url, Some(&body))
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
            gitea: self,
            http,
            repo,
            pr,
        })
    }
}

/// A pull request's comments (issue comments, in Gitea).
struct Comments<'a, 'h> {
    gitea: &'a Gitea,
    http: &'a Http<'h>,
    repo: &'a RepoPath,
    pr: &'a str,
}

impl Comments<'_, '_> {
    fn list(&self, query: Option<&str>) -> Result<url::Url, Verdict> {
        let path = [
            "repos",
            self.repo.owner(),
            self.repo.name(),
            "issues",
            self.pr,
            "comments",
        ];
        self.gitea.url(&path, query)
    }
}

#[async_trait]
impl SummaryMessages for Comments<'_, '_> {
    /// A comment carrying `marker` that this Provider's own user wrote.
    async fn find(&self, marker: &str) -> Result<Option<String>, Verdict> {
        let marked = find_marked_comment(marker, |page| async move {
            let query = format!("limit={COMMENT_PAGE}&page={page}");
            let r = self
                .gitea
                .call(self.http, Method::GET, self.list(Some(&query))?, None)
                .await?;
            let total = r
                .headers
                .get("x-total-count")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            Ok((r.json::<Vec<Value>>()?, total))
        })
        .await?;
        let found = adopt_own(
            marked,
            |c| json_text(&c["user"]["id"]),
            &self.gitea.identity,
            || async {
                let url = self.gitea.url(&["user"], None)?;
                let me: Value = self
                    .gitea
                    .call(self.http, Method::GET, url, None)
                    .await?
                    .json()?;
                json_text(&me["id"]).ok_or_else(|| Verdict::permanent("GET /user answered no id"))
            },
        )
        .await?;
        found.as_ref().map(json_id).transpose()
    }

    async fn create(&self, text: &str) -> Result<String, Verdict> {
        let body = json!({"body": text});
        let r = self
            .gitea
            .call(self.http, Method::POST, self.list(None)?, Some(&body))
            .await?;
        json_id(&r.json::<Value>()?)
    }

    async fn update(&self, id: &str, text: &str) -> Result<(), Verdict> {
        let path = [
            "repos",
            self.repo.owner(),
            self.repo.name(),
            "issues",
            "comments",
            id,
        ];
        let body = json!({"body": text});
        self.gitea
            .call(
                self.http,
                Method::PATCH,
                self.gitea.url(&path, None)?,
                Some(&body),
            )
            .await
            .map(|_| ())
    }
}

/// Every comment whose body starts with `marker`, in order. Gitea and
/// Forgejo answer an issue's comment list whole, ignoring `page` and `limit`
/// (with the count in `X-Total-Count`), so `message::find_marked`, which
/// reads on while pages are full, would fetch the same list 100 times: this
/// stops once every comment was seen, on a short page, or when page 2
/// repeats page 1. `page(n)` answers the comments and the total, when known.
async fn find_marked_comment<F, Fut>(marker: &str, mut page: F) -> Result<Vec<Value>, Verdict>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(Vec<Value>, Option<usize>), Verdict>>,
{
    let mut seen = 0;
    let mut first = None;
    let mut found = Vec::new();
    for n in 1..=MAX_PAGES {
        let (items, total) = page(n).await?;
        let head = items.first().map(|c| c["id"].clone());
        if n == 1 {
            first = head;
        } else if head == first {
            break;
        }
        found.extend(
            items
                .iter()
                .filter(|c| c["body"].as_str().is_some_and(|b| b.starts_with(marker)))
                .cloned(),
        );
        seen += items.len();
        if items.len() < COMMENT_PAGE || total.is_some_and(|t| seen >= t) {
            break;
        }
    }
    Ok(found)
}

/// How each relay state shows on this host: the columns of the state table
/// in docs/providers/README.md (checked by the `state_table` test).
pub fn state_columns() -> Vec<crate::StateColumn> {
    vec![("Gitea/Forgejo", |s| state::commit_status(s).into())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn doc(settings: serde_json::Value) -> ProviderDoc {
        crate::testkit::provider_doc("gitea", TYPE, settings)
    }

    fn gitea() -> Gitea {
        Gitea {
            base: url::Url::parse("https://codeberg.org/api/v1").unwrap(),
            token: SecretFile("/nonexistent".into()),
            repositories: Repositories::default(),
            identity: Identity::default(),
        }
    }

    #[test]
    fn notification_actions_and_params_are_checked() {
        let g = gitea();
        let mut params = Map::new();
        params.insert("contxt".into(), "x".into());
        let errs = g.compile_notification(Some("note"), &params).unwrap_err();
        assert_eq!(errs[0].path, "action");
        assert!(
            errs[0].message.contains("expected status or comment"),
            "{errs:?}"
        );
        assert!(
            errs[1].message.contains("unknown field `contxt`"),
            "{errs:?}"
        );
        let mut params = Map::new();
        params.insert("context".into(), "ci/tekton".into());
        assert!(g.compile_notification(None, &params).is_ok());
        assert!(g.compile_notification(Some("status"), &Map::new()).is_ok());
        assert!(g.compile_notification(Some("comment"), &Map::new()).is_ok());
    }

    #[test]
    fn settings_need_the_api_root_and_a_token() {
        let f = GiteaFactory;
        let ok = json!({"baseURL": "https://git.example.com/gitea/api/v1/", "tokenFile": "/t"});
        assert!(f.build(&doc(ok)).is_ok());
        for (bad, path, msg) in [
            (
                json!({"baseURL": "https://gitea.example.com", "tokenFile": "/t"}),
                "baseURL",
                "ending in /api/v1",
            ),
            (json!({"tokenFile": "/t"}), "", "missing field `baseURL`"),
            (
                json!({"baseURL": "https://codeberg.org/api/v1"}),
                "",
                "missing field `tokenFile`",
            ),
            (
                json!({"baseURL": "https://codeberg.org/api/v1", "tokenFile": "/t", "token": "x"}),
                "token",
                "unknown field `token`",
            ),
        ] {
            let errs = f.build(&doc(bad)).err().unwrap();
            assert_eq!(errs[0].path, path, "{errs:?}");
            assert!(errs[0].message.contains(msg), "{errs:?}");
        }
    }

    #[test]
    fn urls_encode_names_and_keep_the_base_path() {
        let g = gitea();
        let u = g
            .url(&["repos", "acme", "a b/c", "statuses", "abc"], None)
            .unwrap();
        assert_eq!(
            u.as_str(),
            "https://codeberg.org/api/v1/repos/acme/a%20b%2Fc/statuses/abc"
        );
        let mut ev = relay_core::sample::run_event();
        ev.scm.owner = Some("git/acme".into());
        assert_eq!(target(&ev).unwrap().owner(), "acme");
    }

    fn comments(ids: std::ops::Range<u64>) -> Vec<Value> {
        ids.map(|i| json!({"id": i, "body": "lgtm"})).collect()
    }

    #[tokio::test]
    async fn comment_search_stops_when_every_comment_was_seen() {
        // Gitea ignores `page`: every page is the whole list of 120.
        let mut asked = 0;
        let found = find_marked_comment("<!-- m -->", |_| {
            asked += 1;
            async { Ok((comments(0..120), Some(120))) }
        })
        .await
        .unwrap();
        assert_eq!((found, asked), (vec![], 1));
        // The same without X-Total-Count: page 2 repeats page 1.
        let mut asked = 0;
        let found = find_marked_comment("<!-- m -->", |_| {
            asked += 1;
            async { Ok((comments(0..120), None)) }
        })
        .await
        .unwrap();
        assert_eq!((found, asked), (vec![], 2));
        // A server that does page is read until the comment turns up.
        let found = find_marked_comment("<!-- m -->", |n| async move {
            Ok(match n {
                1 => (comments(0..50), Some(51)),
                _ => (vec![json!({"id": 77, "body": "<!-- m -->\nold"})], Some(51)),
            })
        })
        .await
        .unwrap();
        assert_eq!(found[0]["id"], 77);
    }
}
