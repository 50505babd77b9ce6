//! How run states show on Bitbucket Server / Data Center — the one table of
//! docs/providers/README.md. The build-status API every version has knows no cancelled
//! state: a cancelled run is FAILED, its description saying Cancelled.
//!
//! | relay state | build status |
//! |---|---|
//! | queued, started, running | INPROGRESS |
//! | succeeded | SUCCESSFUL |
//! | failed, timed_out | FAILED |
//! | cancelled | FAILED ("Cancelled") |

use relay_core::RunState;

pub fn build_status(s: RunState) -> &'static str {
    match s {
        RunState::Queued | RunState::Started | RunState::Running => "INPROGRESS",
        RunState::Succeeded => "SUCCESSFUL",
        RunState::Failed | RunState::TimedOut | RunState::Cancelled => "FAILED",
    }
}

/// The status description: the condition's reason, and for a cancelled run
/// one that says so whatever the reason.
pub fn description(s: RunState, reason: Option<&str>) -> String {
    let reason = reason.unwrap_or(s.as_str());
    match s {
        RunState::Cancelled if !reason.to_ascii_lowercase().contains("cancel") => {
            format!("Cancelled: {reason}")
        }
        _ => reason.to_string(),
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
                "FAILED"
            ]
        );
        assert_eq!(description(Cancelled, Some("Cancelled")), "Cancelled");
        assert_eq!(
            description(Cancelled, Some("StoppedRunFinally")),
            "Cancelled: StoppedRunFinally"
        );
        assert_eq!(description(Cancelled, None), "cancelled");
        assert_eq!(description(Failed, Some("Failed")), "Failed");
        assert_eq!(description(TimedOut, None), "timed_out");
    }
}
