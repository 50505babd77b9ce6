//! The provider toolkit, beside the hosts above delivery: what provider
//! families share — chat and incident rendering, message ids, git-host
//! helpers, OAuth2 client credentials and the settings and params helpers
//! of the provider contract. It imports from `event` and `delivery`, never
//! from `host` (docs/design.md, "Layers").

pub mod chat;
pub mod family;
pub mod githost;
pub mod incident;
pub mod message;
pub mod oauth2;
pub mod params;
