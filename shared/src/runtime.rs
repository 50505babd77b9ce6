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
    Ok(Arc::new(App::new(build_engine(cfg, registry, None).await?)))
}

/// Compiles `cfg` into an Engine. With `previous` (a reload), its metrics are
/// kept, and so are its store and dead-letter sink when their settings did
/// not change: connections and the idempotency state of a memory store
/// survive the reload.
pub async fn build_engine(
    cfg: &RelayConfig,
    registry: &Registry,
    previous: Option<&Engine>,
) -> Result<Engine, ConfigErrors> {
    let plan = Plan::compile(cfg, registry)?;
    let metrics = previous.map_or_else(|| Arc::new(Metrics::new()), |p| p.metrics.clone());
    let mut errs = ConfigErrors::default();
    let store = match previous {
        Some(p) if p.plan.settings.store == plan.settings.store => Some(p.store.clone()),
        _ => crate::store::open(&plan.settings.store)
            .await
            .map_err(|e| errs.push(&cfg.settings_document, "spec.store", e))
            .ok(),
    };
    let same_dead_letters = previous.is_some_and(|p| {
        p.plan.settings.dead_letter == plan.settings.dead_letter
            && p.plan.settings.dead_letter_max_bytes == plan.settings.dead_letter_max_bytes
            && p.plan.settings.dead_letter_max_entry_bytes
                == plan.settings.dead_letter_max_entry_bytes
    });
    let dead_letters = match previous {
        Some(p) if same_dead_letters => Some(p.dead_letters.clone()),
        _ => crate::deadletter::open(
            &plan.settings.dead_letter,
            plan.settings.dead_letter_max_bytes,
            plan.settings.dead_letter_max_entry_bytes,
            metrics.clone(),
        )
        .await
        .map_err(|e| errs.push(&cfg.settings_document, "spec.deadLetter", e))
        .ok(),
    };
    match (store, dead_letters) {
        (Some(store), Some(dl)) => Ok(Engine::new(plan, store, dl, metrics)),
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
        notifications = app.engine().plan.notifications.len(),
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
    // The peer address is the inbound rate limit's source (ConnectInfo).
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, service).with_graceful_shutdown(async move {
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
    let served = tokio::select! {
        r = server => r,
        () = drained => {
            tracing::warn!(?drain, "drain timeout reached; exiting with events still in flight");
            Ok(())
        }
    };
    // Spans still batched go out before the process ends.
    let _ = tokio::task::spawn_blocking(crate::otel::shutdown).await;
    served
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

/// Loads the config named by `path`, else `$RELAY_CONFIG`, else
/// `/etc/relay/relay.yaml`, else the embedded default; then applies the
/// deployment's overrides (see [`apply_env_overrides`]).
pub fn load_config(path: Option<&std::path::Path>) -> Result<RelayConfig, ConfigErrors> {
    let mut cfg = load_config_file(path)?;
    apply_env_overrides(&mut cfg, |k| std::env::var(k).ok());
    Ok(cfg)
}

fn load_config_file(path: Option<&std::path::Path>) -> Result<RelayConfig, ConfigErrors> {
    match config_path(path) {
        Some(p) => RelayConfig::load(&p),
        None => Ok(RelayConfig::embedded_default()),
    }
}

/// The config file [`load_config`] reads (and a reload re-reads): `path`,
/// else `$RELAY_CONFIG`, else `/etc/relay/relay.yaml` if it exists; `None`
/// means the embedded default.
pub fn config_path(path: Option<&std::path::Path>) -> Option<std::path::PathBuf> {
    if let Some(p) = path {
        return Some(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("RELAY_CONFIG")
        && !p.is_empty()
    {
        return Some(p.into());
    }
    let default = std::path::Path::new("/etc/relay/relay.yaml");
    default.exists().then(|| default.to_path_buf())
}

/// `RELAY_STORE` and `RELAY_DEAD_LETTER` replace `spec.store` and
/// `spec.deadLetter`: the infrastructure that creates the table and the
/// queue (Terraform) names them, while the packaged relay.yaml stays the same.
pub fn apply_env_overrides(cfg: &mut RelayConfig, env: impl Fn(&str) -> Option<String>) {
    if let Some(v) = env("RELAY_STORE").filter(|v| !v.is_empty()) {
        cfg.settings.store = v;
    }
    if let Some(v) = env("RELAY_DEAD_LETTER").filter(|v| !v.is_empty()) {
        cfg.settings.dead_letter = v;
    }
}

/// Runs a per-provider function: config from the environment, HTTP on `$PORT`.
pub async fn run_function(registry: Registry) -> anyhow_like::Result {
    crate::telemetry::init();
    // Lambda reads its config per cold start; HTTP mode reloads it.
    let watcher = if crate::lambda::on_lambda() {
        None
    } else {
        config_path(None).map(crate::reload::Watcher::new)
    };
    let cfg = load_config(None).map_err(|e| e.to_string())?;
    let app = build_app(&cfg, &registry)
        .await
        .map_err(|e| e.to_string())?;
    if crate::lambda::on_lambda() {
        return crate::lambda::run(app).await;
    }
    if let Some(w) = watcher {
        w.start(app.clone(), registry);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_names_the_store_and_dead_letters() {
        let mut cfg = RelayConfig::embedded_default();
        apply_env_overrides(&mut cfg, |k| match k {
            "RELAY_STORE" => Some("dynamodb://relay-state?region=eu-west-1".into()),
            "RELAY_DEAD_LETTER" => Some("sqs://https://sqs.eu-west-1.amazonaws.com/1/dlq".into()),
            _ => None,
        });
        assert_eq!(
            cfg.settings.store,
            "dynamodb://relay-state?region=eu-west-1"
        );
        assert!(cfg.settings.dead_letter.starts_with("sqs://"));
        let mut cfg = RelayConfig::embedded_default();
        apply_env_overrides(&mut cfg, |_| None);
        assert_eq!(cfg.settings.store, "memory");
    }
}
