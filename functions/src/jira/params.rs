//! A Notification's `action` (`comment`, `transition`, or both) and
//! `params` (which states comment, which transition each state takes).

use std::collections::BTreeMap;

use relay_core::field::FieldErrors;
use relay_core::model::RunState;
use relay_core::provider::{Parsed, notification_params};
use serde::Deserialize;
use serde_json::{Map, Value};

pub const COMMENT: &str = "comment";
pub const TRANSITION: &str = "transition";
pub const BOTH: &str = "comment+transition";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    pub comment: bool,
    pub transition: bool,
}

impl Actions {
    pub fn parse(action: Option<&str>) -> Result<Actions, String> {
        let (comment, transition) = match action.unwrap_or(COMMENT) {
            COMMENT => (true, false),
            TRANSITION => (false, true),
            BOTH => (true, true),
            other => {
                return Err(format!(
                    "unknown action {other:?}, expected {COMMENT}, {TRANSITION} or {BOTH}"
                ));
            }
        };
        Ok(Actions {
            comment,
            transition,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JiraParams {
    /// Run state (`succeeded`, `failed`, ...) → transition name (or the
    /// name of the status it leads to), e.g. `{succeeded: Done}`.
    #[serde(default)]
    pub transitions: BTreeMap<String, String>,
    /// The states that comment; default the finished ones.
    #[serde(default)]
    pub comment_on: Option<Vec<String>>,
}

impl JiraParams {
    pub fn comments_on(&self, state: RunState) -> bool {
        match &self.comment_on {
            Some(states) => states.iter().any(|s| s == state.as_str()),
            None => state.is_terminal(),
        }
    }
}

fn state_names() -> String {
    RunState::ALL.map(RunState::as_str).join(", ")
}

/// `compile_notification`: the parsed action and params, or every error at
/// once, with its path under `spec`.
pub fn check(
    action: Option<&str>,
    params: &Map<String, Value>,
) -> Result<Parsed<Actions, JiraParams>, FieldErrors> {
    let mut errs = FieldErrors::new();
    let actions = Actions::parse(action).map_err(|e| errs.push("action", e));
    let p = match notification_params::<JiraParams>(params) {
        Ok(p) => p,
        Err(e) => return Err(errs.into_iter().chain([e]).collect()),
    };
    for (state, name) in &p.transitions {
        if RunState::parse(state).is_none() {
            errs.push(
                format!("params.transitions.{state}"),
                format!("unknown state, expected one of {}", state_names()),
            );
        } else if name.trim().is_empty() {
            errs.push(
                format!("params.transitions.{state}"),
                "must name a transition",
            );
        }
    }
    for (i, state) in p.comment_on.iter().flatten().enumerate() {
        if RunState::parse(state).is_none() {
            errs.push(
                format!("params.commentOn[{i}]"),
                format!("unknown state {state:?}, expected one of {}", state_names()),
            );
        }
    }
    if let Ok(a) = actions {
        if a.transition && p.transitions.is_empty() {
            errs.push(
                "params.transitions",
                format!("required by action {}", action.unwrap_or(TRANSITION)),
            );
        }
        if !a.transition && !p.transitions.is_empty() {
            errs.push(
                "params.transitions",
                format!("only with action {TRANSITION} or {BOTH}"),
            );
        }
        if !a.comment && p.comment_on.is_some() {
            errs.push(
                "params.commentOn",
                format!("only with action {COMMENT} or {BOTH}"),
            );
        }
    }
    match actions {
        Ok(action) if errs.is_empty() => Ok(Parsed { action, params: p }),
        _ => Err(errs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn actions_and_params_are_checked_together() {
        assert!(check(None, &Map::new()).is_ok());
        assert!(check(Some("comment"), &params(json!({"commentOn": ["failed"]}))).is_ok());
        let both = params(json!({"transitions": {"succeeded": "Done", "started": "In Progress"}}));
        assert!(check(Some(BOTH), &both).is_ok());
        assert!(check(Some(TRANSITION), &both).is_ok());

        let errs = check(Some(TRANSITION), &Map::new()).unwrap_err();
        assert_eq!(errs[0].path, "params.transitions", "{errs:?}");
        let errs = check(Some("close"), &params(json!({"transition": {}}))).unwrap_err();
        assert_eq!(errs[0].path, "action");
        assert!(
            errs[0]
                .message
                .contains("expected comment, transition or comment+transition")
        );
        assert!(errs[1].message.contains("unknown field `transition`"), "{errs:?}");
        let errs = check(
            Some(BOTH),
            &params(
                json!({"transitions": {"done": "Done", "failed": " "}, "commentOn": ["succeded"]}),
            ),
        )
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "params.transitions.done",
                "params.transitions.failed",
                "params.commentOn[0]"
            ]
        );
        let errs = check(None, &both).unwrap_err();
        assert_eq!(errs[0].path, "params.transitions");
        let errs = check(
            Some(TRANSITION),
            &params(json!({"transitions": {"failed": "Reopen"}, "commentOn": []})),
        )
        .unwrap_err();
        assert_eq!(errs[0].path, "params.commentOn");
    }

    #[test]
    fn finished_states_comment_by_default() {
        let p = JiraParams::default();
        assert!(p.comments_on(RunState::Failed) && p.comments_on(RunState::TimedOut));
        assert!(!p.comments_on(RunState::Running));
        let p = JiraParams {
            comment_on: Some(vec!["started".into()]),
            ..Default::default()
        };
        assert!(p.comments_on(RunState::Started) && !p.comments_on(RunState::Failed));
    }
}
