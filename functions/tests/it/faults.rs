//! The fault suite: a stream of distinct events sent to `relay serve` the way
//! a Knative Broker sends them (a 5xx or a connection error is retried, a
//! 200/422 settles the event), while the provider answers 500/503/429, hangs,
//! resets or answers too late, the store is killed and restarted, or the relay
//! is sent SIGTERM mid-stream and restarted. For each fault: no accepted event
//! lost (delivered or dead-lettered), none delivered twice (also when the
//! Broker re-sends what was delivered), and the error metrics moved. Prints a
//! table and writes it to `target/fault-suite.txt`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use relay_tests::faulty::{Behaviour, FaultyServer};
use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::metrics::scrape;
use relay_tests::process::RelayProcess;
use relay_tests::servers::ValkeyServer;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_relay");
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn fresh_event(tag: &str, n: usize) -> RequestFile {
    let mut f = RequestFile::load(
        &dir().join("tekton-pipelinerun-success/017-pipelinerun-successful.json"),
    );
    let nonce = format!(
        "{:x}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    f.headers
        .insert("Ce-Id".into(), format!("fault-{tag}-{n}-{nonce}"));
    f.body["pipelineRun"]["metadata"]["uid"] = Value::String(format!("uid-{tag}-{n}-{nonce}"));
    f
}

fn ce_id(f: &RequestFile) -> String {
    f.headers["Ce-Id"].clone()
}

fn config(store: &str, hook: &str, dead_letters: &Path) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  store: \"{store}\"\n  deadLetter: file://{}\n  delivery: {{initialBackoffMs: 10, maxBackoffMs: 50, maxAttempts: 3, deadlineSeconds: 2, requestTimeoutSeconds: 1}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: hook}}\nspec:\n  type: webhook\n  webhook: {{url: \"{hook}\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: hook}}\nspec:\n  providerRef: {{name: hook}}\n",
        dead_letters.display()
    )
}

/// The Broker's side: where it sends (a restarted relay listens elsewhere),
/// what settled, and how often it had to retry.
#[derive(Clone, Default)]
struct Sender {
    base: Arc<Mutex<String>>,
    accepted: Arc<Mutex<HashMap<String, u16>>>,
    retries: Arc<AtomicUsize>,
    outcomes: Arc<Mutex<Vec<String>>>,
}

impl Sender {
    fn new(base: &str) -> Sender {
        let s = Sender::default();
        *s.base.lock().unwrap() = base.to_string();
        s
    }

    fn accepted_count(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// Sends until the relay answers 200 or 422 (bounded, like the Broker's
    /// retry policy); `None` if it never did.
    async fn send_settled(&self, client: &reqwest::Client, f: &RequestFile) -> Option<u16> {
        let deadline = Instant::now() + Duration::from_secs(40);
        for _ in 0..400 {
            let base = self.base.lock().unwrap().clone();
            let mut req = client.post(format!("{base}/")).body(f.body_bytes());
            for (k, v) in f.send_headers() {
                req = req.header(k, v);
            }
            match req.send().await {
                Ok(r) if matches!(r.status().as_u16(), 200 | 422) => {
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    self.accepted.lock().unwrap().insert(ce_id(f), status);
                    if let Some(o) = body["outcome"].as_str() {
                        self.outcomes.lock().unwrap().push(o.to_string());
                    }
                    return Some(status);
                }
                Ok(r) => assert!(
                    r.status().is_server_error(),
                    "the relay answered {} to a valid event",
                    r.status()
                ),
                Err(_) => {}
            }
            self.retries.fetch_add(1, Ordering::SeqCst);
            if Instant::now() > deadline {
                break;
            }
            // The Broker's backoff between retries (not synchronisation).
            tokio::time::sleep(ms(25)).await;
        }
        None
    }

    async fn send_all(&self, events: &[RequestFile], concurrency: usize) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        futures::stream::iter(events)
            .for_each_concurrent(concurrency, |f| {
                let client = client.clone();
                async move {
                    self.send_settled(&client, f).await;
                }
            })
            .await;
    }
}

/// Sum of the samples of `name` whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_for(what: &str, secs: u64, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(ms(10)).await;
    }
}

fn dead_lettered_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["event"]["id"].as_str().map(str::to_string))
        .collect()
}

struct Row {
    fault: String,
    injected: String,
    sent: usize,
    accepted: usize,
    delivered: usize,
    dead_lettered: usize,
    duplicated: usize,
    lost: usize,
    resent: usize,
}

/// Accounts one run and asserts the invariants every fault must keep.
fn account(
    fault: &str,
    injected: String,
    events: &[RequestFile],
    sender: &Sender,
    provider: &FaultyServer,
    dl: &Path,
    resent: usize,
) -> Row {
    let accepted: HashSet<String> = sender.accepted.lock().unwrap().keys().cloned().collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in provider.accepted_event_ids() {
        *counts.entry(id).or_default() += 1;
    }
    let dead: HashSet<String> = dead_lettered_ids(dl).into_iter().collect();
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| !counts.contains_key(*id) && !dead.contains(*id))
        .collect();
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let row = Row {
        fault: fault.into(),
        injected,
        sent: events.len(),
        accepted: accepted.len(),
        delivered: counts.len(),
        dead_lettered: dead.len(),
        duplicated: duplicated.iter().map(|(_, n)| **n - 1).sum(),
        lost: lost.len(),
        resent,
    };
    assert_eq!(
        row.accepted, row.sent,
        "{fault}: the Broker gave up on events"
    );
    assert!(lost.is_empty(), "{fault}: accepted but lost: {lost:?}");
    assert!(
        duplicated.is_empty(),
        "{fault}: delivered more than once: {duplicated:?}"
    );
    let sent: HashSet<String> = events.iter().map(ce_id).collect();
    assert!(
        counts.keys().chain(dead.iter()).all(|id| sent.contains(id)),
        "{fault}: the provider or dead letters hold events never sent"
    );
    row
}

/// The Broker re-sends every event the provider accepted: each must come
/// back `duplicate` and reach the provider no more. Returns how many.
async fn resend_delivered(
    fault: &str,
    events: &[RequestFile],
    only: impl Fn(&str) -> bool,
    sender: &Sender,
    provider: &FaultyServer,
) -> usize {
    let delivered: HashSet<String> = provider.accepted_event_ids().into_iter().collect();
    let again: Vec<RequestFile> = events
        .iter()
        .filter(|f| delivered.contains(&ce_id(f)) && only(&ce_id(f)))
        .cloned()
        .collect();
    let before = provider.accepted_event_ids().len();
    let check = Sender::new(&sender.base.lock().unwrap());
    check.send_all(&again, 4).await;
    let outcomes = check.outcomes.lock().unwrap().clone();
    assert!(
        outcomes.iter().all(|o| o == "duplicate"),
        "{fault}: re-sent delivered events came back {outcomes:?}"
    );
    assert_eq!(
        provider.accepted_event_ids().len(),
        before,
        "{fault}: a re-sent event was delivered again"
    );
    again.len()
}

struct ProviderFault {
    name: &'static str,
    pattern: Vec<Behaviour>,
    /// Metric samples that must have moved: (name, labels).
    moved: Vec<(&'static str, Vec<&'static str>)>,
}

const EVENTS: usize = 24;

async fn provider_fault(store: String, pf: ProviderFault) -> Row {
    let provider = FaultyServer::start(&pf.pattern).await;
    let tmp = tempfile::tempdir().unwrap();
    let dl = tmp.path().join("dl.jsonl");
    let relay =
        RelayProcess::start(Path::new(BIN), &config(&store, &provider.url("/hook"), &dl)).await;
    let events: Vec<RequestFile> = (0..EVENTS).map(|n| fresh_event(pf.name, n)).collect();
    let sender = Sender::new(&relay.base);
    sender.send_all(&events, 6).await;
    let text = scrape(&relay.base).await;
    for (name, labels) in &pf.moved {
        assert!(
            metric(&text, name, labels) > 0.0,
            "{}: {name}{labels:?} did not move:\n{text}",
            pf.name
        );
    }
    let resent = resend_delivered(pf.name, &events, |_| true, &sender, &provider).await;
    let abandoned = provider
        .hits()
        .iter()
        .filter(|h| h.answered.is_none())
        .count();
    let injected = format!(
        "{} provider faults ({abandoned} unanswered)",
        provider.faults()
    );
    assert!(provider.faults() > 0, "{}: no fault was injected", pf.name);
    account(pf.name, injected, &events, &sender, &provider, &dl, resent)
}

async fn store_killed(mut server: ValkeyServer) -> Row {
    let fault = "store killed+restarted";
    let provider = FaultyServer::start(&[Behaviour::slow(200, ms(80))]).await;
    let tmp = tempfile::tempdir().unwrap();
    let dl = tmp.path().join("dl.jsonl");
    let relay = RelayProcess::start(
        Path::new(BIN),
        &config(&server.url("faults-store"), &provider.url("/hook"), &dl),
    )
    .await;
    let events: Vec<RequestFile> = (0..2 * EVENTS).map(|n| fresh_event("store", n)).collect();
    let sender = Sender::new(&relay.base);
    let (first, second) = events.split_at(EVENTS);
    // Killed mid-stream: the rest of the first half meets no store.
    let stream = {
        let (sender, first) = (sender.clone(), first.to_vec());
        tokio::spawn(async move { sender.send_all(&first, 3).await })
    };
    wait_for("a third of the events", 30, async || {
        sender.accepted_count() >= EVENTS / 3
    })
    .await;
    tokio::task::block_in_place(|| server.stop());
    stream.await.unwrap();
    let text = scrape(&relay.base).await;
    let store_errors = metric(&text, "relay_store_errors_total", &[]);
    assert!(
        store_errors > 0.0,
        "{fault}: relay_store_errors_total did not move:\n{text}"
    );
    tokio::task::block_in_place(|| server.restart());
    wait_for("the relay to reconnect", 30, async || {
        let r: Value = reqwest::get(format!("{}/readyz", relay.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["store"]["status"] == "ok"
    })
    .await;
    let recovered: HashSet<String> = second.iter().map(ce_id).collect();
    sender.send_all(second, 3).await;
    // Only what the store recorded after it came back is protected against
    // a re-send: the server kept nothing across the kill (no persistence),
    // and while it was down the relay delivered without idempotency.
    let resent = resend_delivered(
        fault,
        &events,
        |id| recovered.contains(id),
        &sender,
        &provider,
    )
    .await;
    account(
        fault,
        format!("1 kill; {store_errors} store errors"),
        &events,
        &sender,
        &provider,
        &dl,
        resent,
    )
}

async fn relay_terminated(store: String) -> Row {
    let fault = "relay SIGTERM+restart";
    let provider = FaultyServer::start(&[Behaviour::slow(200, ms(60))]).await;
    let tmp = tempfile::tempdir().unwrap();
    let dl = tmp.path().join("dl.jsonl");
    let cfg = config(&store, &provider.url("/hook"), &dl);
    let mut relay = RelayProcess::start(Path::new(BIN), &cfg).await;
    let events: Vec<RequestFile> = (0..2 * EVENTS).map(|n| fresh_event("sigterm", n)).collect();
    let sender = Sender::new(&relay.base);
    let stream = {
        let (sender, events) = (sender.clone(), events.clone());
        tokio::spawn(async move { sender.send_all(&events, 4).await })
    };
    wait_for("a third of the events", 30, async || {
        sender.accepted_count() >= EVENTS / 3
    })
    .await;
    let before_stop = scrape(&relay.base).await;
    let status = tokio::task::block_in_place(|| relay.terminate());
    assert!(
        status.success(),
        "{fault}: exit {status}: {}",
        relay.stderr()
    );
    let accepted_by_first = sender.accepted_count();
    assert!(
        accepted_by_first < events.len(),
        "{fault}: the stream ended before SIGTERM"
    );
    let relay2 = RelayProcess::start(Path::new(BIN), &cfg).await;
    *sender.base.lock().unwrap() = relay2.base.clone();
    stream.await.unwrap();
    assert!(
        sender.retries.load(Ordering::SeqCst) > 0,
        "{fault}: the Broker never met the stopped relay"
    );
    assert!(
        metric(
            &before_stop,
            "relay_deliveries_total",
            &[r#"outcome="delivered""#]
        ) > 0.0
    );
    let text = scrape(&relay2.base).await;
    assert!(
        metric(&text, "relay_deliveries_total", &[r#"outcome="delivered""#]) > 0.0,
        "{fault}: the restarted relay delivered nothing:\n{text}"
    );
    // What the first relay answered is in the shared store: a re-send to the
    // restarted relay is a duplicate.
    let resent = resend_delivered(fault, &events, |_| true, &sender, &provider).await;
    let injected = format!(
        "1 SIGTERM after {accepted_by_first} settled; {} sender retries",
        sender.retries.load(Ordering::SeqCst)
    );
    account(fault, injected, &events, &sender, &provider, &dl, resent)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_event_lost_or_duplicated_under_faults() {
    let shared = ValkeyServer::start();
    let killable = ValkeyServer::start();
    assert!(
        killable.can_restart(),
        "the fault suite needs a valkey-server or redis-server binary"
    );
    let retryable = vec![(
        "relay_provider_requests_total",
        vec![r#"result="retryable""#],
    )];
    let faults = vec![
        ProviderFault {
            name: "500 (+404 permanent)",
            pattern: vec![
                Behaviour::status(500),
                Behaviour::status(500),
                Behaviour::OK,
                Behaviour::status(404),
                Behaviour::OK,
            ],
            moved: vec![
                (
                    "relay_provider_requests_total",
                    vec![r#"result="retryable""#],
                ),
                (
                    "relay_provider_requests_total",
                    vec![r#"result="permanent""#],
                ),
                ("relay_dead_letters_total", vec![]),
            ],
        },
        ProviderFault {
            name: "503",
            pattern: vec![
                Behaviour::status(503),
                Behaviour::OK,
                Behaviour::status(503),
                Behaviour::status(503),
                Behaviour::OK,
            ],
            moved: retryable.clone(),
        },
        ProviderFault {
            name: "429 + Retry-After: 1",
            pattern: vec![
                Behaviour::Answer {
                    status: 429,
                    retry_after: Some(1),
                    delay: Duration::ZERO,
                },
                Behaviour::OK,
                Behaviour::OK,
            ],
            moved: vec![
                (
                    "relay_provider_requests_total",
                    vec![r#"result="retryable""#],
                ),
                ("relay_provider_rate_limited_total", vec![]),
            ],
        },
        ProviderFault {
            name: "slow: 2xx after timeout",
            pattern: vec![
                Behaviour::slow(200, ms(1800)),
                Behaviour::slow(200, ms(150)),
                Behaviour::OK,
            ],
            moved: retryable.clone(),
        },
        ProviderFault {
            name: "timeout (no answer)",
            pattern: vec![Behaviour::Hang, Behaviour::OK, Behaviour::OK],
            moved: retryable.clone(),
        },
        ProviderFault {
            name: "connection reset",
            pattern: vec![
                Behaviour::Reset,
                Behaviour::OK,
                Behaviour::Reset,
                Behaviour::OK,
            ],
            moved: retryable.clone(),
        },
    ];
    let started = Instant::now();
    let provider_runs = futures::future::join_all(
        faults
            .into_iter()
            .enumerate()
            .map(|(i, f)| provider_fault(shared.url(&format!("faults-{i}")), f)),
    );
    let (mut rows, store_row, term_row) = tokio::join!(
        provider_runs,
        store_killed(killable),
        relay_terminated(shared.url("faults-sigterm")),
    );
    rows.push(store_row);
    rows.push(term_row);

    let mut table = format!(
        "{:<24} | {:<46} | {:>4} | {:>8} | {:>9} | {:>13} | {:>10} | {:>4} | {:>16}\n",
        "fault",
        "injected",
        "sent",
        "accepted",
        "delivered",
        "dead-lettered",
        "duplicated",
        "lost",
        "re-sent, again 0"
    );
    for r in &rows {
        table += &format!(
            "{:<24} | {:<46} | {:>4} | {:>8} | {:>9} | {:>13} | {:>10} | {:>4} | {:>16}\n",
            r.fault,
            r.injected,
            r.sent,
            r.accepted,
            r.delivered,
            r.dead_lettered,
            r.duplicated,
            r.lost,
            r.resent
        );
    }
    table += &format!("({:.1} s)\n", started.elapsed().as_secs_f64());
    println!("{table}");
    let _ = std::fs::write(target_dir().join("fault-suite.txt"), &table);
    assert!(rows.iter().any(|r| r.dead_lettered > 0));
}
