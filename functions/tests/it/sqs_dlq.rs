//! `relay dlq list|replay --sqs`: dead letters in an SQS queue (moto) are
//! listed without being consumed and replayed once, with successes deleted
//! and failures kept with `replays` + 1.

use std::path::Path;

use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::process::{RelayProcess, send};
use relay_tests::receiver::Receiver;
use relay_tests::servers::MotoServer;
use serde_json::{Value, json};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_relay");

async fn cli(args: &[&str], env: &[(String, String)]) -> (bool, Value) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RELAY_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_dead_letters_are_listed_and_replayed_once() {
    let moto = MotoServer::start();
    let queue = moto.sqs_queue("relay-dlq-cli").await;
    let env = moto.process_env();
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let rx = Receiver::start().await;
    rx.always("/hook", Some((401, None)));
    let cfg = format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  deadLetter: \"sqs://{queue}\"\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: hook}}\nspec:\n  type: webhook\n  webhook: {{url: \"{}\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: hook}}\nspec:\n  providerRef: {{name: hook}}\n",
        rx.url("/hook")
    );
    let relay = RelayProcess::start_with_env(Path::new(BIN), &cfg, &env_ref).await;
    let ev = RequestFile::load(
        &dir().join("tekton-pipelinerun-success/017-pipelinerun-successful.json"),
    );
    let (_, body) = send(&reqwest::Client::new(), &relay.base, &ev).await;
    assert_eq!(body["outcome"], "dead_lettered", "{body}");

    let (ok, list) = cli(&["dlq", "list", "--sqs", &queue], &env).await;
    assert!(ok);
    assert_eq!(list["total"], 1);
    assert_eq!(list["entries"][0]["cause"]["status"], 401);
    let config = relay.path("relay.yaml").display().to_string();

    // Still broken: kept, replays + 1.
    let (ok, summary) = cli(
        &["dlq", "replay", "--sqs", &queue, "--config", &config],
        &env,
    )
    .await;
    assert!(!ok);
    assert_eq!(summary, json!({"replayed": 1, "succeeded": 0, "failed": 1}));
    let (_, list) = cli(&["dlq", "list", "--sqs", &queue], &env).await;
    assert_eq!(
        (list["total"].clone(), list["entries"][0]["replays"].clone()),
        (json!(1), json!(1))
    );

    // Fixed: delivered once, deleted.
    rx.always("/hook", None);
    let (ok, summary) = cli(
        &["dlq", "replay", "--sqs", &queue, "--config", &config],
        &env,
    )
    .await;
    assert!(ok);
    assert_eq!(summary, json!({"replayed": 1, "succeeded": 1, "failed": 0}));
    assert_eq!(rx.accepted_on("/hook").len(), 1);
    let (_, list) = cli(&["dlq", "list", "--sqs", &queue], &env).await;
    assert_eq!(list["total"], 0);
}
