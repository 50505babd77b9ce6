//! Source-control context: relay annotations first, then Pipelines-as-Code
//! labels/annotations, then git params.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::event::model::ScmContext;

const RELAY: &str = "relay.tekton.dev/";
const PAC: &str = "pipelinesascode.tekton.dev/";

/// Param names commonly holding the repository URL, in preference order.
const URL_PARAMS: &[&str] = &[
    "repo-url",
    "repo_url",
    "repoUrl",
    "git-url",
    "gitUrl",
    "repository",
    "url",
];
/// Param names commonly holding the revision, in preference order.
const REVISION_PARAMS: &[&str] = &[
    "revision",
    "git-revision",
    "gitRevision",
    "commit",
    "sha",
    "commit-sha",
];

pub struct ScmSources<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub params: &'a [(String, String)],
}

impl ScmSources<'_> {
    /// Annotations win over labels (PaC truncates label values; annotations keep them whole).
    fn get(&self, prefix: &str, key: &str) -> Option<String> {
        let full = format!("{prefix}{key}");
        self.annotations
            .get(&full)
            .or_else(|| self.labels.get(&full))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn first(&self, key: &str) -> Option<String> {
        self.get(RELAY, key).or_else(|| self.get(PAC, key))
    }

    fn param(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| {
            self.params
                .iter()
                .find(|(k, v)| k == n && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_string())
        })
    }
}

pub fn extract(src: &ScmSources<'_>) -> ScmContext {
    let url = src
        .first("repo-url")
        .or_else(|| src.param(URL_PARAMS).filter(|u| looks_like_git_url(u)))
        .map(|u| without_userinfo(&u).into_owned());
    let revision_param = src.param(REVISION_PARAMS);
    let sha = src.first("sha").or_else(|| {
        revision_param
            .as_deref()
            .filter(|r| is_commit_sha(r))
            .map(str::to_string)
    });
    let branch = src
        .first("branch")
        .or_else(|| revision_param.filter(|r| !is_commit_sha(r)))
        .map(|b| short_branch(&b));
    let pull_request = src
        .first("pull-request")
        .and_then(|p| p.trim_start_matches('#').parse::<u64>().ok());
    let (repo, mut owner, mut name) = match url.as_deref() {
        Some(u) => split_repo_url(u),
        None => (None, None, None),
    };
    if let Some(org) = src.first("url-org") {
        owner = Some(org);
    }
    if let Some(n) = src.first("url-repository") {
        name = Some(n);
    }
    let provider = src
        .first("git-provider")
        .or_else(|| src.get(RELAY, "provider"))
        .or_else(|| repo.as_deref().and_then(provider_from_host));
    ScmContext {
        url,
        repo,
        owner,
        name,
        provider,
        sha,
        pull_request,
        branch,
        event_type: src.first("event-type"),
        sender: src.first("sender"),
        title: src
            .get(RELAY, "title")
            .or_else(|| src.get(PAC, "sha-title")),
    }
}

/// `s` with the credentials of every URL in it removed:
/// `https://x-access-token:ghs_…@github.com/acme/widgets` becomes
/// `https://github.com/acme/widgets`, in a clone URL as in a condition
/// message quoting one (`unable to access 'https://…@github.com/…'`).
/// Clone URLs carry tokens for git; nothing the relay does needs them,
/// and every provider, template, log line and dead letter would show them.
pub fn without_userinfo(s: &str) -> Cow<'_, str> {
    if !s.contains("://") || !s.contains('@') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends where the path, query or fragment starts, or
        // where the URL ends in text.
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '\\' | '\'' | '"' | '<' | '>' | '`')
                    || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        // A password may hold `@` unencoded: the host follows the last one.
        out.push_str(
            authority
                .rfind('@')
                .map_or(authority, |at| &authority[at + 1..]),
        );
        rest = &tail[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// [`without_userinfo`] on every string of `v` (a received event kept in a
/// dead letter: its params and annotations as sent).
pub fn redact_userinfo(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            if let Cow::Owned(clean) = without_userinfo(s) {
                *s = clean;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_userinfo),
        Value::Object(m) => m.values_mut().for_each(redact_userinfo),
        _ => {}
    }
}

fn looks_like_git_url(u: &str) -> bool {
    u.starts_with("https://")
        || u.starts_with("http://")
        || u.starts_with("git@")
        || u.starts_with("ssh://")
}

pub fn is_commit_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `refs/heads/main` -> `main`.
pub fn short_branch(b: &str) -> String {
    b.strip_prefix("refs/heads/").unwrap_or(b).to_string()
}

/// Splits a clone URL into `host/path`, owner (everything before the last
/// segment, so GitLab subgroups survive) and repository name.
pub fn split_repo_url(url: &str) -> (Option<String>, Option<String>, Option<String>) {
    let rest = if let Some(scp) = url.strip_prefix("git@") {
        scp.replacen(':', "/", 1)
    } else {
        let no_scheme = url.split_once("://").map_or(url, |(_, r)| r);
        // Drop credentials in the authority, if any.
        no_scheme
            .split_once('@')
            .filter(|(userinfo, _)| !userinfo.contains('/'))
            .map_or(no_scheme, |(_, r)| r)
            .to_string()
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    if segments.len() < 3 {
        return (Some(rest.to_string()).filter(|r| !r.is_empty()), None, None);
    }
    let name = segments[segments.len() - 1].to_string();
    let owner = segments[1..segments.len() - 1].join("/");
    (Some(segments.join("/")), Some(owner), Some(name))
}

fn provider_from_host(repo: &str) -> Option<String> {
    let host = repo.split('/').next()?;
    let p = match host {
        "github.com" => "github",
        "gitlab.com" => "gitlab",
        "bitbucket.org" => "bitbucket-cloud",
        "dev.azure.com" => "azure-devops",
        "codeberg.org" => "gitea",
        _ => return None,
    };
    Some(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_repo_url("https://github.com/acme/widgets.git"),
            (
                Some("github.com/acme/widgets".into()),
                Some("acme".into()),
                Some("widgets".into())
            )
        );
        assert_eq!(
            split_repo_url("git@gitlab.com:group/sub/proj.git")
                .1
                .as_deref(),
            Some("group/sub")
        );
        assert_eq!(
            split_repo_url("https://user:tok@example.com/a/b/")
                .0
                .as_deref(),
            Some("example.com/a/b")
        );
    }

    #[test]
    fn clone_url_credentials_are_stripped() {
        for (dirty, clean) in [
            (
                "https://x-access-token:ghs_s3cret@github.com/acme/widgets.git",
                "https://github.com/acme/widgets.git",
            ),
            (
                "https://ghp_s3cret@github.com/acme/w",
                "https://github.com/acme/w",
            ),
            (
                "https://u:p@ss@host:8443/x?y=1#z",
                "https://host:8443/x?y=1#z",
            ),
            ("ssh://git@host/acme/w", "ssh://host/acme/w"),
            (
                "fatal: unable to access 'https://oauth2:glpat-s3cret@gitlab.com/g/p.git/': 403",
                "fatal: unable to access 'https://gitlab.com/g/p.git/': 403",
            ),
            (
                "two https://a:b@x and http://c@y/",
                "two https://x and http://y/",
            ),
            (
                "https://github.com/acme/w@v2",
                "https://github.com/acme/w@v2",
            ),
            ("git@github.com:acme/w.git", "git@github.com:acme/w.git"),
            ("mail me@example.com", "mail me@example.com"),
        ] {
            assert_eq!(without_userinfo(dirty), clean, "{dirty}");
        }
        let params = vec![(
            "repo-url".to_string(),
            "https://x-access-token:ghs_s3cret@github.com/acme/widgets".to_string(),
        )];
        let empty = BTreeMap::new();
        let ctx = extract(&ScmSources {
            labels: &empty,
            annotations: &empty,
            params: &params,
        });
        assert_eq!(ctx.url.as_deref(), Some("https://github.com/acme/widgets"));
        assert_eq!(ctx.owner.as_deref(), Some("acme"));
        let mut v = serde_json::json!({"params": [{"value": params[0].1}], "n": 1});
        redact_userinfo(&mut v);
        assert!(!v.to_string().contains("s3cret"), "{v}");
    }

    #[test]
    fn precedence_relay_then_pac_then_params() {
        let mut ann = BTreeMap::new();
        ann.insert(format!("{PAC}sha"), "a".repeat(40));
        ann.insert(format!("{RELAY}sha"), "b".repeat(40));
        let labels = BTreeMap::new();
        let params = vec![
            ("url".to_string(), "https://github.com/o/r".to_string()),
            ("revision".to_string(), "c".repeat(40)),
        ];
        let ctx = extract(&ScmSources {
            labels: &labels,
            annotations: &ann,
            params: &params,
        });
        assert_eq!(ctx.sha, Some("b".repeat(40)));
        assert_eq!(ctx.url.as_deref(), Some("https://github.com/o/r"));
        assert_eq!(ctx.provider.as_deref(), Some("github"));
        let empty = BTreeMap::new();
        let ctx = extract(&ScmSources {
            labels: &empty,
            annotations: &empty,
            params: &params,
        });
        assert_eq!(ctx.sha, Some("c".repeat(40)));
        let params = vec![("revision".to_string(), "refs/heads/dev".to_string())];
        let ctx = extract(&ScmSources {
            labels: &empty,
            annotations: &empty,
            params: &params,
        });
        assert_eq!((ctx.sha, ctx.branch.as_deref()), (None, Some("dev")));
    }
}
