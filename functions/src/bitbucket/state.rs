//! How run states show on Bitbucket Cloud — the one table of docs/providers/README.md.
//!
//! | relay state | build status |
//! |---|---|
//! | queued, started, running | INPROGRESS |
//! | succeeded | SUCCESSFUL |
//! | failed, timed_out | FAILED |
//! | cancelled | STOPPED |

use relay_core::RunState;

pub fn build_status(s: RunState) -> &'static str {
    match s {
        RunState::Queued | RunState::Started | RunState::Running => "INPROGRESS",
        RunState::Succeeded => "SUCCESSFUL",
        RunState::Failed | RunState::TimedOut => "FAILED",
        RunState::Cancelled => "STOPPED",
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
        .map(build_status)
        .collect();
        assert_eq!(
            rows,
            [
                "INPROGRESS",
                "INPROGRESS",
                "INPROGRESS",
                "SUCCESSFUL",
                "FAILED",
                "FAILED",
                "STOPPED"
            ]
        );
    }
}
