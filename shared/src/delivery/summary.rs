//! The PipelineRun summary rendered from the accumulator: tasks in pipeline
//! order with state, duration and link, finally tasks marked, tasks that
//! never ran listed as skipped, and the total duration. A default markdown
//! text, overridable with a minijinja template over the same rows.

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::delivery::accumulator::{Entry, RunSummary};
use crate::event::escape;
use crate::event::model::RunState;
use crate::event::template::summary_template_context;

/// One task row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRow {
    pub name: String,
    pub state: String,
    pub finally: bool,
    pub duration: Option<String>,
    pub url: Option<String>,
    pub reason: Option<String>,
}

/// What a summary template renders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SummaryView {
    pub pipeline: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub url: Option<String>,
    pub duration: Option<String>,
    pub tasks: Vec<TaskRow>,
}

fn time(s: &Option<String>) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s.as_deref()?).ok()
}

/// `1h 2m 3s`, `4m 5s`, `6s`.
pub fn human(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

fn duration(e: &Entry) -> Option<String> {
    let (a, b) = (time(&e.started_at)?, time(&e.completed_at)?);
    Some(human((b - a).num_seconds().max(0)))
}

fn state_word(e: &Entry) -> String {
    match (e.state, e.phase.as_str()) {
        (RunState::Running, "unknown") => "pending".into(),
        (s, _) => s.as_str().into(),
    }
}

impl SummaryView {
    pub fn of(s: &RunSummary) -> SummaryView {
        let run_done = s.run.as_ref().is_some_and(|r| r.state.is_terminal());
        let mut order: Vec<(String, bool)> = s
            .pipeline_tasks
            .iter()
            .map(|t| (t.clone(), false))
            .collect();
        order.extend(s.finally_tasks.iter().map(|t| (t.clone(), true)));
        // Tasks known only from their TaskRuns (no spec seen yet), by name.
        for (t, e) in &s.tasks {
            if !order.iter().any(|(n, _)| n == t) {
                order.push((t.clone(), e.finally));
            }
        }
        let tasks = order
            .into_iter()
            .map(|(name, finally)| match s.tasks.get(&name) {
                Some(e) => TaskRow {
                    state: state_word(e),
                    finally: finally || e.finally,
                    duration: duration(e),
                    url: e.url.clone(),
                    reason: e.reason.clone(),
                    name,
                },
                None => TaskRow {
                    state: if run_done || s.skipped_tasks.contains(&name) {
                        "skipped".into()
                    } else {
                        "waiting".into()
                    },
                    finally,
                    duration: None,
                    url: None,
                    reason: None,
                    name,
                },
            })
            .collect();
        let run = s.run.as_ref();
        SummaryView {
            pipeline: s.pipeline.clone(),
            name: run.map(|r| r.name.clone()),
            namespace: s.namespace.clone(),
            state: run.map_or_else(|| "running".into(), state_word),
            reason: run.and_then(|r| r.reason.clone()),
            url: run.and_then(|r| r.url.clone()),
            duration: run.and_then(duration),
            tasks,
        }
    }
}

fn icon(state: &str) -> &'static str {
    match state {
        "succeeded" => "✅",
        "failed" => "❌",
        "timed_out" => "⏱️",
        "cancelled" => "🚫",
        "skipped" => "⏭️",
        "waiting" | "queued" | "pending" => "⏳",
        _ => "🔄",
    }
}

/// The default text: markdown, every user-controlled string escaped.
pub fn render_default(v: &SummaryView) -> String {
    let title = escape::markdown(
        v.pipeline
            .as_deref()
            .or(v.name.as_deref())
            .unwrap_or("pipeline"),
    );
    let mut out = format!("### {} {title}: {}\n\n", icon(&v.state), v.state);
    if let (Some(name), Some(ns)) = (&v.name, &v.namespace) {
        let label = format!("{}/{}", escape::markdown(ns), escape::markdown(name));
        match &v.url {
            Some(u) => out.push_str(&format!(
                "PipelineRun [{label}](<{}>)",
                crate::event::escape::link(u).unwrap_or_default()
            )),
            None => out.push_str(&format!("PipelineRun {label}")),
        }
        if let Some(d) = &v.duration {
            out.push_str(&format!(" · {d}"));
        }
        out.push_str("\n\n");
    }
    out.push_str("| Task | State | Duration |\n|---|---|---|\n");
    for t in &v.tasks {
        let mut name = escape::markdown(&t.name);
        if let Some(u) = &t.url {
            name = format!(
                "[{name}](<{}>)",
                crate::event::escape::link(u).unwrap_or_default()
            );
        }
        if t.finally {
            name.push_str(" *(finally)*");
        }
        out.push_str(&format!(
            "| {name} | {} {} | {} |\n",
            icon(&t.state),
            t.state,
            t.duration.as_deref().unwrap_or("—")
        ));
    }
    out
}

/// The default summary text of a run.
pub fn text(s: &RunSummary) -> String {
    render_default(&SummaryView::of(s))
}

/// The Notification's template over `summary`, `event` and `notification`
/// (the context `relay validate` renders it with), or the default text.
pub fn render(
    s: &RunSummary,
    input: &crate::delivery::provider::DeliveryInput<'_>,
) -> Result<String, String> {
    match input.template {
        Some(t) => t.render(summary_template_context(
            input.event,
            input.notification,
            &SummaryView::of(s),
        )),
        None => Ok(text(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(5), "5s");
        assert_eq!(human(125), "2m 5s");
        assert_eq!(human(3725), "1h 2m 5s");
    }
}
