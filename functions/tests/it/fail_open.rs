//! The store unreachable at start, then lost mid-run: events are still
//! delivered (without idempotency), store errors are counted, `/readyz`
//! reports the store degraded, and the relay recovers by itself.

use std::path::Path;
use std::time::{Duration, Instant};

use relay_tests::fixtures::{RequestFile, fresh_pipelinerun};
use relay_tests::process::{RelayProcess, send};
use relay_tests::receiver::Receiver;
use relay_tests::servers::ValkeyServer;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_relay");

fn event(tag: &str) -> RequestFile {
    fresh_pipelinerun(&format!("fail-open-{tag}"))
}

async fn ready(base: &str) -> Value {
    reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `/readyz` until the store reads `want` (the relay reconnects by
/// itself; this only waits for it to have done so).
async fn wait_store(base: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready(base).await["store"]["status"] != want {
        assert!(Instant::now() < deadline, "store never became {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn store_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("relay_store_errors_total{backend=\"valkey\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_fails_open_and_recovers_when_the_store_comes_back() {
    let mut server = ValkeyServer::start();
    assert!(
        server.can_restart(),
        "this test needs a valkey-server or redis-server binary"
    );
    server.stop();
    let rx = Receiver::start().await;
    let cfg = format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  store: \"{}\"\n  deadLetter: file://$DIR/dl.jsonl\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: hook}}\nspec:\n  type: webhook\n  webhook: {{url: \"{}\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: hook}}\nspec:\n  providerRef: {{name: hook}}\n",
        server.url("failopen"),
        rx.url("/hook")
    );
    // Unreachable at start: the relay starts, delivers, and says it is degraded.
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();
    let (status, body) = send(&client, &relay.base, &event("down-at-start")).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    let r = ready(&relay.base).await;
    assert_eq!(
        (r["status"].as_str(), r["store"]["status"].as_str()),
        (Some("degraded"), Some("unreachable"))
    );
    let metrics = reqwest::get(format!("{}/metrics", relay.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let errors_before = store_errors(&metrics);
    assert!(errors_before > 0, "{metrics}");
    assert!(metrics.contains(r#"op="claim""#));

    // The store comes back: idempotency works again without a restart.
    server.restart();
    wait_store(&relay.base, "ok").await;
    let e = event("after-recovery");
    assert_eq!(
        send(&client, &relay.base, &e).await.1["outcome"],
        "delivered"
    );
    assert_eq!(
        send(&client, &relay.base, &e).await.1["outcome"],
        "duplicate"
    );

    // Lost mid-run: still delivered, counted, degraded; then recovered again.
    server.stop();
    let (status, body) = send(&client, &relay.base, &event("lost-mid-run")).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    let metrics = reqwest::get(format!("{}/metrics", relay.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(store_errors(&metrics) > errors_before);
    wait_store(&relay.base, "unreachable").await;
    server.restart();
    wait_store(&relay.base, "ok").await;
    let e = event("after-second-recovery");
    assert_eq!(
        send(&client, &relay.base, &e).await.1["outcome"],
        "delivered"
    );
    assert_eq!(
        send(&client, &relay.base, &e).await.1["outcome"],
        "duplicate"
    );

    let delivered: Vec<String> = rx
        .accepted_on("/hook")
        .iter()
        .map(|r| r.json()["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        delivered,
        [
            "fail-open-down-at-start",
            "fail-open-after-recovery",
            "fail-open-lost-mid-run",
            "fail-open-after-second-recovery"
        ]
    );
}
