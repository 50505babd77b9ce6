//! End to end through a real `relay serve` process: retries, dead letters and
//! replay, partial failures, secrets, metrics, the CLI. (`respond`, a
//! provider's Retry-After passed back and JWT inbound auth are pinned
//! in-process in `http_contract/relay.rs`.)

use std::path::Path;
use tokio::process::Command;

use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::process::{RelayProcess, send};
use relay_tests::receiver::Receiver;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_relay");

/// A fresh successful-PipelineRun event: new CloudEvent id and run uid.
fn fresh_event() -> RequestFile {
    let mut f = RequestFile::load(
        &dir().join("tekton-pipelinerun-success/017-pipelinerun-successful.json"),
    );
    let id = uuid();
    f.headers.insert("Ce-Id".into(), id.clone());
    f.body["pipelineRun"]["metadata"]["uid"] = Value::String(uuid());
    f
}

fn uuid() -> String {
    // Unique enough for tests without another dependency.
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:x}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn ce_id(f: &RequestFile) -> String {
    f.headers["Ce-Id"].clone()
}

fn head(spec: &str) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n{spec}\n"
    )
}

fn webhook(name: &str, settings: &str) -> String {
    format!(
        "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: {name}}}\nspec:\n  type: webhook\n  webhook: {settings}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: {name}}}\nspec:\n  providerRef: {{name: {name}}}\n"
    )
}

const FAST: &str = "  deadLetter: file://$DIR/dead-letters.jsonl\n  delivery: {initialBackoffMs: 10, maxBackoffMs: 40, maxAttempts: 3}";

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// The dead-letter API's own credential (`spec.apiAuth`, without which the
/// API is off): a bearer token in a file of `dir`.
struct Admin {
    token_file: std::path::PathBuf,
}

const ADMIN_TOKEN: &str = "relay-admin-token-for-the-api-0123456789";

impl Admin {
    fn new(dir: &Path) -> Admin {
        let token_file = dir.join("api-token");
        std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
        Admin { token_file }
    }

    /// The `spec.apiAuth` line of a RelayConfig.
    fn spec(&self) -> String {
        format!(
            "\n  apiAuth: {{bearerTokenFile: {}}}",
            self.token_file.display()
        )
    }

    async fn get(&self, url: &str) -> Value {
        self.request(reqwest::Method::GET, url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn text(&self, url: &str) -> String {
        let r = self
            .request(reqwest::Method::GET, url)
            .send()
            .await
            .unwrap();
        r.text().await.unwrap()
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, url)
            .bearer_auth(ADMIN_TOKEN)
    }
}

#[tokio::test]
async fn receiver_answering_500_then_200_gets_exactly_one_delivery() {
    let rx = Receiver::start().await;
    rx.script("/flaky", &[(500, None)]);
    let cfg = head(FAST) + &webhook("flaky", &format!("{{url: \"{}\"}}", rx.url("/flaky")));
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();
    let ev = fresh_event();
    let (status, body) = send(&client, &relay.base, &ev).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    assert_eq!(rx.requests_on("/flaky").len(), 2, "one 500, one 200");
    let (status, body) = send(&client, &relay.base, &ev).await;
    assert_eq!((status, body["outcome"].as_str()), (200, Some("duplicate")));
    assert_eq!(rx.accepted_on("/flaky").len(), 1);
    let metrics = reqwest::get(format!("{}/metrics", relay.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"relay_provider_requests_total{provider="flaky",result="retryable"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"relay_deliveries_total{notification="flaky",outcome="duplicate"} 1"#)
    );
}

#[tokio::test]
async fn permanent_failure_is_dead_lettered_and_replayed_exactly_once() {
    let rx = Receiver::start().await;
    rx.always("/auth", Some((401, None)));
    let secrets = tempfile::tempdir().unwrap();
    let admin = Admin::new(secrets.path());
    let cfg = head(&format!("{FAST}{}", admin.spec()))
        + &webhook("auth", &format!("{{url: \"{}\"}}", rx.url("/auth")));
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();
    let get = |url: String| {
        let admin = &admin;
        async move { admin.get(&url).await }
    };

    // 401: dead letter, not retried.
    let a = fresh_event();
    let (status, body) = send(&client, &relay.base, &a).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("dead_lettered")),
        "{body}"
    );
    assert_eq!(
        rx.requests_on("/auth").len(),
        1,
        "permanent failures are not retried"
    );
    let dlq = get(format!("{}/api/v1/dlq", relay.base)).await;
    assert_eq!(dlq["total"], 1);
    let entry = &dlq["entries"][0];
    assert_eq!(entry["notification"], "auth");
    assert_eq!(entry["provider_type"], "webhook");
    assert_eq!(entry["cause"]["kind"], "permanent");
    assert_eq!(entry["cause"]["status"], 401);
    assert_eq!(entry["replays"], 0);
    assert_eq!(entry["event"]["id"], ce_id(&a).as_str());
    assert_eq!(entry["event"]["specversion"], "1.0");
    assert!(entry["event"]["data"]["pipelineRun"].is_object());

    // The CLI lists it.
    let out = Command::new(BIN)
        .args(["dlq", "list", "--url", &relay.base, "--token-file"])
        .arg(&admin.token_file)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&ce_id(&a)));

    // Replay while still broken: kept, replays + 1.
    let r: Value = client
        .post(format!("{}/api/v1/dlq/replay", relay.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({"replayed": 1, "succeeded": 0, "failed": 1}));
    assert_eq!(
        get(format!("{}/api/v1/dlq", relay.base)).await["entries"][0]["replays"],
        1
    );

    // Fixed: the CLI replay delivers once and empties the queue.
    rx.always("/auth", None);
    let out = Command::new(BIN)
        .args(["dlq", "replay", "--url", &relay.base, "--token-file"])
        .arg(&admin.token_file)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary,
        json!({"replayed": 1, "succeeded": 1, "failed": 0}),
        "{}",
        relay.stderr()
    );
    assert_eq!(rx.accepted_on("/auth").len(), 1);
    assert_eq!(get(format!("{}/api/v1/dlq", relay.base)).await["total"], 0);

    // A dead-lettered event the sender sends again (its retry) is settled:
    // neither attempted nor dead-lettered twice; its replay delivers it once.
    rx.always("/auth", Some((403, None)));
    let b = fresh_event();
    assert_eq!(
        send(&client, &relay.base, &b).await.1["outcome"],
        "dead_lettered"
    );
    rx.always("/auth", None);
    let attempts = rx.requests_on("/auth").len();
    assert_eq!(
        send(&client, &relay.base, &b).await.1["outcome"],
        "duplicate"
    );
    assert_eq!(rx.requests_on("/auth").len(), attempts);
    assert_eq!(get(format!("{}/api/v1/dlq", relay.base)).await["total"], 1);
    let r: Value = client
        .post(format!("{}/api/v1/dlq/replay", relay.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"ids": [get(format!("{}/api/v1/dlq", relay.base)).await["entries"][0]["id"]]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({"replayed": 1, "succeeded": 1, "failed": 0}));
    let delivered_b = rx
        .accepted_on("/auth")
        .iter()
        .filter(|r| r.json()["event_id"] == ce_id(&b).as_str())
        .count();
    assert_eq!(delivered_b, 1);
    assert_eq!(get(format!("{}/api/v1/dlq", relay.base)).await["total"], 0);

    // DELETE removes one entry.
    rx.always("/auth", Some((404, None)));
    send(&client, &relay.base, &fresh_event()).await;
    let id = get(format!("{}/api/v1/dlq", relay.base)).await["entries"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let del = client
        .delete(format!("{}/api/v1/dlq/{id}", relay.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    let del = client
        .delete(format!("{}/api/v1/dlq/{id}", relay.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 404);

    let metrics = admin.text(&format!("{}/metrics", relay.base)).await;
    assert!(
        metrics.contains(r#"relay_dead_letters_total{notification="auth"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"relay_dead_letter_replays_total{result="failed"} 1"#));
}

#[tokio::test]
async fn sender_retry_reruns_only_the_notification_that_failed() {
    let rx = Receiver::start().await;
    rx.always("/down", Some((503, None)));
    let cfg = head(FAST)
        + &webhook("ok", &format!("{{url: \"{}\"}}", rx.url("/ok")))
        + &webhook("down", &format!("{{url: \"{}\"}}", rx.url("/down")));
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();
    let ev = fresh_event();
    let resp = client
        .post(&relay.base)
        .headers(headers(&ev))
        .body(ev.body_bytes())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let body: Value = resp.json().await.unwrap();
    let outcome = |b: &Value, n: &str| {
        b["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["notification"] == n)
            .unwrap()["outcome"]
            .clone()
    };
    assert_eq!(outcome(&body, "ok"), "delivered");
    assert_eq!(outcome(&body, "down"), "failed");
    assert_eq!(rx.requests_on("/down").len(), 3, "maxAttempts");

    rx.always("/down", None);
    let (status, body) = send(&client, &relay.base, &ev).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(outcome(&body, "ok"), "duplicate");
    assert_eq!(outcome(&body, "down"), "delivered");
    assert_eq!(rx.accepted_on("/ok").len(), 1);
    assert_eq!(rx.accepted_on("/down").len(), 1);
}

fn headers(f: &RequestFile) -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    for (k, v) in f.send_headers() {
        h.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    h
}

#[tokio::test]
async fn secrets_are_used_but_never_logged_or_dead_lettered() {
    let rx = Receiver::start().await;
    rx.always("/signed", Some((401, None)));
    let secrets = tempfile::tempdir().unwrap();
    let token = "tok-SECRET-e2e-7f3a";
    let hmac = "hmac-SECRET-e2e-91b2";
    let url = format!("{}?key=url-SECRET-e2e-77", rx.url("/signed"));
    std::fs::write(secrets.path().join("token"), format!("{token}\n")).unwrap();
    std::fs::write(secrets.path().join("hmac"), hmac).unwrap();
    std::fs::write(secrets.path().join("url"), &url).unwrap();
    let settings = format!(
        "{{urlFile: {}, tokenFile: {}, hmacSecretFile: {}}}",
        secrets.path().join("url").display(),
        secrets.path().join("token").display(),
        secrets.path().join("hmac").display()
    );
    let admin = Admin::new(secrets.path());
    let cfg = head(&format!("{FAST}{}", admin.spec())) + &webhook("signed", &settings);
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();
    let (_, first) = send(&client, &relay.base, &fresh_event()).await;
    assert_eq!(first["outcome"], "dead_lettered");
    rx.always("/signed", Some((503, None)));
    let (_, second) = send(&client, &relay.base, &fresh_event()).await;
    assert_eq!(second["outcome"], "failed");

    // The secrets were used...
    let req = &rx.requests_on("/signed")[0];
    assert_eq!(
        req.headers["authorization"],
        format!("Bearer {token}").as_str()
    );
    let sig = relay::webhook::signature(hmac.as_bytes(), &req.body);
    assert_eq!(req.headers["x-relay-signature-256"], sig.as_str());

    // ...and appear nowhere else.
    let dlq = admin.text(&format!("{}/api/v1/dlq", relay.base)).await;
    let metrics = admin.text(&format!("{}/metrics", relay.base)).await;
    let dead_letters = std::fs::read_to_string(relay.path("dead-letters.jsonl")).unwrap();
    assert!(dead_letters.contains("401"));
    for (what, text) in [
        ("stdout", relay.stdout()),
        ("stderr", relay.stderr()),
        ("dead-letter file", dead_letters),
        ("dlq api", dlq),
        ("metrics", metrics),
        ("answers", format!("{first} {second}")),
    ] {
        assert!(
            !text.contains("SECRET"),
            "a secret leaked into {what}: {text}"
        );
    }
}

#[tokio::test]
async fn embedded_default_logs_every_event_and_sigterm_exits_cleanly() {
    let mut relay = RelayProcess::start_default(Path::new(BIN)).await;
    let client = reqwest::Client::new();
    let ev = fresh_event();
    let (status, body) = send(&client, &relay.base, &ev).await;
    assert_eq!(
        (status, body["deliveries"][0]["notification"].as_str()),
        (200, Some("log-everything"))
    );
    let ready = get(&format!("{}/readyz", relay.base)).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"]["backend"], "memory");
    let status = relay.terminate();
    assert!(status.success(), "{status:?}");
    let out = relay.stdout();
    assert!(
        out.contains("[log-everything] PipelineRun ci/build-and-test-vjcdr succeeded (Succeeded)"),
        "{out}"
    );
    assert!(
        relay.path("relay-data").is_dir(),
        "file dead letters under ./relay-data/"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_one_change_deliver_once() {
    let rx = Receiver::start().await;
    let cfg = head(FAST) + &webhook("once", &format!("{{url: \"{}\"}}", rx.url("/once")));
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();
    let ev = fresh_event();
    // The same change under 16 different CloudEvent ids, all at once, twice over.
    let sends = (0..32).map(|i| {
        let (client, base) = (client.clone(), relay.base.clone());
        let mut copy = ev.clone();
        copy.headers
            .insert("Ce-Id".into(), format!("{}-{}", ce_id(&ev), i % 16));
        async move { send(&client, &base, &copy).await }
    });
    let answers = futures::future::join_all(sends).await;
    for (status, body) in &answers {
        let outcome = body["outcome"].as_str().unwrap();
        assert!(
            (*status == 200 && matches!(outcome, "delivered" | "duplicate"))
                || (*status == 503 && outcome == "failed"),
            "{status} {body}"
        );
    }
    assert_eq!(
        answers
            .iter()
            .filter(|(_, b)| b["outcome"] == "delivered")
            .count(),
        1
    );
    assert_eq!(rx.accepted_on("/once").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_events_finish() {
    let rx = Receiver::start().await;
    rx.slow("/slow", std::time::Duration::from_millis(800));
    let cfg = head(FAST) + &webhook("slow", &format!("{{url: \"{}\"}}", rx.url("/slow")));
    let mut relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();
    let ev = fresh_event();
    let base = relay.base.clone();
    let in_flight = tokio::spawn(async move { send(&client, &base, &ev).await });
    // SIGTERM once the delivery is under way (the receiver has the request).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rx.requests_on("/slow").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let status = tokio::task::spawn_blocking(move || {
        let s = relay.terminate();
        (s, relay)
    })
    .await
    .unwrap();
    let (exit, relay) = status;
    let (code, body) = in_flight.await.unwrap();
    assert_eq!(
        (code, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    assert!(exit.success(), "{exit:?}");
    assert!(relay.stderr().contains("draining in-flight events"));
    // It stopped accepting: nothing answers any more.
    assert!(
        reqwest::Client::new()
            .get(format!("{}/healthz", relay.base))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_auth_guards_events_and_the_dead_letter_api() {
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "relay-inbound-token-0123456789abcdef\n").unwrap();
    // The dead-letter API has its own credential (spec.apiAuth).
    let admin = Admin::new(secrets.path());
    let cfg = head(&format!(
        "{FAST}\n  inboundAuth: {{bearerTokenFile: {}}}{}",
        token.display(),
        admin.spec()
    )) + &webhook("hook", &format!("{{url: \"{}\"}}", rx.url("/hook")));
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();
    let ev = fresh_event();
    let (status, body) = send(&client, &relay.base, &ev).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert!(rx.requests().is_empty());
    let mut signed = ev.clone();
    signed.headers.insert(
        "Authorization".into(),
        "Bearer relay-inbound-token-0123456789abcdef".into(),
    );
    assert_eq!(send(&client, &relay.base, &signed).await.0, 200);
    let r = client
        .get(format!("{}/api/v1/dlq", relay.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the dead-letter API is never open when auth is configured"
    );
    let out = Command::new(BIN)
        .args(["dlq", "list", "--url", &relay.base, "--token-file"])
        .arg(&admin.token_file)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(BIN)
        .args(["dlq", "list", "--url", &relay.base])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let metrics = admin.text(&format!("{}/metrics", relay.base)).await;
    assert!(
        metrics.contains(r#"relay_requests_rejected_total{code="unauthorized"} 3"#),
        "{metrics}"
    );
}

/// Issue #13 item 4 against the real binary. An HMAC signature covers the
/// CloudEvent attributes (binary-mode `ce-*` headers), the method, the path
/// and a timestamp, and is accepted once: a signed "failed" event re-sent
/// with its signature as a "successful" one with a new id is refused, so is
/// the same request sent again, and a dead-letter API signature opens
/// nothing but the one call it was made for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_signatures_bind_event_attributes_route_and_moment() {
    const SECRET: &[u8] = b"relay-hmac-secret-0123456789abcdef";
    // The dead-letter API's own secret (spec.apiAuth).
    const API_SECRET: &[u8] = b"relay-api-hmac-secret-0123456789ab";
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let key = secrets.path().join("hmac");
    std::fs::write(&key, SECRET).unwrap();
    let api_key = secrets.path().join("api-hmac");
    std::fs::write(&api_key, API_SECRET).unwrap();
    let cfg = head(&format!(
        "{FAST}\n  inboundAuth: {{hmacSecretFile: {}}}\n  apiAuth: {{hmacSecretFile: {}}}",
        key.display(),
        api_key.display()
    )) + &webhook("hook", &format!("{{url: \"{}\"}}", rx.url("/hook")));
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let client = reqwest::Client::new();

    let mut failed =
        RequestFile::load(&dir().join("tekton-pipelinerun-failure/012-pipelinerun-failed.json"));
    failed.headers.insert("Ce-Id".into(), uuid());
    failed.body["pipelineRun"]["metadata"]["uid"] = Value::String(uuid());
    let (status, body) = send(&client, &relay.base, &failed).await;
    assert_eq!(status, 401, "unsigned: {body}");
    let signed = failed.hmac_signed(SECRET, "/");
    let (status, body) = send(&client, &relay.base, &signed).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    assert_eq!(rx.accepted_on("/hook")[0].json()["state"], "failed");

    // The attack: same body and signature, re-typed, with a new id.
    let mut retyped = signed.clone();
    retyped.headers.insert(
        "Ce-Type".into(),
        "dev.tekton.event.pipelinerun.successful.v1".into(),
    );
    retyped.headers.insert("Ce-Id".into(), uuid());
    let (status, body) = send(&client, &relay.base, &retyped).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    // The request exactly as signed, again: a replay.
    let (status, body) = send(&client, &relay.base, &signed).await;
    assert_eq!(status, 401, "replayed: {body}");
    assert_eq!(rx.accepted_on("/hook").len(), 1, "only the signed event");

    // The dead-letter API: a signature made for one call opens no other.
    let api = |method: reqwest::Method, path: &str, signed_for: (&str, &str)| {
        let mut h = reqwest::header::HeaderMap::new();
        let now = chrono::Utc::now().timestamp();
        relay_core::auth::sign_hmac(API_SECRET, now, signed_for.0, signed_for.1, &mut h, b"");
        client
            .request(method, format!("{}{path}", relay.base))
            .headers(h)
            .send()
    };
    let list = ("GET", "/api/v1/dlq?limit=5");
    for (method, path) in [
        (reqwest::Method::DELETE, "/api/v1/dlq/some-id"),
        (reqwest::Method::POST, "/api/v1/dlq/replay"),
        (reqwest::Method::GET, "/api/v1/dlq?limit=500"),
    ] {
        let r = api(method.clone(), path, list).await.unwrap();
        assert_eq!(r.status(), 401, "{method} {path} with a list signature");
    }
    let r = api(reqwest::Method::GET, "/api/v1/dlq?limit=5", list)
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the call it was signed for");
    // The CLI signs its calls with the API's secret file.
    let out = std::process::Command::new(BIN)
        .args(["dlq", "list", "--url", &relay.base, "--hmac-secret-file"])
        .arg(&api_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"total\""));
    let metrics = api(reqwest::Method::GET, "/metrics", ("GET", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"relay_requests_rejected_total{code="unauthorized"} 6"#),
        "{metrics}"
    );
}
