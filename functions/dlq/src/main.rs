//! The dead-letter function: HTTP on `$PORT`, store from `RELAY_DLQ_STORE`.

use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    relay_core::telemetry::init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-dlq: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let cfg =
        relay_core::runtime::load_config(None).map_err(|e| format!("invalid config:\n{e}"))?;
    let store = std::env::var("RELAY_DLQ_STORE").map_err(|_| {
        "set RELAY_DLQ_STORE (file:///path.jsonl, valkey://… or dynamodb://…)".to_string()
    })?;
    let metrics = Arc::new(relay_core::metrics::Metrics::new());
    let sink = relay_core::deadletter::open_store(
        &store,
        cfg.settings.dead_letter_max_bytes,
        cfg.settings.dead_letter_max_entry_bytes,
        metrics,
    )
    .await?;
    let dl = relay_dlq::DeadLetters {
        sink,
        auth: cfg.settings.inbound_auth.clone(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?,
        metrics: relay_core::metrics::Metrics::new(),
        max_body_bytes: cfg.settings.limits.max_body_bytes,
    };
    let addr = relay_core::runtime::listen_addr(None);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    relay_core::runtime::serve_router(
        relay_dlq::router(Arc::new(dl)),
        listener,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| e.to_string())
}
