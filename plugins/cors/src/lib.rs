//! `cors`: Cross-Origin Resource Sharing. Preflight requests are answered here (the upstream
//! never sees them); actual requests from allowed origins get the CORS response headers.
//!
//! ```toml
//! { use = "cors", config = { origins = ["https://app.example"], methods = ["GET", "POST"],
//!   headers = ["content-type", "authorization"], exposed_headers = ["x-request-id"],
//!   credentials = true, max_age_s = 600 } }
//! ```
//! `origins = ["*"]` allows any origin (reflected rather than `*` when `credentials` is on,
//! as browsers require). With `headers` empty, the preflight's requested headers are allowed.
//! A preflight from an origin not allowed gets 204 without CORS headers, so the browser
//! blocks the call; `Vary: Origin` is always set so caches keep answers apart.

use plugin_sdk::{Context, Filter, Flow, Reply, Request, Response, Settings};
use serde::Deserialize;

/// The plugin's config.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Allowed origins (`scheme://host[:port]`), or `["*"]`.
    pub origins: Vec<String>,
    /// Allowed methods (default GET, HEAD, PUT, PATCH, POST, DELETE).
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Allowed request headers; empty reflects what the preflight asks for.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Response headers the browser may expose to scripts.
    #[serde(default)]
    pub exposed_headers: Vec<String>,
    /// Allow credentials (cookies, HTTP auth).
    #[serde(default)]
    pub credentials: bool,
    /// How long the browser may cache a preflight answer.
    #[serde(default)]
    pub max_age_s: Option<u64>,
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"]
        .map(String::from)
        .to_vec()
}

/// The filter.
pub struct Cors {
    config: Config,
    any_origin: bool,
}

impl Filter for Cors {
    type Config = Config;

    fn new(mut config: Config) -> Result<Self, String> {
        if config.origins.is_empty() {
            return Err("origins: list allowed origins, or [\"*\"]".into());
        }
        for origin in &config.origins {
            if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(format!(
                    "origins: `{origin}` must be `*` or scheme://host[:port]"
                ));
            }
        }
        for method in &mut config.methods {
            *method = method.to_ascii_uppercase();
        }
        let any_origin = config.origins.iter().any(|o| o == "*");
        Ok(Cors { config, any_origin })
    }

    fn settings(&self) -> Settings {
        Settings {
            request_headers: Some(vec![
                "origin".into(),
                "access-control-request-method".into(),
                "access-control-request-headers".into(),
            ]),
            response_headers: Some(Vec::new()),
            response_phase: true,
            ..Settings::default()
        }
    }

    fn on_request(&self, req: &mut Request, _ctx: &mut Context) -> Flow {
        let preflight = req.method() == "OPTIONS"
            && req.header("origin").is_some()
            && req.header("access-control-request-method").is_some();
        if !preflight {
            return Flow::Continue;
        }
        let mut reply = Reply::new(204).with_header("vary", "Origin");
        let Some(allow_origin) = self.allowed_origin(req.header("origin")) else {
            return Flow::Respond(reply);
        };
        reply = reply
            .with_header("access-control-allow-origin", &allow_origin)
            .with_header(
                "access-control-allow-methods",
                self.config.methods.join(", "),
            );
        let headers = if self.config.headers.is_empty() {
            req.header("access-control-request-headers")
                .unwrap_or("")
                .to_string()
        } else {
            self.config.headers.join(", ")
        };
        if !headers.is_empty() {
            reply = reply.with_header("access-control-allow-headers", &headers);
        }
        if self.config.credentials {
            reply = reply.with_header("access-control-allow-credentials", "true");
        }
        if let Some(max_age) = self.config.max_age_s {
            reply = reply.with_header("access-control-max-age", max_age.to_string());
        }
        Flow::Respond(reply)
    }

    fn on_response(&self, req: &Request, resp: &mut Response, _ctx: &Context) -> Flow {
        resp.add_header("vary", "Origin");
        if let Some(allow_origin) = self.allowed_origin(req.header("origin")) {
            resp.set_header("access-control-allow-origin", &allow_origin);
            if self.config.credentials {
                resp.set_header("access-control-allow-credentials", "true");
            }
            if !self.config.exposed_headers.is_empty() {
                resp.set_header(
                    "access-control-expose-headers",
                    self.config.exposed_headers.join(", "),
                );
            }
        }
        Flow::Continue
    }
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
    fn allowed_origin(&self, origin: Option<&str>) -> Option<String> {
        let origin = origin?;
        if self.any_origin {
            return Some(if self.config.credentials {
                origin.to_string()
            } else {
                "*".to_string()
            });
        }
        self.config
            .origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then(|| origin.to_string())
    }
}

plugin_sdk::export_filter!(Cors);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest, TestResponse};
    use serde_json::json;

    fn cors() -> Cors {
        testing::init::<Cors>(
            json!({"origins": ["https://app.example"], "credentials": true,
            "max_age_s": 600, "exposed_headers": ["x-request-id"]}),
        )
        .unwrap()
    }

    #[test]
    fn answers_preflight() {
        let out = testing::request(
            &cors(),
            TestRequest::new("OPTIONS", "/api")
                .with_header("origin", "https://app.example")
                .with_header("access-control-request-method", "POST")
                .with_header("access-control-request-headers", "content-type"),
        );
        let reply = out.reply().expect("preflight answered");
        assert_eq!(reply.status(), 204);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            reply.header("access-control-allow-headers"),
            Some("content-type")
        );
        assert_eq!(reply.header("access-control-max-age"), Some("600"));
        assert_eq!(
            reply.header("access-control-allow-credentials"),
            Some("true")
        );
    }

    #[test]
    fn refuses_other_origins_and_decorates_responses() {
        let out = testing::request(
            &cors(),
            TestRequest::new("OPTIONS", "/")
                .with_header("origin", "https://evil.example")
                .with_header("access-control-request-method", "GET"),
        );
        assert_eq!(
            out.reply().unwrap().header("access-control-allow-origin"),
            None
        );
        let resp = testing::response(
            &cors(),
            TestRequest::get("/").with_header("origin", "https://app.example"),
            TestResponse::new(200),
        );
        let resp = resp.response();
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            resp.header("access-control-expose-headers"),
            Some("x-request-id")
        );
    }
}
