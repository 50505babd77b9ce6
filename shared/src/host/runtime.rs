//! Running a function: build the engine from a config and a registry, then
//! serve HTTP with graceful shutdown (stop accepting on SIGTERM, let
//! in-flight events finish within a drain timeout).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::delivery::assemble::build_engine;
use crate::delivery::metrics::Metrics;
use crate::delivery::provider::Registry;
use crate::event::config::{ConfigErrors, RelayConfig, apply_env_overrides};
use crate::host::door::{BodyReadTimeout, door_check, guards_events};
use crate::host::server::{App, SharedApp, router};

/// Builds the whole application; any config or startup error is reported
/// with its document and path.
pub async fn build_app(cfg: &RelayConfig, registry: &Registry) -> Result<SharedApp, ConfigErrors> {
    Ok(Arc::new(App::new(build_engine(cfg, registry, None).await?)))
}

/// Serves until SIGTERM or Ctrl-C, then drains for at most `drain`, with
/// the listener limits of `spec.limits`.
pub async fn serve(
    app: SharedApp,
    listener: tokio::net::TcpListener,
    drain: Duration,
) -> std::io::Result<()> {
    let engine = app.engine();
    tracing::info!(
        notifications = engine.plan.notifications.len(),
        "relay starting"
    );
    let limits = ConnectionLimits::from_settings(&engine.plan.settings.limits);
    drop(engine);
    serve_router_with(router(app), listener, drain, limits).await
}

/// What a listener allows a connection (`spec.limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// To send a request's headers, from accept or the previous answer.
    pub header_read_timeout: Duration,
    /// To send a request's body, from its headers.
    pub body_read_timeout: Duration,
    /// Connections served at once; past it none is accepted until one ends.
    pub max_connections: usize,
}

impl ConnectionLimits {
    pub fn from_settings(l: &crate::event::config::Limits) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(l.header_read_timeout_seconds),
            body_read_timeout: Duration::from_secs(l.body_read_timeout_seconds),
            max_connections: l.max_connections,
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits::from_settings(&crate::event::config::Limits::default())
    }
}

/// Serves any router with the same shutdown behaviour and the default
/// [`ConnectionLimits`].
pub async fn serve_router(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    drain: Duration,
) -> std::io::Result<()> {
    serve_router_with(router, listener, drain, ConnectionLimits::default()).await
}

/// Serves any router until SIGTERM or Ctrl-C, then drains for at most
/// `drain`; every connection within `limits`.
pub async fn serve_router_with(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    drain: Duration,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, max_connections = limits.max_connections, "listening");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            limits.body_read_timeout,
            body_deadline,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
    let server = accept_loop(router, listener, limits, async move {
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
    let _ = tokio::task::spawn_blocking(crate::delivery::otel::shutdown).await;
    served
}

/// A handler that panicked answers `500` with a JSON error instead of
/// dropping the connection; the panic text, which may hold event content,
/// goes to the log only. (A delivery's own panic is caught closer, in the
/// engine, so that it is dead-lettered.)
fn panicked(payload: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "request handler panicked");
    let body = serde_json::json!({"error": {"code": "internal_error",
        "message": "the relay failed unexpectedly; see its log"}});
    (http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// Accepts connections while fewer than `max_connections` are open and
/// serves each over HTTP/1 with hyper's header read timeout (axum::serve
/// sets neither). On `shutdown` it stops accepting, lets each connection
/// finish its request in flight, and returns when all have closed.
async fn accept_loop(
    router: axum::Router,
    listener: tokio::net::TcpListener,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stop_tx, _) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    loop {
        // The slot first: at the cap, connections wait in the kernel's
        // backlog rather than each taking a file descriptor here.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let router = router.clone();
        // The peer address is the inbound rate limit's source (ConnectInfo).
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), req)
            });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let mut stop = stop_tx.subscribe();
        connections.spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let served = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// After a failed accept: a connection gone before it was accepted is
/// nothing; anything else (out of file descriptors, say) is logged and the
/// loop pauses, so it does not spin while the condition lasts.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(250)).await;
}

/// Gives the request's body a deadline, `limit` from now (its headers are
/// in): past it the body yields [`BodyReadTimeout`] instead of waiting on a
/// sender that trickles it. Handlers answer that as they answer a broken
/// body; the relay's `POST /` answers `408`.
async fn body_deadline(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + limit;
    let (parts, body) = req.into_parts();
    let chunks = futures::stream::unfold(Some(body.into_data_stream()), move |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((Err(axum::Error::new(BodyReadTimeout)), None)),
        }
    });
    let req = axum::extract::Request::from_parts(parts, axum::body::Body::from_stream(chunks));
    next.run(req).await
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

/// The listen address: `explicit` (`--listen`) if given, else
/// `$RELAY_LISTEN`, else `0.0.0.0:$PORT` (Knative, containers), else
/// `127.0.0.1:8080`: without a deployment saying otherwise, only this host.
pub fn listen_addr(explicit: Option<&str>) -> String {
    listen_addr_from(explicit, |k| std::env::var(k).ok())
}

fn listen_addr_from(explicit: Option<&str>, env: impl Fn(&str) -> Option<String>) -> String {
    if let Some(a) = explicit {
        return a.to_string();
    }
    if let Some(a) = env("RELAY_LISTEN").filter(|a| !a.is_empty()) {
        return a;
    }
    match env("PORT").filter(|p| !p.is_empty()) {
        Some(p) => format!("0.0.0.0:{p}"),
        None => "127.0.0.1:8080".into(),
    }
}

/// The environment variable that lets a function serve events without
/// `spec.inboundAuth` beyond loopback.
pub const INSECURE_NO_AUTH_ENV: &str = "RELAY_INSECURE_NO_AUTH";

/// `RELAY_INSECURE_NO_AUTH`: `true` or `false` (unset: false); anything
/// else is refused rather than guessed.
pub fn insecure_no_auth_env() -> Result<bool, String> {
    insecure_no_auth_from(|k| std::env::var(k).ok())
}

/// [`insecure_no_auth_env`] over any environment.
pub fn insecure_no_auth_from(env: impl Fn(&str) -> Option<String>) -> Result<bool, String> {
    match env(INSECURE_NO_AUTH_ENV) {
        None => Ok(false),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "false" => Ok(false),
            "true" => Ok(true),
            _ => Err(format!(
                "{INSECURE_NO_AUTH_ENV} must be true or false, got {v:?}"
            )),
        },
    }
}

/// The switch that lets a function on Knative keep state in its pod.
pub const ALLOW_LOCAL_STATE_ENV: &str = "RELAY_ALLOW_LOCAL_STATE";

/// On Knative (`K_SERVICE` is set) a function's pods come and go (scale to
/// zero, new revisions, more replicas): state kept in the pod — the memory
/// store, a `file://` dead-letter store — is lost with it and never shared.
/// Such a `what` (`spec.store`, `RELAY_DLQ_STORE`) at `url` is refused at
/// start unless `RELAY_ALLOW_LOCAL_STATE=true`.
pub fn check_state_is_shared(
    what: &str,
    url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let local = url == "memory" || url.starts_with("file://");
    let on_knative = env("K_SERVICE").is_some_and(|s| !s.is_empty());
    let allowed = env(ALLOW_LOCAL_STATE_ENV).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if local && on_knative && !allowed {
        return Err(format!(
            "{what} is {url:?}, which lives and dies with this pod: on Knative it is lost when the function scales to zero and is not shared by its replicas. Use valkey://… (knative/base/valkey.yaml), or set {ALLOW_LOCAL_STATE_ENV}=true to accept the loss"
        ));
    }
    Ok(())
}

/// Resolves `addr`, checks the door (see [`door_check`]) and binds. Serving
/// without auth beyond loopback is logged as a warning and shows as
/// `relay_insecure_no_auth 1` in `metrics`.
pub async fn bind_checked(
    addr: &str,
    has_auth: bool,
    insecure: bool,
    switch: &'static str,
    metrics: &Metrics,
) -> Result<(tokio::net::TcpListener, crate::host::server::Door), String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?
        .collect();
    let loopback = !addrs.is_empty() && addrs.iter().all(|a| a.ip().to_canonical().is_loopback());
    door_check(addr, loopback, has_auth, insecure, switch)?;
    let listener = tokio::net::TcpListener::bind(&addrs[..])
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    if !loopback && !has_auth {
        tracing::warn!(
            addr = %bound,
            switch,
            "INSECURE: serving events without spec.inboundAuth beyond loopback; anyone who can reach this address can send events"
        );
        metrics.set_insecure_no_auth();
    }
    Ok((
        listener,
        crate::host::server::Door {
            addr: bound,
            loopback,
            insecure_no_auth: insecure,
            insecure_switch: switch,
        },
    ))
}

/// [`bind_checked`] for a function's [`App`]: its current config says
/// whether events need auth, and the app learns how it is exposed.
pub async fn bind_app(
    app: &App,
    addr: &str,
    insecure: bool,
    switch: &'static str,
) -> Result<tokio::net::TcpListener, String> {
    let engine = app.engine();
    let (listener, door) = bind_checked(
        addr,
        guards_events(engine.plan.settings.inbound_auth.as_ref()),
        insecure,
        switch,
        &engine.metrics,
    )
    .await?;
    app.set_door(door);
    Ok(listener)
}

/// Loads the config named by `path`, else `$RELAY_CONFIG`, else
/// `/etc/relay/relay.yaml`, else the embedded default; then applies the
/// deployment's overrides (see [`apply_env_overrides`]).
pub fn load_config(path: Option<&std::path::Path>) -> Result<RelayConfig, ConfigErrors> {
    let mut cfg = load_config_file(path)?;
    apply_env_overrides(&mut cfg, |k| std::env::var(k).ok())?;
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

/// What keeps a config current: a file's [`Watcher`](crate::host::reload::Watcher),
/// or the TTL check of a config in SSM or S3.
pub enum Keeper {
    /// The embedded default, or a file on Lambda: read once.
    Nothing,
    File(crate::host::reload::Watcher),
    Remote(crate::host::remote_config::Refresh),
}

impl Keeper {
    /// HTTP mode: keeps `app`'s config current in the background.
    pub fn start(self, app: SharedApp, registry: Registry) {
        match self {
            Keeper::Nothing => {}
            Keeper::File(w) => w.start(app, registry),
            Keeper::Remote(r) => r.start(app, registry),
        }
    }
}

/// [`load_config`] for a function that keeps its config current: `path`,
/// else `$RELAY_CONFIG`, else `/etc/relay/relay.yaml`, else the embedded
/// default, where a path may also be `ssm://…` or `s3://…`
/// ([`remote_config`](crate::host::remote_config)); with the deployment's
/// overrides, and its [`Keeper`]. On Lambda (`lambda`) a file is read once
/// (per cold start); a remote config is checked every
/// `RELAY_CONFIG_TTL_SECONDS` either way.
pub async fn load_config_kept(
    path: Option<&std::path::Path>,
    lambda: bool,
) -> Result<(RelayConfig, Keeper), ConfigErrors> {
    let spec = config_path(path);
    if let Some(remote) = crate::host::remote_config::resolve(spec.as_deref())
        .await
        .map_err(|e| one_error("RELAY_CONFIG", e))?
    {
        let ttl = crate::host::remote_config::ttl_from(|k| std::env::var(k).ok())
            .map_err(|e| one_error("environment", e))?;
        let remote = Arc::new(remote);
        // Before the read: SIGHUP asks for a check from here on.
        let refresh = crate::host::remote_config::Refresh::new(remote.clone(), ttl);
        let mut cfg = remote.load().await?;
        apply_env_overrides(&mut cfg, |k| std::env::var(k).ok())?;
        return Ok((cfg, Keeper::Remote(refresh)));
    }
    // The watcher before the read: a change made meanwhile is still seen.
    let keeper = match (&spec, lambda) {
        (Some(p), false) => Keeper::File(crate::host::reload::Watcher::new(p.clone())),
        _ => Keeper::Nothing,
    };
    let cfg = load_config(spec.as_deref())?;
    Ok((cfg, keeper))
}

/// [`load_config`] where the path may also name a config in SSM or S3:
/// read once, for a function that does not reload.
pub async fn load_config_once(path: Option<&std::path::Path>) -> Result<RelayConfig, ConfigErrors> {
    let spec = config_path(path);
    let remote = crate::host::remote_config::resolve(spec.as_deref())
        .await
        .map_err(|e| one_error("RELAY_CONFIG", e))?;
    match remote {
        Some(remote) => {
            let mut cfg = remote.load().await?;
            apply_env_overrides(&mut cfg, |k| std::env::var(k).ok())?;
            Ok(cfg)
        }
        None => load_config(spec.as_deref()),
    }
}

fn one_error(document: &str, message: String) -> ConfigErrors {
    let mut errs = ConfigErrors::default();
    errs.push(document, "", message);
    errs
}

/// Runs a per-provider function: config from the environment, HTTP on `$PORT`.
pub async fn run_function(registry: Registry) -> anyhow_like::Result {
    crate::host::telemetry::init();
    // Lambda reads a file per cold start; HTTP mode reloads it. A config
    // in SSM or S3 is checked every TTL on both.
    let on_lambda = crate::host::lambda::on_lambda();
    let (cfg, keeper) = load_config_kept(None, on_lambda)
        .await
        .map_err(|e| e.to_string())?;
    let env = |k: &str| std::env::var(k).ok();
    check_state_is_shared("spec.store", &cfg.settings.store, env)?;
    check_state_is_shared("spec.deadLetter", &cfg.settings.dead_letter, env)?;
    let app = build_app(&cfg, &registry)
        .await
        .map_err(|e| e.to_string())?;
    if on_lambda {
        let refresh = match keeper {
            Keeper::Remote(r) => Some(Arc::new((r, registry))),
            Keeper::Nothing | Keeper::File(_) => None,
        };
        return crate::host::lambda::run(app, refresh).await;
    }
    let insecure = insecure_no_auth_env()?;
    let listener = bind_app(
        &app,
        &listen_addr(None),
        insecure,
        "RELAY_INSECURE_NO_AUTH=true",
    )
    .await?;
    keeper.start(app.clone(), registry);
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
    fn on_knative_state_in_the_pod_is_refused_unless_allowed() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let knative = env(&[("K_SERVICE", "relay-github")]);
        let err = check_state_is_shared("spec.store", "memory", knative).unwrap_err();
        assert!(
            err.contains("spec.store") && err.contains("scales to zero"),
            "{err}"
        );
        assert!(check_state_is_shared("RELAY_DLQ_STORE", "file:///tmp/dl.jsonl", knative).is_err());
        assert!(check_state_is_shared("spec.store", "valkey://v:6379/0", knative).is_ok());
        assert!(check_state_is_shared("spec.deadLetter", "respond", knative).is_ok());
        // Not on Knative (relay serve, a test), or told to accept the loss.
        assert!(check_state_is_shared("spec.store", "memory", env(&[])).is_ok());
        let allowed = env(&[
            ("K_SERVICE", "relay-github"),
            (ALLOW_LOCAL_STATE_ENV, "true"),
        ]);
        assert!(check_state_is_shared("spec.store", "memory", allowed).is_ok());
    }
    use crate::event::config::apply_env_overrides;
    use crate::host::door::is_body_timeout;

    /// A handler that panics (input nobody foresaw) costs that request a
    /// 500, not the connection, and the server goes on serving.
    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_server_serves_on() {
        let router = axum::Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    if std::hint::black_box(true) {
                        panic!("event text €");
                    }
                    "unreachable"
                }),
            )
            .route("/ok", axum::routing::get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_router(router, listener, Duration::from_secs(1)));
        let client = reqwest::Client::new();
        let r = client
            .get(format!("http://{addr}/boom"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(
            !body.to_string().contains('€'),
            "panic text stays in the log"
        );
        let r = client
            .get(format!("http://{addr}/ok"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "ok");
    }

    #[test]
    fn environment_names_the_store_and_dead_letters() {
        let mut cfg = RelayConfig::embedded_default();
        apply_env_overrides(&mut cfg, |k| match k {
            "RELAY_STORE" => Some("dynamodb://relay-state?region=eu-west-1".into()),
            "RELAY_DEAD_LETTER" => Some("sqs://https://sqs.eu-west-1.amazonaws.com/1/dlq".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            cfg.settings.store,
            "dynamodb://relay-state?region=eu-west-1"
        );
        assert!(cfg.settings.dead_letter.starts_with("sqs://"));
        let mut cfg = RelayConfig::embedded_default();
        apply_env_overrides(&mut cfg, |_| None).unwrap();
        assert_eq!(cfg.settings.store, "memory");
    }

    /// Knative's OIDC component sets `RELAY_INBOUND_AUTH`: it replaces
    /// `spec.inboundAuth`; what is no `inboundAuth` stops the start.
    #[test]
    fn the_environment_can_set_inbound_auth_and_a_bad_one_is_an_error() {
        let mut cfg = RelayConfig::embedded_default();
        let jwt = r#"{"jwt": {"jwksFile": "/etc/relay-oidc/jwks.json", "audience": "tekton-relay", "subjects": ["system:serviceaccount:tekton-relay:*"]}}"#;
        apply_env_overrides(&mut cfg, |k| {
            (k == "RELAY_INBOUND_AUTH").then(|| jwt.to_string())
        })
        .unwrap();
        let j = cfg.settings.inbound_auth.unwrap().jwt.unwrap();
        assert_eq!(j.audience, "tekton-relay");
        assert!(j.subject_allowed(Some("system:serviceaccount:tekton-relay:oidc-trigger-x")));
        assert!(!j.subject_allowed(Some("system:serviceaccount:other:default")));
        assert!(!j.subject_allowed(None));
        for bad in [
            r#"{"jwt": {"audience": "a"}}"#,
            "{bearerTokenFile: [",
            r#"{"jwt": {"jwksFile": "/k", "audience": "a", "subjects": ["*"]}}"#,
        ] {
            let mut cfg = RelayConfig::embedded_default();
            let e = apply_env_overrides(&mut cfg, |k| {
                (k == "RELAY_INBOUND_AUTH").then(|| bad.to_string())
            })
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("RELAY_INBOUND_AUTH") && e.contains("inboundAuth"),
                "{e}"
            );
        }
    }

    #[test]
    fn without_a_deployment_saying_otherwise_only_this_host_is_served() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(listen_addr_from(None, env(&[])), "127.0.0.1:8080");
        assert_eq!(
            listen_addr_from(None, env(&[("PORT", "9000")])),
            "0.0.0.0:9000",
            "Knative and containers: every interface, on $PORT"
        );
        assert_eq!(
            listen_addr_from(
                None,
                env(&[("PORT", "9000"), ("RELAY_LISTEN", "127.0.0.1:9000")])
            ),
            "127.0.0.1:9000"
        );
        assert_eq!(
            listen_addr_from(Some("[::1]:1"), env(&[("RELAY_LISTEN", "x:1")])),
            "[::1]:1"
        );
    }

    #[test]
    fn beyond_loopback_events_need_auth_or_the_operators_word() {
        let switch = "--insecure-no-auth";
        assert!(door_check("127.0.0.1:8080", true, false, false, switch).is_ok());
        assert!(door_check("0.0.0.0:8080", false, true, false, switch).is_ok());
        assert!(door_check("0.0.0.0:8080", false, false, true, switch).is_ok());
        let e = door_check("0.0.0.0:8080", false, false, false, switch).unwrap_err();
        assert!(
            e.contains("0.0.0.0:8080")
                && e.contains("spec.inboundAuth")
                && e.contains("--insecure-no-auth"),
            "{e}"
        );
    }

    #[test]
    fn the_body_deadline_is_found_inside_wrapping_errors() {
        let inner = axum::Error::new(BodyReadTimeout);
        let outer = axum::Error::new(inner);
        assert!(is_body_timeout(&outer));
        assert!(!is_body_timeout(&axum::Error::new(std::io::Error::other(
            "reset"
        ))));
    }
}
