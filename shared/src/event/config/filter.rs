//! Notification filters: namespaces, kinds, states, label selector, CEL `when`.
//! Cheap fields are checked first; CEL last.

use std::collections::BTreeMap;

use cel::{Context, Program};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::event::model::{RunEvent, RunState};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FilterSpec {
    /// Globs; a leading `!` denies, and a deny wins over any allow.
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub states: Vec<String>,
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
    /// A CEL expression over `event` (the normalized event) that must be true.
    #[serde(default)]
    pub when: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelExpression>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelExpression {
    pub key: String,
    pub operator: LabelOperator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// A compiled filter.
pub struct Filter {
    allow: Option<GlobSet>,
    deny: Option<GlobSet>,
    kinds: Vec<String>,
    states: Vec<RunState>,
    labels: Option<LabelSelector>,
    when: Option<(String, Program)>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("kinds", &self.kinds)
            .field("states", &self.states)
            .field("when", &self.when.as_ref().map(|(s, _)| s))
            .finish_non_exhaustive()
    }
}

/// What a filter said about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterVerdict {
    Match,
    NoMatch,
    /// The CEL expression failed at run time (a type error, say).
    Error(String),
}

impl Filter {
    /// A filter matching everything.
    pub fn any() -> Filter {
        Filter {
            allow: None,
            deny: None,
            kinds: Vec::new(),
            states: Vec::new(),
            labels: None,
            when: None,
        }
    }

    /// Compiles a spec; errors are `(path under spec.filter, message)`.
    pub fn compile(spec: &FilterSpec) -> Result<Filter, Vec<(String, String)>> {
        let mut errs = Vec::new();
        let (mut allow, mut deny) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        let (mut n_allow, mut n_deny) = (0, 0);
        for (i, pat) in spec.namespaces.iter().enumerate() {
            let (builder, raw, n) = match pat.strip_prefix('!') {
                Some(p) => (&mut deny, p, &mut n_deny),
                None => (&mut allow, pat.as_str(), &mut n_allow),
            };
            match Glob::new(raw) {
                Ok(g) => {
                    builder.add(g);
                    *n += 1;
                }
                Err(e) => errs.push((format!("namespaces[{i}]"), format!("invalid glob: {e}"))),
            }
        }
        let mut states = Vec::new();
        for (i, s) in spec.states.iter().enumerate() {
            match RunState::parse(s) {
                Some(st) => states.push(st),
                None => errs.push((
                    format!("states[{i}]"),
                    format!(
                        "unknown state {s:?}, expected one of {}",
                        RunState::ALL.map(RunState::as_str).join(", ")
                    ),
                )),
            }
        }
        for (i, e) in spec
            .label_selector
            .iter()
            .flat_map(|l| l.match_expressions.iter())
            .enumerate()
        {
            let needs_values = matches!(e.operator, LabelOperator::In | LabelOperator::NotIn);
            if needs_values == e.values.is_empty() {
                errs.push((
                    format!("labelSelector.matchExpressions[{i}].values"),
                    if needs_values {
                        "In and NotIn need values".into()
                    } else {
                        "Exists and DoesNotExist take no values".into()
                    },
                ));
            }
        }
        let when = match &spec.when {
            Some(src) => match Program::compile(src) {
                Ok(p) => Some((src.clone(), p)),
                Err(e) => {
                    errs.push(("when".into(), format!("invalid CEL: {e}")));
                    None
                }
            },
            None => None,
        };
        let build = |b: GlobSetBuilder, n: usize| (n > 0).then(|| b.build().ok()).flatten();
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Filter {
            allow: build(allow, n_allow),
            deny: build(deny, n_deny),
            kinds: spec.kinds.iter().map(|k| k.to_ascii_lowercase()).collect(),
            states,
            labels: spec.label_selector.clone(),
            when,
        })
    }

    pub fn evaluate(&self, ev: &RunEvent) -> FilterVerdict {
        if !self.matches_fields(ev) {
            return FilterVerdict::NoMatch;
        }
        match &self.when {
            None => FilterVerdict::Match,
            Some((src, program)) => match eval_cel(program, ev) {
                Ok(true) => FilterVerdict::Match,
                Ok(false) => FilterVerdict::NoMatch,
                Err(e) => FilterVerdict::Error(format!("filter.when {src:?}: {e}")),
            },
        }
    }

    fn matches_fields(&self, ev: &RunEvent) -> bool {
        if self
            .deny
            .as_ref()
            .is_some_and(|d| d.is_match(&ev.namespace))
        {
            return false;
        }
        if self
            .allow
            .as_ref()
            .is_some_and(|a| !a.is_match(&ev.namespace))
        {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&ev.kind.to_ascii_lowercase()) {
            return false;
        }
        if !self.states.is_empty() && !self.states.contains(&ev.state) {
            return false;
        }
        match &self.labels {
            Some(sel) => label_match(sel, &ev.labels),
            None => true,
        }
    }
}

fn label_match(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|e| {
            let value = labels.get(&e.key);
            match e.operator {
                LabelOperator::In => value.is_some_and(|v| e.values.contains(v)),
                LabelOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                LabelOperator::Exists => value.is_some(),
                LabelOperator::DoesNotExist => value.is_none(),
            }
        })
}

fn eval_cel(program: &Program, ev: &RunEvent) -> Result<bool, String> {
    let mut ctx = Context::default();
    let value = cel::to_value(ev).map_err(|e| e.to_string())?;
    ctx.add_variable_from_value("event", value);
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("evaluated to {other:?}, not a bool")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> FilterSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn event(ns: &str) -> RunEvent {
        let mut ev = crate::event::sample::run_event();
        ev.namespace = ns.into();
        ev.labels.insert("team".into(), "payments".into());
        ev
    }

    #[test]
    fn namespace_globs_with_negation_deny_wins() {
        let f = Filter::compile(&spec(r#"namespaces: ["ci-*", "!ci-sandbox"]"#)).unwrap();
        assert_eq!(f.evaluate(&event("ci-main")), FilterVerdict::Match);
        assert_eq!(f.evaluate(&event("ci-sandbox")), FilterVerdict::NoMatch);
        assert_eq!(f.evaluate(&event("prod")), FilterVerdict::NoMatch);
        let deny_only = Filter::compile(&spec(r#"namespaces: ["!kube-*"]"#)).unwrap();
        assert_eq!(deny_only.evaluate(&event("prod")), FilterVerdict::Match);
        assert_eq!(
            deny_only.evaluate(&event("kube-system")),
            FilterVerdict::NoMatch
        );
    }

    #[test]
    fn kinds_states_and_labels() {
        let f = Filter::compile(&spec(
            "kinds: [pipelinerun]\nstates: [failed, timed_out]\nlabelSelector:\n  matchLabels: {team: payments}\n  matchExpressions: [{key: tier, operator: DoesNotExist}]",
        ))
        .unwrap();
        let mut ev = event("ci");
        assert_eq!(f.evaluate(&ev), FilterVerdict::Match);
        ev.state = RunState::Succeeded;
        assert_eq!(f.evaluate(&ev), FilterVerdict::NoMatch);
        ev.state = RunState::TimedOut;
        ev.labels.insert("tier".into(), "x".into());
        assert_eq!(f.evaluate(&ev), FilterVerdict::NoMatch);
        ev.labels.remove("tier");
        ev.kind = "TaskRun".into();
        assert_eq!(f.evaluate(&ev), FilterVerdict::NoMatch);
    }

    #[test]
    fn cel_when_is_compiled_at_load_and_evaluated_last() {
        let f = Filter::compile(&spec(
            r#"when: 'event.scm.pull_request == 47 && event.namespace.startsWith("c")'"#,
        ))
        .unwrap();
        assert_eq!(f.evaluate(&event("ci")), FilterVerdict::Match);
        assert_eq!(f.evaluate(&event("dev")), FilterVerdict::NoMatch);
        let errs = Filter::compile(&spec("when: 'event.name =='")).unwrap_err();
        assert_eq!(errs[0].0, "when");
        let pr = Filter::compile(&spec("when: 'event.scm.pull_request != null'")).unwrap();
        let mut push = event("ci");
        assert_eq!(pr.evaluate(&push), FilterVerdict::Match);
        push.scm.pull_request = None;
        assert_eq!(pr.evaluate(&push), FilterVerdict::NoMatch);
        let not_bool = Filter::compile(&spec("when: 'event.name'")).unwrap();
        assert!(matches!(
            not_bool.evaluate(&event("ci")),
            FilterVerdict::Error(_)
        ));
    }

    #[test]
    fn bad_states_and_selectors_are_reported_with_paths() {
        let errs = Filter::compile(&spec(
            "states: [succeeded, done]\nlabelSelector: {matchExpressions: [{key: a, operator: In}]}",
        ))
        .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["states[1]", "labelSelector.matchExpressions[0].values"]
        );
        assert!(errs[0].1.contains("expected one of queued"));
    }
}
