//! Test plugin: tags requests and responses with its name so tests can see chain order,
//! context passing and short-circuiting. Its Python twin is `plugins/python-tagger`.

use plugin_sdk::{Context, Filter, Flow, Reply, Request, Response, Settings};
use serde::Deserialize;

/// `{"name": "A"}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tag written by this use.
    pub name: String,
}

/// The tagger.
pub struct Tagger {
    name: String,
    lower: String,
}

fn append(existing: Option<&str>, name: &str) -> String {
    match existing {
        Some(existing) => format!("{existing},{name}"),
        None => name.to_string(),
    }
}

impl Filter for Tagger {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.name.is_empty() {
            return Err("`name` must not be empty".into());
        }
        Ok(Tagger {
            lower: config.name.to_lowercase(),
            name: config.name,
        })
    }

    fn settings(&self) -> Settings {
        Settings {
            response_phase: true,
            ..Settings::default()
        }
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Flow {
        plugin_sdk::log::debug(&format!("tagger {} on {}", self.name, req.path()));
        if req.header("x-respond") == Some(self.name.as_str()) {
            return Flow::Respond(
                Reply::new(418)
                    .with_header("x-responded-by", &self.name)
                    .with_body(format!("short-circuit by {}", self.name)),
            );
        }
        let chain = append(req.header("x-chain"), &self.name);
        req.set_header("x-chain", &chain);
        let seen = ctx.get("seen").map(str::to_string);
        req.set_header(
            &format!("x-seen-{}", self.lower),
            seen.as_deref().unwrap_or("-"),
        );
        ctx.set(
            "seen",
            &format!("{}{}", seen.unwrap_or_default(), self.name),
        );
        Flow::Continue
    }

    fn on_response(&self, _req: &Request, resp: &mut Response, ctx: &Context) -> Flow {
        let chain = append(resp.header("x-chain-response"), &self.name);
        resp.set_header("x-chain-response", &chain);
        resp.set_header(
            &format!("x-context-{}", self.lower),
            ctx.get("seen").unwrap_or("-"),
        );
        Flow::Continue
    }
}

plugin_sdk::export_filter!(Tagger);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{self, TestRequest, TestResponse};
    use serde_json::json;

    #[test]
    fn tags_in_order_and_passes_context() {
        let a = testing::init::<Tagger>(json!({"name": "A"})).unwrap();
        let b = testing::init::<Tagger>(json!({"name": "B"})).unwrap();
        let out_a = testing::request(&a, TestRequest::get("/"));
        let next = out_a.upstream().unwrap().clone();
        assert_eq!(next.header("x-seen-a"), Some("-"));
        let out_b = testing::request(&b, next);
        let up = out_b.upstream().unwrap();
        assert_eq!(up.header("x-chain"), Some("A,B"));
        assert_eq!(up.header("x-seen-b"), Some("A"));
        assert_eq!(out_b.context_value("seen"), Some("AB"));
        assert!(testing::logs().iter().any(|l| l.contains("tagger A")));
        let resp = testing::response(&b, up.clone(), TestResponse::new(200));
        let resp = testing::response(&a, up.clone(), resp.response().clone());
        let resp = resp.response();
        assert_eq!(resp.header("x-chain-response"), Some("B,A"));
        assert_eq!(resp.header("x-context-a"), Some("AB"));
    }

    #[test]
    fn responds_when_asked_and_rejects_bad_config() {
        let a = testing::init::<Tagger>(json!({"name": "A"})).unwrap();
        let out = testing::request(&a, TestRequest::get("/").with_header("x-respond", "A"));
        let reply = out.reply().unwrap();
        assert_eq!(reply.status(), 418);
        assert_eq!(reply.header("x-responded-by"), Some("A"));
        assert!(testing::init::<Tagger>(json!({"name": ""})).is_err());
        let err = testing::init::<Tagger>(json!({"nam": "x"})).err().unwrap();
        assert!(err.contains("unknown field `nam`"), "{err}");
    }
}
