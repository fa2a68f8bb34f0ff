//! `key-auth`: authenticate requests by an API key, stored only as its SHA-256.
//!
//! ```toml
//! { use = "key-auth", config = { header = "x-api-key", query_param = "apikey",
//!   consumers = [ { id = "alice", key_sha256 = "…64 hex…", groups = ["admin"] } ] } }
//! ```
//! Keys can also come from a file with the chain entry's `config_file` (the gateway merges it
//! into `config`), so they stay out of the main config. Hash a key with
//! `printf %s "$KEY" | sha256sum`.
//!
//! On success the consumer and its groups go into the context (`consumer`,
//! `consumer.groups`) and upstream as `X-Consumer-Id` / `X-Consumer-Groups`; client-sent
//! copies of those headers are removed first. A missing or unknown key answers 401.

use plugin_sdk::{Context, Filter, Flow, Reply, Request, Settings};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// One consumer and the hash of its key.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Consumer id passed on as `X-Consumer-Id`.
    pub id: String,
    /// SHA-256 of the key, hex.
    pub key_sha256: String,
    /// Groups for `acl`.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The plugin's config.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Header carrying the key (default `x-api-key`).
    #[serde(default = "default_header")]
    pub header: String,
    /// Query parameter carrying the key, if allowed.
    #[serde(default)]
    pub query_param: Option<String>,
    /// Known consumers.
    pub consumers: Vec<Consumer>,
    /// Remove the key from the request before it goes upstream (default true).
    #[serde(default = "default_true")]
    pub strip_key: bool,
}

fn default_header() -> String {
    "x-api-key".into()
}
fn default_true() -> bool {
    true
}

/// The filter.
pub struct KeyAuth {
    header: String,
    query_param: Option<String>,
    strip_key: bool,
    /// Key hash (raw bytes) → (consumer id, groups joined by commas).
    by_hash: HashMap<[u8; 32], (String, String)>,
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Filter for KeyAuth {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let header = config.header.to_ascii_lowercase();
        if !plugin_sdk::is_valid_header_name(&header) {
            return Err(format!("header: `{header}` is not a valid header name"));
        }
        let mut by_hash = HashMap::new();
        for (i, consumer) in config.consumers.into_iter().enumerate() {
            let hash = parse_hex(&consumer.key_sha256).ok_or_else(|| {
                format!("consumers[{i}].key_sha256: must be 64 hex digits (a SHA-256)")
            })?;
            if consumer.id.is_empty() {
                return Err(format!("consumers[{i}].id: must not be empty"));
            }
            let entry = (consumer.id, consumer.groups.join(","));
            if by_hash.insert(hash, entry).is_some() {
                return Err(format!("consumers[{i}]: the same key hash appears twice"));
            }
        }
        Ok(KeyAuth {
            header,
            query_param: config.query_param,
            strip_key: config.strip_key,
            by_hash,
        })
    }

    fn settings(&self) -> Settings {
        Settings {
            request_headers: Some(vec![self.header.clone()]),
            ..Settings::default()
        }
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Flow {
        let from_header = req.header(&self.header).map(str::to_string);
        let from_query = self
            .query_param
            .as_ref()
            .and_then(|name| req.query_param(name))
            .map(str::to_string);
        let Some(key) = from_header.clone().or(from_query).filter(|k| !k.is_empty()) else {
            return Flow::Respond(refuse("missing API key", ctx));
        };
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let Some((id, groups)) = self.by_hash.get(&hash) else {
            return Flow::Respond(refuse("invalid API key", ctx));
        };
        req.remove_header("x-consumer-id");
        req.remove_header("x-consumer-groups");
        req.set_header("x-consumer-id", id);
        req.set_header("x-consumer-groups", groups);
        ctx.set("consumer", id);
        ctx.set("consumer.groups", groups);
        ctx.set("auth.method", "key-auth");
        if self.strip_key {
            if from_header.is_some() {
                req.remove_header(&self.header);
            } else if let Some(name) = &self.query_param {
                req.remove_query_param(name);
            }
        }
        Flow::Continue
    }
}

fn refuse(message: &str, ctx: &Context) -> Reply {
    Reply::error(401, "unauthorized", message, ctx)
        .with_header("www-authenticate", "ApiKey realm=\"gateway\"")
}

plugin_sdk::export_filter!(KeyAuth);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest};
    use serde_json::json;

    fn hex(key: &str) -> String {
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn filter() -> KeyAuth {
        testing::init::<KeyAuth>(json!({"query_param": "apikey", "consumers": [
            {"id": "alice", "key_sha256": hex("k-alice"), "groups": ["admin", "dev"]},
            {"id": "bob", "key_sha256": hex("k-bob")},
        ]}))
        .unwrap()
    }

    #[test]
    fn known_key_sets_consumer_and_is_stripped() {
        let out = testing::request(
            &filter(),
            TestRequest::get("/")
                .with_header("x-api-key", "k-alice")
                .with_header("x-consumer-id", "evil"),
        );
        let up = out.upstream().unwrap();
        assert_eq!(up.header_all("x-consumer-id"), vec!["alice"]);
        assert_eq!(up.header("x-consumer-groups"), Some("admin,dev"));
        assert_eq!(up.header("x-api-key"), None);
        assert_eq!(out.context_value("consumer.groups"), Some("admin,dev"));
    }

    #[test]
    fn key_from_query() {
        let out = testing::request(&filter(), TestRequest::get("/x?a=1&apikey=k-bob"));
        let up = out.upstream().unwrap();
        assert_eq!(out.context_value("consumer"), Some("bob"));
        assert_eq!(up.query.as_deref(), Some("a=1"));
    }

    #[test]
    fn missing_or_unknown_key_is_401() {
        for req in [
            TestRequest::get("/"),
            TestRequest::get("/").with_header("x-api-key", "nope"),
        ] {
            assert_eq!(
                testing::request(&filter(), req).reply().unwrap().status(),
                401
            );
        }
    }

    #[test]
    fn bad_hash_is_a_config_error() {
        let err =
            testing::init::<KeyAuth>(json!({"consumers": [{"id": "a", "key_sha256": "xyz"}]}))
                .err()
                .unwrap();
        assert!(err.contains("consumers[0].key_sha256"), "{err}");
    }
}
