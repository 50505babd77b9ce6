//! JSON logs on stderr (stdout belongs to the `log` provider and, on
//! Lambda, to EMF metrics). Span fields, such as the CloudEvent id, appear on
//! every line of an event. Also installs OpenTelemetry tracing (`otel`),
//! named after the binary.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("RELAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .try_init();
    let service = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tekton-relay".into());
    crate::delivery::otel::init(&service);
}
