//! A Kubernetes Service in front of several replicas, as a test sees it:
//! one address, each request to the next replica in turn (what kube-proxy's
//! round robin does to a Knative Service's pods). Requests and answers pass
//! unchanged, headers and body; a replica that cannot be reached is a 502,
//! as the activator answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

struct Backends {
    urls: Vec<String>,
    next: AtomicUsize,
    client: reqwest::Client,
}

/// The balancer: serving until dropped.
pub struct Balancer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    /// One address for `replicas` (base URLs).
    pub async fn start(replicas: Vec<String>) -> Balancer {
        assert!(!replicas.is_empty());
        let state = Arc::new(Backends {
            urls: replicas,
            next: AtomicUsize::new(0),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Balancer { url, task }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(b): State<Arc<Backends>>, req: Request) -> Response {
    let i = b.next.fetch_add(1, Ordering::Relaxed) % b.urls.len();
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let mut out = b
        .client
        .request(parts.method, format!("{}{path}", b.urls[i]))
        .body(body);
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            out = out.header(k, v);
        }
    }
    match out.send().await {
        Ok(r) => {
            let mut resp = Response::builder().status(r.status());
            for (k, v) in r.headers() {
                if k != "content-length" && k != "transfer-encoding" {
                    resp = resp.header(k, v);
                }
            }
            let bytes = r.bytes().await.unwrap_or_default();
            resp.body(Body::from(bytes)).unwrap()
        }
        Err(_) => (axum::http::StatusCode::BAD_GATEWAY, "replica unreachable").into_response(),
    }
}
