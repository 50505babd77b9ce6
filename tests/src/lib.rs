//! Test harness shared by the integration and end-to-end tests and the
//! benchmark: the fixture format, a recording webhook receiver, a real
//! `relay serve` process, and a function's router called in-process.

pub mod attack;
pub mod balancer;
pub mod broker;
pub mod bus;
pub mod conformance;
pub mod expect;
pub mod faulty;
pub mod fixtures;
pub mod function;
pub mod image;
pub mod lambda_api;
pub mod metrics;
pub mod otlp;
pub mod process;
pub mod receiver;
pub mod router;
pub mod servers;
pub mod shell;
pub mod terraform;
