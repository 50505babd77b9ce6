//! relay-core: everything a relay function shares, in four layers that
//! point one way (docs/design.md, "Layers"): the event model, decoders and
//! configuration (`event`); the delivery engine, transport, stores and dead
//! letters (`delivery`); and above delivery, side by side, the provider
//! toolkit (`toolkit`) and the hosts that run a relay (`host`). A module
//! imports only from its own layer or a layer below; no two files import
//! each other, directly or round a loop (`tests/tests/layers.rs`).

pub mod delivery;
pub mod event;
pub mod host;
pub mod toolkit;

pub use event::model::{RunEvent, RunState};

// The paths of the modules before the layers, for the crates outside
// relay-core (functions/*, tests/, fuzz/). Code inside relay-core uses the
// layered paths. Where a module's items moved to several files, a small
// module gathers them again under the old name.

pub use delivery::{
    accumulator, deadletter, metrics, notification, redrive, replay, secret_url, state, store,
    summary, transport,
};
pub use event::{config, decode, escape, field, model, sample, secret, template};
pub use host::{emf, lambda, reload, remote_config, telemetry};
pub use toolkit::{chat, family, githost, incident, message, oauth2};

/// `relay_core::auth`: inbound authentication (host) and its settings (event).
pub mod auth {
    pub use crate::event::config::auth::*;
    pub use crate::host::auth::*;
}

/// `relay_core::engine`: the engine, and the template context it used to
/// define.
pub mod engine {
    pub use crate::delivery::engine::*;
    pub use crate::event::template::{summary_template_context, template_context};
}

/// `relay_core::ingress`: the door's request parsing, and the event as
/// received.
pub mod ingress {
    pub use crate::delivery::original::*;
    pub use crate::host::ingress::*;
}

/// `relay_core::otel`: trace spans; `start_forward` with the signature it
/// had, taking the event as received.
pub mod otel {
    pub use crate::delivery::otel::*;

    /// The ingress's span for an event it forwards, under the event's
    /// context.
    pub fn start_forward(
        original: &crate::delivery::original::Original,
        event_type: &str,
    ) -> Context {
        let (tp, ts) = original.trace_context();
        crate::delivery::otel::start_forward(tp.as_deref(), ts.as_deref(), event_type)
    }
}

/// `relay_core::provider`: the provider contract, verdicts, outbound
/// requests and the toolkit's settings and params helpers.
pub mod provider {
    pub use crate::delivery::outbound::*;
    pub use crate::delivery::provider::*;
    pub use crate::delivery::verdict::*;
    pub use crate::toolkit::params::*;
}

/// `relay_core::ratelimit`: token buckets and the outbound limit
/// (delivery), the inbound limit (host).
pub mod ratelimit {
    pub use crate::delivery::ratelimit::*;
    pub use crate::host::ratelimit::*;
}

/// `relay_core::runtime`: running a function, the door's rules, engine
/// assembly and the deployment's config overrides.
pub mod runtime {
    pub use crate::delivery::assemble::build_engine;
    pub use crate::event::config::apply_env_overrides;
    pub use crate::host::door::*;
    pub use crate::host::runtime::*;
}

/// `relay_core::server`: the router and its handlers, and `error`, the
/// answer to a refused request (now `IntoResponse` on `IngressError`).
pub mod server {
    pub use crate::host::server::*;

    /// The answer to a refused request: its status and error body.
    pub fn error(e: &crate::host::ingress::IngressError) -> axum::response::Response {
        axum::response::IntoResponse::into_response(e)
    }
}
