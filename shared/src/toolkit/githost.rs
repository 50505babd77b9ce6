//! What every git-host provider (GitHub, GitLab, Gitea, Bitbucket Cloud and
//! Server, Azure DevOps) does with the repository and commit an event names
//! before it spends its token on them.
//!
//! Owner, repository and commit come from annotations, labels and params:
//! whoever can send an event, or annotate a PipelineRun, writes them. Put
//! into an API path as they are, `url-org: ../../../../admin/hooks?` or a
//! commit `../../../../../user/repos#` chose which API the token was used
//! on. So, here and nowhere else:
//!
//! - every name is checked ([`check_name`]): not empty, not `.` or `..`, no
//!   `/`, no control or invisible formatting character;
//! - a commit is 40 or 64 hexadecimal digits ([`crate::toolkit::params::commit_sha`]);
//! - every path segment is percent-encoded by the `url` crate ([`api_url`]),
//!   never concatenated;
//! - the Provider's `repositories` allowlist ([`Repositories`]) is applied.
//!
//! A refused value fails the delivery permanently (dead-lettered, counted)
//! before any request is sent.

use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::delivery::verdict::Verdict;
use crate::event::model::RunEvent;

/// `s` as an error message quotes it: escaped, and cut to 80 characters
/// (an event's field may be as long as the body).
pub fn quoted(s: &str) -> String {
    format!("{:?}", crate::event::escape::cut(s, 80))
}

/// Checks one name of a repository path (`what`: "owner", "repository",
/// "project"…): `s` itself, or a permanent failure saying why.
pub fn check_name<'a>(what: &str, s: &'a str) -> Result<&'a str, Verdict> {
    let why = if s.is_empty() {
        Some("it is empty")
    } else if s == "." || s == ".." {
        Some("`.` and `..` would climb the API path")
    } else if s.contains('/') {
        Some("one name holds no `/`")
    } else if s
        .chars()
        .any(|c| c.is_control() || crate::event::escape::is_format(c))
    {
        Some("it holds a control or invisible formatting character")
    } else {
        None
    };
    match why {
        None => Ok(s),
        Some(why) => Err(Verdict::permanent(format!(
            "refused {what} {} from the event: {why}",
            quoted(s)
        ))),
    }
}

/// A repository an event names, each part checked: an owner (one name, or
/// several joined by `/`: GitLab groups, a project and its organization)
/// and a repository name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPath {
    owner: String,
    name: String,
}

impl RepoPath {
    /// `owner` (every `/`-separated part checked) and `name` (checked).
    pub fn new(owner: &str, name: &str) -> Result<RepoPath, Verdict> {
        for part in owner.split('/') {
            check_name("owner", part).map_err(|e| {
                if owner.contains('/') {
                    e.map_message(|m| format!("{m} (in owner {})", quoted(owner)))
                } else {
                    e
                }
            })?;
        }
        check_name("repository", name)?;
        Ok(RepoPath {
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }

    /// The owner and repository of an event (`relay.tekton.dev/url-org` and
    /// `url-repository`, Pipelines-as-Code labels, or the clone URL).
    pub fn of_event(ev: &RunEvent) -> Result<RepoPath, Verdict> {
        match (&ev.scm.owner, &ev.scm.name) {
            (Some(o), Some(n)) => RepoPath::new(o, n),
            _ => Err(Verdict::permanent(
                "the event names no repository (relay.tekton.dev/* annotations, \
                 Pipelines-as-Code labels, or a url param)",
            )),
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// `base` with `segments` appended, each percent-encoded (a `/`, `?` or `#`
/// in one stays inside it) by the `url` crate; the query is cleared. A
/// segment that is empty, `.` or `..` (which the `url` crate would drop,
/// moving the rest up) is refused.
pub fn api_url(base: &url::Url, segments: &[&str]) -> Result<url::Url, Verdict> {
    for s in segments {
        if s.is_empty() || *s == "." || *s == ".." {
            return Err(Verdict::permanent(format!(
                "refused the API path segment {}",
                quoted(s)
            )));
        }
    }
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| Verdict::permanent("baseURL cannot have a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The repositories a Provider may write to: `repositories` in its
/// settings, glob patterns over `owner/repository` (`acme/*`,
/// `acme/widgets`, `group/**` for GitLab subgroups; Azure DevOps:
/// `organization/project/repository`). `*` stays within one name, `**`
/// crosses `/`; matching ignores case, as the hosts do. Without it every
/// repository the credential can reach is allowed: setting it is
/// recommended, since events name the repository.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct Repositories {
    /// `None`: not configured, every repository allowed.
    allowed: Option<(Vec<String>, GlobSet)>,
}

impl TryFrom<Vec<String>> for Repositories {
    type Error = String;

    fn try_from(patterns: Vec<String>) -> Result<Repositories, String> {
        if patterns.is_empty() {
            return Err(
                "an empty list would allow no repository: list owner/repository patterns \
                 (acme/*), or leave repositories out to allow every one"
                    .into(),
            );
        }
        let mut set = GlobSetBuilder::new();
        for p in &patterns {
            if !p.contains('/') || p.starts_with('/') || p.ends_with('/') {
                return Err(format!(
                    "{p:?} is no owner/repository pattern (acme/*, acme/widgets)"
                ));
            }
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .case_insensitive(true)
                .build()
                .map_err(|e| format!("{p:?}: {e}"))?;
            set.add(glob);
        }
        let set = set.build().map_err(|e| e.to_string())?;
        Ok(Repositories {
            allowed: Some((patterns, set)),
        })
    }
}

impl Repositories {
    /// Whether the Provider lists its repositories (else all are allowed).
    pub fn is_set(&self) -> bool {
        self.allowed.is_some()
    }

    /// Whether `repo` may be written to.
    pub fn allows(&self, repo: &RepoPath) -> bool {
        match &self.allowed {
            None => true,
            Some((_, set)) => set.is_match(repo.to_string()),
        }
    }

    /// `repo` if it may be written to, else a permanent failure naming it.
    pub fn permit(&self, repo: RepoPath) -> Result<RepoPath, Verdict> {
        if self.allows(&repo) {
            return Ok(repo);
        }
        let patterns = self.allowed.as_ref().map(|(p, _)| p.join(", "));
        Err(Verdict::permanent(format!(
            "repository {repo} is not in this Provider's repositories ({})",
            patterns.unwrap_or_default()
        )))
    }

    /// The repository of an event, checked and allowed.
    pub fn of_event(&self, ev: &RunEvent) -> Result<RepoPath, Verdict> {
        self.permit(RepoPath::of_event(ev)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(patterns: &[&str]) -> Repositories {
        Repositories::try_from(patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn names_that_would_climb_or_hide_are_refused() {
        for (owner, name) in [
            ("../../../../admin/hooks?", "widgets"),
            ("acme", ".."),
            ("acme", "."),
            ("acme", ""),
            ("", "widgets"),
            ("acme//x", "widgets"),
            ("acme", "wid\ngets"),
            ("acme", "wid\u{1b}[31mgets"),
            ("ac\u{202e}me", "widgets"),
            ("acme", "a/b"),
        ] {
            let e = RepoPath::new(owner, name).unwrap_err();
            assert!(
                matches!(e, Verdict::Permanent { status: None, .. }),
                "{owner:?}/{name:?}: {e:?}"
            );
        }
        let r = RepoPath::new("group/sub", "proj.v2").unwrap();
        assert_eq!(r.to_string(), "group/sub/proj.v2");
        let msg = match RepoPath::new("a/../b", "w").unwrap_err() {
            Verdict::Permanent { message, .. } => message,
            v => panic!("{v:?}"),
        };
        assert!(
            msg.contains("`.` and `..`") && msg.contains("a/../b"),
            "{msg}"
        );
    }

    #[test]
    fn api_urls_encode_every_segment_and_refuse_climbing_ones() {
        let base = url::Url::parse("https://ghe.example.com/api/v3/?x=1").unwrap();
        let u = api_url(
            &base,
            &["repos", "../admin/hooks?", "w#x", "statuses", "a b%2e"],
        )
        .unwrap();
        assert_eq!(
            u.as_str(),
            "https://ghe.example.com/api/v3/repos/..%2Fadmin%2Fhooks%3F/w%23x/statuses/a%20b%252e"
        );
        assert_eq!(u.path_segments().unwrap().count(), 7);
        for bad in ["..", ".", ""] {
            assert!(api_url(&base, &["repos", bad, "x"]).is_err(), "{bad:?}");
        }
        let root = url::Url::parse("https://api.github.com").unwrap();
        assert_eq!(
            api_url(&root, &["user"]).unwrap().as_str(),
            "https://api.github.com/user"
        );
    }

    #[test]
    fn the_allowlist_matches_owner_and_repository_globs() {
        let a = allow(&["acme/*", "other/widgets", "group/**"]);
        let ok = |o: &str, n: &str| a.allows(&RepoPath::new(o, n).unwrap());
        assert!(ok("acme", "widgets"));
        assert!(ok("ACME", "Widgets"), "hosts ignore case");
        assert!(ok("other", "widgets"));
        assert!(!ok("other", "gadgets"));
        assert!(ok("group/sub", "proj"));
        assert!(!ok("acme/sub", "proj"), "* stays within one name");
        assert!(!ok("evil", "widgets"));
        match a.permit(RepoPath::new("evil", "widgets").unwrap()) {
            Err(Verdict::Permanent { message, .. }) => {
                assert!(message.contains("evil/widgets"), "{message}");
                assert!(message.contains("acme/*"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(Repositories::default().allows(&RepoPath::new("any", "repo").unwrap()));
        for bad in [vec![], vec!["acme".to_string()], vec!["acme/[".to_string()]] {
            assert!(Repositories::try_from(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
