//! The dead-letter function: HTTP on `$PORT`, store from `RELAY_DLQ_STORE`,
//! replay targets from `RELAY_DLQ_SUBSCRIBERS`.

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
    let env = |k: &str| std::env::var(k).ok();
    let cfg =
        relay_core::runtime::load_config(None).map_err(|e| format!("invalid config:\n{e}"))?;
    relay_dlq::check_auth(
        cfg.settings.inbound_auth.as_ref(),
        relay_dlq::insecure_no_auth(env)?,
    )?;
    let subscribers = relay_dlq::Subscribers::from_env(env)?;
    if subscribers.is_empty() {
        tracing::warn!(
            "no {} configured: dead letters are kept, but none can be replayed",
            relay_dlq::SUBSCRIBERS_ENV
        );
    }
    if cfg.settings.api_auth.is_none() {
        tracing::info!("no spec.apiAuth: the dead-letter API answers 404");
    }
    let store = std::env::var("RELAY_DLQ_STORE").map_err(|_| {
        "set RELAY_DLQ_STORE (file:///path.jsonl, valkey://… or dynamodb://…)".to_string()
    })?;
    // One set of metrics: the sink counts its evictions on the one served.
    let metrics = Arc::new(relay_core::metrics::Metrics::new());
    let sink = relay_core::deadletter::open_store(
        &store,
        cfg.settings.dead_letter_max_bytes,
        cfg.settings.dead_letter_max_entry_bytes,
        metrics.clone(),
    )
    .await?;
    let limiter = cfg
        .settings
        .limits
        .inbound_per_source
        .as_ref()
        .map(|spec| relay_core::ratelimit::InboundLimiter::new(spec, &metrics));
    let dl = relay_dlq::DeadLetters {
        sink,
        auth: cfg.settings.inbound_auth.clone(),
        api_auth: cfg.settings.api_auth.clone(),
        subscribers,
        limiter,
        client: relay_dlq::replay_client()?,
        metrics,
        max_body_bytes: cfg.settings.limits.max_body_bytes,
    };
    let addr = relay_core::runtime::listen_addr(None);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    relay_core::runtime::serve_router_with(
        relay_dlq::router(Arc::new(dl)),
        listener,
        Duration::from_secs(30),
        relay_core::runtime::ConnectionLimits::from_settings(&cfg.settings.limits),
    )
    .await
    .map_err(|e| e.to_string())
}
