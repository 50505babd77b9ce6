//! Distributed tracing with OpenTelemetry. The W3C trace context an event
//! carries (the CloudEvents distributed-tracing extension, or a
//! `traceparent` header the relay adopts into it) is continued through the
//! event's span, one span per Notification and one client span per provider
//! request, whose context goes out in that request's `traceparent` header.
//!
//! Spans always get ids, so the context is continued whether or not anything
//! is exported. Export is OTLP over HTTP and off unless an endpoint is set
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`);
//! the other standard `OTEL_*` variables (service name, sampler, headers,
//! protocol `http/protobuf`) apply, and `RELAY_OTLP_HEADERS_FILE`
//! names a file of headers for a collector that wants credentials.
//!
//! Span attributes never hold URLs, paths or messages: a webhook URL or an
//! echoed answer may carry a secret. Provider requests are named by host.

use std::collections::HashMap;
use std::sync::OnceLock;

pub use opentelemetry::Context;
use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// The CloudEvents distributed-tracing extension's attributes (and the W3C
/// header names).
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
/// The provider's tracer, made once rather than per span.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether spans leave the process, as [`init`] found the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    Off,
    /// OTLP/HTTP with protobuf, to this URL.
    Otlp {
        endpoint: String,
    },
}

/// What [`init`] decides from the environment (`env` is `std::env::var`).
pub fn export_from(env: impl Fn(&str) -> Option<String>) -> Result<Export, String> {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return Ok(Export::Off);
    }
    if let Some(e) = get("OTEL_TRACES_EXPORTER").filter(|v| !v.eq_ignore_ascii_case("otlp")) {
        return Err(format!(
            "OTEL_TRACES_EXPORTER={e} is not supported: use otlp or none"
        ));
    }
    let endpoint = match (
        get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(e), _) => e,
        (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, None) => return Ok(Export::Off),
    };
    let protocol = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    match protocol.as_str() {
        "http/protobuf" => Ok(Export::Otlp { endpoint }),
        other => Err(format!(
            "OTLP protocol {other:?} is not supported: use http/protobuf"
        )),
    }
}

/// Installs the tracer provider, once per process. `service` names the
/// function unless `OTEL_SERVICE_NAME` does. A bad exporter setting is
/// reported and leaves tracing on without export: losing spans must never
/// stop events.
pub fn init(service: &str) {
    if PROVIDER.get().is_some() {
        return;
    }
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_string());
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource.build());
    match export_from(|k| std::env::var(k).ok()).and_then(|e| exporter(&e)) {
        Ok(Some(exporter)) => builder = builder.with_batch_exporter(Logged(exporter)),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "tracing export is off"),
    }
    let provider = builder.build();
    let _ = TRACER.set(provider.tracer("tekton-relay"));
    let _ = PROVIDER.set(provider);
}

fn exporter(export: &Export) -> Result<Option<opentelemetry_otlp::SpanExporter>, String> {
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    let Export::Otlp { endpoint } = export else {
        return Ok(None);
    };
    let headers = match std::env::var_os(OTLP_HEADERS_FILE) {
        Some(path) => headers_file(std::path::Path::new(&path))?,
        None => HashMap::new(),
    };
    // The host only: an endpoint URL may carry credentials.
    let host = url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    tracing::info!(%host, headers = headers.len(), "exporting traces over OTLP");
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(export_client()?)
        .with_endpoint(endpoint.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_headers(headers)
        .build()
        .map(Some)
        .map_err(|e| format!("OTLP exporter: {e}"))
}

/// The exporter's HTTP client: the one the OTLP crate would make, but
/// following no redirect (a collector's `307` must not carry the spans and
/// the collector's credentials elsewhere). Blocking, as the batch processor
/// runs on its own thread; built on a thread of its own, since a blocking
/// client cannot be made inside the async runtime.
fn export_client() -> Result<reqwest::blocking::Client, String> {
    let millis = [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.trim().parse::<u64>().ok())
    .unwrap_or(10_000);
    let timeout = std::time::Duration::from_millis(millis);
    std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
    })
    .join()
    .map_err(|_| "OTLP exporter: the HTTP client could not be built".to_string())?
    .map_err(|e| format!("OTLP exporter: {e}"))
}

/// The OTLP exporter, its failures logged: the SDK's own diagnostics are
/// not built in, and spans lost in silence would look like no traffic.
#[derive(Debug)]
struct Logged(opentelemetry_otlp::SpanExporter);

impl opentelemetry_sdk::trace::SpanExporter for Logged {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let spans = batch.len();
        let result = self.0.export(batch).await;
        if let Err(e) = &result {
            // The error's text holds the endpoint URL and the collector's
            // answer, either of which may carry a credential: the status only.
            let status = answer_status(&e.to_string());
            tracing::warn!(spans, status, "spans could not be exported");
        }
        result
    }

    fn shutdown_with_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

/// The collector's HTTP status in an OTLP export error, if it answered: the
/// exporter's own words (`Status Code: 503`) or its HTTP client's
/// (`Status(503, …)`).
fn answer_status(error: &str) -> Option<u16> {
    ["Status Code: ", "Status("].iter().find_map(|marker| {
        let rest = &error[error.find(marker)? + marker.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// Names a file of headers for the OTLP endpoint (a collector's API key):
/// secrets stay out of the environment, unlike `OTEL_EXPORTER_OTLP_HEADERS`.
pub const OTLP_HEADERS_FILE: &str = "RELAY_OTLP_HEADERS_FILE";

/// `name=value` pairs, one per line or comma-separated (the format of
/// `OTEL_EXPORTER_OTLP_HEADERS`). Errors name the file and the entry's
/// position, never its content.
pub fn headers_file(path: &std::path::Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{OTLP_HEADERS_FILE} {}: {}", path.display(), e.kind()))?;
    let mut headers = HashMap::new();
    let entries = text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty());
    for (i, entry) in entries.enumerate() {
        let parsed = entry
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, v)| {
                http::HeaderName::from_bytes(k.as_bytes()).is_ok()
                    && http::HeaderValue::from_str(v).is_ok()
            });
        let Some((k, v)) = parsed else {
            return Err(format!(
                "{OTLP_HEADERS_FILE} {}: entry {} is not name=value",
                path.display(),
                i + 1
            ));
        };
        headers.insert(k.to_string(), v.to_string());
    }
    Ok(headers)
}

/// Exports the spans ended so far (Lambda, before the sandbox freezes). It
/// blocks on the export, so async callers run it on a blocking thread.
pub fn flush() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.force_flush()
    {
        tracing::warn!(error = %e, "spans could not be exported");
    }
}

/// Flushes and stops export (process exit).
pub fn shutdown() {
    if let Some(p) = PROVIDER.get()
        && let Err(e) = p.shutdown()
    {
        tracing::warn!(error = %e, "spans could not be exported at exit");
    }
}

/// The context a `traceparent` (and optional `tracestate`) names; the empty
/// context when absent or malformed, so a bad header starts a new trace
/// rather than failing the event.
pub fn parent(traceparent: Option<&str>, tracestate: Option<&str>) -> Context {
    let Some(tp) = traceparent else {
        return Context::new();
    };
    let mut carrier = HashMap::from([(TRACEPARENT.to_string(), tp.trim().to_string())]);
    if let Some(ts) = tracestate {
        carrier.insert(TRACESTATE.to_string(), ts.to_string());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// Is `traceparent` a valid W3C trace context?
pub fn is_valid(traceparent: &str) -> bool {
    parent(Some(traceparent), None)
        .span()
        .span_context()
        .is_valid()
}

/// `traceparent` (and `tracestate`, if any) for `cx`'s span; empty for an
/// invalid or empty context.
pub fn headers_for(cx: &Context) -> Vec<(&'static str, String)> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    [TRACEPARENT, TRACESTATE]
        .into_iter()
        .filter_map(|k| Some((k, carrier.remove(k)?)))
        .collect()
}

/// Sets `traceparent`/`tracestate` on an outgoing request for `cx`'s span.
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    for (k, v) in headers_for(cx) {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
}

/// Starts a span under `parent` and returns the context holding it. Before
/// [`init`] (a library caller, a unit test) `parent` passes through as is.
pub fn start(
    name: impl Into<std::borrow::Cow<'static, str>>,
    kind: SpanKind,
    parent: &Context,
    attributes: Vec<KeyValue>,
) -> Context {
    let Some(tracer) = TRACER.get() else {
        return parent.clone();
    };
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(tracer, parent);
    parent.with_span(span)
}

/// The ingress's span for an event it forwards, under the event's trace
/// context (`Original::trace_context`).
pub fn start_forward(
    traceparent: Option<&str>,
    tracestate: Option<&str>,
    event_type: &str,
) -> Context {
    start(
        "forward event",
        SpanKind::Producer,
        &parent(traceparent, tracestate),
        vec![KeyValue::new(
            "cloudevents.event_type",
            event_type.to_string(),
        )],
    )
}

/// The client span of one provider request: named by method, attributed by
/// host and port only.
pub fn start_request(parent: &Context, method: &http::Method, url: &url::Url) -> Context {
    let mut attributes = vec![KeyValue::new(
        "http.request.method",
        method.as_str().to_string(),
    )];
    if let Some(host) = url.host_str() {
        attributes.push(KeyValue::new("server.address", host.to_string()));
    }
    if let Some(port) = url.port_or_known_default() {
        attributes.push(KeyValue::new("server.port", i64::from(port)));
    }
    start(
        method.as_str().to_string(),
        SpanKind::Client,
        parent,
        attributes,
    )
}

/// Ends `cx`'s span with an outcome attribute, as an error when `failed`.
/// The description is a fixed word, never a message (messages may echo
/// secrets).
pub fn end(cx: &Context, key: &'static str, outcome: &str, failed: bool) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(key, outcome.to_string()));
    if failed {
        span.set_status(Status::error(outcome.to_string()));
    }
    span.end();
}

/// Records a provider answer's status on a client span and ends it.
pub fn end_request(cx: &Context, status: Option<u16>, outcome: &str, failed: bool) {
    if let Some(s) = status {
        cx.span()
            .set_attribute(KeyValue::new("http.response.status_code", i64::from(s)));
    }
    end(cx, "relay.result", outcome, failed);
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_is_off_unless_an_endpoint_is_set() {
        assert_eq!(export_from(env(&[])), Ok(Export::Off));
        assert_eq!(
            export_from(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")])),
            Ok(Export::Otlp {
                endpoint: "http://c:4318/v1/traces".into(),
            })
        );
        assert_eq!(
            export_from(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t/x"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ])),
            Ok(Export::Otlp {
                endpoint: "http://t/x".into(),
            })
        );
        assert_eq!(
            export_from(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ])),
            Ok(Export::Off)
        );
        for protocol in ["grpc", "http/json"] {
            let refused = export_from(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ]));
            assert!(refused.unwrap_err().contains("use http/protobuf"));
        }
        assert!(
            export_from(env(&[("OTEL_TRACES_EXPORTER", "zipkin")]))
                .unwrap_err()
                .contains("zipkin")
        );
    }

    #[test]
    fn otlp_headers_come_from_a_file_whose_errors_hide_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("headers");
        std::fs::write(&f, "x-api-key = k3y-s3cret\nx-team=relay, x-env=prod\n").unwrap();
        let h = headers_file(&f).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h["x-api-key"], "k3y-s3cret");
        assert_eq!(h["x-env"], "prod");
        std::fs::write(&f, "x-team=relay\nk3y-s3cret-without-a-name\n").unwrap();
        let e = headers_file(&f).unwrap_err();
        assert!(e.contains("entry 2 is not name=value"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let e = headers_file(&dir.path().join("absent")).unwrap_err();
        assert!(
            e.contains("RELAY_OTLP_HEADERS_FILE") && e.contains("absent"),
            "{e}"
        );
    }

    #[test]
    fn only_the_status_of_a_failed_export_is_kept() {
        let e = "OpenTelemetry trace export failed. Url: https://u:pw@c/v1/traces, Status Code: 503, Response: b\"k3y\"";
        assert_eq!(answer_status(e), Some(503));
        let e = "reqwest::Error { kind: Status(429, None), url: \"http://t:pw@c/v1/traces\" }";
        assert_eq!(answer_status(e), Some(429));
        assert_eq!(
            answer_status("reqwest::Error { kind: Request, url: \"https://c\" }"),
            None
        );
    }

    #[test]
    fn traceparent_is_parsed_or_ignored() {
        assert!(is_valid(TP));
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        let cx = parent(Some(TP), Some("vendor=abc"));
        let sc = cx.span().span_context().clone();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_remote() && sc.is_sampled());
        // Passing the same context on, unchanged, writes the same header.
        assert_eq!(
            headers_for(&cx),
            vec![
                (TRACEPARENT, TP.to_string()),
                (TRACESTATE, "vendor=abc".to_string())
            ]
        );
        assert!(headers_for(&Context::new()).is_empty());
    }
}
