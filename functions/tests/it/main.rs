//! The process-level tests of the `relay` binary, (generated from the
//! provider table) each provider's `src/<provider>/function_tests.rs`, and
//! the HTTP contract of each router, in-process (`http_contract`).

#[cfg(all(feature = "ingress", feature = "webhook"))]
mod aws_chain;
#[cfg(feature = "ingress")]
mod aws_dlq;
mod aws_secrets;
mod bounded_labels;
#[cfg(all(feature = "ingress", feature = "config-s3"))]
mod deploy_aws_doc;
mod deploy_knative_doc;
mod deployables;
#[cfg(feature = "dlq")]
mod dlq;
mod e2e_delivery;
mod e2e_scenarios;
mod fail_open;
mod faults;
mod flux;
mod function_lambda;
mod function_rotation;
mod function_secure_default;
mod hostile_input;
mod hostile_providers;
mod http_contract;
mod knative_e2e;
// The container image: the ingress, the dlq and provider functions in it.
#[cfg(all(
    feature = "ingress",
    feature = "dlq",
    feature = "webhook",
    feature = "log"
))]
mod image;
#[cfg(feature = "ingress")]
mod ingress;
#[cfg(feature = "ingress")]
mod ingress_rate_limit;
#[cfg(feature = "ingress")]
mod ingress_secure_default;
mod rate_limits;
mod reload;
mod remote_config;
mod secure_default;
mod shared_store;
mod state_table;
mod tracing;
mod validate;

include!(concat!(env!("OUT_DIR"), "/function_tests.rs"));
