//! The Knative dead-letter function end to end on each store (file, Valkey,
//! DynamoDB on moto): a dead-lettered delivery is kept with its decoded
//! knativeerror* attributes, listed, replayed to the subscriber that failed
//! (kept with `replays` + 1 while it still fails), and deleted. Then the
//! attacks of issue #13 on it: unauthenticated dead letters, replay steered
//! to any URL (SSRF) or through a redirect, a metric label per destination,
//! a flood, oversized entries, and evictions counted where nobody sees them.
//! (Those answered by the router alone, with no process to watch, run
//! in-process in `http_contract/dlq.rs`: unauthenticated dead letters, the
//! API off without its credential, the flood, oversized entries, evictions.)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use relay_tests::fixtures::{RequestFile, knative_dead_letter};
use relay_tests::metrics::{counter, scrape};
use relay_tests::process::{FunctionProcess, free_port, send};
use relay_tests::receiver::Receiver;
use relay_tests::servers::{MotoServer, ValkeyServer};
use serde_json::{Value, json};

use relay_tests::process::Binary;
const BIN: Binary = Binary::function(env!("CARGO_BIN_EXE_relay"), "dlq");
/// The fixture's `Traceparent` header, as the Broker sends it.
const TRACEPARENT: &str = "00-0f4f2ff285030e2c59c266fba0cdb9f9-ab56532565378055-01";
/// The Broker's credential (`spec.inboundAuth`) and the operator's
/// (`spec.apiAuth`): different, each good for its own door only.
const EVENTS_TOKEN: &str = "broker-token-0123456789abcdef0123456789";
const API_TOKEN: &str = "operator-token-fedcba9876543210fedcba98";

/// Secret files for the config, in a folder that outlives the process.
struct Secrets {
    dir: tempfile::TempDir,
}

impl Secrets {
    fn new() -> Secrets {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("events"), EVENTS_TOKEN).unwrap();
        std::fs::write(dir.path().join("api"), API_TOKEN).unwrap();
        Secrets { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A RelayConfig with both credentials and `extra` lines of spec.
    fn config(&self, extra: &str) -> String {
        format!(
            "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  inboundAuth: {{bearerTokenFile: {}}}\n  apiAuth: {{bearerTokenFile: {}}}\n{extra}",
            self.path("events").display(),
            self.path("api").display()
        )
    }
}

/// A client that carries the dead-letter API's credential.
fn api_client() -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        "authorization",
        format!("Bearer {API_TOKEN}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .unwrap()
}

/// The Broker's dead-letter delivery of the fixture, to `dest`, with the
/// Broker's credential.
fn dead_letter(dest: &str) -> RequestFile {
    knative_dead_letter(dest, EVENTS_TOKEN)
}

/// Waits until the function answers `/healthz`.
async fn wait_up(base: &str, function: &FunctionProcess) {
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
}

async fn run(store: &str, mut env: Vec<(String, String)>) {
    let subscriber = Receiver::start().await;
    let secrets = Secrets::new();
    let port = free_port();
    env.push(("PORT".into(), port.to_string()));
    env.push(("RELAY_DLQ_STORE".into(), store.to_string()));
    env.push((
        "RELAY_DLQ_SUBSCRIBERS".into(),
        format!("webhook={}", subscriber.url("/relay-webhook")),
    ));
    let function = FunctionProcess::start(BIN, &secrets.config(""), &env);
    let base = format!("http://127.0.0.1:{port}");
    let client = api_client();
    wait_up(&base, &function).await;

    // The Broker's dead-letter delivery, pointed at our subscriber.
    let f = dead_letter(&subscriber.url("/relay-webhook"));
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
    // The subscriber checks the same inbound credential as the Broker's.
    assert_eq!(
        got[0].headers["authorization"],
        format!("Bearer {EVENTS_TOKEN}").as_str()
    );
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

// ---- The attacks of issue #13, on a file store. ----

/// Starts the function on a file store (`dl.jsonl` in its folder) with the
/// config `config` and extra environment.
async fn start(config: &str, env: &[(&str, &str)]) -> (FunctionProcess, String) {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("RELAY_DLQ_STORE".into(), "file://dl.jsonl".into()));
    FunctionProcess::start_http(BIN, config, &env).await
}

async fn post(base: &str, f: &RequestFile) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/"))
        .body(f.body_bytes());
    for (k, v) in f.send_headers() {
        req = req.header(k, v);
    }
    req.send().await.unwrap()
}

async fn list(base: &str) -> Value {
    let r = api_client()
        .get(format!("{base}/api/v1/dlq"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn replay(base: &str) -> Value {
    let r = api_client()
        .post(format!("{base}/api/v1/dlq/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Runs the binary to its exit (it must not start): status and stderr.
fn refused_start(config: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("relay.yaml"), config).unwrap();
    let mut child = BIN
        .command()
        .env("RELAY_CONFIG", d.path().join("relay.yaml"))
        .env("PORT", free_port().to_string())
        .env("RELAY_DLQ_STORE", "file://dl.jsonl")
        .env_remove("RELAY_INSECURE_NO_AUTH")
        .envs(env.iter().copied())
        .current_dir(d.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(d.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the dlq started without inbound auth");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        std::fs::read_to_string(d.path().join("stderr.log")).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_inbound_auth_the_function_does_not_start_unless_told_it_is_insecure() {
    let open = "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {name: relay}\nspec: {}\n";
    let (status, stderr) = refused_start(open, &[]);
    assert!(!status.success());
    assert!(stderr.contains("spec.inboundAuth is not set"), "{stderr}");
    assert!(stderr.contains("RELAY_INSECURE_NO_AUTH=true"), "{stderr}");
    // A value that is not `true` is refused, not guessed (as for every binary).
    let (status, stderr) = refused_start(open, &[("RELAY_INSECURE_NO_AUTH", "1")]);
    assert!(!status.success());
    assert!(
        stderr.contains("RELAY_INSECURE_NO_AUTH must be true or false"),
        "{stderr}"
    );
    // Told so explicitly: it starts, says so loudly, and takes anyone's
    // dead letters (the API stays off: it has no credential).
    let (function, base) = start(open, &[("RELAY_INSECURE_NO_AUTH", "true")]).await;
    let stderr = function.stderr();
    assert!(
        stderr.contains("INSECURE") && stderr.contains("WARN"),
        "{stderr}"
    );
    let mut f = dead_letter("http://relay-github.tekton-relay.svc.cluster.local");
    f.headers.remove("authorization");
    assert_eq!(post(&base, &f).await.status(), 202);
    assert_eq!(
        api_client()
            .get(format!("{base}/api/v1/dlq"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// Issue #13: replay POSTed to whatever `knativeerrordest` said, so one
/// dead letter made the function request cloud metadata or any cluster
/// service. The dead letters are kept, but only configured subscribers are
/// ever contacted, at their configured URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_for_a_foreign_destination_is_kept_but_replay_never_contacts_it() {
    let secrets = Secrets::new();
    let subscriber = Receiver::start().await;
    let attacker = Receiver::start().await;
    let subscribers = format!("webhook={}", subscriber.url("/relay-webhook"));
    let (function, base) = start(
        &secrets.config(""),
        &[("RELAY_DLQ_SUBSCRIBERS", &subscribers)],
    )
    .await;
    let foreign = [
        attacker.url("/latest/meta-data/iam/security-credentials/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://kubernetes.default.svc.cluster.local/api/v1/secrets".to_string(),
        // The subscriber's host and port, another path.
        subscriber.url("/admin"),
    ];
    for dest in &foreign {
        let r = post(&base, &dead_letter(dest)).await;
        assert_eq!(r.status(), 202, "kept: never lose a dead letter");
    }
    let entries = list(&base).await;
    assert_eq!(entries["total"], 4, "{entries}");
    for (e, dest) in entries["entries"].as_array().unwrap().iter().zip(&foreign) {
        assert_eq!(e["provider"], dest.as_str());
        assert_eq!(e["provider_type"], "unknown");
        assert_eq!(e["unknown_destination"], true);
    }

    let r = replay(&base).await;
    assert_eq!(r["replayed"], 4, "{r}");
    assert_eq!(r["succeeded"], 0);
    assert_eq!(r["failed"], 4);
    let refused = r["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 4);
    for x in refused {
        assert_eq!(x["code"], "unknown_destination", "{x}");
        assert!(
            x["message"]
                .as_str()
                .unwrap()
                .contains("not a configured subscriber")
        );
    }
    assert!(attacker.requests().is_empty(), "the attacker was contacted");
    assert!(
        subscriber.requests().is_empty(),
        "{:?}",
        subscriber.requests()
    );
    // Still there, untouched.
    let after = list(&base).await;
    assert_eq!(after["total"], 4);
    assert!(
        after["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["replays"] == 0)
    );
    assert!(
        scrape(&base)
            .await
            .contains(r#"relay_dead_letter_replays_total{result="refused"} 4"#),
        "{}",
        function.stderr()
    );
}

/// A server that answers every request with `307` to `to`, counting them.
async fn redirector(to: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let to = to.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, to)],
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/relay-github"), hits)
}

/// Issue #13: the replay client followed redirects, so whatever answered
/// for a subscriber could send the event (and its credential) on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_redirect_is_not_followed() {
    let secrets = Secrets::new();
    let elsewhere = Receiver::start().await;
    let (subscriber, hits) = redirector(elsewhere.url("/stolen")).await;
    let subscribers = format!("github={subscriber}");
    let (_function, base) = start(
        &secrets.config(""),
        &[("RELAY_DLQ_SUBSCRIBERS", &subscribers)],
    )
    .await;
    assert_eq!(post(&base, &dead_letter(&subscriber)).await.status(), 202);
    let r = replay(&base).await;
    assert_eq!(r, json!({"replayed": 1, "succeeded": 0, "failed": 1}));
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "tried once"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect was followed: {:?}",
        elsewhere.requests()
    );
    // A failed replay: kept, replays + 1.
    let after = list(&base).await;
    assert_eq!(after["total"], 1);
    assert_eq!(after["entries"][0]["replays"], 1);
}

/// Issue #13: each distinct destination became a metric label, so a
/// sender could grow `/metrics` without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_keep_a_fixed_label_set_whatever_the_destinations() {
    let secrets = Secrets::new();
    let subscriber = Receiver::start().await;
    let subscribers = format!("webhook={}", subscriber.url("/relay-webhook"));
    let (_function, base) = start(
        &secrets.config(""),
        &[("RELAY_DLQ_SUBSCRIBERS", &subscribers)],
    )
    .await;
    assert_eq!(
        post(&base, &dead_letter(&subscriber.url("/relay-webhook")))
            .await
            .status(),
        202
    );
    for i in 0..25 {
        let dest = format!("http://label-{i}.attacker.example/");
        assert_eq!(post(&base, &dead_letter(&dest)).await.status(), 202);
    }
    let scrape = scrape(&base).await;
    let series: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("relay_dead_letters_total{"))
        .collect();
    assert_eq!(
        series,
        [
            r#"relay_dead_letters_total{notification="unknown"} 25"#,
            r#"relay_dead_letters_total{notification="webhook"} 1"#,
        ]
    );
    assert!(!scrape.contains("attacker"), "{scrape}");
}

/// The dead letters keep the event and the cause, never the sender's
/// credentials or signatures, and the log has neither token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_the_dead_letters() {
    let secrets = Secrets::new();
    let (function, base) = start(&secrets.config(""), &[]).await;
    let mut f = dead_letter("http://relay-github.tekton-relay.svc.cluster.local");
    let signature = "sha256=5d5b09f6dcb2d53a5fffc60c4ac0d55fabdf556069d6631545f42aa6e3500f2e";
    f.headers
        .insert("X-Relay-Signature-256".into(), signature.into());
    f.headers.insert("X-Signature".into(), signature.into());
    f.headers
        .insert("X-Relay-Timestamp".into(), "1715820536".into());
    assert_eq!(post(&base, &f).await.status(), 202);
    let listed = list(&base).await.to_string();
    let stored = std::fs::read_to_string(function.dir.path().join("dl.jsonl")).unwrap();
    for (what, text) in [
        ("listing", &listed),
        ("file", &stored),
        ("log", &function.stderr()),
    ] {
        for secret in [EVENTS_TOKEN, API_TOKEN, signature] {
            assert!(!text.contains(secret), "{secret} in the {what}: {text}");
        }
        assert!(
            !text.to_ascii_lowercase().contains("bearer"),
            "{what}: {text}"
        );
    }
}

/// A store that cannot write answers 503 + Retry-After (the Broker
/// retries; the retry is kept) without telling the sender the store's own
/// error, which names its files or hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_is_retryable_and_does_not_echo_the_store_error() {
    let secrets = Secrets::new();
    let (function, base) = start(&secrets.config(""), &[]).await;
    // The queue's file cannot be opened: a directory stands in its place.
    let blocker = function.dir.path().join("dl.jsonl");
    std::fs::create_dir(&blocker).unwrap();
    let f = dead_letter("http://relay-github.tekton-relay.svc.cluster.local");
    let r = post(&base, &f).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "dead_letter_store");
    let text = body.to_string();
    assert!(
        !text.contains("os error") && !text.contains(&function.dir.path().display().to_string()),
        "{text}"
    );
    assert!(function.stderr().contains("os error"), "logged instead");
    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(post(&base, &f).await.status(), 202);
    assert_eq!(list(&base).await["total"], 1);
    assert_eq!(
        counter(&scrape(&base).await, "relay_dead_letter_errors_total"),
        1
    );
}

/// With HMAC inbound auth the subscribers check signatures, so a replay
/// must be signed as a sender would sign it: a subscriber that verifies
/// with the relay's own check (`relay_core::auth::verify`) accepts it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_signed_when_inbound_auth_is_hmac() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const HMAC_SECRET: &str = "broker-hmac-secret-0123456789abcdef0123";
    let secrets = Secrets::new();
    std::fs::write(secrets.path("hmac"), HMAC_SECRET).unwrap();
    let config = format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  inboundAuth: {{hmacSecretFile: {}}}\n  apiAuth: {{bearerTokenFile: {}}}\n",
        secrets.path("hmac").display(),
        secrets.path("api").display()
    );
    let auth: relay_core::auth::InboundAuth = serde_json::from_value(json!({
        "hmacSecretFile": secrets.path("hmac"),
    }))
    .unwrap();
    // The subscriber: 200 for a request that passes the relay's own check.
    let (accepted, refused) = (
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
    );
    let (ok, bad) = (accepted.clone(), refused.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (auth, ok, bad) = (auth.clone(), ok.clone(), bad.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let entry = relay_core::auth::Entry::Events;
            match relay_core::auth::verify(
                &auth,
                entry,
                &parts.method,
                &parts.uri,
                &parts.headers,
                &body,
            )
            .await
            {
                Ok(()) => {
                    ok.fetch_add(1, Ordering::SeqCst);
                    axum::http::StatusCode::OK
                }
                Err(_) => {
                    bad.fetch_add(1, Ordering::SeqCst);
                    axum::http::StatusCode::UNAUTHORIZED
                }
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let subscriber = format!("http://{addr}/relay-github?from=dlq");
    let subscribers = format!("github={subscriber}");
    let (function, base) = start(&config, &[("RELAY_DLQ_SUBSCRIBERS", &subscribers)]).await;
    // The Broker's delivery, signed for this function.
    let mut f = dead_letter(&subscriber);
    f.headers.remove("authorization");
    let f = f.hmac_signed(HMAC_SECRET.as_bytes(), "/");
    assert_eq!(post(&base, &f).await.status(), 202, "{}", function.stderr());
    let r = replay(&base).await;
    assert_eq!(
        r,
        json!({"replayed": 1, "succeeded": 1, "failed": 0}),
        "{}",
        function.stderr()
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(refused.load(Ordering::SeqCst), 0);
    assert_eq!(list(&base).await["total"], 0);
}
