//! How run states show on Gitea and Forgejo — the table of docs/providers/README.md.
//!
//! | relay state | commit status |
//! |---|---|
//! | queued, started, running | pending |
//! | succeeded | success |
//! | failed, timed_out | failure |
//! | cancelled | error |
//!
//! Gitea's fifth state, `warning`, is not used: no run state means "passed
//! with warnings".

use relay_core::RunState;

pub fn commit_status(s: RunState) -> &'static str {
    match s {
        RunState::Queued | RunState::Started | RunState::Running => "pending",
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
        .map(|s| (s, commit_status(s)))
        .collect();
        assert_eq!(
            rows,
            [
                (Queued, "pending"),
                (Started, "pending"),
                (Running, "pending"),
                (Succeeded, "success"),
                (Failed, "failure"),
                (TimedOut, "failure"),
                (Cancelled, "error"),
            ]
        );
    }
}
