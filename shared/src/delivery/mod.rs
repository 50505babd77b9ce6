//! The delivery layer: what happens to an event once decoded — the engine,
//! verdicts, outbound requests and the transport that sends them, the
//! provider contract and registry, stores, dead letters, run summaries,
//! replay, metrics and trace spans. It imports only from `event` and
//! itself (docs/design.md, "Layers").

pub mod accumulator;
pub mod assemble;
pub mod deadletter;
pub mod engine;
pub mod metrics;
pub mod notification;
pub mod original;
pub mod otel;
pub mod outbound;
pub mod provider;
pub mod ratelimit;
pub mod redrive;
pub mod replay;
pub mod secret_url;
pub mod state;
pub mod store;
pub mod summary;
#[cfg(test)]
pub(crate) mod testkit;
pub mod transport;
pub mod verdict;
