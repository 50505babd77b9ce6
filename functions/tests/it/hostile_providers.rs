//! Hostile answers and hostile event text through a real `relay serve`
//! process: a provider (or token endpoint) asking for a wait past what a
//! clock holds, redirecting a request with its credentials elsewhere, or
//! answering without end; and a run name built to add keys to a JSON body.
//! Each is answered normally, and the relay keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use relay_tests::fixtures::{RequestFile, fresh_pipelinerun};
use relay_tests::process::{RelayProcess, send};
use relay_tests::receiver::Receiver;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BIN: &str = env!("CARGO_BIN_EXE_relay");
const MIB: u64 = 1024 * 1024;

fn event(tag: &str) -> RequestFile {
    fresh_pipelinerun(&format!("hostile-provider-{tag}"))
}

fn config(providers: &str) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  deadLetter: file://$DIR/dead-letters.jsonl\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 40, maxAttempts: 3, deadlineSeconds: 10}}\n{providers}"
    )
}

fn webhook(name: &str, settings: &str, notification: &str) -> String {
    format!(
        "---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: {name}}}\nspec:\n  type: webhook\n  webhook: {settings}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: {name}}}\nspec:\n  providerRef: {{name: {name}}}\n{notification}\n"
    )
}

fn dead_letters(relay: &RelayProcess) -> Vec<Value> {
    std::fs::read_to_string(relay.path("dead-letters.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn still_serving(relay: &RelayProcess) {
    let r = reqwest::get(format!("{}/healthz", relay.base)).await;
    assert!(
        r.is_ok_and(|r| r.status() == 200),
        "stderr:\n{}",
        relay.stderr()
    );
}

/// Posts `f` and returns the status, the `Retry-After` header and the body;
/// a dropped connection (a panic in the relay) fails the test here.
async fn post(relay: &RelayProcess, f: &RequestFile) -> (u16, Option<u64>, Value) {
    let method = reqwest::Method::from_bytes(f.method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new()
        .request(method, &relay.base)
        .body(f.body_bytes());
    for (k, v) in f.send_headers() {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer ({e}); stderr:\n{}", relay.stderr()));
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn retry_after_past_the_clock_is_answered_not_a_panic() {
    let rx = Receiver::start().await;
    let huge = [u64::MAX, 1 << 63];
    rx.script("/max", &[(503, Some(huge[0]))]);
    rx.script("/half", &[(429, Some(huge[1]))]);
    let cfg = config(
        &(webhook("max", &format!("{{url: \"{}\"}}", rx.url("/max")), "")
            + &webhook("half", &format!("{{url: \"{}\"}}", rx.url("/half")), "")),
    );
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let (status, retry_after, body) = post(&relay, &event("retry-after")).await;
    // Both asked for more than the deadline: not waited for, the sender is
    // told to retry, in at most an hour.
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["outcome"], "failed", "{body}");
    let retry_after = retry_after.expect("a Retry-After");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(rx.requests_on("/max").len(), 1);
    assert_eq!(rx.requests_on("/half").len(), 1);
    // The sender's retry is delivered (each provider now answers 200).
    let (status, _, body) = post(&relay, &event("retry-after")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "delivered", "{body}");
    still_serving(&relay).await;
}

#[tokio::test]
async fn oauth2_expires_in_past_the_clock_is_cached_not_a_panic() {
    let rx = Receiver::start().await;
    rx.reply(
        "POST",
        "/token",
        200,
        json!({"access_token": "tok-huge-lifetime", "token_type": "Bearer",
               "expires_in": u64::MAX}),
    );
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("client-secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let settings = format!(
        "{{url: \"{}\", oauth2: {{tokenURL: \"{}\", clientId: relay, clientSecretFile: \"{}\"}}}}",
        rx.url("/hook"),
        rx.url("/token"),
        secret.display()
    );
    let relay = RelayProcess::start(Path::new(BIN), &config(&webhook("hook", &settings, ""))).await;
    for tag in ["oauth-1", "oauth-2"] {
        let (status, _, body) = post(&relay, &event(tag)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["outcome"], "delivered", "{body}");
    }
    // One token, used for both deliveries.
    assert_eq!(rx.requests_on("/token").len(), 1);
    let hooks = rx.requests_on("/hook");
    assert_eq!(hooks.len(), 2);
    assert!(
        hooks
            .iter()
            .all(|r| r.headers["authorization"] == "Bearer tok-huge-lifetime")
    );
    still_serving(&relay).await;
}

/// A provider that answers every request with `head` and then `body_len`
/// bytes (in 64 KiB writes), counting the bytes it managed to write; each
/// connection's count is sent when its writing ends.
struct Answering {
    url: String,
    written: tokio::sync::mpsc::UnboundedReceiver<u64>,
}

async fn answering(head: String, body_len: u64) -> Answering {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, written) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let head = head.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                // The request: its head, then as much body as it says.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let text = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < end + len {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let counted = Arc::new(AtomicU64::new(0));
                if conn.write_all(head.as_bytes()).await.is_ok() {
                    let block = vec![b'x'; 64 * 1024];
                    while counted.load(Ordering::SeqCst) < body_len {
                        if conn.write_all(&block).await.is_err() {
                            break;
                        }
                        counted.fetch_add(block.len() as u64, Ordering::SeqCst);
                    }
                }
                let _ = tx.send(counted.load(Ordering::SeqCst));
            });
        }
    });
    Answering { url, written }
}

impl Answering {
    /// The bytes written to the next connection that ended (bounded wait:
    /// the relay drops the connection once it has read its cap).
    async fn next_written(&mut self) -> u64 {
        tokio::time::timeout(std::time::Duration::from_secs(60), self.written.recv())
            .await
            .expect("the connection ended")
            .unwrap()
    }
}

/// A 64 MiB answer: the relay reads at most its cap and drops the rest, so
/// the provider could write no more than the cap and the sockets' buffers.
#[tokio::test]
async fn a_huge_answer_is_not_buffered() {
    let body = 64 * MIB;
    let mut provider = answering(
        format!("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {body}\r\n\r\n"),
        body,
    )
    .await;
    let cfg = config(&webhook(
        "hook",
        &format!("{{url: \"{}/hook\"}}", provider.url),
        "",
    ));
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let (status, _, answer) = post(&relay, &event("huge-answer")).await;
    // The webhook reads nothing of a 2xx answer: delivered.
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "delivered", "{answer}");
    let written = provider.next_written().await;
    assert!(
        written < 32 * MIB,
        "the provider wrote {written} bytes of {body}: the relay read them"
    );
    still_serving(&relay).await;
}

/// A token endpoint answering 64 MiB: what the relay must read (the token's
/// JSON) is over the cap, a permanent failure of that provider, dead-lettered.
#[tokio::test]
async fn a_huge_token_answer_is_a_bounded_permanent_failure() {
    let body = 64 * MIB;
    let mut token = answering(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {body}\r\n\r\n"
        ),
        body,
    )
    .await;
    let rx = Receiver::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("client-secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let settings = format!(
        "{{url: \"{}\", oauth2: {{tokenURL: \"{}/token\", clientId: relay, clientSecretFile: \"{}\"}}}}",
        rx.url("/hook"),
        token.url,
        secret.display()
    );
    let relay = RelayProcess::start(Path::new(BIN), &config(&webhook("hook", &settings, ""))).await;
    let (status, _, answer) = post(&relay, &event("huge-token")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    let written = token.next_written().await;
    assert!(written < 32 * MIB, "{written}");
    let dl = dead_letters(&relay);
    assert_eq!(dl.len(), 1, "{dl:?}");
    let message = dl[0]["cause"]["message"].as_str().unwrap();
    assert!(message.contains("over 1048576 bytes"), "{message}");
    assert!(rx.requests_on("/hook").is_empty());
    still_serving(&relay).await;
}

/// A provider answering `307` to another server: the request, its bearer
/// token, API key and signature are not sent there; the 307 is the
/// provider's permanent failure.
#[tokio::test]
async fn a_redirect_is_not_followed_with_the_credentials() {
    let thief = Receiver::start().await;
    let provider = answering(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {}\r\ncontent-length: 0\r\n\r\n",
            thief.url("/steal")
        ),
        0,
    )
    .await;
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    let hmac = secrets.path().join("hmac");
    std::fs::write(&token, "tok-do-not-forward").unwrap();
    std::fs::write(&hmac, "hmac-key").unwrap();
    let settings = format!(
        "{{url: \"{}/hook\", headers: {{X-Api-Key: key-do-not-forward}}, tokenFile: \"{}\", hmacSecretFile: \"{}\"}}",
        provider.url,
        token.display(),
        hmac.display()
    );
    let relay = RelayProcess::start(Path::new(BIN), &config(&webhook("hook", &settings, ""))).await;
    let (status, _, answer) = post(&relay, &event("redirect")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "dead_lettered", "{answer}");
    assert!(
        thief.requests().is_empty(),
        "the redirect was followed: {:?}",
        thief.requests()
    );
    let dl = dead_letters(&relay);
    assert_eq!(dl[0]["cause"]["status"], 307, "{dl:?}");
    let text = serde_json::to_string(&dl).unwrap();
    assert!(!text.contains("do-not-forward"), "{text}");
    still_serving(&relay).await;
}

const INJECTION: &str = r#"x", "admin": true, "y": ""#;

/// The template the webhook docs showed, and the one they show now, with a run
/// name built to add an `admin` key: the body has exactly the template's
/// keys, and the name reads back as it was.
#[tokio::test]
async fn a_run_name_cannot_add_keys_to_a_webhook_body() {
    let rx = Receiver::start().await;
    let old = r#"  template: '{"text": "{{ event.name }} {{ event.state }}"}'"#;
    let new =
        r#"  template: '{"run": {{ event.name | tojson }}, "state": {{ event.state | tojson }}}'"#;
    let cfg = config(
        &(webhook("old", &format!("{{url: \"{}\"}}", rx.url("/old")), old)
            + &webhook("new", &format!("{{url: \"{}\"}}", rx.url("/new")), new)),
    );
    let relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let mut f = event("injection");
    f.body["pipelineRun"]["metadata"]["name"] = Value::String(INJECTION.into());
    let (status, body) = send(&reqwest::Client::new(), &relay.base, &f).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "delivered", "{body}");
    let keys = |path: &str| {
        let reqs = rx.requests_on(path);
        assert_eq!(reqs.len(), 1, "{path}");
        let v: Value = serde_json::from_slice(&reqs[0].body)
            .unwrap_or_else(|e| panic!("{path}: {e}: {:?}", reqs[0].body));
        let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        (keys, v)
    };
    let (k, v) = keys("/old");
    assert_eq!(k, ["text"], "{v}");
    assert_eq!(v["text"], format!("{INJECTION} succeeded"));
    let (k, v) = keys("/new");
    assert_eq!(k, ["run", "state"], "{v}");
    assert_eq!(v["run"], INJECTION);
}
