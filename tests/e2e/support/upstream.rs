//! A real HTTP upstream on loopback that records every request and answers with a JSON echo.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// How the upstream behaves.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Echo the request as JSON.
    Echo,
    /// Answer with this body and content type.
    Fixed(&'static str, &'static str),
    /// Accept connections and never answer.
    Silent,
    /// Echo, fail, hang or drop connections as the test switches it ([`Faults`]).
    Faulty(Arc<Faults>),
}

/// What a [`Behaviour::Faulty`] upstream does now; switched by the test while it runs.
#[derive(Debug, Default)]
pub struct Faults {
    mode: std::sync::atomic::AtomicU8,
}

/// A mode of a faulty upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Echo, as [`Behaviour::Echo`].
    Healthy = 0,
    /// Answer 500.
    Error = 1,
    /// Answer nothing until the mode changes (then answer as the new mode says).
    Hang = 2,
    /// Close the connection without an answer.
    Close = 3,
    /// Echo after 50 ms.
    Slow = 4,
}

impl Faults {
    /// A switch starting in `mode`.
    pub fn new(mode: Fault) -> Arc<Faults> {
        let faults = Arc::new(Faults::default());
        faults.set(mode);
        faults
    }

    /// Switch to `mode`.
    pub fn set(&self, mode: Fault) {
        self.mode
            .store(mode as u8, std::sync::atomic::Ordering::SeqCst);
    }

    /// The mode now.
    pub fn get(&self) -> Fault {
        match self.mode.load(std::sync::atomic::Ordering::SeqCst) {
            1 => Fault::Error,
            2 => Fault::Hang,
            3 => Fault::Close,
            4 => Fault::Slow,
            _ => Fault::Healthy,
        }
    }
}

/// A running upstream.
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// An echoing upstream named `name` (it answers with header `x-upstream: name`).
    pub async fn echo(name: &str) -> Upstream {
        Upstream::start(name, Behaviour::Echo).await
    }

    /// An upstream with the given behaviour.
    pub async fn start(name: &str, behaviour: Behaviour) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Upstream::serve(listener, name, behaviour)
    }

    /// An upstream listening on `addr` (none if it cannot be bound).
    pub async fn start_on(addr: SocketAddr, name: &str, behaviour: Behaviour) -> Option<Upstream> {
        let listener = TcpListener::bind(addr).await.ok()?;
        Some(Upstream::serve(listener, name, behaviour))
    }

    fn serve(listener: TcpListener, name: &str, behaviour: Behaviour) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let name: Arc<str> = Arc::from(name);
        let recorder = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, name, behaviour) = (recorder.clone(), name.clone(), behaviour.clone());
                if matches!(behaviour, Behaviour::Silent) {
                    // Hold the connection open, say nothing.
                    tokio::spawn(async move {
                        let _stream = stream;
                        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                    });
                    continue;
                }
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let (seen, name, behaviour) = (seen.clone(), name.clone(), behaviour.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let record = Seen {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts.headers.clone(),
                            body: body.clone(),
                        };
                        seen.lock().unwrap().push(record);
                        if let Behaviour::Faulty(faults) = &behaviour {
                            while faults.get() == Fault::Hang {
                                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                            }
                            match faults.get() {
                                Fault::Error => {
                                    let response = http::Response::builder()
                                        .status(500)
                                        .header("x-upstream", &*name)
                                        .body(Full::new(Bytes::from_static(b"fault")))
                                        .unwrap();
                                    return Ok(response);
                                }
                                Fault::Close => {
                                    return Err(std::io::Error::other("fault: connection dropped"));
                                }
                                Fault::Slow => {
                                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                }
                                Fault::Healthy | Fault::Hang => {}
                            }
                        }
                        let (content_type, payload) = match behaviour {
                            Behaviour::Fixed(content_type, body) => {
                                (content_type, Bytes::from_static(body.as_bytes()))
                            }
                            _ => {
                                let headers: serde_json::Map<String, serde_json::Value> = parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into(),
                                        )
                                    })
                                    .collect();
                                let echo = serde_json::json!({
                                    "upstream": &*name,
                                    "method": parts.method.as_str(),
                                    "uri": parts.uri.to_string(),
                                    "headers": headers,
                                    "body": String::from_utf8_lossy(&body),
                                });
                                ("application/json", Bytes::from(echo.to_string()))
                            }
                        };
                        let response = http::Response::builder()
                            .header("content-type", content_type)
                            .header("x-upstream", &*name)
                            .header("connection", "keep-alive, x-hop")
                            .header("x-hop", "must-not-pass")
                            .body(Full::new(payload))
                            .unwrap();
                        Ok::<_, std::io::Error>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, seen, task }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Number of requests received.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// `host:port` as a TOML string literal.
    pub fn target(&self) -> String {
        format!("\"{}\"", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An address nothing listens on.
pub async fn unreachable_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
