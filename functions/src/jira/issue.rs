//! Which Jira issue a run names: the `relay.tekton.dev/jira-issue`
//! annotation (or label), else the first issue key in its branch name.

use relay_core::RunEvent;

/// The annotation (or label) naming the issue explicitly.
pub const ANNOTATION: &str = "relay.tekton.dev/jira-issue";
/// Pipelines-as-Code's pull request head branch: for a pull request the
/// run's `branch` is the target (`main`), the key is in the source branch.
const SOURCE_BRANCH: &str = "pipelinesascode.tekton.dev/source-branch";

/// The issue key of `ev`, or why it has none. `projects` (when not empty)
/// is the list of project keys the provider may touch.
pub fn issue_key(ev: &RunEvent, projects: &[String]) -> Result<String, String> {
    let allowed = |key: &str| {
        projects.is_empty()
            || key
                .rsplit_once('-')
                .is_some_and(|(p, _)| projects.iter().any(|q| q == p))
    };
    if let Some(v) = lookup(ev, ANNOTATION) {
        let v = v.trim();
        if !is_key(v) {
            return Err(format!(
                "{ANNOTATION} {:?} is not an issue key (PROJ-123)",
                relay_core::escape::one_line(v, 40)
            ));
        }
        if !allowed(v) {
            return Err(format!("issue {v} is not in projects {projects:?}"));
        }
        return Ok(v.to_string());
    }
    let branches: Vec<&str> = [lookup(ev, SOURCE_BRANCH), ev.scm.branch.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    for b in &branches {
        if let Some(key) = keys_in(b).find(|k| allowed(k)) {
            return Ok(key.to_string());
        }
    }
    Err(match branches.first() {
        None => format!("no {ANNOTATION} annotation and no branch"),
        Some(_) if !projects.is_empty() => format!(
            "no {ANNOTATION} annotation and no issue key of projects {projects:?} in the branch"
        ),
        Some(_) => format!("no {ANNOTATION} annotation and no issue key in the branch"),
    })
}

/// An annotation, else a label of the same name.
fn lookup<'a>(ev: &'a RunEvent, key: &str) -> Option<&'a str> {
    ev.annotations
        .get(key)
        .or_else(|| ev.labels.get(key))
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

/// `PROJ-123`: a project key (an uppercase letter, then uppercase letters,
/// digits or `_`, as Jira allows) and an issue number.
pub fn is_key(s: &str) -> bool {
    let Some((project, number)) = s.split_once('-') else {
        return false;
    };
    is_project(project) && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
}

pub fn is_project(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_uppercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// Issue keys in `text`, in order: each a whole word (`feature/PAY-123-fix`
/// holds `PAY-123`; `XPAY-1` does not hold `PAY-1`, nor `PAY-12a` `PAY-12`).
pub fn keys_in(text: &str) -> impl Iterator<Item = &str> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    (0..b.len()).filter_map(move |start| {
        if !b[start].is_ascii_uppercase() || (start > 0 && word(b[start - 1])) {
            return None;
        }
        let dash = start + b[start..].iter().position(|c| !word(*c))?;
        if b[dash] != b'-' {
            return None;
        }
        let end = dash
            + 1
            + b[dash + 1..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .unwrap_or(b.len() - dash - 1);
        if end == dash + 1 || (end < b.len() && word(b[end])) {
            return None;
        }
        let key = &text[start..end];
        is_key(key).then_some(key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(branch: Option<&str>, annotations: &[(&str, &str)]) -> RunEvent {
        let mut ev = relay_core::sample::run_event();
        ev.scm.branch = branch.map(str::to_string);
        ev.annotations = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ev
    }

    #[test]
    fn keys_are_whole_words() {
        let found = |s| keys_in(s).collect::<Vec<_>>();
        assert_eq!(found("feature/PAY-123-fix"), ["PAY-123"]);
        assert_eq!(found("PAY-1"), ["PAY-1"]);
        assert_eq!(found("ops/OPS_2-7/PAY-9"), ["OPS_2-7", "PAY-9"]);
        for none in [
            "XpAY-1", "main", "pay-123", "PAY-12a", "aPAY-1", "P-1", "PAY-", "-1",
        ] {
            assert!(found(none).is_empty(), "{none}: {:?}", found(none));
        }
        assert!(is_key("AB2-10") && !is_key("AB-1x") && !is_key("ab-1"));
    }

    #[test]
    fn the_annotation_wins_then_the_branch() {
        let ev = event(Some("feature/PAY-123-fix"), &[(ANNOTATION, " OPS-7 ")]);
        assert_eq!(issue_key(&ev, &[]).unwrap(), "OPS-7");
        let ev = event(Some("feature/PAY-123-fix"), &[]);
        assert_eq!(issue_key(&ev, &[]).unwrap(), "PAY-123");
        // A label works as well as an annotation (Jira keys are valid label values).
        let mut ev = event(Some("main"), &[]);
        ev.labels.insert(ANNOTATION.into(), "PAY-5".into());
        assert_eq!(issue_key(&ev, &[]).unwrap(), "PAY-5");
        // A pull request's head branch, not its target.
        let ev = event(Some("main"), &[(SOURCE_BRANCH, "bugfix/OPS-42")]);
        assert_eq!(issue_key(&ev, &[]).unwrap(), "OPS-42");
    }

    #[test]
    fn projects_restrict_the_keys() {
        let projects = vec!["PAY".to_string(), "OPS".to_string()];
        let ev = event(Some("feature/UTF-8-and-PAY-3"), &[]);
        assert_eq!(issue_key(&ev, &projects).unwrap(), "PAY-3");
        let ev = event(Some("feature/UTF-8"), &[]);
        let why = issue_key(&ev, &projects).unwrap_err();
        assert!(why.contains("projects [\"PAY\", \"OPS\"]"), "{why}");
        let ev = event(Some("main"), &[(ANNOTATION, "WEB-1")]);
        assert!(issue_key(&ev, &projects).unwrap_err().contains("WEB-1"));
    }

    #[test]
    fn no_key_says_why() {
        let why = issue_key(&event(Some("main"), &[]), &[]).unwrap_err();
        assert!(why.contains("no issue key in the branch"), "{why}");
        let why = issue_key(&event(None, &[]), &[]).unwrap_err();
        assert!(why.contains("no branch"), "{why}");
        let why = issue_key(&event(None, &[(ANNOTATION, "../x?y")]), &[]).unwrap_err();
        assert!(why.contains("not an issue key"), "{why}");
    }
}
