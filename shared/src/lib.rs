//! relay-core: everything a relay function shares — the event model,
//! decoding, configuration, the delivery engine, stores, dead letters and
//! the HTTP runtime.

pub mod accumulator;
pub mod auth;
pub mod chat;
pub mod config;
pub mod deadletter;
pub mod decode;
pub mod emf;
pub mod engine;
pub mod escape;
pub mod field;
pub mod githost;
pub mod incident;
pub mod ingress;
pub mod lambda;
pub mod message;
pub mod metrics;
pub mod model;
pub mod notification;
pub mod oauth2;
pub mod otel;
pub mod provider;
pub mod ratelimit;
pub mod reload;
pub mod replay;
pub mod runtime;
pub mod sample;
pub mod secret;
pub mod secret_url;
pub mod server;
pub mod state;
pub mod store;
pub mod summary;
pub mod telemetry;
pub mod template;
pub mod transport;

pub use model::{RunEvent, RunState};
