//! `request-transformer`: change a request before it goes upstream — remove, rename, set and
//! add headers, remove and add query parameters, rewrite a path prefix.
//!
//! ```toml
//! plugins = [ { use = "request-transformer", config = {
//!   remove = { headers = ["x-internal"], querystring = ["debug"] },
//!   rename = { headers = { "x-old" = "x-new" } },
//!   set = { headers = { "x-env" = "prod" } },
//!   add = { headers = { "x-via" = "gateway" }, querystring = { "src" = "gw" } },
//!   rewrite_path_prefix = { from = "/api", to = "/v2" },
//! } } ]
//! ```
//! Applied in that order: remove, rename, set, add, path rewrite.

use plugin_sdk::{Context, Filter, Flow, Request, Settings};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Headers and query parameters to remove.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Remove {
    /// Header names.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Query parameter names (every occurrence is removed).
    #[serde(default)]
    pub querystring: Vec<String>,
}

/// Headers to rename.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    /// Old name → new name; values are kept.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Headers to set (replacing existing values).
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Set {
    /// Name → value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Headers and query parameters to append.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Add {
    /// Name → value, appended to existing values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Name → value, appended as `name=value` (percent-encoded).
    #[serde(default)]
    pub querystring: BTreeMap<String, String>,
}

/// Replace a leading path prefix.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Prefix to match on a segment boundary, e.g. `/api`.
    pub from: String,
    /// Replacement, e.g. `/v2` (empty means the root).
    pub to: String,
}

/// The plugin's config.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What to remove.
    #[serde(default)]
    pub remove: Remove,
    /// What to rename.
    #[serde(default)]
    pub rename: Rename,
    /// What to set.
    #[serde(default)]
    pub set: Set,
    /// What to add.
    #[serde(default)]
    pub add: Add,
    /// Path prefix rewrite.
    #[serde(default)]
    pub rewrite_path_prefix: Option<Rewrite>,
}

/// The filter.
pub struct RequestTransformer {
    config: Config,
}

fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

/// Percent-encode a query component (RFC 3986 unreserved characters pass through).
pub fn encode_query_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// True if `path` starts with `prefix` on a segment boundary.
fn has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

impl Config {
    fn validate(&self) -> Result<(), String> {
        let names = self
            .remove
            .headers
            .iter()
            .map(|n| ("remove.headers", n))
            .chain(
                self.rename
                    .headers
                    .iter()
                    .flat_map(|(a, b)| [("rename.headers", a), ("rename.headers", b)]),
            )
            .chain(self.set.headers.keys().map(|n| ("set.headers", n)))
            .chain(self.add.headers.keys().map(|n| ("add.headers", n)));
        for (key, name) in names {
            if !plugin_sdk::is_valid_header_name(name) {
                return Err(format!("{key}: `{name}` is not a valid header name"));
            }
        }
        for (key, value) in self.set.headers.iter().chain(&self.add.headers) {
            if !is_header_value(value) {
                return Err(format!("header `{key}`: value contains control characters"));
            }
        }
        if let Some(rewrite) = &self.rewrite_path_prefix {
            if !rewrite.from.starts_with('/') {
                return Err(format!(
                    "rewrite_path_prefix.from: `{}` must start with `/`",
                    rewrite.from
                ));
            }
            if !rewrite.to.is_empty() && !rewrite.to.starts_with('/') {
                return Err(format!(
                    "rewrite_path_prefix.to: `{}` must start with `/`",
                    rewrite.to
                ));
            }
        }
        Ok(())
    }
}

impl Filter for RequestTransformer {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        config.validate()?;
        Ok(RequestTransformer { config })
    }

    fn settings(&self) -> Settings {
        Settings {
            // Only renamed headers are read; removing, setting and adding need no values.
            request_headers: Some(self.config.rename.headers.keys().cloned().collect()),
            ..Settings::default()
        }
    }

    fn on_request(&self, req: &mut Request, _ctx: &mut Context) -> Flow {
        let c = &self.config;
        for name in &c.remove.headers {
            req.remove_header(name);
        }
        for (from, to) in &c.rename.headers {
            let values: Vec<String> = req
                .header_all(from)
                .into_iter()
                .map(str::to_string)
                .collect();
            if !values.is_empty() {
                req.remove_header(from);
                for value in values {
                    req.add_header(to, &value);
                }
            }
        }
        for (name, value) in &c.set.headers {
            req.set_header(name, value);
        }
        for (name, value) in &c.add.headers {
            req.add_header(name, value);
        }
        if !c.remove.querystring.is_empty() || !c.add.querystring.is_empty() {
            let mut pairs: Vec<String> = req
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|pair| !pair.is_empty())
                .filter(|pair| {
                    let key = pair.split('=').next().unwrap_or("");
                    !c.remove.querystring.iter().any(|r| r == key)
                })
                .map(str::to_string)
                .collect();
            for (key, value) in &c.add.querystring {
                pairs.push(format!(
                    "{}={}",
                    encode_query_component(key),
                    encode_query_component(value)
                ));
            }
            let query = pairs.join("&");
            req.set_query(Some(&query));
        }
        if let Some(rewrite) = &c.rewrite_path_prefix
            && has_prefix(req.path(), &rewrite.from)
        {
            let rest = &req.path()[rewrite.from.len()..];
            let mut path = format!("{}{}", rewrite.to.trim_end_matches('/'), rest);
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
            req.set_path(&path);
        }
        Flow::Continue
    }
}

plugin_sdk::export_filter!(RequestTransformer);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest};
    use serde_json::json;

    fn run(config: serde_json::Value, request: TestRequest) -> TestRequest {
        let filter = testing::init::<RequestTransformer>(config).unwrap();
        testing::request(&filter, request)
            .upstream()
            .unwrap()
            .clone()
    }

    #[test]
    fn headers_in_order() {
        let out = run(
            json!({
                "remove": {"headers": ["x-internal"]},
                "rename": {"headers": {"x-old": "x-new"}},
                "set": {"headers": {"x-set": "1"}},
                "add": {"headers": {"x-multi": "b"}},
            }),
            TestRequest::get("/")
                .with_header("x-internal", "s")
                .with_header("x-old", "v")
                .with_header("x-set", "0")
                .with_header("x-multi", "a"),
        );
        assert_eq!(out.header("x-internal"), None);
        assert_eq!(out.header("x-old"), None);
        assert_eq!(out.header("x-new"), Some("v"));
        assert_eq!(out.header_all("x-set"), ["1"]);
        assert_eq!(out.header_all("x-multi"), ["a", "b"]);
    }

    #[test]
    fn query_parameters() {
        let out = run(
            json!({"remove": {"querystring": ["debug"]}, "add": {"querystring": {"src": "a b&c"}}}),
            TestRequest::get("/p?debug=1&keep=2&debug=3"),
        );
        assert_eq!(out.query.as_deref(), Some("keep=2&src=a%20b%26c"));
        let out = run(
            json!({"remove": {"querystring": ["only"]}}),
            TestRequest::get("/p?only=1"),
        );
        assert_eq!(out.query, None);
    }

    #[test]
    fn path_prefix_rewrite_on_segment_boundary() {
        let config = json!({"rewrite_path_prefix": {"from": "/api", "to": "/v2"}});
        assert_eq!(
            run(config.clone(), TestRequest::get("/api/users")).path,
            "/v2/users"
        );
        assert_eq!(run(config.clone(), TestRequest::get("/api")).path, "/v2");
        assert_eq!(run(config.clone(), TestRequest::get("/apix")).path, "/apix");
        let root = json!({"rewrite_path_prefix": {"from": "/api", "to": ""}});
        assert_eq!(run(root, TestRequest::get("/api/x")).path, "/x");
    }

    #[test]
    fn rejects_bad_config() {
        let cases = [
            (
                json!({"set": {"headers": {"bad name": "1"}}}),
                "set.headers: `bad name` is not a valid header name",
            ),
            (
                json!({"rewrite_path_prefix": {"from": "api", "to": "/"}}),
                "rewrite_path_prefix.from: `api` must start with `/`",
            ),
            (json!({"sett": {}}), "invalid config: unknown field `sett`"),
        ];
        for (config, expected) in cases {
            let err = testing::init::<RequestTransformer>(config).err().unwrap();
            assert!(err.starts_with(expected), "{err}");
        }
    }
}
