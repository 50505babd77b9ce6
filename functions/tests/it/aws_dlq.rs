//! Every failure on AWS is recoverable (moto: SQS and EventBridge, a real
//! Lambda Runtime API): the webhook function dead-letters a permanent
//! failure to the SQS queue, a retryable one fails the invocation and its
//! invocation record (Lambda's on-failure destination, as AWS documents
//! it) joins it there, beside a malformed message. `relay dlq list --sqs`
//! shows all three; `relay dlq replay --sqs --bus` puts both failures back
//! on the bus (a rule with an SQS target shows what went on it) and deletes
//! them, and keeps the malformed one. Fed to the function as EventBridge
//! would, the dead letter's event re-runs only its Notification (dead-
//! lettered again with `replays` carried while it still fails), and the
//! record's event posts nothing twice. The ingress refuses a marked event.

use relay_core::deadletter::DeadLetterSink;
use relay_core::deadletter::aws_queue::{AwsQueue, Body};
use relay_tests::bus::{Bus, Queue};
use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::function::{document, notification, provider};
use relay_tests::lambda_api::RuntimeApi;
use relay_tests::process::{Binary, FunctionProcess, relay_json};
use relay_tests::receiver::Receiver;
use relay_tests::servers::MotoServer;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_relay");
const BUS: &str = "tekton-relay";
const FUNCTION_ARN: &str =
    "arn:aws:lambda:us-east-1:123456789012:function:tekton-relay-webhook:$LATEST";

/// `relay <args>`: whether it succeeded, and its stdout as JSON.
async fn cli(args: &[&str], env: &[(String, String)]) -> (bool, Value) {
    let (ok, v, _) = relay_json(BIN, args, env).await;
    (ok, v)
}

/// The EventBridge fixture as another change of another run.
fn envelope(tag: &str) -> Value {
    let mut e = RequestFile::load(&dir().join("wrappers/aws-eventbridge-envelope.json")).body;
    e["detail"]["id"] = format!("dlq-{tag}").into();
    e["detail"]["data"]["pipelineRun"]["metadata"]["uid"] = format!("uid-dlq-{tag}").into();
    e
}

/// The bus, and a rule sending everything from the ingress's source to an
/// SQS queue: what went on the bus.
async fn tap(moto: &MotoServer) -> Queue {
    Bus::create(moto, BUS)
        .await
        .rule("tap", r#"{"source": ["tekton.relay"]}"#)
        .await
}

/// A config of two webhook Notifications, `ok` and `denied`, each posting
/// to its path of `rx`, dead-lettering to `queue`.
fn config(rx: &Receiver, queue: &str) -> String {
    let mut cfg = document(
        "RelayConfig",
        "relay",
        &format!(
            "  deadLetter: \"sqs://{queue}\"\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 20, maxAttempts: 2}}\n"
        ),
    );
    for name in ["ok", "denied"] {
        cfg += &provider(
            name,
            "webhook",
            &format!("{{url: \"{}\"}}", rx.url(&format!("/{name}"))),
        );
        cfg += &notification(name, name, "");
    }
    cfg
}

/// What each Notification did with an invocation's event.
fn deliveries(answer: &Value) -> Vec<(String, String)> {
    let mut d: Vec<(String, String)> = answer["deliveries"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|d| {
            (
                d["notification"].as_str().unwrap().to_string(),
                d["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    d.sort();
    d
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The listed message of `kind`.
fn of_kind<'a>(list: &'a Value, kind: &str) -> &'a Value {
    list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}: {list:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_on_the_queue_is_listed_and_replayed_onto_the_bus() {
    let moto = MotoServer::start();
    let queue = moto.sqs_queue("tekton-relay-dead-letters").await;
    let tap = tap(&moto).await;
    let env = moto.process_env();
    let rx = Receiver::start().await;
    let api = RuntimeApi::start().await;
    let mut fenv = api.env("tekton-relay-webhook");
    fenv.extend(moto.process_env());
    let f = FunctionProcess::start(
        Binary::function(BIN, "webhook"),
        &config(&rx, &queue),
        &fenv,
    );
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config());

    // A permanent failure: `denied` is dead-lettered by the function.
    rx.always("/denied", Some((401, None)));
    let first = envelope("first");
    let r = api
        .invoke(first.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", f.stderr()));
    assert_eq!(
        deliveries(&r),
        pairs(&[("denied", "dead_lettered"), ("ok", "delivered")])
    );

    // A retryable failure: the invocation fails; after Lambda's retries its
    // record goes to the on-failure destination, the same queue.
    rx.always("/denied", None);
    rx.always("/ok", Some((503, None)));
    let second = envelope("second");
    let error = api.invoke(second.clone()).await.unwrap_err();
    assert_eq!(error["errorType"], "RetryableDeliveryFailure", "{error}");
    let record = json!({
        "version": "1.0",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "requestContext": {
            "requestId": "e4b46cbf-b738-4d22-8880-a18cdf61200e",
            "functionArn": FUNCTION_ARN,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": second,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": error,
    });
    for body in [record.to_string(), "{not json".to_string()] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    // Listed, all three kinds, and nothing consumed.
    let (ok, list) = cli(&["dlq", "list", "--sqs", &queue], &env).await;
    assert!(ok, "{list}");
    assert_eq!(list["total"], 3, "{list:#}");
    let dl = of_kind(&list, "dead-letter");
    assert_eq!(
        (
            &dl["function"],
            &dl["notification"],
            &dl["event_id"],
            &dl["replays"]
        ),
        (
            &json!("webhook"),
            &json!("denied"),
            &json!("dlq-first"),
            &json!(0)
        ),
        "{dl}"
    );
    assert_eq!(
        dl["event_type"],
        "dev.tekton.event.pipelinerun.successful.v1"
    );
    assert!(
        dl["cause"].as_str().unwrap().starts_with("permanent 401"),
        "{dl}"
    );
    assert_eq!(dl["replayable"], true);
    let rec = of_kind(&list, "invocation-record");
    assert_eq!(
        (&rec["function"], &rec["event_id"], &rec["replayable"]),
        (
            &json!("tekton-relay-webhook"),
            &json!("dlq-second"),
            &json!(true)
        ),
        "{rec}"
    );
    let cause = rec["cause"].as_str().unwrap();
    assert!(
        cause.starts_with("RetriesExhausted after 3 attempts: RetryableDeliveryFailure: ")
            && cause.contains("503"),
        "{cause}"
    );
    let bad = of_kind(&list, "malformed");
    assert!(
        bad["cause"].as_str().unwrap().starts_with("not JSON"),
        "{bad}"
    );
    assert_eq!(bad["replayable"], false);
    let (_, again) = cli(&["dlq", "list", "--sqs", &queue], &env).await;
    assert_eq!(again["total"], 3, "listing consumes nothing");
    let (_, denied) = cli(
        &["dlq", "list", "--sqs", &queue, "--notification", "denied"],
        &env,
    )
    .await;
    assert_eq!(denied["total"], 1, "{denied}");

    // Replayed onto the bus: both failures deleted, the malformed message
    // kept and reported (so the run fails).
    rx.always("/ok", None);
    let (ok, summary) = cli(&["dlq", "replay", "--sqs", &queue, "--bus", BUS], &env).await;
    assert!(!ok, "{summary:#}");
    assert_eq!(
        (
            &summary["replayed"],
            &summary["succeeded"],
            &summary["failed"]
        ),
        (&json!(3), &json!(2), &json!(1)),
        "{summary:#}"
    );
    let kept = summary["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "malformed")
        .unwrap();
    assert_eq!(kept["outcome"], "kept");
    assert!(
        kept["detail"].as_str().unwrap().contains("not JSON"),
        "{kept}"
    );
    let (_, left) = cli(&["dlq", "list", "--sqs", &queue], &env).await;
    assert_eq!(left["total"], 1, "{left:#}");
    assert_eq!(left["messages"][0]["kind"], "malformed");

    let on_bus = tap.take(2).await;
    let marked = on_bus
        .iter()
        .find(|e| e["detail"]["id"] == "dlq-first")
        .unwrap();
    let resent = on_bus
        .iter()
        .find(|e| e["detail"]["id"] == "dlq-second")
        .unwrap();
    // The record's event as the ingress put it.
    for k in ["source", "detail-type", "detail"] {
        assert_eq!(resent[k], second[k], "{k}");
    }
    // The dead letter's event, marked for `denied`, replayed once.
    assert_eq!(marked["source"], "tekton.relay");
    assert_eq!(marked["detail-type"], first["detail-type"]);
    assert_eq!(marked["detail"]["relayreplay"], "denied");
    assert_eq!(marked["detail"]["relayreplays"], 1);
    assert_eq!(marked["detail"]["data"], first["detail"]["data"]);

    // The marked event in the function, still failing: only `denied` runs,
    // and it is dead-lettered again, replays carried, without the marks.
    rx.always("/denied", Some((401, None)));
    let r = api
        .invoke(marked.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", f.stderr()));
    assert_eq!(deliveries(&r), pairs(&[("denied", "dead_lettered")]));
    let q = AwsQueue::from_conf(&moto.sdk_config(), &queue);
    let (messages, _) = q.receive_all(30).await.unwrap();
    for m in &messages {
        q.release(m).await.unwrap();
    }
    let entry = messages
        .iter()
        .find_map(|m| match &m.body {
            Body::Entry(e) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((entry.notification.as_str(), entry.replays), ("denied", 1));
    assert!(entry.event.get("relayreplay").is_none(), "{}", entry.event);
    assert!(entry.event.get("relayreplays").is_none(), "{}", entry.event);

    // Fixed, and replayed by its id alone: delivered, once.
    rx.always("/denied", None);
    let (ok, summary) = cli(
        &[
            "dlq", "replay", "--sqs", &queue, "--bus", BUS, "--id", &entry.id,
        ],
        &env,
    )
    .await;
    assert!(ok, "{summary:#}");
    assert_eq!(
        (&summary["replayed"], &summary["succeeded"]),
        (&json!(1), &json!(1))
    );
    let marked = tap.take(1).await.remove(0);
    assert_eq!(marked["detail"]["relayreplays"], 2);
    let r = api.invoke(marked).await.unwrap();
    assert_eq!(deliveries(&r), pairs(&[("denied", "delivered")]));

    // The record's event: `ok` is delivered now, `denied` had it already.
    let r = api.invoke(resent.clone()).await.unwrap();
    assert_eq!(
        deliveries(&r),
        pairs(&[("denied", "duplicate"), ("ok", "delivered")])
    );
    for (path, id) in [
        ("/ok", "dlq-first"),
        ("/denied", "dlq-first"),
        ("/ok", "dlq-second"),
        ("/denied", "dlq-second"),
    ] {
        assert_eq!(rx.accepted_for_event(path, id), 1, "{path} {id}");
    }
    let (_, left) = cli(&["dlq", "list", "--sqs", &queue], &env).await;
    assert_eq!(left["total"], 1, "only the malformed message: {left:#}");

    // With the functions' config, a dead letter of a Notification it no
    // longer has stays on the queue instead of going where nobody acts.
    let mut gone = entry.clone();
    gone.id = "renamed-1".into();
    gone.notification = "renamed".into();
    relay_core::deadletter::sqs::SqsSink::from_conf(&moto.sdk_config(), &queue)
        .put(&gone)
        .await
        .unwrap();
    let config = f.dir.path().join("relay.yaml").display().to_string();
    let (ok, summary) = cli(
        &[
            "dlq",
            "replay",
            "--sqs",
            &queue,
            "--bus",
            BUS,
            "--config",
            &config,
            "--id",
            "renamed-1",
        ],
        &env,
    )
    .await;
    assert!(!ok, "{summary:#}");
    let detail = summary["messages"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("no Notification \"renamed\""), "{detail}");
    let (_, left) = cli(&["dlq", "list", "--sqs", &queue], &env).await;
    assert_eq!(left["total"], 2, "{left:#}");
}

/// Only an operator's replay marks an event: the ingress refuses one that
/// comes marked, and puts nothing on the bus for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_refuses_a_marked_event() {
    let moto = MotoServer::start();
    let tap = tap(&moto).await;
    let mut env = moto.process_env();
    env.push(("RELAY_EVENT_BUS".into(), BUS.into()));
    let (_f, base) = FunctionProcess::start_http(
        Binary::function(BIN, "ingress"),
        // A Notification that wants every event: the ingress puts on the
        // bus only what some function wants.
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {name: relay}\nspec: {}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: out}\nspec: {type: log}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {name: all}\nspec: {providerRef: {name: out}}\n",
        &env,
    )
    .await;
    let client = reqwest::Client::new();
    let post = |detail: Value| {
        client
            .post(&base)
            .header("content-type", "application/cloudevents+json")
            .body(detail.to_string())
            .send()
    };
    let mut event = envelope("marked")["detail"].clone();
    event["relayreplay"] = "denied".into();
    let r = post(event.clone()).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "reserved_attribute", "{body}");

    // The same event unmarked goes on: the refusal was the marks.
    event.as_object_mut().unwrap().remove("relayreplay");
    let r = post(event).await.unwrap();
    assert_eq!(r.status(), 200);
    let on_bus = tap.take(1).await;
    assert_eq!(on_bus[0]["detail"]["id"], "dlq-marked");
    assert!(on_bus[0]["detail"].get("relayreplay").is_none());
}
