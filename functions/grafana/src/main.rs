//! The grafana function: serves the Notifications whose Provider is of type `grafana`.

use relay_core::provider::Registry;

// glibc malloc showed as a quarter of the relay's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let registry = Registry::new()
        .with(relay_grafana::GrafanaFactory)
        .serving_only(relay_grafana::TYPE);
    match relay_core::runtime::run_function(registry).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-grafana: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
