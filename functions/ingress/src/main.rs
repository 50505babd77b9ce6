//! The ingress function: HTTP on `$PORT` (Knative), or a Lambda Function URL.

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
            eprintln!("relay-ingress: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let cfg =
        relay_core::runtime::load_config(None).map_err(|e| format!("invalid config:\n{e}"))?;
    if let Some(Err((path, msg))) = cfg.settings.inbound_auth.as_ref().map(|a| a.check_config()) {
        return Err(format!("invalid config: spec.inboundAuth{path}: {msg}"));
    }
    let mut ingress = relay_ingress::Ingress::from_env(
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
    let router = relay_ingress::router(ingress.clone());
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
