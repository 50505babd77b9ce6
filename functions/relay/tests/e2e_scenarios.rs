//! End to end through a real `relay serve` process into a local webhook
//! receiver: every fixture scenario reaches its ground truth.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use relay_core::decode::wrappers;
use relay_tests::fixtures::{Scenario, state_label};
use relay_tests::process::{RelayProcess, send, send_structured};
use relay_tests::receiver::{Receiver, Recorded};
use serde_json::Value;

fn config(rx: &Receiver) -> String {
    format!(
        r#"
apiVersion: relay.tekton.dev/v1alpha1
kind: RelayConfig
metadata: {{name: relay}}
spec:
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

/// The verb of an event type: `dev.tekton.event.taskrun.unknown.v1` -> `unknown`.
fn phase_of(event_type: &str) -> String {
    let parts: Vec<&str> = event_type.split('.').collect();
    match parts.as_slice() {
        ["dev", "tekton", "event", _, verb, ..] => verb.to_string(),
        ["dev", "cdevents", _, verb, ..] => verb.to_string(),
        ["io", "fluxcd", "notification", sev] => sev.to_string(),
        _ => panic!("unexpected type {event_type}"),
    }
}

fn key(p: &Value) -> String {
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

fn label(p: &Value) -> String {
    state_label(
        &phase_of(p["event_type"].as_str().unwrap()),
        p["state"].as_str().unwrap(),
    )
}

fn counts(reqs: &[Recorded]) -> BTreeMap<String, BTreeMap<String, u64>> {
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

/// Sends a scenario's files in order, unwrapping Lambda payloads into
/// structured CloudEvents; returns each file's HTTP status.
async fn send_scenario(
    client: &reqwest::Client,
    relay: &RelayProcess,
    sc: &Scenario,
) -> Vec<(String, u16)> {
    let url = format!("{}/", relay.base);
    let mut out = Vec::new();
    for f in &sc.files {
        let events: Vec<Value> = match f.transport.as_deref() {
            Some("aws-lambda-eventbridge") => vec![f.body["detail"].clone()],
            Some("aws-lambda-sqs") => wrappers::from_sqs_batch(&f.body)
                .unwrap()
                .into_iter()
                .map(|r| serde_json::to_value(r.event.unwrap()).unwrap())
                .collect(),
            _ => {
                let (status, _) = send(client, &url, f).await;
                out.push((f.file_name.clone(), status));
                continue;
            }
        };
        for ev in events {
            let (status, body) = send_structured(client, &url, &ev).await;
            assert_eq!(status, 200, "{}: {body}", f.file_name);
            out.push((f.file_name.clone(), status));
        }
    }
    out
}

#[tokio::test]
async fn every_scenario_reaches_its_ground_truth() {
    let rx = Receiver::start().await;
    let relay = RelayProcess::start(Path::new(env!("CARGO_BIN_EXE_relay")), &config(&rx)).await;
    let client = reqwest::Client::new();
    let scenarios = Scenario::all();
    assert!(scenarios.len() >= 12);
    for sc in &scenarios {
        rx.clear();
        let statuses = send_scenario(&client, &relay, sc).await;
        let want_status = sc.expect.get("statuses");
        for (file, status) in &statuses {
            let want = want_status
                .and_then(|s| s.get(file))
                .and_then(Value::as_u64)
                .unwrap_or(200);
            assert_eq!(u64::from(*status), want, "{}/{file}", sc.name);
        }

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
    // The relay logged each event with its CloudEvent id on the line.
    let stderr = relay.stderr();
    let processed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("event processed"))
        .collect();
    assert!(processed.len() > 100, "{} lines", processed.len());
    for l in processed {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(
            v["span"]["ce_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{l}"
        );
    }
}
