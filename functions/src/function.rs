//! Serving as one function: `ingress`, `dlq`, or one provider type (its
//! Notifications only). The same binary is every function: the name comes
//! from `relay function <name>` or `$RELAY_FUNCTION`, set by the Knative
//! manifests and the Terraform module.

use std::sync::Arc;
use std::time::Duration;

/// The environment variable that names the function when the binary is
/// started with no arguments (the image's and Lambda's entry point).
pub const FUNCTION_ENV: &str = "RELAY_FUNCTION";

/// Serves as the function `name` until stopped.
pub async fn run(name: &str) -> Result<(), String> {
    relay_core::telemetry::init_for(Some(name));
    match name {
        "ingress" => ingress().await,
        "dlq" => dlq().await,
        _ => {
            let row = crate::PROVIDERS
                .iter()
                .find(|r| r.name == name)
                .ok_or_else(|| unknown(name))?;
            if !row.enabled {
                return Err(format!(
                    "this build has no {name} provider (built without the cargo feature {name:?})"
                ));
            }
            relay_core::runtime::run_function(crate::registry().serving_only(row.name)).await
        }
    }
}

fn unknown(name: &str) -> String {
    let types: Vec<&str> = crate::PROVIDERS.iter().map(|r| r.name).collect();
    format!(
        "unknown function {}: ingress, dlq, or a provider type ({})",
        relay_core::escape::log_text(name),
        types.join(", ")
    )
}

async fn ingress() -> Result<(), String> {
    let cfg =
        relay_core::runtime::load_config(None).map_err(|e| format!("invalid config:\n{e}"))?;
    if let Some(Err((path, msg))) = cfg.settings.inbound_auth.as_ref().map(|a| a.check_config()) {
        return Err(format!("invalid config: spec.inboundAuth{path}: {msg}"));
    }
    let mut ingress = crate::ingress::Ingress::from_env(
        cfg.settings.inbound_auth.clone(),
        cfg.settings.limits.max_body_bytes,
    )
    .await?;
    ingress.inbound_limit = cfg.settings.limits.inbound_per_source.clone();
    let has_auth = relay_core::runtime::guards_events(ingress.auth.as_ref());
    let on_lambda = relay_core::lambda::on_lambda();
    // A Function URL is public: there is no network to keep senders out,
    // so no switch opens it.
    if on_lambda && !has_auth {
        return Err("refusing to start on Lambda without spec.inboundAuth: the Function URL is public. Set spec.inboundAuth (bearerTokenFile, hmacSecretFile or jwt; fluxHmacSecretFile alone leaves CloudEvents open)".into());
    }
    let ingress = Arc::new(ingress);
    let router = crate::ingress::router(ingress.clone());
    if on_lambda {
        // After each request: its metrics as EMF lines, its spans exported.
        let emf = Arc::new(relay_core::emf::Emf::from_env());
        let router = router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let (ingress, emf) = (ingress.clone(), emf.clone());
                async move {
                    let answer = next.run(req).await;
                    relay_core::lambda::after_invocation(&emf, &ingress.metrics).await;
                    answer
                }
            },
        ));
        return lambda_http::run(router).await.map_err(|e| e.to_string());
    }
    let (listener, _door) = relay_core::runtime::bind_checked(
        &relay_core::runtime::listen_addr(None),
        has_auth,
        relay_core::runtime::insecure_no_auth_env()?,
        "RELAY_INSECURE_NO_AUTH=true",
        &ingress.metrics,
    )
    .await?;
    relay_core::runtime::serve_router_with(
        router,
        listener,
        Duration::from_secs(30),
        relay_core::runtime::ConnectionLimits::from_settings(&cfg.settings.limits),
    )
    .await
    .map_err(|e| e.to_string())
}

async fn dlq() -> Result<(), String> {
    let env = |k: &str| std::env::var(k).ok();
    let cfg =
        relay_core::runtime::load_config(None).map_err(|e| format!("invalid config:\n{e}"))?;
    crate::dlq::check_auth(
        cfg.settings.inbound_auth.as_ref(),
        crate::dlq::insecure_no_auth(env)?,
    )?;
    let subscribers = crate::dlq::Subscribers::from_env(env)?;
    if subscribers.is_empty() {
        tracing::warn!(
            "no {} configured: dead letters are kept, but none can be replayed",
            crate::dlq::SUBSCRIBERS_ENV
        );
    }
    if cfg.settings.api_auth.is_none() {
        tracing::info!("no spec.apiAuth: the dead-letter API answers 404");
    }
    let store = std::env::var("RELAY_DLQ_STORE").map_err(|_| {
        "set RELAY_DLQ_STORE (file:///path.jsonl, valkey://… or dynamodb://…)".to_string()
    })?;
    let dl = crate::dlq::DeadLetters::open(&cfg.settings, &store, subscribers).await?;
    let addr = relay_core::runtime::listen_addr(None);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    relay_core::runtime::serve_router_with(
        crate::dlq::router(Arc::new(dl)),
        listener,
        Duration::from_secs(30),
        relay_core::runtime::ConnectionLimits::from_settings(&cfg.settings.limits),
    )
    .await
    .map_err(|e| e.to_string())
}
