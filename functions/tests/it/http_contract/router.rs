//! The router (`relay function router`, docs/design.md "Routing"): each
//! event answered with the same event marked for exactly the provider
//! functions that have a Notification wanting it, or with no event at all.

use relay_tests::fixtures::{RequestFile, dir, fresh_pipelinerun};
use relay_tests::function::{document, notification, provider};
use relay_tests::metrics::counter;
use relay_tests::router::RelayApp;
use serde_json::{Value, json};

use super::assert_error_body;

/// log: every event; webhook: failed PipelineRuns; github: PipelineRuns
/// (a git host: it declines Flux events, which name no repository).
fn config() -> String {
    document(
        "RelayConfig",
        "relay",
        "  store: memory\n  deadLetter: respond\n",
    ) + &provider("out", "log", "{}")
        + &notification("everything", "out", "")
        + &provider("hook", "webhook", "{url: \"http://hooks.example/x\"}")
        + &notification(
            "failures",
            "hook",
            "  filter: {kinds: [PipelineRun], states: [failed]}\n",
        )
        + &provider("gh", "github", "{tokenFile: /nonexistent/token}")
        + &notification(
            "status",
            "gh",
            "  action: status\n  filter: {kinds: [PipelineRun]}\n",
        )
}

struct Router {
    relay: RelayApp,
    router: axum::Router,
}

impl Router {
    async fn build(config: &str) -> Router {
        let relay = RelayApp::build(config, &relay::registry()).await;
        let router = relay::router::router(relay.app.clone());
        Router { relay, router }
    }

    async fn send(&self, f: &RequestFile) -> relay_tests::router::Answer {
        relay_tests::router::Call::event(f).send(&self.router).await
    }
}

/// The routing attributes of a reply: every `relay…` extension.
fn marks(reply: &Value) -> Vec<String> {
    let mut m: Vec<String> = reply
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| k.starts_with("relay") && *v == "true")
        .map(|(k, _)| k.clone())
        .collect();
    m.sort();
    m
}

#[tokio::test]
async fn an_event_is_marked_for_exactly_the_functions_that_want_it() {
    let r = Router::build(&config()).await;

    // A successful PipelineRun: log and github, not the failures' webhook.
    let ok = fresh_pipelinerun("routed-ok");
    let a = r.send(&ok).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.header("content-type"),
        Some("application/cloudevents+json")
    );
    assert_eq!(marks(&a.json), ["relaygithub", "relaylog", "relayrouted"]);
    // The same event otherwise: its attributes and data as sent.
    for (header, attr) in [
        ("Ce-Id", "id"),
        ("Ce-Source", "source"),
        ("Ce-Type", "type"),
    ] {
        assert_eq!(a.json[attr], ok.headers[header].as_str(), "{attr}");
    }
    assert_eq!(a.json["data"], ok.body, "the data travels unchanged");

    // A failed PipelineRun wakes the webhook too.
    let failed =
        RequestFile::load(&dir().join("tekton-pipelinerun-failure/012-pipelinerun-failed.json"));
    let a = r.send(&failed).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        marks(&a.json),
        ["relaygithub", "relaylog", "relayrouted", "relaywebhook"]
    );

    // A sender's own mark for a function that does not want the event is
    // dropped: only the router's marks steer.
    let mut marked = fresh_pipelinerun("routed-marked");
    marked
        .headers
        .insert("ce-relaywebhook".into(), "true".into());
    let a = r.send(&marked).await;
    assert_eq!(marks(&a.json), ["relaygithub", "relaylog", "relayrouted"]);

    // A TaskRun: log only (the others filter on PipelineRun).
    let task = RequestFile::load(
        &dir().join("tekton-pipelinerun-failure/011-taskrun-unit-tests-failed.json"),
    );
    let a = r.send(&task).await;
    assert_eq!(marks(&a.json), ["relaylog", "relayrouted"]);

    // A Flux event: the git host declines it, so only log.
    let flux = RequestFile::load(&dir().join("flux-events/003-flux-kustomization-apps-error.json"));
    let a = r.send(&flux).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(marks(&a.json), ["relaylog", "relayrouted"]);
    assert!(
        a.json["type"].as_str().unwrap().starts_with("io.fluxcd."),
        "{}",
        a.json
    );

    let m = r.relay.metrics().await;
    assert_eq!(counter(&m, "relay_events_routed_total{to=\"log\"}"), 5);
    assert_eq!(counter(&m, "relay_events_routed_total{to=\"github\"}"), 3);
    assert_eq!(counter(&m, "relay_events_routed_total{to=\"webhook\"}"), 1);
}

/// An event nobody wants, or of a type nobody decodes, is answered 202
/// with no event: the Broker delivers it to no function.
#[tokio::test]
async fn an_event_nobody_wants_wakes_no_function() {
    let cfg = document("RelayConfig", "relay", "  store: memory\n")
        + &provider("hook", "webhook", "{url: \"http://hooks.example/x\"}")
        + &notification("tasks", "hook", "  filter: {kinds: [TaskRun]}\n");
    let r = Router::build(&cfg).await;
    let a = r.send(&fresh_pipelinerun("unwanted")).await;
    assert_eq!((a.status, a.text.as_str()), (202, ""));
    assert!(a.header("ce-id").is_none() && a.header("content-type").is_none());
    let unknown = RequestFile::load(&dir().join("bad-input/004-unknown-type.json"));
    let a = r.send(&unknown).await;
    assert_eq!((a.status, a.text.as_str()), (202, ""));
    let m = r.relay.metrics().await;
    assert_eq!(counter(&m, "relay_events_routed_total{to=\"none\"}"), 2);
}

/// What is not an event is refused as the relay refuses it (400: the
/// Broker does not retry it, it dead-letters it).
#[tokio::test]
async fn a_malformed_event_is_refused_with_its_error() {
    let r = Router::build(&config()).await;
    let bad = RequestFile::load(&dir().join("bad-input/002-missing-ce-id.json"));
    let a = r.send(&bad).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_error_body(&a.json, a.code());
    assert_eq!(
        a.json,
        json!({"error": {"code": a.code(), "message": a.json["error"]["message"]}})
    );
}
