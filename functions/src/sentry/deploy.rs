//! The Releases API bodies: a deploy, and a release to create when Sentry
//! does not know the version yet.

use relay_core::escape::{self, inert};
use relay_core::model::RunEvent;
use serde_json::{Value, json};

/// Sentry's limits on a deploy's `environment` and `name`, and a version.
pub const ENVIRONMENT_MAX: usize = 64;
pub const NAME_MAX: usize = 64;
pub const VERSION_MAX: usize = 200;

/// Sentry's rules for a release version: it names the release in URLs.
pub fn check_version(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty (does the event name a commit?)".into());
    }
    if matches!(v, "." | ".." | "latest") {
        return Err("is reserved".into());
    }
    if v.chars().count() > VERSION_MAX {
        return Err(format!("is longer than {VERSION_MAX} characters"));
    }
    if v.contains(['/', '\\']) || v.chars().any(char::is_control) {
        return Err("holds a slash, a backslash or a control character".into());
    }
    Ok(())
}

/// A deploy of the run: named by the template's text when there is one
/// (else the run's name), linked to the run, timed by it.
pub fn deploy(
    ev: &RunEvent,
    environment: &str,
    projects: &[String],
    template: Option<String>,
) -> Value {
    // A template is the user's own text, sent as written; the run's name
    // is made inert where Sentry passes it on (its Slack notifications).
    let name = template.unwrap_or_else(|| inert(&ev.name));
    let mut body = json!({
        "environment": environment,
        "name": escape::one_line(&name, NAME_MAX),
    });
    if let Some(u) = &ev.url {
        body["url"] = u.clone().into();
    }
    for (field, time) in [
        ("dateStarted", &ev.started_at),
        ("dateFinished", &ev.completed_at),
    ] {
        if let Some(t) = time
            .as_deref()
            .filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
        {
            body[field] = t.into();
        }
    }
    if !projects.is_empty() {
        body["projects"] = projects.into();
    }
    body
}

/// A release of `version` in `projects`, pointing at the run's commit.
pub fn release(ev: &RunEvent, version: &str, projects: &[String]) -> Value {
    let mut body = json!({"version": version, "projects": projects});
    if let Some(sha) = &ev.scm.sha {
        body["ref"] = sha.clone().into();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_sentrys_rules() {
        assert!(check_version("0c5c7fd0a6a3a4506513270e269e0d37f2a74de4").is_ok());
        assert!(check_version("widgets@1.2.3+build.4").is_ok());
        for bad in ["", ".", "..", "latest", "a/b", "a\\b", "a\nb"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        assert!(check_version(&"v".repeat(201)).is_err());
    }

    #[test]
    fn a_deploy_describes_the_run() {
        let ev = relay_core::sample::run_event();
        let b = deploy(&ev, "production", &["api".into()], None);
        assert_eq!(
            b,
            json!({
                "environment": "production",
                "name": "build-and-test-abcde",
                "url": "https://tekton.example/#/namespaces/ci/pipelineruns/build-and-test-abcde",
                "dateStarted": "2024-05-14T10:54:00Z",
                "dateFinished": "2024-05-14T10:58:00Z",
                "projects": ["api"],
            })
        );
        let b = deploy(&ev, "staging", &[], Some("é".repeat(100)));
        assert_eq!(b["name"].as_str().unwrap().chars().count(), NAME_MAX);
        assert!(b.get("projects").is_none());
    }

    #[test]
    fn a_release_names_its_projects_and_commit() {
        let ev = relay_core::sample::run_event();
        assert_eq!(
            release(&ev, "v1", &["api".into(), "web".into()]),
            json!({"version": "v1", "projects": ["api", "web"], "ref": "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4"})
        );
    }
}
