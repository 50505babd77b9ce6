//! What a relay must reach for each fixture scenario, checked against what
//! a recording receiver got: shared by the single-process and the
//! shared-store end-to-end tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use relay_core::decode::wrappers;
use serde_json::Value;

use crate::fixtures::{Scenario, state_label};
use crate::process::{send, send_structured};
use crate::receiver::{Receiver, Recorded};

/// A config with two webhook Notifications into `rx`: `/changes` gets every
/// distinct change, `/states` once per run and phase (a commit status's view).
/// `store` is the RelayConfig store URL.
pub fn config(rx: &Receiver, store: &str) -> String {
    format!(
        r#"
apiVersion: relay.tekton.dev/v1alpha1
kind: RelayConfig
metadata: {{name: relay}}
spec:
  store: "{store}"
  deadLetter: file://$DIR/dead-letters.jsonl
  delivery: {{initialBackoffMs: 10, maxBackoffMs: 50}}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {{name: changes}}
spec:
  type: webhook
  webhook: {{url: "{changes}"}}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {{name: states}}
spec:
  type: webhook
  webhook: {{url: "{states}"}}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {{name: every-change}}
spec:
  providerRef: {{name: changes}}
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {{name: commit-status-like}}
spec:
  providerRef: {{name: states}}
  dedupe: state
  filter:
    when: 'event.format != "flux" || "commit_status" in event.annotations'
"#,
        changes = rx.url("/changes"),
        states = rx.url("/states"),
    )
}

/// One request of a scenario as a sender puts it on the wire: the file
/// itself, or (for Lambda payloads) the structured CloudEvents inside.
#[derive(Clone)]
pub enum Outgoing {
    File(crate::fixtures::RequestFile),
    Structured { file_name: String, event: Value },
}

impl Outgoing {
    pub fn file_name(&self) -> &str {
        match self {
            Outgoing::File(f) => &f.file_name,
            Outgoing::Structured { file_name, .. } => file_name,
        }
    }

    /// The same request under another CloudEvent id, as Tekton re-sends a change.
    pub fn with_new_id(&self, suffix: &str) -> Outgoing {
        match self {
            Outgoing::File(f) => {
                let mut f = f.clone();
                if let Some((k, v)) = f
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("ce-id"))
                {
                    let (k, v) = (k.clone(), format!("{v}-{suffix}"));
                    f.headers.insert(k, v);
                }
                Outgoing::File(f)
            }
            Outgoing::Structured { file_name, event } => {
                let mut event = event.clone();
                event["id"] = format!("{}-{suffix}", event["id"].as_str().unwrap()).into();
                Outgoing::Structured {
                    file_name: file_name.clone(),
                    event,
                }
            }
        }
    }

    pub async fn send(&self, client: &reqwest::Client, url: &str) -> (u16, Value) {
        match self {
            Outgoing::File(f) => send(client, url, f).await,
            Outgoing::Structured { event, .. } => send_structured(client, url, event).await,
        }
    }
}

pub fn outgoing(sc: &Scenario) -> Vec<Outgoing> {
    let mut out = Vec::new();
    for f in &sc.files {
        match f.transport.as_deref() {
            Some("aws-lambda-eventbridge") => out.push(Outgoing::Structured {
                file_name: f.file_name.clone(),
                event: f.body["detail"].clone(),
            }),
            Some("aws-lambda-sqs") => {
                for r in wrappers::from_sqs_batch(&f.body).unwrap() {
                    out.push(Outgoing::Structured {
                        file_name: f.file_name.clone(),
                        event: serde_json::to_value(r.event.unwrap()).unwrap(),
                    });
                }
            }
            _ => out.push(Outgoing::File(f.clone())),
        }
    }
    out
}

/// The status the scenario expects for a file (200 unless it says otherwise).
pub fn expected_status(sc: &Scenario, file: &str) -> u16 {
    sc.expect
        .get("statuses")
        .and_then(|s| s.get(file))
        .and_then(Value::as_u64)
        .unwrap_or(200) as u16
}

/// The verb of an event type: `dev.tekton.event.taskrun.unknown.v1` -> `unknown`.
pub fn phase_of(event_type: &str) -> String {
    let parts: Vec<&str> = event_type.split('.').collect();
    match parts.as_slice() {
        ["dev", "tekton", "event", _, verb, ..] => verb.to_string(),
        ["dev", "cdevents", _, verb, ..] => verb.to_string(),
        ["io", "fluxcd", "notification", sev] => sev.to_string(),
        _ => panic!("unexpected type {event_type}"),
    }
}

pub fn key(p: &Value) -> String {
    if p["event_type"].as_str().unwrap().starts_with("io.fluxcd.") {
        format!(
            "{}/{}/{}",
            p["kind"].as_str().unwrap(),
            p["namespace"].as_str().unwrap(),
            p["name"].as_str().unwrap()
        )
    } else {
        format!(
            "{}/{}",
            p["kind"].as_str().unwrap(),
            p["name"].as_str().unwrap()
        )
    }
}

pub fn label(p: &Value) -> String {
    state_label(
        &phase_of(p["event_type"].as_str().unwrap()),
        p["state"].as_str().unwrap(),
    )
}

pub fn counts(reqs: &[Recorded]) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for r in reqs {
        let p = r.json();
        *out.entry(key(&p))
            .or_default()
            .entry(label(&p))
            .or_default() += 1;
    }
    out
}

/// Checks what `rx` received for scenario `sc` against its ground truth:
/// the commit-status-like Notification exactly, every-change without
/// duplicates or stale events, and each run's final state.
pub fn check_scenario(sc: &Scenario, rx: &Receiver) {
    // Commit-status-like Notification: exactly the scenario's notifications.
    let states = rx.accepted_on("/states");
    assert_eq!(
        counts(&states),
        sc.notifications(),
        "{}: notifications",
        sc.name
    );
    assert_eq!(
        states.len() as u64,
        sc.expect["notificationsTotal"].as_u64().unwrap(),
        "{}",
        sc.name
    );

    // Every-change Notification: each distinct condition once, never a stale one.
    let changes = rx.accepted_on("/changes");
    let mut seen = BTreeSet::new();
    for r in &changes {
        let p = r.json();
        let cond = [
            &p["uid"],
            &p["state"],
            &p["reason"],
            &p["message"],
            &p["event_type"],
        ]
        .map(ToString::to_string);
        assert!(
            seen.insert(cond.clone()),
            "{}: delivered twice: {cond:?}",
            sc.name
        );
    }
    let deliveries: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_value(sc.expect["deliveries"].clone()).unwrap();
    let mut got = counts(&changes);
    // Flux objects that are no commit-status updates still reach a plain webhook.
    got.retain(|k, _| sc.expect["fluxObjects"][k]["commitStatus"] != Value::Bool(false));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        deliveries.keys().collect::<Vec<_>>(),
        "{}",
        sc.name
    );
    for (k, per_state) in &got {
        // Every state a commit status shows arrives; stale ones never do.
        let shown: Vec<String> = sc
            .notifications()
            .get(k)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        assert!(
            shown.iter().all(|s| per_state.contains_key(s)),
            "{}: {k}: {per_state:?}",
            sc.name
        );
        for (state, n) in per_state {
            assert!(
                deliveries[k].get(state).is_some_and(|d| n <= d),
                "{}: {k} {state}: {n} > {:?}",
                sc.name,
                deliveries[k].get(state)
            );
        }
    }
    // No stale overwrite: nothing non-terminal for a run after its terminal.
    let mut terminal_seen: HashMap<String, bool> = HashMap::new();
    for r in &changes {
        let p = r.json();
        let terminal = matches!(
            p["state"].as_str().unwrap(),
            "succeeded" | "failed" | "cancelled" | "timed_out"
        );
        let done = terminal_seen
            .entry(p["uid"].as_str().unwrap().to_string())
            .or_default();
        assert!(
            !*done || terminal,
            "{}: stale event delivered after terminal: {p}",
            sc.name
        );
        *done |= terminal;
    }
    let stale: Vec<String> =
        serde_json::from_value(sc.expect["staleDeliveries"].clone()).unwrap_or_default();
    for file in stale {
        let f = sc.files.iter().find(|f| f.file_name == file).unwrap();
        let id = f
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("ce-id"))
            .map(|(_, v)| v.clone())
            .unwrap();
        assert!(
            !changes
                .iter()
                .chain(&states)
                .any(|r| r.json()["event_id"] == id.as_str()),
            "{}: stale {file} delivered",
            sc.name
        );
    }
    // Final state per run matches the ground truth.
    for runs_key in ["pipelineRuns", "customRuns"] {
        for (name, truth) in sc
            .expect
            .get(runs_key)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let last_terminal = changes
                .iter()
                .map(Recorded::json)
                .filter(|p| p["name"] == name.as_str())
                .last();
            let p = last_terminal.unwrap_or_else(|| panic!("{}: nothing for {name}", sc.name));
            let want = truth["finalState"].as_str().unwrap();
            assert_eq!(
                label(&p),
                if want == "error" { "failure" } else { want },
                "{}: {name}",
                sc.name
            );
        }
    }
}
