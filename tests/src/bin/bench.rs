//! Throughput and latency of `relay serve` against a baseline axum server
//! that only parses the body and forwards it, both into the same local
//! webhook receiver, in one run. Figures are printed, never asserted.
//!
//! cargo build --release -p relay -p relay-tests
//! target/release/relay-bench --relay target/release/relay

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use clap::Parser;
use relay_tests::fixtures::{RequestFile, Scenario, dir};
use relay_tests::process::RelayProcess;
use relay_tests::servers::{MotoServer, ValkeyServer};

#[derive(Parser)]
struct Args {
    /// The relay binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/relay")]
    relay: PathBuf,
    /// PipelineRuns to replay (each is the 17 events of the success scenario).
    #[arg(long, default_value_t = 1200)]
    runs: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Also measure the relay on these shared stores (`valkey`, `dynamodb`):
    /// each is started here (a Valkey/Redis server, moto) and compared with memory.
    #[arg(long = "store")]
    stores: Vec<String>,
    /// PipelineRuns for the DynamoDB pass: moto is a single-threaded Python
    /// server and would take minutes over the whole stream.
    #[arg(long, default_value_t = 60)]
    dynamodb_runs: usize,
    /// A second, lighter pass showing service latency without queueing.
    #[arg(long, default_value_t = 4)]
    light_concurrency: usize,
}

/// One prepared request: headers and body.
struct Prepared {
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

/// The success scenario replayed `runs` times, each run with its own uids and
/// CloudEvent ids (`tag` in both, so no pass deduplicates against an earlier
/// one on the same store), so the relay delivers every event.
fn stream(runs: usize, tag: &str) -> Vec<Prepared> {
    let sc = Scenario::load(&dir().join("tekton-pipelinerun-success"));
    let mut out = Vec::with_capacity(runs * sc.files.len());
    for run in 0..runs {
        for (i, f) in sc.files.iter().enumerate() {
            let mut f: RequestFile = f.clone();
            f.headers
                .insert("Ce-Id".into(), format!("{tag}-bench-{run}-{i}"));
            for key in ["pipelineRun", "taskRun"] {
                if let Some(obj) = f.body.get_mut(key) {
                    let uid = obj["metadata"]["uid"].as_str().unwrap().to_string();
                    obj["metadata"]["uid"] = format!("{uid}-{tag}-{run}").into();
                    if let Some(l) = obj["metadata"]["labels"].get_mut("tekton.dev/pipelineRunUID")
                    {
                        *l = format!("{}-{tag}-{run}", l.as_str().unwrap()).into();
                    }
                }
            }
            let mut headers = reqwest::header::HeaderMap::new();
            for (k, v) in f.send_headers() {
                headers.insert(
                    reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                );
            }
            out.push(Prepared {
                headers,
                body: f.body_bytes().into(),
            });
        }
    }
    out
}

async fn receiver() -> (String, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/hook",
            post(|State(c): State<Arc<AtomicUsize>>, _b: Bytes| async move {
                c.fetch_add(1, Ordering::Relaxed);
                StatusCode::OK
            }),
        )
        .with_state(count.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, count)
}

/// The baseline: parse the JSON body, forward it, answer 200.
async fn baseline(target: String) -> String {
    let client = reqwest::Client::new();
    let app = Router::new().route(
        "/",
        post(move |body: Bytes| {
            let client = client.clone();
            let target = target.clone();
            async move {
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    return StatusCode::BAD_REQUEST;
                };
                match client.post(&target).json(&v).send().await {
                    Ok(r) if r.status().is_success() => StatusCode::OK,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

struct Figures {
    events_per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

async fn drive(url: &str, events: Arc<Vec<Prepared>>, concurrency: usize) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, events, url) = (
                client.clone(),
                next.clone(),
                events.clone(),
                url.to_string(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(ev) = events.get(i) else { break };
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .headers(ev.headers.clone())
                        .body(ev.body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                        }
                        _ => errors += 1,
                    }
                    lat.push(t.elapsed());
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Figures {
        events_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        errors,
    }
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A relay config: one webhook Notification into `hook`, on `store`.
fn relay_config(hook: &str, store: &str) -> String {
    format!(
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {{name: relay}}\nspec:\n  store: \"{store}\"\n  deadLetter: file://$DIR/dl.jsonl\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {{name: hook}}\nspec:\n  type: webhook\n  webhook: {{url: \"{hook}\"}}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {{name: hook}}\nspec:\n  providerRef: {{name: hook}}\n"
    )
}

/// The stream of a pass, `tag` in its ids.
fn tagged(runs: usize, tag: &str) -> Arc<Vec<Prepared>> {
    Arc::new(stream(runs, tag))
}

/// Where the store's round trips are counted: at the server.
enum Counter<'a> {
    None,
    /// Valkey's `MONITOR` (the commands clients send, not those its
    /// scripts run), and its `INFO commandstats` (all of them).
    Valkey(&'a ValkeyServer),
    /// The DynamoDB requests moto served.
    Moto(&'a MotoServer),
}

/// Store round trips per delivered effect, and per duplicate event; on
/// Valkey also the commands its statistics count.
struct Cost {
    per_delivered: f64,
    per_duplicate: f64,
    commands_per_delivered: Option<f64>,
}

/// PipelineRuns of the counted pass: the counting (Valkey's `MONITOR`)
/// slows a server, so it is a pass of its own after the timed one.
const COUNTED_RUNS: usize = 60;

/// One relay process on `store`: warm it, drive the stream, report. With a
/// counter, a pass of its own counts the store's round trips: a stream of
/// new runs, then the same stream again (every event a duplicate, none of
/// them delivered).
async fn measure_relay(
    args: &Args,
    runs: usize,
    hook: &str,
    store: &str,
    env: &[(&str, &str)],
    received: &AtomicUsize,
    counter: Counter<'_>,
) -> (Figures, usize, Option<u64>, Option<Cost>) {
    let relay = RelayProcess::start_with_env(&args.relay, &relay_config(hook, store), env).await;
    let url = format!("{}/", relay.base);
    drive(&url, tagged(30, "warm"), args.concurrency).await;
    let before = received.load(Ordering::Relaxed);
    let f = drive(&url, tagged(runs, "main"), args.concurrency).await;
    let delivered = received.load(Ordering::Relaxed) - before;
    let monitor = match counter {
        Counter::Valkey(v) => Some(v.monitor()),
        _ => None,
    };
    let count = || async {
        match (&counter, &monitor) {
            (Counter::Valkey(v), Some(m)) => Some((m.count(), Some(v.commands_run()))),
            (Counter::Moto(m), _) => Some((m.dynamodb_requests().await.values().sum(), None)),
            _ => None,
        }
    };
    let cost = match count().await {
        Some((start, commands_start)) => {
            let events = tagged(COUNTED_RUNS.min(runs), "counted");
            let before = received.load(Ordering::Relaxed);
            drive(&url, events.clone(), args.concurrency).await;
            let effects = received.load(Ordering::Relaxed) - before;
            let (end, commands_end) = count().await.unwrap();
            drive(&url, events.clone(), args.concurrency).await;
            assert_eq!(
                received.load(Ordering::Relaxed) - before,
                effects,
                "a duplicate was delivered"
            );
            let (again, _) = count().await.unwrap();
            let per = |n: u64| n as f64 / effects.max(1) as f64;
            Some(Cost {
                per_delivered: per(end - start),
                per_duplicate: (again - end) as f64 / events.len() as f64,
                commands_per_delivered: commands_start.zip(commands_end).map(|(a, b)| per(b - a)),
            })
        }
        None => None,
    };
    (f, delivered, peak_rss_kib(relay.pid()), cost)
}

fn line(name: &str, f: &Figures, what: &str, n: usize) -> String {
    format!(
        "{name:<9} {:>8.0} events/s  p50 {:.2} ms  p99 {:.2} ms  errors {}  {what} {n}",
        f.events_per_sec,
        ms(f.p50),
        ms(f.p99),
        f.errors
    )
}

#[tokio::main]
async fn main() {
    let mut args = Args::parse();
    assert!(
        args.relay.exists(),
        "no relay binary at {} (cargo build --release -p relay)",
        args.relay.display()
    );
    args.relay = args.relay.canonicalize().unwrap();
    let (hook, received) = receiver().await;
    let base = baseline(hook.clone()).await;
    let events = tagged(args.runs, "main");
    println!(
        "stream: {} events ({} PipelineRuns x 17), {} concurrent, keep-alive, mean body {} bytes",
        events.len(),
        args.runs,
        args.concurrency,
        events.iter().map(|e| e.body.len()).sum::<usize>() / events.len()
    );

    drive(&base, tagged(30, "warm"), args.concurrency).await;
    let before = received.load(Ordering::Relaxed);
    let b = drive(&base, events.clone(), args.concurrency).await;
    let via_baseline = received.load(Ordering::Relaxed) - before;
    let (r, via_relay, rss, _) = measure_relay(
        &args,
        args.runs,
        &hook,
        "memory",
        &[],
        &received,
        Counter::None,
    )
    .await;

    // Light load: service latency without queueing.
    let relay = RelayProcess::start(&args.relay, &relay_config(&hook, "memory")).await;
    let light = tagged(args.runs / 4, "light");
    let bl = drive(&base, light.clone(), args.light_concurrency).await;
    let rl = drive(&format!("{}/", relay.base), light, args.light_concurrency).await;
    drop(relay);

    println!("{}", line("baseline:", &b, "forwarded", via_baseline));
    println!("{}", line("relay:", &r, "delivered", via_relay));
    println!(
        "at {} concurrent: baseline p50 {:.2} ms p99 {:.2} ms; relay p50 {:.2} ms p99 {:.2} ms",
        args.light_concurrency,
        ms(bl.p50),
        ms(bl.p99),
        ms(rl.p50),
        ms(rl.p99)
    );
    let mib = |k: Option<u64>| k.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!("relay peak RSS: {}", mib(rss));

    // Shared stores, each next to memory.
    let mut ratios = Vec::new();
    for store in &args.stores {
        let (f, n, peak, cost) = match store.as_str() {
            "valkey" => {
                let server = ValkeyServer::start();
                let url = server.url(&format!("bench{}", std::process::id()));
                let counter = Counter::Valkey(&server);
                measure_relay(&args, args.runs, &hook, &url, &[], &received, counter).await
            }
            "dynamodb" => {
                let moto = MotoServer::start();
                let url = moto.dynamodb_table("relay-bench").await;
                let runs = args.dynamodb_runs.min(args.runs);
                measure_relay(
                    &args,
                    runs,
                    &hook,
                    &url,
                    &MotoServer::PROCESS_ENV,
                    &received,
                    Counter::Moto(&moto),
                )
                .await
            }
            other => panic!("unknown --store {other}, expected valkey or dynamodb"),
        };
        println!(
            "{}  peak RSS {}",
            line(&format!("{store}:"), &f, "delivered", n),
            mib(peak)
        );
        if let Some(c) = cost {
            println!(
                "{store}: store round trips per delivered effect: {:.1}  per duplicate: {:.1}",
                c.per_delivered, c.per_duplicate
            );
            if let Some(commands) = c.commands_per_delivered {
                println!(
                    "{store}: commands per delivered effect, its scripts' own included: {commands:.1}"
                );
            }
        }
        ratios.push(format!(
            "{store}/memory throughput ratio: {:.2}",
            f.events_per_sec / r.events_per_sec
        ));
    }
    if !args.stores.is_empty() {
        println!("{}", line("memory:", &r, "delivered", via_relay));
    }
    println!(
        "relay/baseline throughput ratio: {:.2}",
        r.events_per_sec / b.events_per_sec
    );
    for r in ratios {
        println!("{r}");
    }
}
