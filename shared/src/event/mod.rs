//! The event layer: what describes an event and a configuration — the
//! normalized event model, the decoders, the configuration and its
//! filters, templates, escaping, secret types and the sample event. It
//! imports nothing from the layers above (docs/design.md, "Layers").

pub mod config;
pub mod decode;
pub mod escape;
pub mod field;
pub mod model;
pub mod sample;
pub mod secret;
pub mod template;
