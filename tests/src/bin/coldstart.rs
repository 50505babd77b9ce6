//! Cold start and size of each function: process start -> first event
//! answered, in HTTP mode (Knative) and on a Lambda Runtime API (median of
//! several runs each), and the stripped arm64 size of the `bootstrap` each
//! runs on Lambda: `<lambda-dir>/providers/relay/bootstrap` for the provider
//! functions, `<lambda-dir>/ingress/relay/bootstrap` for the ingress (the two
//! `cargo lambda build` commands of docs/deploy-aws.md).
//! Every function is the one `relay` binary with `RELAY_FUNCTION` set.
//!
//! cargo build --release -p relay -p relay-tests
//! target/release/relay-coldstart --bin-dir target/release [--lambda-dir target/lambda]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use relay_tests::fixtures::{RequestFile, dir};
use relay_tests::lambda_api::RuntimeApi;
use relay_tests::process::free_port;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The `--lambda-dir` parent of the two Lambda builds (`providers/`, `ingress/`).
    #[arg(long, default_value = "target/lambda")]
    lambda_dir: PathBuf,
    #[arg(long, default_value_t = 9)]
    runs: usize,
}

const FUNCTIONS: &[&str] = &["webhook", "log", "github", "ingress", "dlq"];

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("relay.yaml");
    std::fs::write(
        &p,
        "apiVersion: relay.tekton.dev/v1alpha1\nkind: RelayConfig\nmetadata: {name: relay}\nspec: {deadLetter: respond}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Provider\nmetadata: {name: out}\nspec: {type: log}\n---\napiVersion: relay.tekton.dev/v1alpha1\nkind: Notification\nmetadata: {name: out}\nspec: {providerRef: {name: out}}\n",
    )
    .unwrap();
    p
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Spawn -> first event answered with 2xx, over HTTP.
async fn http_once(
    bin: &Path,
    function: &str,
    work: &Path,
    sink: &str,
    event: &RequestFile,
) -> Duration {
    let port = free_port();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .env("RELAY_FUNCTION", function)
        .env("RELAY_CONFIG", config(work))
        .env("PORT", port.to_string())
        // Loopback: no inbound auth needed to measure a start (the
        // dead-letter function asks for the switch even there).
        .env("RELAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("RELAY_INSECURE_NO_AUTH", "true")
        .env("K_SINK", sink)
        .env(
            "RELAY_DLQ_STORE",
            format!("file://{}/dl.jsonl", work.display()),
        )
        .env("RELAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let answered = loop {
        let mut req = client.post(&url).body(event.body_bytes());
        for (k, v) in event.send_headers() {
            req = req.header(k, v);
        }
        if let Ok(r) = req.send().await
            && r.status().is_success()
        {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{function} never answered"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    answered
}

/// Spawn -> first invocation answered, on a Lambda Runtime API.
async fn lambda_once(
    bin: &Path,
    function: &str,
    work: &Path,
    payload: serde_json::Value,
) -> Duration {
    let api = RuntimeApi::start().await;
    let started = Instant::now();
    let mut child = Command::new(bin)
        .env("RELAY_FUNCTION", function)
        .env("RELAY_CONFIG", config(work))
        .envs(api.env("coldstart"))
        .env("RELAY_EVENT_BUS", "none")
        .env("AWS_REGION", "us-east-1")
        .env("RELAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = api.invoke(payload).await;
    let answered = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    answered
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let work = tempfile::tempdir().unwrap();
    let event = RequestFile::load(
        &dir().join("tekton-pipelinerun-success/017-pipelinerun-successful.json"),
    );
    let envelope = RequestFile::load(&dir().join("wrappers/aws-eventbridge-envelope.json")).body;
    // A sink for the ingress in HTTP mode.
    let rx = relay_tests::receiver::Receiver::start().await;
    let sink = rx.url("/sink");
    println!(
        "{:<14} {:>12} {:>14} {:>16}",
        "function", "http start", "lambda start", "arm64 stripped"
    );
    let bin = args.bin_dir.join("relay");
    assert!(
        bin.exists(),
        "no {} (cargo build --release -p relay)",
        bin.display()
    );
    // One artifact serves every provider function, one the ingress
    // (docs/deploy-aws.md); the dead-letter function is not on Lambda.
    let size_of = |f: &str| -> String {
        let artifact = match f {
            "ingress" => "ingress",
            "dlq" => return "-".into(),
            _ => "providers",
        };
        let arm = args.lambda_dir.join(artifact).join("relay/bootstrap");
        std::fs::metadata(&arm).map_or("not built".into(), |m| {
            format!("{:.1} MB", m.len() as f64 / 1e6)
        })
    };
    for f in FUNCTIONS {
        let mut http = Vec::new();
        for _ in 0..args.runs {
            http.push(http_once(&bin, f, work.path(), &sink, &event).await);
        }
        // Lambda mode applies to the functions that run on Lambda behind EventBridge.
        let lambda = if matches!(*f, "webhook" | "log" | "github") {
            let mut v = Vec::new();
            for _ in 0..args.runs {
                v.push(lambda_once(&bin, f, work.path(), envelope.clone()).await);
            }
            format!("{:.1} ms", median(v).as_secs_f64() * 1000.0)
        } else {
            "-".into()
        };
        let size = size_of(f);
        println!(
            "{f:<14} {:>9.1} ms {lambda:>14} {size:>16}",
            median(http).as_secs_f64() * 1000.0
        );
    }
    println!(
        "(median of {} runs; targets: < 20 ms HTTP mode, < 15 MB per function)",
        args.runs
    );
}
