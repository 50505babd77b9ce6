//! The Tekton event relay's functions: every provider as a module (behind
//! its Cargo feature, listed once in the provider table of Cargo.toml), the
//! ingress, the dead-letter function, and what serves each of them
//! ([`function`]). The binary (`src/main.rs`) is all of them.

pub mod dlq;
pub mod function;
pub mod ingress;

/// One row of the provider table (`[package.metadata.relay.providers]` in
/// Cargo.toml), from which build.rs makes the modules and the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderRow {
    /// The Provider document's `type`, the function's name, the feature's.
    pub name: &'static str,
    /// git-host, chat, incident, issue-tracker, annotation, forward or log.
    pub family: &'static str,
    /// `store`: remembers what it posted (the store must be shared between
    /// replicas); `summary`: renders run summaries.
    pub needs: &'static [&'static str],
    /// Whether this build has it (its feature was on).
    pub enabled: bool,
}

include!(concat!(env!("OUT_DIR"), "/providers.rs"));
