//! The helpers of the provider contract that providers share: settings and
//! Notification params parsed with unknown keys rejected, action checks,
//! commit and status-context rules, ids read from answers.

use serde_json::Value;

use crate::delivery::verdict::Verdict;
use crate::event::config::ProviderDoc;
use crate::event::field::{FieldError, FieldErrors};
use crate::event::model::RunEvent;

/// Parses a provider's settings block with unknown keys rejected.
pub fn parse_settings<T: serde::de::DeserializeOwned>(doc: &ProviderDoc) -> Result<T, FieldErrors> {
    crate::event::config::parse_at::<T>(doc.settings.clone(), "").map_err(FieldErrors::from)
}

/// The settings block as JSON, for providers with nothing to configure.
pub fn require_empty(doc: &ProviderDoc) -> Result<(), FieldErrors> {
    match &doc.settings {
        Value::Object(m) if m.is_empty() => Ok(()),
        Value::Null => Ok(()),
        Value::Object(m) => Err(m
            .keys()
            .map(|k| {
                FieldError::new(
                    k.clone(),
                    format!("unknown field `{k}`: this provider takes no settings"),
                )
            })
            .collect()),
        _ => Err(FieldErrors::one("", "expected a map")),
    }
}

/// The numeric `id` of a JSON object a provider API answered with.
pub fn json_id(v: &Value) -> Result<String, Verdict> {
    match &v["id"] {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => Ok(s.clone()),
        _ => Err(Verdict::permanent("the provider answered without an id")),
    }
}

/// The commit an event names, or why no status can be posted: 40 or 64
/// hexadecimal digits (SHA-1 or SHA-256), nothing else, since hosts put it
/// into their API paths ([`crate::toolkit::githost`]).
pub fn commit_sha(ev: &RunEvent) -> Result<&str, Verdict> {
    let sha = ev
        .scm
        .sha
        .as_deref()
        .ok_or_else(|| Verdict::permanent("the event names no commit"))?;
    if !crate::event::decode::scm::is_commit_sha(sha) {
        return Err(Verdict::permanent(format!(
            "refused commit {} from the event: a commit is 40 or 64 hexadecimal digits",
            crate::toolkit::githost::quoted(sha)
        )));
    }
    Ok(sha)
}

/// A status context: the Notification's, else `tekton/<pipeline>`.
pub fn status_context(configured: Option<&str>, ev: &RunEvent) -> String {
    configured.map_or_else(
        || format!("tekton/{}", ev.pipeline.as_deref().unwrap_or(&ev.name)),
        str::to_string,
    )
}

pub use crate::delivery::notification::params as notification_params;

/// What most git hosts do for a Notification: post a commit status (the
/// default action, `status`), or keep the run's summary message, whose
/// action the host names (`comment`, `note`, `thread`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitAction {
    Status,
    Summary,
}

impl GitAction {
    pub fn parse(action: Option<&str>, summary: &str) -> Result<GitAction, String> {
        match action.unwrap_or("status") {
            "status" => Ok(GitAction::Status),
            a if a == summary => Ok(GitAction::Summary),
            other => Err(format!(
                "unknown action {other:?}, expected status or {summary}"
            )),
        }
    }
}

/// Notification params of a host whose only setting is the status context.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusParams {
    /// Status context (default `tekton/<pipeline>`).
    #[serde(default)]
    pub context: Option<String>,
}

/// The action check of a provider that takes none: `what` says what it
/// does instead, so the error tells the user why.
pub fn no_action(provider: &str, action: Option<&str>, what: &str) -> Result<(), String> {
    match action {
        None => Ok(()),
        Some(a) => Err(format!("{provider} takes no action (got {a:?}): {what}")),
    }
}

/// The check of a provider with named actions and typed params
/// ([`crate::delivery::notification::parse`]), its result dropped.
pub fn check_action_and_params<P: serde::de::DeserializeOwned>(
    action: Result<(), String>,
    params: &serde_json::Map<String, Value>,
) -> Result<(), FieldErrors> {
    crate::delivery::notification::parse::<(), P>(action, params).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_is_40_or_64_hex_digits_and_nothing_else() {
        let mut ev = crate::event::sample::run_event();
        for ok in [
            "a".repeat(40),
            "0123456789ABCDEFabcdef".repeat(3)[..64].to_string(),
        ] {
            ev.scm.sha = Some(ok.clone());
            assert_eq!(commit_sha(&ev).unwrap(), ok);
        }
        for bad in [
            "../../../../../user/repos#",
            "0c5c7fd0a6a3",
            "0c5c7fd0a6a3a4506513270e269e0d37f2a74de4/../x",
            "0c5c7fd0a6a3a4506513270e269e0d37f2a7€",
            "",
        ] {
            ev.scm.sha = Some(bad.into());
            match commit_sha(&ev) {
                Err(Verdict::Permanent {
                    status: None,
                    message,
                }) => {
                    assert!(message.contains("40 or 64 hexadecimal"), "{message}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        ev.scm.sha = None;
        assert!(commit_sha(&ev).is_err());
    }

    #[test]
    fn actions_and_params_are_checked_together() {
        assert_eq!(GitAction::parse(None, "note"), Ok(GitAction::Status));
        assert_eq!(
            GitAction::parse(Some("note"), "note"),
            Ok(GitAction::Summary)
        );
        let mut params = serde_json::Map::new();
        params.insert("context".into(), " ".into());
        let errs = check_action_and_params::<StatusParams>(
            GitAction::parse(Some("comment"), "note").map(|_| ()),
            &params,
        )
        .unwrap_err();
        assert_eq!(errs[0].path, "action");
        assert!(
            errs[0].message.contains("expected status or note"),
            "{errs:?}"
        );
        assert_eq!(
            errs[1],
            FieldError::new("params.context", "must not be empty")
        );
        params.insert("contxt".into(), "x".into());
        let errs = check_action_and_params::<StatusParams>(Ok(()), &params).unwrap_err();
        assert!(
            errs[0].message.contains("unknown field `contxt`"),
            "{errs:?}"
        );
        params.clear();
        params.insert("context".into(), "ci".into());
        assert!(check_action_and_params::<StatusParams>(Ok(()), &params).is_ok());
    }
}
