//! The admin listener: what an operator (and a load balancer, and Prometheus) asks a running
//! gateway. Its own address, never a proxy listener's; served on the control runtime, so a
//! saturated worker never delays a health check or a scrape.
//!
//! | path       | answers                                                               |
//! |------------|-----------------------------------------------------------------------|
//! | `/health`  | 200 while the process serves (no token needed)                        |
//! | `/ready`   | 200 when config and plugins are loaded, 503 while draining (no token) |
//! | `/metrics` | Prometheus text format                                                |
//! | `/config`  | the effective config as JSON, secrets redacted, with SHA-256 and load time |
//! | `/routes`  | the compiled route table in match order                               |
//! | `/plugins` | every plugin use: module, hash, imports, grants, limits, instances, calls |
//! | `POST /config/reload` | compile the config file again and serve it, or keep the old one and answer why |
//! | `POST /config/plan` | what replacing the serving config with the body's would change |
//!
//! With `[admin] token` set, everything but `/health` and `/ready` needs
//! `Authorization: Bearer TOKEN` (401 otherwise).

mod inventory;

use crate::compile::{ConfigView, plan};
use crate::config;
use crate::proxy::Live;
use crate::telemetry::{self, metrics};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Largest config `POST /config/plan` reads.
const MAX_PLANNED_BYTES: usize = 4 << 20;

/// How long an admin client may take to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The config being served as `/config` shows it, and how the last reload went; kept by
/// the reloader, read by the admin listener.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConfigStatus {
    /// The serving config.
    #[serde(flatten)]
    pub view: ConfigView,
    /// Diagnostics of the last reload, if it failed (the old config kept serving).
    pub last_reload_error: Option<String>,
    /// The serving config file's text, for `POST /config/plan` (never shown: secrets).
    #[serde(skip)]
    pub text: Arc<str>,
    /// The config file, whose directory a planned config's relative paths are read from.
    #[serde(skip)]
    pub path: std::path::PathBuf,
}

/// Asks the reloader to compile the config file again; the answer says whether the new
/// config now serves (`Ok`), or why the old one still does.
pub struct ReloadRequest {
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<String, String>>,
}

/// What the admin listener serves from.
pub struct Admin {
    /// The snapshot being served.
    live: Arc<Live>,
    /// `/config`.
    status: Arc<ArcSwap<ConfigStatus>>,
    /// The reloader, for `POST /config/reload`.
    reloads: mpsc::Sender<ReloadRequest>,
    /// SHA-256 of the bearer token, when one is required.
    token_sha256: Option<[u8; 32]>,
}

impl Admin {
    /// Serve `live` and `status`, reload through `reloads`; require `token` when given.
    pub fn new(
        live: Arc<Live>,
        status: Arc<ArcSwap<ConfigStatus>>,
        reloads: mpsc::Sender<ReloadRequest>,
        token: Option<&str>,
    ) -> Self {
        Admin {
            live,
            status,
            reloads,
            token_sha256: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// `POST /config/reload`: 200 with the new config's hash, or 400 with the diagnostics
    /// (the old config keeps serving); 503 when no reloader listens (shutting down).
    async fn reload(&self) -> Response<Full<Bytes>> {
        let (reply, answer) = oneshot::channel();
        if self.reloads.send(ReloadRequest { reply }).await.is_err() {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not reloading: shutting down\n",
            );
        }
        match answer.await {
            Ok(Ok(sha256)) => json(&serde_json::json!({"result": "ok", "sha256": sha256})),
            Ok(Err(errors)) => {
                let mut response = json(&serde_json::json!({"result": "error", "errors": errors}));
                *response.status_mut() = StatusCode::BAD_REQUEST;
                response
            }
            Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not reloading: shutting down\n",
            ),
        }
    }

    /// Whether `request` carries the token (or none is required). Hashes are compared, so
    /// the comparison's time says nothing about the token's bytes.
    fn authorized(&self, request: &Request<Incoming>) -> bool {
        let Some(expected) = &self.token_sha256 else {
            return true;
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|token| <[u8; 32]>::from(Sha256::digest(token.trim().as_bytes())));
        presented.is_some_and(|presented| presented == *expected)
    }

    /// `POST /config/plan`: what replacing the serving config with the body's would change
    /// (200 `{"changes": bool, "plan": "…"}`), or why the body does not parse (400).
    async fn plan(&self, body: Incoming) -> Response<Full<Bytes>> {
        let body = match http_body_util::Limited::new(body, MAX_PLANNED_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "config over 4 MiB\n"),
        };
        let status = self.status.load();
        let base_dir = status
            .path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let file = status.path.display().to_string();
        let serving = config::parse(&file, &status.text, base_dir.clone());
        let planned = config::parse(
            &format!("{file} (planned)"),
            &String::from_utf8_lossy(&body),
            base_dir,
        );
        match (serving, planned) {
            (Ok(serving), Ok(planned)) => {
                let plan = plan::plan(&serving, &planned);
                json(&serde_json::json!({
                    "changes": plan.changes_anything(),
                    "widens_grants": plan.widens_grants(),
                    "plan": plan.to_string(),
                }))
            }
            (_, Err(errors)) | (Err(errors), _) => {
                let mut response =
                    json(&serde_json::json!({"result": "error", "errors": errors.to_string()}));
                *response.status_mut() = StatusCode::BAD_REQUEST;
                response
            }
        }
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        let path = path.as_str();
        let (allowed, allow) = match path {
            "/config/reload" | "/config/plan" => (request.method() == Method::POST, "POST"),
            _ => (
                request.method() == Method::GET || request.method() == Method::HEAD,
                "GET, HEAD",
            ),
        };
        if !allowed {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("only {allow} here\n"),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            return response;
        }
        match path {
            "/health" => return text(StatusCode::OK, "ok\n"),
            "/ready" if telemetry::is_ready() => return text(StatusCode::OK, "ready\n"),
            "/ready" => return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
            _ => {}
        }
        if !self.authorized(&request) {
            let mut response = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gateway admin\""),
            );
            return response;
        }
        let runtime = self.live.current();
        match path {
            "/config/reload" => self.reload().await,
            "/config/plan" => self.plan(request.into_body()).await,
            "/metrics" if metrics::enabled() => {
                inventory::update_instance_gauges(&runtime);
                inventory::update_connection_gauges(&runtime);
                let mut response = text(StatusCode::OK, metrics::render());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/metrics" => text(
                StatusCode::NOT_FOUND,
                "metrics are off ([admin] metrics = false)\n",
            ),
            "/config" => json(&serde_json::to_value(&**self.status.load()).unwrap_or_default()),
            "/routes" => json(&inventory::routes(&runtime)),
            "/plugins" => json(&inventory::plugins(&runtime)),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /health /ready /metrics /config /routes /plugins, POST /config/reload /config/plan\n",
            ),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Accept admin connections on `listener` until the task is dropped; each is served by
/// hyper's HTTP/1.1 on a task of its own.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.answer(request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!("admin connection closed: {e}");
            }
        });
    }
}
