//! The webhook function on a real Lambda Runtime API (a server in tests/
//! speaking the documented protocol) with moto for SQS: EventBridge
//! envelopes and SQS batches reach the receiver, permanent failures land in
//! the SQS dead-letter queue, retryable ones fail the invocation.

use relay_tests::process::Binary;

use relay_core::deadletter::DeadLetterSink;
use relay_core::deadletter::sqs::SqsSink;
use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::lambda_api::RuntimeApi;
use relay_tests::process::FunctionProcess;
use relay_tests::receiver::Receiver;
use relay_tests::servers::MotoServer;
use serde_json::{Value, json};

fn wrapper(name: &str) -> Value {
    RequestFile::load(&dir().join("wrappers").join(name)).body
}

/// The EventBridge fixture as another change of another run.
fn envelope(tag: &str) -> Value {
    let mut e = wrapper("aws-eventbridge-envelope.json");
    e["detail"]["id"] = format!("lambda-{tag}").into();
    e["detail"]["data"]["pipelineRun"]["metadata"]["uid"] = format!("uid-{tag}").into();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_function_on_lambda() {
    let moto = MotoServer::start();
    let queue = moto.sqs_queue("relay-dead-letters").await;
    let rx = Receiver::start().await;
    let api = RuntimeApi::start().await;
    let config = format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  deadLetter: \"sqs://{queue}\"\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 20, maxAttempts: 2}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: hook}}\nspec:\n  type: webhook\n  webhook: {{url: \"{}\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: hook}}\nspec:\n  providerRef: {{name: hook}}\n",
        rx.url("/hook")
    );
    let mut env = api.env("relay-webhook");
    env.extend(moto.process_env());
    let function = FunctionProcess::start(
        Binary::function(env!("CARGO_BIN_EXE_relay"), "webhook"),
        &config,
        &env,
    );

    // An EventBridge envelope: delivered, and the answer says so.
    let r = api.invoke(wrapper("aws-eventbridge-envelope.json")).await;
    let r = r.unwrap_or_else(|e| panic!("{e}\n{}", function.stderr()));
    assert_eq!(r["outcome"], "delivered");
    assert_eq!(
        rx.accepted_on("/hook")[0].json()["event_id"],
        "25738640-c3fa-4c0a-84b9-ccd2353d5cfc"
    );

    // An SQS batch: both records delivered, no item failures.
    let r = api.invoke(wrapper("sqs-batch.json")).await.unwrap();
    assert_eq!(r, json!({"batchItemFailures": []}));
    assert_eq!(rx.accepted_on("/hook").len(), 3);

    // A permanent failure: dead-lettered to SQS, and the invocation succeeds.
    rx.always("/hook", Some((401, None)));
    let r = api.invoke(envelope("denied")).await.unwrap();
    assert_eq!(r["outcome"], "dead_lettered");
    let sink = SqsSink::from_conf(&moto.sdk_config(), &queue);
    let (total, entries) = sink.list(None, None).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(entries[0].cause.status, Some(401));
    assert_eq!(entries[0].event["id"], "lambda-denied");
    assert_eq!(
        sink.list(None, None).await.unwrap().0,
        1,
        "listing consumes nothing"
    );

    // A retryable failure: the invocation fails, so Lambda retries.
    rx.always("/hook", Some((503, None)));
    let e = api.invoke(envelope("unavailable")).await.unwrap_err();
    assert_eq!(e["errorType"], "RetryableDeliveryFailure", "{e}");

    // In an SQS batch, only the failing record is reported.
    let mut batch = wrapper("sqs-batch.json");
    let mut good = batch["Records"][0].clone();
    let mut body: Value = serde_json::from_str(good["body"].as_str().unwrap()).unwrap();
    body["id"] = "batch-good".into();
    body["data"]["taskRun"]["metadata"]["uid"] = "uid-batch-good".into();
    good["body"] = body.to_string().into();
    good["messageId"] = "good".into();
    batch["Records"] =
        json!([good, {"messageId": "garbled", "eventSource": "aws:sqs", "body": "{not json"}]);
    rx.always("/hook", None);
    let r = api.invoke(batch).await.unwrap();
    assert_eq!(
        r,
        json!({"batchItemFailures": [{"itemIdentifier": "garbled"}]})
    );

    // Not an event this function takes: an error, so nothing is dropped silently.
    let e = api.invoke(json!({"hello": "world"})).await.unwrap_err();
    assert_eq!(e["errorType"], "UndecodableInvocation");
}

/// EMF documents on the function's stdout for `metric`.
fn emf(stdout: &str, metric: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|d| d.get("_aws").is_some() && d.get(metric).is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_traces_continue_and_metrics_are_emf_lines() {
    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let rx = Receiver::start().await;
    let collector = Receiver::start().await;
    let api = RuntimeApi::start().await;
    let config = format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: hook}}\nspec:\n  type: webhook\n  webhook: {{url: \"{}\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: hook}}\nspec:\n  providerRef: {{name: hook}}\n",
        rx.url("/hook")
    );
    let mut env = api.env("relay-webhook-prod");
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.url("")));
    let function = FunctionProcess::start(
        Binary::function(env!("CARGO_BIN_EXE_relay"), "webhook"),
        &config,
        &env,
    );

    // The CloudEvent in the EventBridge detail carries the trace context.
    let mut first = envelope("traced");
    first["detail"]["traceparent"] = format!("00-{TRACE}-b7ad6b7169203331-01").into();
    let r = api.invoke(first).await;
    let r = r.unwrap_or_else(|e| panic!("{e}\n{}", function.stderr()));
    assert_eq!(r["outcome"], "delivered");
    let sent = rx.accepted_on("/hook")[0].headers["traceparent"].clone();
    let (trace, span, _) = relay_tests::otlp::split_traceparent(sent.to_str().unwrap());
    assert_eq!(trace, TRACE);

    // Exported before the invocation answered: a frozen sandbox exports nothing.
    let spans = relay_tests::otlp::spans(&collector);
    assert!(
        spans
            .iter()
            .any(|s| s.span_id == span && s.name == "POST" && s.service == "relay-webhook"),
        "{spans:#?}\n{}",
        function.stderr()
    );

    // Metrics: the invocation's counts as EMF, dimensioned by function and labels.
    let delivered = emf(&function.stdout(), "relay_deliveries_total");
    assert_eq!(delivered.len(), 1, "{}", function.stdout());
    let doc = &delivered[0];
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["function", "notification", "outcome"]])
    );
    assert_eq!(
        doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "TektonRelay"
    );
    assert_eq!(
        (&doc["function"], &doc["notification"], &doc["outcome"]),
        (
            &json!("relay-webhook-prod"),
            &json!("hook"),
            &json!("delivered")
        )
    );
    assert_eq!(doc["relay_deliveries_total"], 1.0);
    let durations = emf(&function.stdout(), "relay_delivery_duration_seconds");
    assert_eq!(
        durations[0]["relay_delivery_duration_seconds"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The next invocation writes its own increase, not the running total.
    api.invoke(envelope("second")).await.unwrap();
    let delivered = emf(&function.stdout(), "relay_deliveries_total");
    assert_eq!(delivered.len(), 2, "{}", function.stdout());
    assert_eq!(delivered[1]["relay_deliveries_total"], 1.0);
}
