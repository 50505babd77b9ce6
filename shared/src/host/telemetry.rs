//! JSON logs on stderr (stdout belongs to the `log` provider and, on
//! Lambda, to EMF metrics). Span fields, such as the CloudEvent id, appear on
//! every line of an event. Also installs OpenTelemetry tracing (`otel`),
//! named after the function (`relay-<function>`), else the binary.

use tracing_subscriber::EnvFilter;

/// As [`init_for`] with no function: named after the binary.
pub fn init() {
    init_for(None)
}

/// Installs logging and tracing once per process (later calls do
/// nothing); `function` names the service `relay-<function>`.
pub fn init_for(function: Option<&str>) {
    let filter = EnvFilter::try_from_env("RELAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .try_init();
    let service = function.map(|f| format!("relay-{f}")).or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
    });
    crate::delivery::otel::init(service.as_deref().unwrap_or("tekton-relay"));
}
