//! Serving as one function: `ingress`, `dlq`, `router`, or one provider
//! type (its Notifications only). The same binary is every function: the name comes
//! from `relay function <name>` or `$RELAY_FUNCTION`, set by the Knative
//! manifests and the Terraform module.

/// The environment variable that names the function when the binary is
/// started with no arguments (the image's and Lambda's entry point).
pub const FUNCTION_ENV: &str = "RELAY_FUNCTION";

/// Serves as the function `name` until stopped.
pub async fn run(name: &str) -> Result<(), String> {
    relay_core::telemetry::init_for(Some(name));
    match name {
        "ingress" => {
            #[cfg(feature = "ingress")]
            return crate::ingress::serve().await;
            #[cfg(not(feature = "ingress"))]
            return Err(not_built(name));
        }
        "dlq" => {
            #[cfg(feature = "dlq")]
            return crate::dlq::serve().await;
            #[cfg(not(feature = "dlq"))]
            return Err(not_built(name));
        }
        "router" => crate::router::serve().await,
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

#[cfg(not(all(feature = "ingress", feature = "dlq")))]
fn not_built(name: &str) -> String {
    format!("this build has no {name} function (built without the cargo feature {name:?})")
}

fn unknown(name: &str) -> String {
    let types: Vec<&str> = crate::PROVIDERS.iter().map(|r| r.name).collect();
    format!(
        "unknown function {}: ingress, dlq, router, or a provider type ({})",
        relay_core::escape::log_text(name),
        types.join(", ")
    )
}
