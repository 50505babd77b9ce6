//! How run states show on GitHub — the one table of docs/providers/README.md.
//!
//! | relay state | commit status | check run | deployment status |
//! |---|---|---|---|
//! | queued | pending | queued | queued |
//! | started, running | pending | in_progress | in_progress |
//! | succeeded | success | completed / success | success |
//! | failed | failure | completed / failure | failure |
//! | timed_out | failure | completed / timed_out | failure |
//! | cancelled | error | completed / cancelled | error |

use relay_core::RunState;

pub fn commit_status(s: RunState) -> &'static str {
    match s {
        RunState::Queued | RunState::Started | RunState::Running => "pending",
        RunState::Succeeded => "success",
        RunState::Failed | RunState::TimedOut => "failure",
        RunState::Cancelled => "error",
    }
}

/// `(status, conclusion)`.
pub fn check_run(s: RunState) -> (&'static str, Option<&'static str>) {
    match s {
        RunState::Queued => ("queued", None),
        RunState::Started | RunState::Running => ("in_progress", None),
        RunState::Succeeded => ("completed", Some("success")),
        RunState::Failed => ("completed", Some("failure")),
        RunState::TimedOut => ("completed", Some("timed_out")),
        RunState::Cancelled => ("completed", Some("cancelled")),
    }
}

pub fn deployment(s: RunState) -> &'static str {
    match s {
        RunState::Queued => "queued",
        RunState::Started | RunState::Running => "in_progress",
        RunState::Succeeded => "success",
        RunState::Failed | RunState::TimedOut => "failure",
        RunState::Cancelled => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use RunState::*;
        let rows: Vec<_> = [
            Queued, Started, Running, Succeeded, Failed, TimedOut, Cancelled,
        ]
        .into_iter()
        .map(|s| (commit_status(s), check_run(s), deployment(s)))
        .collect();
        assert_eq!(
            rows,
            [
                ("pending", ("queued", None), "queued"),
                ("pending", ("in_progress", None), "in_progress"),
                ("pending", ("in_progress", None), "in_progress"),
                ("success", ("completed", Some("success")), "success"),
                ("failure", ("completed", Some("failure")), "failure"),
                ("failure", ("completed", Some("timed_out")), "failure"),
                ("error", ("completed", Some("cancelled")), "error"),
            ]
        );
    }
}
