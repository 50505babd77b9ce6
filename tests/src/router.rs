//! A function's router called in-process (`tower::ServiceExt::oneshot`), no
//! port: the HTTP contract's tests (status codes, error bodies, outcomes)
//! build the app with the crates' public functions and ask it as a client
//! would. What needs a process (binding, signals, the log, timeouts on a
//! real socket) stays with [`crate::process`].

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request};
use relay_core::config::RelayConfig;
use relay_core::provider::Registry;
use relay_core::server::{Door, SharedApp};
use serde_json::Value;
use tower::ServiceExt;

use crate::fixtures::RequestFile;

/// The most of an answer's body a test reads.
const MAX_ANSWER: usize = 64 << 20;

/// One request to a router.
pub struct Call {
    method: Method,
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    peer: Option<SocketAddr>,
}

impl Call {
    pub fn new(method: Method, uri: &str) -> Call {
        Call {
            method,
            uri: uri.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            peer: None,
        }
    }

    pub fn get(uri: &str) -> Call {
        Call::new(Method::GET, uri)
    }

    pub fn post(uri: &str) -> Call {
        Call::new(Method::POST, uri)
    }

    pub fn delete(uri: &str) -> Call {
        Call::new(Method::DELETE, uri)
    }

    /// `POST /` of a request file, its headers and body as a sender puts
    /// them on the wire.
    pub fn event(f: &RequestFile) -> Call {
        let mut c = Call::new(Method::from_bytes(f.method.as_bytes()).unwrap(), "/");
        for (k, v) in f.send_headers() {
            c = c.header(k, v);
        }
        c.body(f.body_bytes())
    }

    /// A header; its value as bytes, so a test can send what is not UTF-8.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Call {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    pub fn bearer(self, token: &str) -> Call {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Call {
        self.body = body.into();
        self
    }

    /// The caller's address, as a listener would give it (`ConnectInfo`):
    /// what the per-source inbound limit keys on.
    pub fn from_peer(mut self, peer: SocketAddr) -> Call {
        self.peer = Some(peer);
        self
    }

    /// Sends it to `router`: the answer, read whole.
    pub async fn send(self, router: &Router) -> Answer {
        let mut req = Request::builder().method(self.method).uri(self.uri);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_slice());
        }
        let mut req = req.body(Body::from(self.body)).unwrap();
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }
}

/// A router's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON; `Null` when it is not.
    pub json: Value,
}

impl Answer {
    /// `error.code` of an error body.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or_default()
    }

    /// The status and `error.code`, for one assertion on both.
    pub fn status_code(&self) -> (u16, &str) {
        (self.status, self.code())
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The relay's app (`relay serve`, a provider function) built in-process
/// from a config with `registry`'s providers, as the binary builds it; no
/// listener.
pub struct RelayApp {
    pub app: SharedApp,
    pub router: Router,
    /// `$DIR` of the config: dead letters, state.
    pub dir: tempfile::TempDir,
}

impl RelayApp {
    /// Builds the app on `config` (`$DIR`: a folder of its own). As without
    /// a listener (Lambda), callers are not local until [`RelayApp::door`].
    pub async fn build(config: &str, registry: &Registry) -> RelayApp {
        let dir = tempfile::tempdir().unwrap();
        let text = config.replace("$DIR", &dir.path().display().to_string());
        let cfg = RelayConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let app = relay_core::runtime::build_app(&cfg, registry)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let router = relay_core::server::router(app.clone());
        RelayApp { app, router, dir }
    }

    /// As [`RelayApp::build`], with the listener's door recorded as the
    /// binary records it when it binds: on loopback (callers are local:
    /// answers carry provider detail) or beyond it.
    pub async fn with_door(config: &str, registry: &Registry, loopback: bool) -> RelayApp {
        let relay = RelayApp::build(config, registry).await;
        let ip = if loopback { "127.0.0.1" } else { "0.0.0.0" };
        relay.app.set_door(Door {
            addr: SocketAddr::new(ip.parse().unwrap(), 8080),
            loopback,
            insecure_no_auth: false,
            insecure_switch: "--insecure-no-auth",
        });
        relay
    }

    pub async fn call(&self, c: Call) -> Answer {
        c.send(&self.router).await
    }

    /// Posts a request file to `/`.
    pub async fn send(&self, f: &RequestFile) -> Answer {
        self.call(Call::event(f)).await
    }

    /// `/metrics` as anyone sees it (no credentials).
    pub async fn metrics(&self) -> String {
        let a = self.call(Call::get("/metrics")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.text
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}
