//! `relay`: the one binary. The all-in-one relay (`relay serve`), each
//! function (`relay function <name>`, or `RELAY_FUNCTION=<name>` with no
//! arguments, as on Lambda and in the image), and the operator CLI.

mod send;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use relay_core::config::RelayConfig;
use relay_core::engine::Plan;

#[derive(Parser)]
#[command(
    name = "relay",
    version,
    about = "Relays Tekton CI/CD events to the places developers look"
)]
struct Cli {
    /// None: the function `RELAY_FUNCTION` names.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every provider in one process (the embedded default without --config).
    Serve {
        /// Config file (or ssm://PARAMETER, s3://BUCKET/KEY); else
        /// $RELAY_CONFIG, else /etc/relay/relay.yaml, else the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address; else $RELAY_LISTEN, else 0.0.0.0:$PORT, else
        /// 127.0.0.1:8080. Beyond loopback, events need spec.inboundAuth
        /// (or --insecure-no-auth).
        #[arg(long)]
        listen: Option<String>,
        /// Serve events without spec.inboundAuth on a non-loopback address
        /// (only where a network policy or a private network keeps senders
        /// out); logged as a warning. Also RELAY_INSECURE_NO_AUTH=true.
        #[arg(long)]
        insecure_no_auth: bool,
        /// How long in-flight events may take to finish after SIGTERM.
        #[arg(long, default_value_t = 30)]
        drain_seconds: u64,
    },
    /// Serve as one function: `ingress`, `dlq`, or a provider type (only
    /// that provider's Notifications). Config from $RELAY_CONFIG; HTTP on
    /// $PORT, or the Lambda runtime on Lambda.
    Function {
        /// The function; else $RELAY_FUNCTION.
        #[arg(env = relay::function::FUNCTION_ENV)]
        name: String,
    },
    /// Check config files; prints every error with its document and path.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Post request files (the fixture format) in name order, printing each answer.
    Send {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, default_value = "http://127.0.0.1:8080/")]
        to: String,
    },
    /// Print deployment manifests for a config: `manifests knative` prints
    /// the Knative Service and Trigger of each provider function it uses.
    Manifests {
        #[command(subcommand)]
        target: ManifestsTarget,
    },
    /// Inspect and replay the dead-letter queue of a running relay, or
    /// the SQS dead-letter queue on AWS.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Subcommand)]
enum ManifestsTarget {
    /// The provider functions' Services and Triggers (knative/base/functions.yaml).
    Knative {
        /// The config the functions serve (knative/base/config/relay.yaml).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// List dead letters, oldest first (of a running relay, or of an SQS queue).
    List {
        #[arg(long, default_value = "http://127.0.0.1:8080", conflicts_with = "sqs")]
        url: String,
        /// An SQS dead-letter queue URL (AWS): every message, the relay's
        /// dead letters and Lambda's invocation records; listing consumes
        /// nothing.
        #[arg(long)]
        sqs: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        notification: Option<String>,
        /// The dead-letter API's bearer token (spec.apiAuth.bearerTokenFile
        /// of the relay): the API is off without apiAuth.
        #[arg(long, conflicts_with = "hmac_secret_file")]
        token_file: Option<PathBuf>,
        /// Sign the call instead (spec.apiAuth.hmacSecretFile of the relay,
        /// with the default header names).
        #[arg(long)]
        hmac_secret_file: Option<PathBuf>,
    },
    /// Replay all dead letters, or those with the given ids.
    Replay {
        #[arg(long, default_value = "http://127.0.0.1:8080", conflicts_with = "sqs")]
        url: String,
        /// Replay an SQS dead-letter queue (AWS) onto the EventBridge bus,
        /// to run in AWS: an invocation record's event as it was, a dead
        /// letter's event marked for its one Notification. What went on
        /// the bus is deleted from the queue; the rest stays.
        #[arg(long)]
        sqs: Option<String>,
        /// The EventBridge bus the ingress puts events on (with --sqs).
        #[arg(long, env = "RELAY_EVENT_BUS")]
        bus: Option<String>,
        /// The source of a dead letter's event on the bus (with --sqs), as
        /// the ingress's RELAY_EVENT_SOURCE.
        #[arg(long, env = "RELAY_EVENT_SOURCE", default_value = "tekton.relay")]
        source: String,
        /// The config the functions serve (a file, ssm://…, s3://…; with
        /// --sqs): a dead letter of a Notification it lacks is kept.
        #[arg(long, requires = "sqs")]
        config: Option<PathBuf>,
        /// A dead letter's id, or (with --sqs) an SQS message id.
        #[arg(long = "id")]
        ids: Vec<String>,
        /// The dead-letter API's bearer token (spec.apiAuth.bearerTokenFile
        /// of the relay): the API is off without apiAuth.
        #[arg(long, conflicts_with = "hmac_secret_file")]
        token_file: Option<PathBuf>,
        /// Sign the call instead (spec.apiAuth.hmacSecretFile of the relay,
        /// with the default header names).
        #[arg(long)]
        hmac_secret_file: Option<PathBuf>,
    },
}

// glibc malloc showed as a quarter of the relay's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        // The image's and Lambda's entry point: no arguments.
        None => match std::env::var(relay::function::FUNCTION_ENV) {
            Ok(name) => Command::Function { name },
            Err(_) => {
                let _ = <Cli as clap::CommandFactory>::command().print_help();
                eprintln!(
                    "\nrelay: name a command, or the function to serve in ${}",
                    relay::function::FUNCTION_ENV
                );
                return ExitCode::from(2);
            }
        },
    };
    let result = match command {
        Command::Function { name } => relay::function::run(&name)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(|e| format!("function {name}: {e}")),
        Command::Serve {
            config,
            listen,
            insecure_no_auth,
            drain_seconds,
        } => serve(config, listen, insecure_no_auth, drain_seconds).await,
        Command::Validate { files } => validate(&files),
        Command::Send { paths, to } => send::send(&paths, &to).await,
        Command::Dlq { action } => dlq(action).await,
        Command::Manifests {
            target: ManifestsTarget::Knative { config },
        } => manifests_knative(&config),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("relay: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: Option<PathBuf>,
    listen: Option<String>,
    insecure_no_auth: bool,
    drain: u64,
) -> Result<ExitCode, String> {
    relay_core::telemetry::init();
    let (cfg, keeper) = relay_core::runtime::load_config_kept(config.as_deref(), false)
        .await
        .map_err(|e| format!("invalid config:\n{e}"))?;
    let registry = relay::registry();
    let app = relay_core::runtime::build_app(&cfg, &registry)
        .await
        .map_err(|e| format!("invalid config:\n{e}"))?;
    let insecure = insecure_no_auth || relay_core::runtime::insecure_no_auth_env()?;
    let addr = relay_core::runtime::listen_addr(listen.as_deref());
    let listener = relay_core::runtime::bind_app(
        &app,
        &addr,
        insecure,
        "--insecure-no-auth (or RELAY_INSECURE_NO_AUTH=true)",
    )
    .await?;
    keeper.start(app.clone(), registry);
    relay_core::runtime::serve(app, listener, Duration::from_secs(drain))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn manifests_knative(config: &std::path::Path) -> Result<ExitCode, String> {
    let invalid = |errs: relay_core::config::ConfigErrors| {
        let lines: Vec<String> = errs
            .0
            .iter()
            .map(|e| format!("{}: {e}", config.display()))
            .collect();
        format!("invalid config:\n{}", lines.join("\n"))
    };
    let cfg = RelayConfig::load(config).map_err(invalid)?;
    let functions = relay::manifests::functions_used(&cfg).map_err(invalid)?;
    if functions.is_empty() {
        return Err(format!(
            "{}: no Notification, so no provider function to deploy",
            config.display()
        ));
    }
    print!(
        "{}",
        relay::manifests::knative(&functions, &config.display().to_string())
    );
    Ok(ExitCode::SUCCESS)
}

fn validate(files: &[PathBuf]) -> Result<ExitCode, String> {
    let registry = relay::registry();
    let mut failed = false;
    for f in files {
        let result =
            RelayConfig::load(f).and_then(|cfg| Plan::compile(&cfg, &registry).map(|_| ()));
        match result {
            Ok(()) => println!("{}: ok", f.display()),
            Err(errs) => {
                failed = true;
                for e in &errs.0 {
                    println!("{}: {e}", f.display());
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn dlq(action: DlqAction) -> Result<ExitCode, String> {
    // No redirects: an answer cannot send the credentials elsewhere.
    let client = relay_core::transport::client_builder()
        .build()
        .map_err(|e| e.to_string())?;
    let (resp, what) = match action {
        DlqAction::List {
            sqs: Some(queue),
            limit,
            notification,
            ..
        } => return sqs_list(&queue, limit, notification.as_deref()).await,
        DlqAction::Replay {
            sqs: Some(queue),
            bus,
            source,
            config,
            ids,
            ..
        } => return sqs_replay(&queue, bus, source, config, &ids).await,
        DlqAction::List {
            url,
            limit,
            notification,
            token_file,
            hmac_secret_file,
            ..
        } => {
            let mut q: Vec<(&str, String)> = Vec::new();
            if let Some(l) = limit {
                q.push(("limit", l.to_string()));
            }
            if let Some(n) = notification {
                q.push(("notification", n));
            }
            let endpoint = format!("{}/api/v1/dlq", url.trim_end_matches('/'));
            let req = client.get(&endpoint).query(&q);
            let req = authenticate(req, token_file, hmac_secret_file).await?;
            (client.execute(req).await, endpoint)
        }
        DlqAction::Replay {
            url,
            ids,
            token_file,
            hmac_secret_file,
            ..
        } => {
            let endpoint = format!("{}/api/v1/dlq/replay", url.trim_end_matches('/'));
            let body = if ids.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::json!({"ids": ids})
            };
            let req = client.post(&endpoint).json(&body);
            let req = authenticate(req, token_file, hmac_secret_file).await?;
            (client.execute(req).await, endpoint)
        }
    };
    let resp = resp.map_err(|e| format!("{what}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    println!("{pretty}");
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The request with the dead-letter API's credential: a bearer token, or
/// an HMAC signature of the canonical request (`relay_core::auth`).
async fn authenticate(
    req: reqwest::RequestBuilder,
    token_file: Option<PathBuf>,
    hmac_secret_file: Option<PathBuf>,
) -> Result<reqwest::Request, String> {
    let read = |f: PathBuf| async move {
        relay_core::secret::SecretFile(f)
            .read()
            .await
            .map_err(|e| e.to_string())
    };
    let req = match token_file {
        Some(f) => req.bearer_auth(read(f).await?.expose()),
        None => req,
    };
    let mut req = req.build().map_err(|e| e.to_string())?;
    if let Some(f) = hmac_secret_file {
        let secret = read(f).await?;
        let url = req.url();
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let method = req.method().as_str().to_string();
        let body = req
            .body()
            .and_then(|b| b.as_bytes())
            .unwrap_or_default()
            .to_vec();
        let now = chrono::Utc::now().timestamp();
        relay_core::auth::sign_hmac(
            secret.expose().as_bytes(),
            now,
            &method,
            &target,
            req.headers_mut(),
            &body,
        );
    }
    Ok(req)
}

async fn sqs_list(
    queue: &str,
    limit: Option<usize>,
    notification: Option<&str>,
) -> Result<ExitCode, String> {
    let queue = relay_core::deadletter::aws_queue::AwsQueue::open(queue).await?;
    let (messages, more) = queue.receive_all(60).await.map_err(|e| e.to_string())?;
    // Visible again at once: listing consumes nothing.
    for m in &messages {
        if let Err(e) = queue.release(m).await {
            eprintln!(
                "relay: message {} stays hidden until its 60 s hold ends: {e}",
                m.message_id
            );
        }
    }
    let listed: Vec<_> = messages
        .iter()
        .map(|m| m.listed())
        .filter(|l| notification.is_none_or(|n| l.notification.as_deref() == Some(n)))
        .collect();
    let total = listed.len();
    let shown: Vec<_> = listed
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    let mut out = serde_json::json!({"total": total, "messages": shown});
    if more {
        out["more"] = true.into();
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "ingress")]
async fn sqs_replay(
    queue: &str,
    bus: Option<String>,
    source: String,
    config: Option<PathBuf>,
    ids: &[String],
) -> Result<ExitCode, String> {
    let name = bus.ok_or("name the EventBridge bus: --bus NAME or RELAY_EVENT_BUS")?;
    let notifications = match config {
        Some(path) => Some(
            relay_core::runtime::load_config_once(Some(&path))
                .await
                .map_err(|e| format!("invalid config:\n{e}"))?
                .notifications
                .into_iter()
                .map(|n| n.name)
                .collect(),
        ),
        None => None,
    };
    let queue = relay_core::deadletter::aws_queue::AwsQueue::open(queue).await?;
    let conf = relay_core::config::aws::loader().load().await;
    let bus = relay::ingress::replay::Bus {
        client: aws_sdk_eventbridge::Client::new(&conf),
        name,
        source,
        notifications,
    };
    let summary = relay::ingress::replay::replay(&queue, &bus, ids).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(not(feature = "ingress"))]
async fn sqs_replay(
    _queue: &str,
    _bus: Option<String>,
    _source: String,
    _config: Option<PathBuf>,
    _ids: &[String],
) -> Result<ExitCode, String> {
    Err("this build has no EventBridge client (built without the cargo feature \"ingress\")".into())
}
