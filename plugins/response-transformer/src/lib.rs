//! `response-transformer`: change a response before it goes back — remove, set and add
//! headers, and remove fields from JSON bodies (which makes the gateway buffer the body).
//!
//! ```toml
//! plugins = [ { use = "response-transformer", config = {
//!   remove = { headers = ["server"], json = ["password", "user.ssn"] },
//!   set = { headers = { "cache-control" = "no-store" } },
//!   add = { headers = { "x-served-by" = "gateway" } },
//! } } ]
//! ```
//! `json` paths are dot-separated; where a step meets an array, the rest of the path applies
//! to each element. Bodies are touched only when the content type is JSON (`application/json`
//! or `…+json`) and they parse; anything else passes through unchanged.

use plugin_sdk::{Context, Filter, Flow, Request, Response, Settings};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// What to remove.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Remove {
    /// Header names.
    #[serde(default)]
    pub headers: Vec<String>,
    /// JSON field paths (`a.b.c`).
    #[serde(default)]
    pub json: Vec<String>,
}

/// Headers to set or add.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Headers {
    /// Name → value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// The plugin's config.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What to remove.
    #[serde(default)]
    pub remove: Remove,
    /// Headers to set (replacing existing values).
    #[serde(default)]
    pub set: Headers,
    /// Headers to append.
    #[serde(default)]
    pub add: Headers,
}

/// The filter.
pub struct ResponseTransformer {
    config: Config,
    json_paths: Vec<Vec<String>>,
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || mime.ends_with("+json")
}

/// Remove the field at `path` from `value`, descending into arrays element-wise.
fn remove_path(value: &mut Value, path: &[String]) -> bool {
    match value {
        Value::Array(items) => {
            // Every element, not just up to the first change.
            let mut changed = false;
            for item in items {
                changed |= remove_path(item, path);
            }
            changed
        }
        Value::Object(map) => match path {
            [] => false,
            [last] => map.remove(last).is_some(),
            [first, rest @ ..] => map
                .get_mut(first)
                .is_some_and(|child| remove_path(child, rest)),
        },
        _ => false,
    }
}

impl Filter for ResponseTransformer {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        for name in config
            .remove
            .headers
            .iter()
            .chain(config.set.headers.keys())
            .chain(config.add.headers.keys())
        {
            if !plugin_sdk::is_valid_header_name(name) {
                return Err(format!("`{name}` is not a valid header name"));
            }
        }
        let mut json_paths = Vec::new();
        for path in &config.remove.json {
            let steps: Vec<String> = path.split('.').map(str::to_string).collect();
            if steps.iter().any(String::is_empty) {
                return Err(format!(
                    "remove.json: `{path}` is not a dot-separated field path"
                ));
            }
            json_paths.push(steps);
        }
        Ok(ResponseTransformer { config, json_paths })
    }

    fn settings(&self) -> Settings {
        Settings {
            response_body: !self.json_paths.is_empty(),
            request_headers: Some(Vec::new()),
            response_headers: Some(vec!["content-type".into()]),
            response_phase: true,
            ..Settings::default()
        }
    }

    fn on_response(&self, _req: &Request, resp: &mut Response, _ctx: &Context) -> Flow {
        let c = &self.config;
        for name in &c.remove.headers {
            resp.remove_header(name);
        }
        for (name, value) in &c.set.headers {
            resp.set_header(name, value);
        }
        for (name, value) in &c.add.headers {
            resp.add_header(name, value);
        }
        if !self.json_paths.is_empty()
            && is_json(resp.header("content-type"))
            && let Some(mut body) = resp
                .body()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        {
            let mut changed = false;
            for path in &self.json_paths {
                changed |= remove_path(&mut body, path);
            }
            if changed {
                resp.set_body(body.to_string());
                resp.remove_header("content-length");
            }
        }
        Flow::Continue
    }
}

plugin_sdk::export_filter!(ResponseTransformer);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest, TestResponse};
    use serde_json::json;

    fn run(config: Value, response: TestResponse) -> TestResponse {
        let filter = testing::init::<ResponseTransformer>(config).unwrap();
        let out = testing::response(&filter, TestRequest::get("/"), response);
        assert_eq!(out.failure(), None);
        out.response().clone()
    }

    #[test]
    fn removes_nested_json_fields() {
        let body = json!({"id": 1, "password": "x", "user": {"ssn": "1", "n": 2}, "items": [{"ssn": 1, "k": 1}, 3]});
        let out = run(
            json!({"remove": {"json": ["password", "user.ssn", "items.ssn", "missing.field"]}}),
            TestResponse::new(200)
                .with_header("content-type", "application/json; charset=utf-8")
                .with_header("content-length", "999")
                .with_body(body.to_string()),
        );
        let got: Value = serde_json::from_slice(out.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            got,
            json!({"id": 1, "user": {"n": 2}, "items": [{"k": 1}, 3]})
        );
        assert_eq!(out.header("content-length"), None);
    }

    #[test]
    fn leaves_non_json_alone_and_edits_headers() {
        let out = run(
            json!({"remove": {"headers": ["server"], "json": ["a"]}, "set": {"headers": {"x-s": "1"}}, "add": {"headers": {"x-a": "2"}}}),
            TestResponse::new(200)
                .with_header("content-type", "text/plain")
                .with_header("server", "s")
                .with_body("{\"a\":1}"),
        );
        assert_eq!(out.body.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(out.header("server"), None);
        assert_eq!(out.header("x-s"), Some("1"));
        assert_eq!(out.header("x-a"), Some("2"));
    }

    #[test]
    fn asks_for_the_body_only_when_needed() {
        let f = testing::init::<ResponseTransformer>(json!({})).unwrap();
        assert!(!f.settings().response_body);
        let f = testing::init::<ResponseTransformer>(json!({"remove": {"json": ["a"]}})).unwrap();
        assert!(f.settings().response_body);
        assert!(
            testing::init::<ResponseTransformer>(json!({"remove": {"json": ["a..b"]}})).is_err()
        );
    }
}
