//! Senders choose event types (a Flux severity is free text, a CDEvents type
//! version any digits): through a real `relay serve`, hundreds of distinct
//! ones make a fixed set of metric series, so `/metrics` does not grow with
//! what senders write.

use std::path::Path;

use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::process::{RelayProcess, send};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_relay");

const CONFIG: &str = "apiVersion: relay.tekton.dev/v1alpha1
kind: RelayConfig
metadata: {name: relay}
spec:
  deadLetter: file://$DIR/dead-letters.jsonl
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Provider
metadata: {name: stdout}
spec:
  type: log
---
apiVersion: relay.tekton.dev/v1alpha1
kind: Notification
metadata: {name: everything}
spec:
  providerRef: {name: stdout}
";

#[tokio::test]
async fn distinct_event_types_make_a_fixed_set_of_metric_labels() {
    let relay = RelayProcess::start(Path::new(BIN), CONFIG).await;
    let client = reqwest::Client::new();
    let flux = RequestFile::load(&dir().join("flux-events/003-flux-kustomization-apps-error.json"));
    let cdevent = RequestFile::load(
        &dir().join("cdevents/006-cdevent-v04-pipelinerun-finished-failure.json"),
    );
    for i in 0..120 {
        let mut f = flux.clone();
        f.body["severity"] = Value::String(format!("sev-{i}"));
        let (status, body) = send(&client, &relay.base, &f).await;
        assert_eq!(status, 200, "{body}");

        let mut c = cdevent.clone();
        c.headers.insert(
            "Ce-Type".into(),
            format!("dev.cdevents.pipelinerun.finished.0.{i}.0"),
        );
        c.headers.insert("Ce-Id".into(), format!("labels-{i}"));
        let (status, body) = send(&client, &relay.base, &c).await;
        assert_eq!(status, 200, "{body}");

        let mut o = cdevent.clone();
        o.headers
            .insert("Ce-Type".into(), format!("com.example.type-{i}"));
        o.headers.insert("Ce-Id".into(), format!("other-{i}"));
        let (status, body) = send(&client, &relay.base, &o).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["outcome"], "ignored", "{body}");
    }
    let metrics = reqwest::get(format!("{}/metrics", relay.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("relay_events_received_total{type=\""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        [
            "dev.cdevents.pipelinerun.finished",
            "io.fluxcd.notification.other",
            "other"
        ],
        "{metrics}"
    );
}
