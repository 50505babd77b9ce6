//! The Bitbucket Server function: serves the Notifications whose Provider is Bitbucket Server.

use relay_core::provider::Registry;

// glibc malloc showed as a quarter of the relay's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let registry = Registry::new()
        .with(relay_bitbucketserver::BitbucketServerFactory)
        .serving_only(relay_bitbucketserver::TYPE);
    match relay_core::runtime::run_function(registry).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-bitbucketserver: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
