//! The Grafana function against a mock Grafana (a real HTTP server): one
//! annotation per finished PipelineRun (method, path, bearer token, org
//! header, times, tags, text), the Notification's template, escaping of
//! user-controlled names, a 429 retried, a 403 dead-lettered without the
//! token, and config errors reported with their paths.

use relay_tests::fixtures::{RequestFile, Scenario};
use relay_tests::function::{
    Function, Secrets, config, document, example, fixture, provider, refused, validate,
};
use relay_tests::receiver::Receiver;
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "grafana");
const TOKEN: &str = "glsa_5ecretServiceAccountToken_0123abcd";
const ANNOTATIONS: &str = "/grafana/api/annotations";
const RUN_URL: &str = "https://tekton.acme.dev/#/namespaces/ci/pipelineruns/build-and-test-vjcdr";

/// A function whose Provider points at the mock under `/grafana`, with one
/// Notification (`spec` lines).
async fn start(grafana: &Receiver, spec: &str) -> Function {
    let secrets = Secrets::new();
    let token = secrets.line("token", TOKEN);
    let settings = format!(
        "baseURL: \"{}\"\ntokenFile: {token}\norgId: 3\ntags: [\"env:prod\"]",
        grafana.url("/grafana/")
    );
    let cfg = config("grafana", "grafana", &settings, &[("annotations", spec)]);
    Function::start(BIN, &cfg, secrets, &[]).await
}

fn succeeded() -> RequestFile {
    fixture("tekton-pipelinerun-success/017-pipelinerun-successful.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_pipeline_run_is_one_tagged_region() {
    let grafana = Receiver::start().await;
    let relay = start(
        &grafana,
        "  params: {dashboardUID: ci-overview, panelId: 4, tags: [\"team:payments\"]}",
    )
    .await;
    let sc = Scenario::load(&relay_tests::fixtures::dir().join("tekton-pipelinerun-success"));
    let mut outcomes = Vec::new();
    for f in &sc.files {
        let d = relay.delivery(f).await;
        outcomes.push((d["outcome"].clone(), d["detail"].clone()));
    }
    assert_eq!(
        outcomes[0],
        (
            json!("filtered"),
            json!("grafana annotates finished runs; this one is started")
        )
    );
    assert_eq!(
        outcomes[5],
        (
            json!("filtered"),
            json!(
                "a task of PipelineRun build-and-test-vjcdr: its PipelineRun's annotation covers it"
            )
        ),
        "the fetch-source TaskRun succeeded"
    );
    assert_eq!(outcomes.last().unwrap().0, "delivered");

    let sent = grafana.requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let r = &sent[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", ANNOTATIONS));
    assert_eq!(r.headers["authorization"], format!("Bearer {TOKEN}"));
    assert_eq!(r.headers["x-grafana-org-id"], "3");
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["accept"], "application/json");
    let b = r.json();
    // startTime 10:54:13Z to completionTime 10:57:33Z on 2024-05-14.
    assert_eq!(b["time"], 1715684053000i64);
    assert_eq!(b["timeEnd"], 1715684253000i64);
    assert_eq!(b["dashboardUID"], "ci-overview");
    assert_eq!(b["panelId"], 4);
    assert_eq!(
        b["tags"],
        json!([
            "tekton",
            "pipeline:build-and-test",
            "namespace:ci",
            "state:succeeded",
            "repo:acme/widgets",
            "env:prod",
            "team:payments"
        ])
    );
    let text = b["text"].as_str().unwrap();
    assert_eq!(
        text,
        format!(
            "✅ <b>PipelineRun build-and-test-vjcdr succeeded</b><br>Pipeline: build-and-test<br>\
             Namespace: ci<br>Repository: acme/widgets<br>Branch: main<br>Pull request: #47<br>\
             Commit: 0c5c7fd<br>Duration: 3m 20s<br>\
             Tasks Completed: 3 (Failed: 0, Cancelled 0), Skipped: 0<br>\
             <a href=\"{RUN_URL}\">Open the run</a>"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notification_template_is_the_text() {
    let grafana = Receiver::start().await;
    let relay = start(
        &grafana,
        "  template: |\n    Deployed {{ event.scm.sha[:7] }} <b>{{ event.state }}</b>\n    from {{ event.scm.branch }}",
    )
    .await;
    let d = relay.delivery(&succeeded()).await;
    assert_eq!(d["outcome"], "delivered", "{d}");
    let sent = grafana.requests_on(ANNOTATIONS);
    assert_eq!(sent.len(), 1);
    let b = sent[0].json();
    // The user's text, shown as written.
    assert_eq!(
        b["text"],
        "Deployed 0c5c7fd &lt;b&gt;succeeded&lt;/b&gt;<br>from main"
    );
    assert!(b.get("dashboardUID").is_none() && b.get("panelId").is_none());
}

/// The run name and condition message of this event carry HTML, markdown,
/// links and chat mentions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_controlled_names_cannot_inject_markup_or_mentions() {
    let grafana = Receiver::start().await;
    let relay = start(&grafana, "").await;
    let d = relay
        .delivery(&fixture("bad-input/008-markup-injection.json"))
        .await;
    assert_eq!(d["outcome"], "delivered", "{d}");
    let sent = grafana.requests_on(ANNOTATIONS);
    assert_eq!(sent.len(), 1);
    let b = sent[0].json();
    let text = b["text"].as_str().unwrap();
    for bad in [
        "<script",
        "</script>",
        "<!here>",
        "@channel",
        "href=\"https://evil",
    ] {
        assert!(!text.contains(bad), "{bad} in {text}");
    }
    // Our own markup only: one headline, one link, line breaks.
    assert_eq!(text.matches('<').count(), text.matches("<br>").count() + 4);
    assert!(
        text.starts_with(
            "❌ <b>PipelineRun &lt;script&gt;alert(1)&lt;/script&gt;*bold* failed</b><br>"
        ),
        "{text}"
    );
    assert!(
        text.contains("<br>@\u{2060}channel &lt;!here&gt; tests failed, see [logs](https://evil.example.com/phish) `rm -rf /` _now_<br>"),
        "{text}"
    );
    assert!(
        text.ends_with(
            "<a href=\"https://tekton.acme.dev/#/namespaces/ci/pipelineruns/%3Cscript%3Ealert%281%29%3C/script%3E%2Abold%2A\">Open the run</a>"
        ),
        "{text}"
    );
    assert_eq!(b["tags"][3], "state:failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_retried_after_the_wait_it_names() {
    let grafana = Receiver::start().await;
    grafana.script(ANNOTATIONS, &[(429, Some(0)), (503, Some(0))]);
    let relay = start(&grafana, "").await;
    let d = relay.delivery(&succeeded()).await;
    assert_eq!(d["outcome"], "delivered", "{d}");
    let statuses: Vec<u16> = grafana
        .requests_on(ANNOTATIONS)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 503, 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_is_dead_lettered_without_the_token() {
    let grafana = Receiver::start().await;
    grafana.reply(
        "POST",
        ANNOTATIONS,
        403,
        json!({"accessErrorId": "ACE0123", "message": "You'll need additional permissions to perform this action. Permissions needed: annotations:create"}),
    );
    let relay = start(&grafana, "").await;
    let d = relay.delivery(&succeeded()).await;
    assert_eq!(d["outcome"], "dead_lettered", "{d}");
    let sent = grafana.requests_on(ANNOTATIONS);
    assert_eq!(sent.len(), 1, "a 403 is not retried");
    assert_eq!(sent[0].headers["authorization"], format!("Bearer {TOKEN}"));
    let dead = relay.dead_letter_text();
    let entry: Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(entry["provider_type"], "grafana");
    assert_eq!(entry["cause"]["kind"], "permanent");
    assert_eq!(entry["cause"]["status"], 403);
    assert!(dead.contains("annotations:create"), "{dead}");
    relay.assert_secrets_absent(&[TOKEN], &d);
}

/// The binary refuses a bad config at start, naming every error's path.
#[test]
fn config_errors_are_reported_with_their_paths() {
    let cfg = document("RelayConfig", "relay", "  {}")
        + &provider(
            "grafana",
            "grafana",
            "baseURL: https://grafana.example.com/api/annotations\ntokenFile: /var/run/secrets/relay/grafana/token\ntags: [ci, \"\"]",
        );
    let stderr = refused(BIN, &cfg);
    for want in [
        "Provider/grafana: spec.grafana.tags[1]: must not be empty",
        "Provider/grafana: spec.grafana.baseURL: expected Grafana's root URL",
    ] {
        assert!(stderr.contains(want), "{want} not in {stderr}");
    }
}

#[test]
fn the_example_validates_and_a_panel_needs_its_dashboard() {
    let example = example("grafana");
    let registry = relay_core::provider::Registry::new()
        .with(relay::grafana::GrafanaFactory)
        .serving_only(relay::grafana::TYPE);
    let check = |text: &str| validate(text, &registry);
    check(&example).unwrap();
    let broken = example.replace("dashboardUID: ci-overview, ", "");
    assert_ne!(broken, example);
    let err = check(&broken).unwrap_err();
    assert!(
        err.contains("Notification/deploy-markers: spec.params.panelId: needs params.dashboardUID"),
        "{err}"
    );
}
