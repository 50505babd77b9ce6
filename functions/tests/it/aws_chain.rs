//! The AWS install as one chain, wired as `infra/modules/relay` wires it, on
//! moto (EventBridge, SQS, DynamoDB, SSM) with the functions on a Lambda
//! Runtime API: the config and both credentials in SSM; one rule per
//! provider function of the table, its pattern read from the module and
//! evaluated, moto routing each event to the rule's target (an SQS queue
//! this test's Lambda stand-in takes from).
//!
//! Tekton's request to the Function URL without the ingress token is
//! refused; with it (in the sink URL, as Basic credentials), the ingress
//! puts the event on the bus, marked for the webhook function only. Invoked asynchronously as Lambda does (retried
//! `maximum_retry_attempts` times, then the invocation record to the
//! on-failure destination), the webhook function delivers one Notification
//! with the token from SSM, dead-letters one whose endpoint refuses it for
//! good, and fails on one whose endpoint keeps answering 503. Both failures
//! are on the dead-letter queue, listed, and once the endpoints answer,
//! replayed onto the bus: each Notification has then posted exactly once,
//! the queue is empty, and no credential is in anything the chain wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use relay_tests::bus::{Bus, Queue};
use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::function::{document, notification, provider};
use relay_tests::lambda_api::{Invocation, RuntimeApi, function_url_event};
use relay_tests::process::{Binary, FunctionProcess, relay_json};
use relay_tests::receiver::Receiver;
use relay_tests::servers::MotoServer;
use relay_tests::terraform::{default, event_pattern, hcl};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_relay");
const INGRESS_TOKEN: &str = "ingress-token-7d1c0e5a9b3f4d2e8a6c5b4a";
const WEBHOOK_TOKEN: &str = "webhook-token-3e9b5c7a1d0f";

fn module() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/modules/relay")
}

/// The config the module publishes: the ingress's token and the `hook`
/// Provider's from SSM; three webhook Notifications of PipelineRuns (`ok`,
/// `denied`, `flaky`, each to its path of `rx`) and one of failures to the
/// log function.
fn config(rx: &Receiver) -> String {
    let mut cfg = document(
        "RelayConfig",
        "relay",
        "  inboundAuth: {bearerTokenFile: \"ssm://tekton-relay/ingress/token\"}\n  \
         delivery: {initialBackoffMs: 10, maxBackoffMs: 20, maxAttempts: 2}\n",
    );
    for name in ["ok", "denied", "flaky"] {
        let token = match name {
            "ok" => ", tokenFile: \"ssm://tekton-relay/webhook/token\"",
            _ => "",
        };
        cfg += &provider(
            name,
            "webhook",
            &format!("{{url: \"{}\"{token}}}", rx.url(&format!("/{name}"))),
        );
        cfg += &notification(name, name, "  filter: {kinds: [PipelineRun]}");
    }
    cfg += &document("Provider", "out", "  type: log");
    cfg += &notification("failures", "out", "  filter: {states: [failed]}");
    cfg
}

/// Lambda's asynchronous invocation of a function, as an EventBridge rule
/// invokes its target: an error is retried `retries` times; when every
/// attempt failed, the invocation record (as AWS documents it) goes to the
/// on-failure destination.
struct AsyncLambda {
    api: RuntimeApi,
    arn: String,
    retries: u64,
    on_failure: Queue,
}

impl AsyncLambda {
    /// Every attempt's outcome.
    async fn invoke(&self, event: &Value) -> Vec<Invocation> {
        let mut attempts = Vec::new();
        loop {
            let outcome = self.api.invoke(event.clone()).await;
            let failed = outcome.is_err();
            attempts.push(outcome);
            if !failed || attempts.len() as u64 > self.retries {
                break;
            }
        }
        if let Some(Err(error)) = attempts.last() {
            let record = json!({
                "version": "1.0",
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "requestContext": {
                    "requestId": "c0a5f6d2-7e1b-4f3a-9d8c-2b4e6a8c0d1f",
                    "functionArn": format!("{}:$LATEST", self.arn),
                    "condition": "RetriesExhausted",
                    "approximateInvokeCount": attempts.len()
                },
                "requestPayload": event,
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "responsePayload": error,
            });
            self.on_failure.send(&record.to_string()).await;
        }
        attempts
    }
}

/// What each rule's target got, for the rules that got anything.
async fn routed(targets: &BTreeMap<&str, Queue>) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    for (function, q) in targets {
        let events = q.take_all().await;
        if !events.is_empty() {
            out.insert(function.to_string(), events);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tekton_event_is_delivered_once_through_aws_and_every_failure_is_recovered() {
    let variables = hcl(&module().join("variables.tf"));
    let var = |n: &str| default(&variables, n);
    let name = var("name").as_str().unwrap().to_string();
    let moto = MotoServer::start();
    let rx = Receiver::start().await;

    // What the operator puts in SSM, and what `terraform apply` publishes
    // and creates.
    moto.ssm_parameter("/tekton-relay/ingress/token", INGRESS_TOKEN)
        .await;
    moto.ssm_parameter("/tekton-relay/webhook/token", WEBHOOK_TOKEN)
        .await;
    moto.ssm_parameter(&format!("/{name}/relay.yaml"), &config(&rx))
        .await;
    let table = format!("{name}-state");
    moto.dynamodb_table(&table).await;
    let dead_letters = moto.sqs_queue(&format!("{name}-dead-letters")).await;
    let bus = Bus::create(&moto, &name).await;
    let mut targets = BTreeMap::new();
    for row in relay::PROVIDERS {
        let pattern = event_pattern(&module(), row.name);
        let rule = format!("{name}-{}", row.name);
        targets.insert(row.name, bus.rule(&rule, &pattern.to_string()).await);
    }

    // The functions, with the environment the module gives them.
    let mut common = moto.process_env();
    common.push(("RELAY_CONFIG".into(), format!("ssm://{name}/relay.yaml")));
    let ingress_api = RuntimeApi::start().await;
    let mut env = ingress_api.env(&format!("{name}-ingress"));
    env.extend(common.clone());
    env.push(("RELAY_EVENT_BUS".into(), name.clone()));
    env.push((
        "RELAY_EVENT_SOURCE".into(),
        var("event_source").as_str().unwrap().into(),
    ));
    let ingress = FunctionProcess::start(Binary::function(BIN, "ingress"), "", &env);
    let webhook_api = RuntimeApi::start().await;
    let mut env = webhook_api.env(&format!("{name}-webhook"));
    env.extend(common.clone());
    env.push((
        "RELAY_STORE".into(),
        format!("dynamodb://{table}?region=us-east-1"),
    ));
    env.push(("RELAY_DEAD_LETTER".into(), format!("sqs://{dead_letters}")));
    let webhook = FunctionProcess::start(Binary::function(BIN, "webhook"), "", &env);
    let lambda = AsyncLambda {
        api: webhook_api,
        arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}-webhook"),
        retries: var("maximum_retry_attempts").as_u64().unwrap(),
        on_failure: Queue::at(&moto, &dead_letters),
    };

    // Tekton posts to the Function URL: refused without the token, put on
    // the bus with it, for the webhook function alone.
    let ev = RequestFile::load(
        &dir().join("tekton-pipelinerun-success/017-pipelinerun-successful.json"),
    );
    let id = ev.headers["Ce-Id"].clone();
    let r = ingress_api
        .invoke(function_url_event(&ev, &[]))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingress.stderr()));
    assert_eq!(r["statusCode"], 401, "{r}");
    assert!(
        routed(&targets).await.is_empty(),
        "a refused request puts nothing on the bus"
    );
    // Tekton sets no header: the token rides in its sink URL
    // (`https://tekton:<token>@<url id>.lambda-url.…`, docs/deploy-aws.md),
    // which Go's HTTP client sends as Basic credentials.
    let basic = {
        use base64::Engine;
        let userinfo = format!("tekton:{INGRESS_TOKEN}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(userinfo)
        )
    };
    let r = ingress_api
        .invoke(function_url_event(&ev, &[("authorization", &basic)]))
        .await
        .unwrap();
    assert_eq!(r["statusCode"], 200, "{r}\n{}", ingress.stderr());
    let mut on_bus = routed(&targets).await;
    assert_eq!(
        on_bus.keys().collect::<Vec<_>>(),
        ["webhook"],
        "only the function with a Notification for the event: {on_bus:#?}"
    );
    let event = on_bus.remove("webhook").unwrap().remove(0);
    assert_eq!(event["detail"]["id"], id.as_str());

    // The webhook function: `ok` delivered with the token from SSM,
    // `denied` dead-lettered, `flaky` failing every attempt.
    rx.always("/denied", Some((401, None)));
    rx.always("/flaky", Some((503, None)));
    let attempts = lambda.invoke(&event).await;
    assert_eq!(attempts.len() as u64, 1 + lambda.retries, "{attempts:#?}");
    for a in &attempts {
        let error = a.as_ref().unwrap_err();
        assert_eq!(error["errorType"], "RetryableDeliveryFailure", "{error}");
    }
    let ok = rx.accepted_on("/ok");
    assert_eq!(ok.len(), 1, "retried invocations post nothing twice");
    assert_eq!(
        ok[0].headers["authorization"],
        format!("Bearer {WEBHOOK_TOKEN}")
    );
    assert_eq!(rx.accepted_on("/flaky").len(), 0);

    // On the queue: the dead letter and the invocation record, one each.
    let env = moto.process_env();
    let (ok_, list, list_out) =
        relay_json(BIN, &["dlq", "list", "--sqs", &dead_letters], &env).await;
    assert!(ok_, "{list:#}");
    let mut kinds: Vec<(String, String)> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap().to_string(),
                m["event_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("dead-letter".to_string(), id.clone()),
            ("invocation-record".to_string(), id.clone())
        ],
        "{list:#}"
    );
    assert!(
        list["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["replayable"] == true)
    );

    // The endpoints answer again; replayed onto the bus, each failure runs
    // in its function again and every Notification has posted once.
    rx.always("/denied", None);
    rx.always("/flaky", None);
    let (ok_, summary, replay_out) = relay_json(
        BIN,
        &["dlq", "replay", "--sqs", &dead_letters, "--bus", &name],
        &env,
    )
    .await;
    assert!(ok_, "{summary:#}");
    assert_eq!(
        (&summary["replayed"], &summary["succeeded"]),
        (&json!(2), &json!(2)),
        "{summary:#}"
    );
    let mut on_bus = routed(&targets).await;
    assert_eq!(
        on_bus.keys().collect::<Vec<_>>(),
        ["webhook"],
        "{on_bus:#?}"
    );
    let replayed = on_bus.remove("webhook").unwrap();
    assert_eq!(replayed.len(), 2, "{replayed:#?}");
    for event in &replayed {
        let attempts = lambda.invoke(event).await;
        assert!(
            matches!(attempts.as_slice(), [Ok(_)]),
            "{attempts:#?}\n{}",
            webhook.stderr()
        );
    }
    for path in ["/ok", "/denied", "/flaky"] {
        assert_eq!(rx.accepted_for_event(path, &id), 1, "{path}");
    }
    let (_, left, _) = relay_json(BIN, &["dlq", "list", "--sqs", &dead_letters], &env).await;
    assert_eq!(left["total"], 0, "{left:#}");

    // No credential in anything the chain wrote.
    let written = [
        list_out,
        replay_out,
        serde_json::to_string(&replayed).unwrap(),
        ingress.stdout(),
        ingress.stderr(),
        webhook.stdout(),
        webhook.stderr(),
    ];
    for (i, text) in written.iter().enumerate() {
        for secret in [INGRESS_TOKEN, WEBHOOK_TOKEN] {
            assert!(!text.contains(secret), "a credential in output {i}");
        }
    }
}

/// The EventBridge fixture as another change of another run.
fn envelope(tag: &str) -> Value {
    let mut e = RequestFile::load(&dir().join("wrappers/aws-eventbridge-envelope.json")).body;
    e["detail"]["id"] = format!("costs-{tag}").into();
    e["detail"]["data"]["pipelineRun"]["metadata"]["uid"] = format!("uid-costs-{tag}").into();
    e
}

/// What a Notification costs in DynamoDB requests, counted at the server
/// (docs/deploy-aws.md, "Costs per event", gives these): delivering an
/// event, 5 (two claims, two completions, the run's final state); the same
/// event again, 1 (a refused claim, which returns the item that refused it);
/// another event of the same change, 3 (a claim, a refused one, and the
/// first completed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_requests_per_notification_are_those_the_guide_gives() {
    let moto = MotoServer::start();
    let rx = Receiver::start().await;
    let api = RuntimeApi::start().await;
    let mut env = api.env("tekton-relay-webhook");
    env.extend(moto.process_env());
    env.push(("RELAY_STORE".into(), moto.dynamodb_table("costs").await));
    let cfg = document("RelayConfig", "relay", "  delivery: {maxAttempts: 1}\n")
        + &provider(
            "hook",
            "webhook",
            &format!("{{url: \"{}\"}}", rx.url("/hook")),
        )
        + &notification("hook", "hook", "");
    let f = FunctionProcess::start(Binary::function(BIN, "webhook"), &cfg, &env);
    let count = || async { moto.dynamodb_requests().await.values().sum::<u64>() };
    let invoke = |event: Value| {
        let api = api.clone();
        async move {
            let r = api.invoke(event).await;
            r.unwrap_or_else(|e| panic!("{e}"))["outcome"].clone()
        }
    };
    // A first event: the function's start is not counted.
    assert_eq!(
        invoke(envelope("warm")).await,
        "delivered",
        "{}",
        f.stderr()
    );

    let mut costs = Vec::new();
    let first = envelope("one");
    let mut again = first.clone();
    again["detail"]["id"] = "costs-one-resent-with-a-new-id".into();
    for (event, outcome) in [
        (&first, "delivered"),
        (&first, "duplicate"),
        (&again, "duplicate"),
    ] {
        let before = count().await;
        assert_eq!(invoke(event.clone()).await, outcome);
        costs.push(count().await - before);
    }
    assert_eq!(costs, [5, 1, 3], "{:?}", moto.dynamodb_requests().await);
    assert_eq!(rx.accepted_on("/hook").len(), 2);
}
