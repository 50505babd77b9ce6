//! The host layer: how a relay runs — the HTTP server and its router, the
//! Lambda adapter, the process runtime and config reload, request
//! classification at the door (ingress), inbound authentication and rate
//! limits, logging and metrics export. It imports from `event` and
//! `delivery`, never from `toolkit` (docs/design.md, "Layers").

pub mod auth;
pub mod door;
pub mod emf;
#[cfg(any(test, fuzzing))]
pub mod fuzz;
pub mod ingress;
pub mod lambda;
pub mod ratelimit;
pub mod reload;
pub mod remote_config;
pub mod runtime;
pub mod server;
pub mod telemetry;
