//! A provider that misbehaves on purpose: a real TCP server speaking just
//! enough HTTP/1.1, so it can do what a framework would not let it — reset a
//! connection, never answer, or answer after the client gave up. The answer
//! for each request comes from a repeating pattern of behaviours.
//!
//! An effect counts as applied only when the answer could be written to a
//! client still waiting for it: an answer the client abandoned (timed out)
//! is recorded as `abandoned`, as a transactional provider would roll it back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer `status` (with `Retry-After` seconds if given) after `delay`.
    Answer {
        status: u16,
        retry_after: Option<u64>,
        delay: Duration,
    },
    /// Close the connection without answering (TCP reset).
    Reset,
    /// Never answer; hold the connection until the client closes it.
    Hang,
}

impl Behaviour {
    pub const OK: Behaviour = Behaviour::status(200);

    pub const fn status(status: u16) -> Behaviour {
        Behaviour::Answer {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }

    pub const fn slow(status: u16, delay: Duration) -> Behaviour {
        Behaviour::Answer {
            status,
            retry_after: None,
            delay,
        }
    }

    /// Anything but a prompt 2xx.
    pub fn is_fault(&self) -> bool {
        !matches!(self, Behaviour::Answer { status: 200..=299, delay, .. } if delay.is_zero())
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub body: serde_json::Value,
    pub behaviour: Behaviour,
    /// The status written back; `None` when reset, hung, or the client had
    /// gone by the time the answer was ready.
    pub answered: Option<u16>,
}

#[derive(Default)]
struct Inner {
    pattern: Vec<Behaviour>,
    next: usize,
    hits: Vec<Hit>,
}

#[derive(Clone)]
pub struct FaultyServer {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

impl FaultyServer {
    /// Serves `pattern` over and over (request n gets `pattern[n % len]`).
    pub async fn start(pattern: &[Behaviour]) -> FaultyServer {
        assert!(!pattern.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = FaultyServer {
            inner: Arc::new(Mutex::new(Inner {
                pattern: pattern.to_vec(),
                ..Default::default()
            })),
            addr: listener.local_addr().unwrap(),
        };
        let server = s.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move { server.handle(conn).await });
            }
        });
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Replaces the pattern from the next request on.
    pub fn set_pattern(&self, pattern: &[Behaviour]) {
        assert!(!pattern.is_empty());
        let mut inner = self.inner.lock().unwrap();
        inner.pattern = pattern.to_vec();
        inner.next = 0;
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.inner.lock().unwrap().hits.clone()
    }

    /// Requests that met a fault (anything but a prompt 2xx).
    pub fn faults(&self) -> usize {
        self.hits()
            .iter()
            .filter(|h| h.behaviour.is_fault())
            .count()
    }

    /// The `event_id` of every request answered 2xx, once per answer.
    pub fn accepted_event_ids(&self) -> Vec<String> {
        self.hits()
            .iter()
            .filter(|h| matches!(h.answered, Some(200..=299)))
            .filter_map(|h| h.body["event_id"].as_str().map(str::to_string))
            .collect()
    }

    async fn handle(&self, mut conn: TcpStream) {
        // One request per connection (`Connection: close`): each request
        // meets its own behaviour, whatever the client's pooling.
        let Some(body) = read_request(&mut conn).await else {
            return;
        };
        let behaviour = {
            let mut inner = self.inner.lock().unwrap();
            let b = inner.pattern[inner.next % inner.pattern.len()];
            inner.next += 1;
            b
        };
        let answered = match behaviour {
            Behaviour::Reset => {
                // Linger 0 makes the close a reset; with a zero timeout the
                // drop does not block (the deprecation is about non-zero ones).
                #[allow(deprecated)]
                let _ = conn.set_linger(Some(Duration::ZERO));
                drop(conn);
                None
            }
            Behaviour::Hang => {
                // Bounded: the relay's request timeout is far shorter.
                let mut buf = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf)).await;
                None
            }
            Behaviour::Answer {
                status,
                retry_after,
                delay,
            } => {
                tokio::time::sleep(delay).await;
                if client_gone(&conn) {
                    None
                } else {
                    let retry = retry_after
                        .map(|s| format!("retry-after: {s}\r\n"))
                        .unwrap_or_default();
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n{retry}\r\n"
                    );
                    let ok =
                        conn.write_all(head.as_bytes()).await.is_ok() && conn.flush().await.is_ok();
                    ok.then_some(status)
                }
            }
        };
        self.inner.lock().unwrap().hits.push(Hit {
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            behaviour,
            answered,
        });
    }
}

/// True when the client closed its side (it timed out and gave up).
fn client_gone(conn: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    match conn.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Reads one request with a `content-length` body; `None` if the client
/// closed first or sent something this server does not speak.
async fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 || buf.len() > 1 << 20 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + len].to_vec())
}
