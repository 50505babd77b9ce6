//! Rate limits through a real `relay serve` process: a burst from one
//! source past `inboundPerSource` is answered 429 + Retry-After and never
//! delivered, other sources keep their own bucket; requests to one provider
//! host share its outbound bucket (they wait, counted), and a wait past the
//! delivery deadline is a retryable 503 that the sender's retry delivers.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use relay_tests::fixtures::{RequestFile, fresh_pipelinerun};
use relay_tests::metrics::sample;
use relay_tests::process::RelayProcess;
use relay_tests::receiver::Receiver;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_relay");

/// A distinct run's successful PipelineRun event (no idempotency overlap).
fn event(tag: &str) -> RequestFile {
    fresh_pipelinerun(&format!("rate-{tag}"))
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn post(client: &reqwest::Client, base: &str, f: &RequestFile, xff: Option<&str>) -> Answer {
    let mut req = client.post(format!("{base}/")).body(f.body_bytes());
    for (k, v) in f.send_headers() {
        req = req.header(k, v);
    }
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

/// A client whose connections come from `ip` (any 127/8 address is local).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn metrics(client: &reqwest::Client, base: &str) -> String {
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200, "metrics are not rate limited");
    r.text().await.unwrap()
}

fn config(limits: &str, delivery: &str, hooks: &[(&str, String)]) -> String {
    let mut cfg = format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  deadLetter: file://$DIR/dl.jsonl\n  limits: {limits}\n  delivery: {delivery}\n"
    );
    for (name, url) in hooks {
        cfg.push_str(&format!(
            "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: {name}}}\nspec:\n  type: webhook\n  webhook: {{url: \"{url}\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: {name}}}\nspec:\n  providerRef: {{name: {name}}}\n"
        ));
    }
    cfg
}

#[tokio::test]
async fn a_burst_past_the_inbound_limit_is_refused_per_source() {
    let rx = Receiver::start().await;
    // A rate too slow to refill during the test: the burst is all there is.
    let cfg = config(
        "{inboundPerSource: {ratePerSecond: 0.001, burst: 3}}",
        "{}",
        &[("hook", rx.url("/hook"))],
    );
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let a = client_from("127.0.0.1");
    let mut statuses = Vec::new();
    for i in 0..5 {
        // Untrusted, the header is no way around the limit.
        let xff = format!("198.51.100.{i}");
        let ans = post(&a, &relay.base, &event(&format!("a{i}")), Some(&xff)).await;
        statuses.push(ans.status);
        if ans.status == 429 {
            assert!(ans.retry_after.is_some_and(|s| s >= 1), "Retry-After");
            assert_eq!(ans.body["error"]["code"], "rate_limited", "{}", ans.body);
        } else {
            assert_eq!(ans.body["outcome"], "delivered", "{}", ans.body);
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(
        rx.accepted_on("/hook").len(),
        3,
        "refused events are not delivered"
    );

    // Another source has its own bucket.
    let b = client_from("127.0.0.2");
    for i in 0..3 {
        let ans = post(&b, &relay.base, &event(&format!("b{i}")), None).await;
        assert_eq!(ans.status, 200, "{}", ans.body);
    }
    assert_eq!(post(&b, &relay.base, &event("b3"), None).await.status, 429);
    assert_eq!(rx.accepted_on("/hook").len(), 6);

    // Health and metrics stay reachable from an exhausted source.
    let h = a
        .get(format!("{}/healthz", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let m = metrics(&a, &relay.base).await;
    assert_eq!(
        sample(
            &m,
            "relay_rate_limited_total{direction=\"inbound\",key=\"source\"}"
        ),
        3,
        "{m}"
    );
}

/// Behind trusted proxies (the test's client, 127.0.0.1, and 10/8) the
/// source is the first hop from the right that no trusted proxy added.
#[tokio::test]
async fn behind_trusted_proxies_the_forwarded_client_is_the_source() {
    let rx = Receiver::start().await;
    let cfg = config(
        "{inboundPerSource: {ratePerSecond: 0.001, burst: 1, trustedProxies: [127.0.0.1, 10.0.0.0/8]}}",
        "{}",
        &[("hook", rx.url("/hook"))],
    );
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let c = reqwest::Client::new();
    let first = Some("203.0.113.7, 10.0.0.1");
    assert_eq!(post(&c, &relay.base, &event("x1"), first).await.status, 200);
    let again = post(&c, &relay.base, &event("x2"), Some("203.0.113.7")).await;
    assert_eq!(again.status, 429, "{}", again.body);
    // Same peer, another forwarded client: its own bucket.
    let other = Some("203.0.113.8, 10.0.0.1");
    assert_eq!(post(&c, &relay.base, &event("x3"), other).await.status, 200);
    assert_eq!(rx.accepted_on("/hook").len(), 2);
}

/// The attack: a sender behind the proxy writes a new `X-Forwarded-For`
/// hop of its own on each request (the proxy appends the address it saw to
/// the right), hoping for a fresh bucket each time. It does not get one;
/// another sender behind the same proxy still has its own.
#[tokio::test]
async fn spoofed_forwarded_hops_do_not_buy_a_fresh_bucket() {
    let rx = Receiver::start().await;
    let cfg = config(
        "{inboundPerSource: {ratePerSecond: 0.001, burst: 2, trustedProxies: [127.0.0.1]}}",
        "{}",
        &[("hook", rx.url("/hook"))],
    );
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let proxy = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..5 {
        // What the sender wrote, then what the proxy appended.
        let xff = format!("198.51.100.{i}, 203.0.113.7");
        statuses.push(
            post(&proxy, &relay.base, &event(&format!("s{i}")), Some(&xff))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    let other = post(&proxy, &relay.base, &event("t0"), Some("203.0.113.8")).await;
    assert_eq!(
        other.status, 200,
        "another sender, its own bucket: {}",
        other.body
    );
    assert_eq!(rx.accepted_on("/hook").len(), 3);
}

/// The former `trustForwardedFor: true` keyed on the first hop, the
/// sender's to write: a config with it is refused with what to write now.
#[tokio::test]
async fn the_first_hop_setting_is_refused_with_its_replacement() {
    let cfg = config(
        "{inboundPerSource: {ratePerSecond: 1, trustForwardedFor: true}}",
        "{}",
        &[("hook", "http://127.0.0.1:9/".into())],
    );
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("relay.yaml");
    std::fs::write(&path, cfg.replace("$DIR", &d.path().display().to_string())).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("spec.limits.inboundPerSource: trustForwardedFor is no longer supported")
            && text.contains("trustedProxies"),
        "{text}"
    );
}

#[tokio::test]
async fn requests_to_one_host_share_its_bucket_and_wait_for_tokens() {
    let rx = Receiver::start().await;
    let cfg = config(
        "{outbound: {hosts: {\"127.0.0.1\": {ratePerSecond: 1, burst: 1}}}}",
        "{}",
        &[("hook-a", rx.url("/a")), ("hook-b", rx.url("/b"))],
    );
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let c = reqwest::Client::new();
    // Two events at once, two Notifications each: four requests to one
    // host whose bucket holds one token. The first goes at once; every
    // other reserves the next slot and waits for it.
    let (e1, e2) = (event("o1"), event("o2"));
    let (r1, r2) = tokio::join!(
        post(&c, &relay.base, &e1, None),
        post(&c, &relay.base, &e2, None)
    );
    for r in [&r1, &r2] {
        assert_eq!(r.status, 200, "{}", r.body);
        let outcomes: Vec<&str> = r.body["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, ["delivered", "delivered"], "{}", r.body);
    }
    assert_eq!(rx.accepted_on("/a").len(), 2);
    assert_eq!(rx.accepted_on("/b").len(), 2);
    let m = metrics(&c, &relay.base).await;
    assert_eq!(
        sample(&m, "relay_rate_limit_waits_total{key=\"127.0.0.1\"}"),
        3,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "relay_rate_limited_total{direction=\"outbound\",key=\"127.0.0.1\"}"
        ),
        0
    );
}

#[tokio::test]
async fn a_wait_past_the_deadline_is_retryable_and_the_retry_delivers() {
    let rx = Receiver::start().await;
    // One token, the next two seconds away; deliveries may take one second.
    let cfg = config(
        "{outbound: {hosts: {\"127.0.0.1\": {ratePerSecond: 0.5, burst: 1}}}}",
        "{deadlineSeconds: 1}",
        &[("hook", rx.url("/hook"))],
    );
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let c = reqwest::Client::new();
    let first = post(&c, &relay.base, &event("d1"), None).await;
    assert_eq!(first.status, 200, "{}", first.body);

    let second = event("d2");
    let refused = post(&c, &relay.base, &second, None).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    let delivery = &refused.body["deliveries"][0];
    assert_eq!(delivery["outcome"], "failed", "{}", refused.body);
    let detail = delivery["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("outbound rate limit of 127.0.0.1") && detail.contains("deadline"),
        "{detail}"
    );
    let wait = refused.retry_after.expect("Retry-After");
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(rx.accepted_on("/hook").len(), 1, "nothing sent for it");
    let m = metrics(&c, &relay.base).await;
    assert_eq!(
        sample(
            &m,
            "relay_rate_limited_total{direction=\"outbound\",key=\"127.0.0.1\"}"
        ),
        1,
        "{m}"
    );

    // The sender (a Broker, say) retries after the Retry-After it was given:
    // by then a token is there, and the claim released by the failure lets
    // the same event through.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let retried = post(&c, &relay.base, &second, None).await;
    assert_eq!(retried.status, 200, "{}", retried.body);
    assert_eq!(retried.body["outcome"], "delivered", "{}", retried.body);
    assert_eq!(rx.accepted_on("/hook").len(), 2);
}
