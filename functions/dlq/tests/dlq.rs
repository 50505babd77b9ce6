//! The Knative dead-letter function end to end on each store (file, Valkey,
//! DynamoDB on moto): a dead-lettered delivery is kept with its decoded
//! knativeerror* attributes, listed, replayed to the subscriber that failed
//! (kept with `replays` + 1 while it still fails), and deleted.

use std::path::Path;
use std::time::{Duration, Instant};

use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::process::{FunctionProcess, free_port, send};
use relay_tests::receiver::Receiver;
use relay_tests::servers::{MotoServer, ValkeyServer};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_relay-dlq");
/// The fixture's `Traceparent` header, as the Broker sends it.
const TRACEPARENT: &str = "00-0f4f2ff285030e2c59c266fba0cdb9f9-ab56532565378055-01";
const CONFIG: &str =
    "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {name: relay}\nspec: {}\n";

async fn run(store: &str, mut env: Vec<(String, String)>) {
    let subscriber = Receiver::start().await;
    let port = free_port();
    env.push(("PORT".into(), port.to_string()));
    env.push(("RELAY_DLQ_STORE".into(), store.to_string()));
    let function = FunctionProcess::start(Path::new(BIN), CONFIG, &env);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "dlq did not start: {}",
            function.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The Broker's dead-letter delivery, pointed at our subscriber.
    let mut f = RequestFile::load(&dir().join("wrappers/knative-dead-lettered.json"));
    f.headers.insert(
        "ce-knativeerrordest".into(),
        subscriber.url("/relay-webhook"),
    );
    let (status, body) = send(&client, &format!("{base}/"), &f).await;
    assert_eq!(status, 202, "{body}\n{}", function.stderr());

    let list: Value = client
        .get(format!("{base}/api/v1/dlq"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1, "{list}");
    let e = &list["entries"][0];
    assert_eq!(e["cause"]["kind"], "retries_exhausted");
    assert_eq!(e["cause"]["status"], 503);
    assert_eq!(
        e["cause"]["message"],
        r#"{"error":"github API returned 502 Bad Gateway","retryable":true}"#
    );
    assert_eq!(e["provider"], subscriber.url("/relay-webhook").as_str());
    assert_eq!(e["event"]["id"], "83db6e3a-f635-4250-9f8f-f2ca3cd16876");
    assert!(
        e["event"].get("knativeerrorcode").is_none(),
        "kept as first sent"
    );
    assert_eq!(e["event"]["traceparent"], TRACEPARENT, "the trace goes on");

    // Still failing: kept, replays + 1.
    subscriber.always("/relay-webhook", Some((500, None)));
    let r: Value = client
        .post(format!("{base}/api/v1/dlq/replay"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({"replayed": 1, "succeeded": 0, "failed": 1}));
    let list: Value = client
        .get(format!("{base}/api/v1/dlq"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["entries"][0]["replays"], 1);

    // Fixed: delivered to the subscriber once, and gone.
    subscriber.always("/relay-webhook", None);
    let r: Value = client
        .post(format!("{base}/api/v1/dlq/replay"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({"replayed": 1, "succeeded": 1, "failed": 0}));
    let got = subscriber.accepted_on("/relay-webhook");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].headers["content-type"],
        "application/cloudevents+json"
    );
    assert_eq!(got[0].json()["id"], "83db6e3a-f635-4250-9f8f-f2ca3cd16876");
    assert_eq!(got[0].json()["traceparent"], TRACEPARENT);
    assert!(got[0].json()["data"]["taskRun"].is_object());
    let list: Value = client
        .get(format!("{base}/api/v1/dlq"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 0);

    // Delete.
    send(&client, &format!("{base}/"), &f).await;
    let list: Value = client
        .get(format!("{base}/api/v1/dlq"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["entries"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        client
            .delete(format!("{base}/api/v1/dlq/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        client
            .delete(format!("{base}/api/v1/dlq/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_file() {
    let d = tempfile::tempdir().unwrap();
    run(&format!("file://{}/dl.jsonl", d.path().display()), vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_valkey() {
    let server = ValkeyServer::start();
    run(&server.url("dlq"), vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_dynamodb() {
    let moto = MotoServer::start();
    let url = moto.dynamodb_table("relay-dlq").await;
    run(&url, moto.process_env()).await;
}
