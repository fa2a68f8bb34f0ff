//! `acl`: allow or deny by the consumer's groups, as set in the context by an auth plugin
//! (`jwt-auth`, `key-auth`) earlier in the chain.
//!
//! ```toml
//! { use = "acl", config = { allow = ["admin", "ops"] } }   # or deny = ["banned"]
//! ```
//! A request without an authenticated consumer answers 401 (the chain lacks an auth plugin
//! before `acl`, or it let the request through anonymously); a consumer in a `deny` group,
//! or in none of the `allow` groups, answers 403. `deny` wins over `allow`.

use plugin_sdk::{Context, Filter, Flow, Reply, Request, Settings};
use serde::Deserialize;

/// The plugin's config.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Groups let through (empty: everyone not denied).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Groups refused.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Context key holding the groups, comma-separated (default `consumer.groups`).
    #[serde(default = "default_groups_key")]
    pub groups_key: String,
}

fn default_groups_key() -> String {
    "consumer.groups".into()
}

/// The filter.
pub struct Acl {
    config: Config,
}

impl Filter for Acl {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.allow.is_empty() && config.deny.is_empty() {
            return Err("give `allow` or `deny` (a list of groups)".into());
        }
        Ok(Acl { config })
    }

    fn settings(&self) -> Settings {
        Settings {
            request_headers: Some(Vec::new()),
            ..Settings::default()
        }
    }

    fn on_request(&self, _req: &mut Request, ctx: &mut Context) -> Flow {
        if ctx.get("consumer").is_none() {
            return Flow::Respond(refuse(401, "no authenticated consumer", ctx));
        }
        let groups: Vec<&str> = ctx
            .get(&self.config.groups_key)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .collect();
        let member = |list: &[String]| groups.iter().any(|g| list.iter().any(|l| l == g));
        if member(&self.config.deny)
            || (!self.config.allow.is_empty() && !member(&self.config.allow))
        {
            return Flow::Respond(refuse(403, "consumer is not allowed here", ctx));
        }
        Flow::Continue
    }
}

fn refuse(status: u16, message: &str, ctx: &Context) -> Reply {
    let code = if status == 401 {
        "unauthorized"
    } else {
        "forbidden"
    };
    Reply::error(status, code, message, ctx)
}

plugin_sdk::export_filter!(Acl);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest};
    use serde_json::json;

    fn status(config: serde_json::Value, req: TestRequest) -> u16 {
        let f = testing::init::<Acl>(config).unwrap();
        testing::request(&f, req)
            .reply()
            .map_or(200, |r| r.status())
    }

    fn consumer(groups: &str) -> TestRequest {
        TestRequest::get("/")
            .with_context("consumer", "alice")
            .with_context("consumer.groups", groups)
    }

    #[test]
    fn allow_and_deny() {
        let allow = json!({"allow": ["admin"]});
        assert_eq!(status(allow.clone(), consumer("dev,admin")), 200);
        assert_eq!(status(allow.clone(), consumer("dev")), 403);
        assert_eq!(status(allow, TestRequest::get("/")), 401);
        let both = json!({"allow": ["admin"], "deny": ["banned"]});
        assert_eq!(status(both, consumer("admin,banned")), 403);
        assert_eq!(status(json!({"deny": ["banned"]}), consumer("")), 200);
    }

    #[test]
    fn needs_a_list() {
        assert!(testing::init::<Acl>(json!({})).is_err());
    }
}
