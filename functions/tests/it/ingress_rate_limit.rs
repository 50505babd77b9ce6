//! The ingress function's inbound limit, as a Knative function forwarding to
//! K_SINK: a source past its burst gets 429 + Retry-After and nothing is
//! forwarded for it; another source has its own bucket.

use std::net::IpAddr;

use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::process::FunctionProcess;
use relay_tests::receiver::Receiver;

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "ingress");

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn post(client: &reqwest::Client, base: &str, f: &RequestFile) -> (u16, Option<String>) {
    let mut req = client.post(format!("{base}/")).body(f.body_bytes());
    for (k, v) in f.send_headers() {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), retry_after)
}

#[tokio::test]
async fn a_source_past_its_burst_is_refused_and_not_forwarded() {
    let sink = Receiver::start().await;
    let cfg = "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {name: relay}\nspec:\n  limits: {inboundPerSource: {ratePerSecond: 0.001, burst: 2}}\n";
    let env = [("K_SINK".to_string(), sink.url("/broker"))];
    let (_f, base) = FunctionProcess::start_http(BIN, cfg, &env).await;
    let ev = RequestFile::load(
        &dir().join("tekton-pipelinerun-success/017-pipelinerun-successful.json"),
    );
    let a = client_from("127.0.0.1");
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(post(&a, &base, &ev).await);
    }
    assert_eq!(answers[0], (200, None));
    assert_eq!(answers[1], (200, None));
    let (status, retry_after) = &answers[2];
    assert_eq!(*status, 429);
    assert!(
        retry_after
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "{retry_after:?}"
    );
    assert_eq!(
        sink.accepted_on("/broker").len(),
        2,
        "refused: not forwarded"
    );

    let b = client_from("127.0.0.2");
    assert_eq!(post(&b, &base, &ev).await.0, 200);
    assert_eq!(sink.accepted_on("/broker").len(), 3);
    let m = a
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("relay_rate_limited_total{direction=\"inbound\",key=\"source\"} 1"),
        "{m}"
    );
}
