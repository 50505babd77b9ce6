//! The HTTP contract, in-process: each router (the relay's, for `relay
//! serve` and every provider function; the ingress's; the dead-letter
//! function's) built with the crates' public functions and called with
//! `tower::ServiceExt::oneshot`, no port. Every status it answers, the exact
//! error body, and the per-event outcomes. What needs a process stays in
//! the other files: binding rules, signals, Lambda, the log, timeouts and
//! header limits on a real socket, the CLI.

#[cfg(feature = "dlq")]
mod dlq;
#[cfg(feature = "ingress")]
mod ingress;
mod relay;
mod router;

use serde_json::{Value, json};

/// The error body every router answers with: exactly `code` and
/// `message`, nothing else (no provider detail, no store error).
fn assert_error_body(body: &Value, code: &str) {
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.message: {body}"));
    assert!(!message.is_empty(), "{body}");
    assert_eq!(
        body,
        &json!({"error": {"code": code, "message": message}}),
        "{body}"
    );
}
