//! Running a function: build the engine from a config and a registry, then
//! serve HTTP with graceful shutdown (stop accepting on SIGTERM, let
//! in-flight events finish within a drain timeout).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigErrors, RelayConfig};
use crate::engine::{Engine, Plan};
use crate::metrics::Metrics;
use crate::provider::Registry;
use crate::server::{App, SharedApp, router};

/// Builds the whole application; any config or startup error is reported
/// with its document and path.
pub async fn build_app(cfg: &RelayConfig, registry: &Registry) -> Result<SharedApp, ConfigErrors> {
    let plan = Plan::compile(cfg, registry)?;
    let metrics = Arc::new(Metrics::new());
    let mut errs = ConfigErrors::default();
    let store = crate::store::open(&plan.settings.store)
        .await
        .map_err(|e| errs.push(&cfg.settings_document, "spec.store", e))
        .ok();
    let dead_letters = crate::deadletter::open(
        &plan.settings.dead_letter,
        plan.settings.dead_letter_max_bytes,
        metrics.clone(),
    )
    .await
    .map_err(|e| errs.push(&cfg.settings_document, "spec.deadLetter", e))
    .ok();
    match (store, dead_letters) {
        (Some(store), Some(dl)) => Ok(Arc::new(App {
            engine: Engine::new(plan, store, dl, metrics),
        })),
        _ => Err(errs),
    }
}

/// Serves until SIGTERM or Ctrl-C, then drains for at most `drain`.
pub async fn serve(
    app: SharedApp,
    listener: tokio::net::TcpListener,
    drain: Duration,
) -> std::io::Result<()> {
    tracing::info!(
        notifications = app.engine.plan.notifications.len(),
        "relay starting"
    );
    serve_router(router(app), listener, drain).await
}

/// Serves any router with the same shutdown behaviour.
pub async fn serve_router(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    drain: Duration,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: no new connections; draining in-flight events");
        let _ = tx.send(());
    });
    let drained = async {
        if rx.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = server => r,
        () = drained => {
            tracing::warn!(?drain, "drain timeout reached; exiting with events still in flight");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The listen address: `--listen` if given, else `$PORT` (Knative), else 8080.
pub fn listen_addr(explicit: Option<&str>) -> String {
    if let Some(a) = explicit {
        return a.to_string();
    }
    match std::env::var("PORT") {
        Ok(p) if !p.is_empty() => format!("0.0.0.0:{p}"),
        _ => "0.0.0.0:8080".into(),
    }
}

/// Loads the config named by `path`, else `$RELAY_CONFIG`, else the embedded default
/// when `/etc/relay/relay.yaml` does not exist.
pub fn load_config(path: Option<&std::path::Path>) -> Result<RelayConfig, ConfigErrors> {
    if let Some(p) = path {
        return RelayConfig::load(p);
    }
    if let Ok(p) = std::env::var("RELAY_CONFIG")
        && !p.is_empty()
    {
        return RelayConfig::load(std::path::Path::new(&p));
    }
    let default = std::path::Path::new("/etc/relay/relay.yaml");
    if default.exists() {
        return RelayConfig::load(default);
    }
    Ok(RelayConfig::embedded_default())
}

/// Runs a per-provider function: config from the environment, HTTP on `$PORT`.
pub async fn run_function(registry: Registry) -> anyhow_like::Result {
    crate::telemetry::init();
    let cfg = load_config(None).map_err(|e| e.to_string())?;
    let app = build_app(&cfg, &registry)
        .await
        .map_err(|e| e.to_string())?;
    if crate::lambda::on_lambda() {
        return crate::lambda::run(app).await;
    }
    let listener = tokio::net::TcpListener::bind(listen_addr(None))
        .await
        .map_err(|e| e.to_string())?;
    serve(app, listener, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())
}

/// A tiny result alias so function binaries need no error crate.
pub mod anyhow_like {
    pub type Result = std::result::Result<(), String>;
}
