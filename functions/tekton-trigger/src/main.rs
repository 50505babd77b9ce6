//! The tekton-trigger function: serves the Notifications whose Provider is of type `tekton-trigger`.

use relay_core::provider::Registry;

// glibc malloc showed as a quarter of the relay's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let registry = Registry::new()
        .with(relay_tekton_trigger::TektonTriggerFactory)
        .serving_only(relay_tekton_trigger::TYPE);
    match relay_core::runtime::run_function(registry).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-tekton-trigger: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
