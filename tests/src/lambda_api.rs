//! A Lambda Runtime API server speaking the documented protocol
//! (`/2018-06-01/runtime/...`), so a function binary runs here exactly as
//! it does on Lambda: it long-polls for the next invocation and posts the
//! response or the error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// The outcome of one invocation: the response, or the error document.
pub type Invocation = Result<Value, Value>;

struct Inner {
    next: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Invocation>>>,
    init_error: Mutex<Option<Value>>,
}

#[derive(Clone)]
pub struct RuntimeApi {
    inner: Arc<Inner>,
    queue: mpsc::UnboundedSender<(String, Value)>,
    pub addr: std::net::SocketAddr,
}

impl RuntimeApi {
    pub async fn start() -> RuntimeApi {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            next: tokio::sync::Mutex::new(rx),
            waiting: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        RuntimeApi {
            inner,
            queue: tx,
            addr,
        }
    }

    /// The environment a function process needs to run against this API.
    pub fn env(&self, function: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", function.to_string()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "test".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Invokes the function with `payload` and waits for its answer.
    pub async fn invoke(&self, payload: Value) -> Invocation {
        let id = uuid_like();
        let (tx, rx) = oneshot::channel();
        self.inner.waiting.lock().unwrap().insert(id.clone(), tx);
        self.queue.send((id, payload)).unwrap();
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(r)) => r,
            _ => panic!(
                "the function did not answer (init error: {:?})",
                self.inner.init_error.lock().unwrap()
            ),
        }
    }
}

/// A Lambda Function URL invocation (payload format 2.0) of `POST /`.
pub fn function_url_event(f: &crate::fixtures::RequestFile, extra: &[(&str, &str)]) -> Value {
    function_url_event_from(f, "10.0.0.1", extra)
}

/// As [`function_url_event`], from `source_ip` (what AWS saw).
pub fn function_url_event_from(
    f: &crate::fixtures::RequestFile,
    source_ip: &str,
    extra: &[(&str, &str)],
) -> Value {
    let mut headers = serde_json::Map::new();
    for (k, v) in f.send_headers() {
        headers.insert(k.to_ascii_lowercase(), v.into());
    }
    for (k, v) in extra {
        headers.insert(k.to_string(), (*v).into());
    }
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc", "requestId": "r1", "routeKey": "$default", "stage": "$default",
            "time": "16/May/2024:00:48:58 +0000", "timeEpoch": 1715820538000i64,
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": source_ip, "userAgent": "Go-http-client/1.1"}
        },
        "body": String::from_utf8(f.body_bytes()).unwrap(),
        "isBase64Encoded": false
    })
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "00000000-0000-4000-8000-{:012}",
        N.fetch_add(1, Ordering::SeqCst)
    )
}

async fn next(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    let (id, payload) = inner.next.lock().await.recv().await.expect("invocations");
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 30_000;
    let mut h = HeaderMap::new();
    h.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
    h.insert(
        "lambda-runtime-deadline-ms",
        deadline.to_string().parse().unwrap(),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:test"
            .parse()
            .unwrap(),
    );
    h.insert(
        "lambda-runtime-trace-id",
        "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1"
            .parse()
            .unwrap(),
    );
    (StatusCode::OK, h, serde_json::to_vec(&payload).unwrap())
}

fn finish(inner: &Inner, id: &str, r: Invocation) -> StatusCode {
    match inner.waiting.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(r);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    finish(
        &inner,
        &id,
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)),
    )
}

async fn error(State(inner): State<Arc<Inner>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    finish(
        &inner,
        &id,
        Err(serde_json::from_slice(&body).unwrap_or(Value::Null)),
    )
}

async fn init_error(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    *inner.init_error.lock().unwrap() = serde_json::from_slice(&body).ok();
    StatusCode::ACCEPTED
}
