//! A real HTTP server standing in for a provider: records every request and
//! answers from a per-path script (then 200).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub method: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the receiver answered.
    pub status: u16,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The request's W3C `traceparent` as (trace id, span id, flags); panics
    /// unless there is a valid one, as every provider request carries.
    pub fn traceparent(&self) -> (String, String, String) {
        let tp = self
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{} {} has no traceparent", self.method, self.path));
        let (trace, span, flags) = crate::otlp::split_traceparent(tp);
        let hex = |s: &str, n: usize| {
            s.len() == n && s.chars().all(|c| c.is_ascii_hexdigit()) && s.chars().any(|c| c != '0')
        };
        assert!(
            hex(&trace, 32) && hex(&span, 16) && flags.len() == 2,
            "{tp}"
        );
        (trace, span, flags)
    }
}

#[derive(Default)]
struct Inner {
    log: Vec<Recorded>,
    script: HashMap<String, VecDeque<(u16, Option<u64>)>>,
    sticky: HashMap<String, (u16, Option<u64>)>,
    delay: HashMap<String, std::time::Duration>,
    replies: HashMap<(String, String), (u16, serde_json::Value)>,
}

#[derive(Clone, Default)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub addr: Option<SocketAddr>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let mut r = Receiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        r.addr = Some(listener.local_addr().unwrap());
        let app = Router::new().fallback(record).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.unwrap())
    }

    /// The next answers on `path`, in order; `(status, Retry-After seconds)`.
    pub fn script(&self, path: &str, answers: &[(u16, Option<u64>)]) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .script
            .entry(path.into())
            .or_default()
            .extend(answers.iter().copied());
    }

    /// Answer `status` on `path` until told otherwise (`None`: back to 200).
    pub fn always(&self, path: &str, answer: Option<(u16, Option<u64>)>) {
        let mut inner = self.inner.lock().unwrap();
        match answer {
            Some(a) => inner.sticky.insert(path.into(), a),
            None => inner.sticky.remove(path),
        };
    }

    /// Answer `method path` with `status` and a JSON body (a provider API).
    /// `path` may carry a query (`/x?page=2`): a request matches its exact
    /// path and query first, then its path alone.
    pub fn reply(&self, method: &str, path: &str, status: u16, body: serde_json::Value) {
        self.inner
            .lock()
            .unwrap()
            .replies
            .insert((method.to_string(), path.to_string()), (status, body));
    }

    /// Answer requests on `path` only after `delay` (a slow provider).
    pub fn slow(&self, path: &str, delay: std::time::Duration) {
        self.inner.lock().unwrap().delay.insert(path.into(), delay);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().log.clone()
    }

    pub fn requests_on(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Requests on `path` that were answered 2xx.
    pub fn accepted_on(&self, path: &str) -> Vec<Recorded> {
        self.requests_on(path)
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// How many requests on `path` carrying the relay event `id`
    /// (`event_id` of the body) were answered 2xx.
    pub fn accepted_for_event(&self, path: &str, id: &str) -> usize {
        self.accepted_on(path)
            .iter()
            .filter(|r| r.json()["event_id"] == id)
            .count()
    }

    pub fn clear(&self) {
        self.inner.lock().unwrap().log.clear();
    }
}

async fn record(State(r): State<Receiver>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let method = parts.method.to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let delay = r.inner.lock().unwrap().delay.get(&path).copied();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut inner = r.inner.lock().unwrap();
    let with_query = format!("{path}?{query}");
    let reply = inner
        .replies
        .get(&(method.clone(), with_query))
        .or_else(|| inner.replies.get(&(method.clone(), path.clone())))
        .cloned();
    if let Some((status, json)) = reply {
        inner.log.push(Recorded {
            path,
            method,
            query,
            headers: parts.headers,
            body,
            status,
        });
        return (StatusCode::from_u16(status).unwrap(), axum::Json(json)).into_response();
    }
    let (status, retry_after) = inner
        .script
        .get_mut(&path)
        .and_then(VecDeque::pop_front)
        .or_else(|| inner.sticky.get(&path).copied())
        .unwrap_or((200, None));
    inner.log.push(Recorded {
        path,
        method,
        query,
        headers: parts.headers,
        body,
        status,
    });
    let mut resp = (StatusCode::from_u16(status).unwrap(), "").into_response();
    if let Some(s) = retry_after {
        resp.headers_mut().insert("retry-after", s.into());
    }
    resp
}
