//! End to end through a real `relay serve` process into a local webhook
//! receiver: every fixture scenario reaches its ground truth.

use std::path::Path;

use relay_tests::expect::{check_scenario, config, expected_status, outgoing};
use relay_tests::fixtures::Scenario;
use relay_tests::process::RelayProcess;
use relay_tests::receiver::Receiver;
use serde_json::Value;

#[tokio::test]
async fn every_scenario_reaches_its_ground_truth() {
    let rx = Receiver::start().await;
    let relay = RelayProcess::start(
        Path::new(env!("CARGO_BIN_EXE_relay")),
        &config(&rx, "memory"),
    )
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/", relay.base);
    let scenarios = Scenario::all();
    assert!(scenarios.len() >= 12);
    for sc in &scenarios {
        rx.clear();
        for req in outgoing(sc) {
            let (status, body) = req.send(&client, &url).await;
            assert_eq!(
                status,
                expected_status(sc, req.file_name()),
                "{}/{}: {body}",
                sc.name,
                req.file_name()
            );
        }
        check_scenario(sc, &rx);
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
