//! The ingress function end to end: on Lambda (a real Runtime API server,
//! Function URL events) onto EventBridge on moto, and on Knative (HTTP) to
//! K_SINK; inbound auth refuses what it must.

use relay_tests::bus::Bus;
use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::lambda_api::{RuntimeApi, function_url_event};
use relay_tests::process::{FunctionProcess, free_port};
use relay_tests::receiver::Receiver;
use relay_tests::servers::MotoServer;
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "ingress");
const HMAC_SECRET: &str = "ingress-hmac-secret-0123456789abcdef";
const FLUX_TOKEN: &str = "flux-token-0123456789abcdefghijklmn";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn config(auth: &str) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  inboundAuth: {auth}\n"
    )
}

/// Notifications: every PipelineRun and Flux Kustomization to the log
/// function, failures to the webhook's; a TaskRun that starts, nobody's.
const ROUTES: &str = "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: out}\nspec: {type: log}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {name: runs}\nspec: {providerRef: {name: out}, filter: {kinds: [PipelineRun, Kustomization]}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: hook}\nspec: {type: webhook, webhook: {url: \"http://hooks.example/x\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {name: failures}\nspec: {providerRef: {name: hook}, filter: {states: [failed]}}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_events_reach_eventbridge_intact_or_trimmed() {
    let moto = MotoServer::start();
    // What goes on the bus.
    let tap = Bus::create(&moto, "relay")
        .await
        .rule("tap", r#"{"source": ["tekton.relay"]}"#)
        .await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(
        secrets.path().join("token"),
        "ingress-token-0123456789abcdefghijk",
    )
    .unwrap();
    let api = RuntimeApi::start().await;
    let mut env = api.env("relay-ingress");
    env.extend(moto.process_env());
    env.push(("RELAY_EVENT_BUS".into(), "relay".into()));
    // The functions' Notifications: the ingress marks each event for the
    // functions whose filters could want it (their rules match the mark).
    let cfg = config(&format!(
        "{{bearerTokenFile: {}}}",
        secrets.path().join("token").display()
    )) + ROUTES;
    let function = FunctionProcess::start(BIN, &cfg, &env);

    let ev = RequestFile::load(
        &dir().join("tekton-pipelinerun-success/017-pipelinerun-successful.json"),
    );
    // An event no Notification wants is not put on the bus.
    let unwanted = RequestFile::load(
        &dir().join("tekton-pipelinerun-success/003-taskrun-fetch-source-started.json"),
    );
    let r = api
        .invoke(function_url_event(
            &unwanted,
            &[(
                "authorization",
                "Bearer ingress-token-0123456789abcdefghijk",
            )],
        ))
        .await
        .unwrap();
    assert_eq!(r["statusCode"], 200, "{r}");
    assert_eq!(
        serde_json::from_str::<Value>(r["body"].as_str().unwrap()).unwrap(),
        json!({"outcome": "unrouted"})
    );
    let r = api
        .invoke(function_url_event(&ev, &[]))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", function.stderr()));
    assert_eq!(r["statusCode"], 401, "{r}");
    let r = api
        .invoke(function_url_event(
            &ev,
            &[(
                "authorization",
                "Bearer ingress-token-0123456789abcdefghijk",
            )],
        ))
        .await
        .unwrap();
    assert_eq!(r["statusCode"], 200, "{r}\n{}", function.stderr());

    // A large event (bulky managedFields) is trimmed to fit and says so.
    let mut big = ev.clone();
    big.headers.insert("Ce-Id".into(), "big-one".into());
    big.body["pipelineRun"]["metadata"]["managedFields"] =
        json!([{"fieldsV1": "m".repeat(300_000)}]);
    let r = api
        .invoke(function_url_event(
            &big,
            &[(
                "authorization",
                "Bearer ingress-token-0123456789abcdefghijk",
            )],
        ))
        .await
        .unwrap();
    assert_eq!(r["statusCode"], 200, "{r}");

    // A Flux event goes on the bus as the CloudEvent it is wrapped in, with
    // the trace context it was sent with in the tracing extension.
    let flux = RequestFile::load(&dir().join("flux-events/003-flux-kustomization-apps-error.json"));
    let r = api
        .invoke(function_url_event(
            &flux,
            &[
                (
                    "authorization",
                    "Bearer ingress-token-0123456789abcdefghijk",
                ),
                ("traceparent", TRACEPARENT),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(r["statusCode"], 200, "{r}");

    let bodies = tap.take_all().await;
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let flux_entry = bodies
        .iter()
        .find(|b| b["detail-type"] == "io.fluxcd.notification.error")
        .unwrap_or_else(|| panic!("no Flux event on the bus: {bodies:?}"));
    assert_eq!(flux_entry["detail"]["traceparent"], TRACEPARENT);
    let ce = relay_core::decode::wrappers::from_eventbridge(flux_entry).unwrap();
    let relay_core::decode::Decoded::Run(run) = relay_core::decode::decode_cloudevent(&ce).unwrap()
    else {
        panic!("not a run")
    };
    assert_eq!(
        (run.kind.as_str(), run.name.as_str(), run.state.as_str()),
        ("Kustomization", "apps", "failed")
    );
    let first = bodies
        .iter()
        .find(|b| b["detail"]["id"] == ev.headers["Ce-Id"].as_str())
        .unwrap();
    assert_eq!(
        first["detail-type"],
        "dev.tekton.event.pipelinerun.successful.v1"
    );
    assert_eq!(first["source"], "tekton.relay");
    // Marked for the log function (its rule's pattern), not the webhook.
    assert_eq!(first["detail"]["relaylog"], "true");
    assert_eq!(first["detail"]["relayrouted"], "true");
    assert!(first["detail"].get("relaywebhook").is_none(), "{first}");
    assert_eq!(flux_entry["detail"]["relaywebhook"], "true", "a failure");
    // The envelope is what the provider functions decode.
    let ce = relay_core::decode::wrappers::from_eventbridge(first).unwrap();
    let relay_core::decode::Decoded::Run(run) = relay_core::decode::decode_cloudevent(&ce).unwrap()
    else {
        panic!("not a run")
    };
    assert_eq!(
        (run.name.as_str(), run.state.as_str()),
        ("build-and-test-vjcdr", "succeeded")
    );
    let trimmed = bodies
        .iter()
        .find(|b| b["detail"]["id"] == "big-one")
        .unwrap();
    assert_eq!(trimmed["detail"]["relaytrimmed"], "managedFields");
    assert!(
        first["detail"].get("traceparent").is_none(),
        "none was sent"
    );

    // Each request's metrics went out as EMF lines: one refused, three accepted.
    let emf: Vec<Value> = function
        .stdout()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|d| d.get("_aws").is_some())
        .collect();
    let sum = |metric: &str| -> f64 {
        emf.iter()
            .filter_map(|d| d.get(metric).and_then(Value::as_f64))
            .sum()
    };
    assert_eq!(sum("relay_events_received_total"), 4.0, "{emf:#?}");
    assert_eq!(sum("relay_requests_rejected_total"), 1.0, "{emf:#?}");
    assert!(emf.iter().all(|d| d["function"] == "relay-ingress"));
    assert!(
        trimmed["detail"]["data"]["pipelineRun"]["metadata"]
            .get("managedFields")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_knative_events_go_to_k_sink_unchanged() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("hmac"), HMAC_SECRET).unwrap();
    let port = free_port();
    let env = vec![
        ("K_SINK".to_string(), rx.url("/broker")),
        ("PORT".to_string(), port.to_string()),
    ];
    let cfg = config(&format!(
        "{{hmacSecretFile: {}}}",
        secrets.path().join("hmac").display()
    ));
    let _function = FunctionProcess::start(BIN, &cfg, &env);
    let base = format!("http://127.0.0.1:{port}/");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.get(format!("{base}healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "ingress did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ev =
        RequestFile::load(&dir().join("tekton-pipelinerun-success/001-pipelinerun-started.json"));
    let body = ev.body_bytes();
    let send = |sig: String| {
        let mut req = client
            .post(&base)
            .body(body.clone())
            .header("x-relay-signature-256", sig);
        for (k, v) in ev.send_headers() {
            req = req.header(k, v);
        }
        req.send()
    };
    assert_eq!(send("sha256=00".into()).await.unwrap().status(), 401);
    assert!(rx.requests().is_empty());
    let signed = ev.hmac_signed(HMAC_SECRET.as_bytes(), "/");
    let mut req = client.post(&base).body(body.clone());
    for (k, v) in signed.send_headers() {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    let got = &rx.accepted_on("/broker")[0];
    assert_eq!(got.body.as_ref(), body.as_slice(), "body unchanged");
    assert_eq!(got.headers["ce-id"], ev.headers["Ce-Id"].as_str());
    assert_eq!(
        got.headers["ce-type"],
        "dev.tekton.event.pipelinerun.started.v1"
    );
}

/// The trace context a sender puts in the `traceparent` header travels on in
/// the event (the tracing extension); the hop to the Broker is the ingress's
/// own span, a child of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_knative_the_trace_context_travels_with_the_event() {
    let rx = Receiver::start().await;
    let env = vec![("K_SINK".to_string(), rx.url("/broker"))];
    let cfg = "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {name: relay}\nspec: {}\n";
    let (_function, base) = FunctionProcess::start_http(BIN, cfg, &env).await;
    let client = reqwest::Client::new();
    let ev =
        RequestFile::load(&dir().join("tekton-pipelinerun-success/001-pipelinerun-started.json"));
    let send = |extra: &[(&str, &str)]| {
        let mut req = client.post(&base).body(ev.body_bytes());
        for (k, v) in ev.send_headers().chain(extra.iter().copied()) {
            req = req.header(k, v);
        }
        req.send()
    };
    let (trace, parent) = (&TRACEPARENT[3..35], &TRACEPARENT[36..52]);

    // Header only: the event gains the extension, so it goes on structured.
    assert_eq!(
        send(&[("traceparent", TRACEPARENT)])
            .await
            .unwrap()
            .status(),
        200
    );
    let got = &rx.accepted_on("/broker")[0];
    assert_eq!(got.headers["content-type"], "application/cloudevents+json");
    let event = got.json();
    assert_eq!(event["traceparent"], TRACEPARENT);
    assert_eq!(event["id"], ev.headers["Ce-Id"].as_str());
    let hop = got.headers["traceparent"].to_str().unwrap();
    assert!(hop.contains(trace) && !hop.contains(parent), "{hop}");

    // Already in the event: forwarded as received, extension untouched.
    rx.clear();
    let origin = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
    let sent = send(&[("ce-traceparent", origin)]).await.unwrap();
    assert_eq!(sent.status(), 200);
    let got = &rx.accepted_on("/broker")[0];
    assert_eq!(
        got.body.as_ref(),
        ev.body_bytes().as_slice(),
        "body unchanged"
    );
    assert_eq!(got.headers["ce-traceparent"], origin);
    let hop = got.headers["traceparent"].to_str().unwrap();
    assert!(
        hop.contains(trace) && !hop.contains("1111111111111111"),
        "{hop}"
    );
}

/// Flux's generic-hmac provider signs with `X-Signature`; the ingress checks
/// it with its own secret (not the CloudEvents one), and forwards the event
/// to the Broker as a structured CloudEvent that decodes to the Flux object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_events_are_signature_checked_and_forwarded_as_cloudevents() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("hmac"), HMAC_SECRET).unwrap();
    std::fs::write(secrets.path().join("flux"), format!("{FLUX_TOKEN}\n")).unwrap();
    let port = free_port();
    let env = vec![
        ("K_SINK".to_string(), rx.url("/broker")),
        ("PORT".to_string(), port.to_string()),
    ];
    let cfg = config(&format!(
        "{{hmacSecretFile: {}, fluxHmacSecretFile: {}}}",
        secrets.path().join("hmac").display(),
        secrets.path().join("flux").display()
    ));
    let function = FunctionProcess::start(BIN, &cfg, &env);
    let base = format!("http://127.0.0.1:{port}/");
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.get(format!("{base}healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "ingress did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ev = RequestFile::load(&dir().join("flux-events/001-flux-gitrepository-widgets-info.json"));
    let body = ev.body_bytes();
    let send = |sig: Option<String>| {
        let mut req = client.post(&base).body(body.clone());
        for (k, v) in ev.send_headers() {
            req = req.header(k, v);
        }
        if let Some(sig) = sig {
            req = req.header("X-Signature", sig);
        }
        req.send()
    };
    assert_eq!(send(None).await.unwrap().status(), 401);
    // Signed with the CloudEvents secret instead of Flux's: refused.
    let wrong = relay_webhook_signature(HMAC_SECRET.as_bytes(), &body);
    assert_eq!(send(Some(wrong)).await.unwrap().status(), 401);
    assert!(rx.requests().is_empty());
    let sig = relay_webhook_signature(FLUX_TOKEN.as_bytes(), &body);
    let r = send(Some(sig)).await.unwrap();
    assert_eq!(r.status(), 200, "{}", function.stderr());

    let got = &rx.accepted_on("/broker")[0];
    assert_eq!(got.headers["content-type"], "application/cloudevents+json");
    let structured: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(structured["type"], "io.fluxcd.notification.info");
    assert_eq!(
        structured["source"],
        "/flux/GitRepository/flux-system/widgets"
    );
    assert_eq!(
        structured["data"], ev.body,
        "the Flux payload rides as data"
    );
    let ce = relay_core::decode::wrappers::structured(structured).unwrap();
    let relay_core::decode::Decoded::Run(run) = relay_core::decode::decode_cloudevent(&ce).unwrap()
    else {
        panic!("not a run")
    };
    assert_eq!(run.format, relay_core::model::EventFormat::Flux);
    assert_eq!(
        run.scm.sha.as_deref(),
        Some("247aabb58d323d9e0d3be8ee03cc2f9b21460c5a")
    );
    assert_eq!(run.scm.branch.as_deref(), Some("main"));
}

fn relay_webhook_signature(secret: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
